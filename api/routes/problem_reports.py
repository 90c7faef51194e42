"""Owner endpoints for problem reports: the queue of cases, and resolving one with a note."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from agent_tools.models import Actor, ProblemReport, ProblemStatus, Provenance, Resolution
from agent_tools.service import problems
from api.deps import ConnDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(prefix="/api/problems", tags=["problems"], responses=errors(401, 422, 503))


@router.get("/", response_model=list[ProblemReport])
async def list_problems(
    owner: OwnerDep,
    conn: ConnDep,
    status: Annotated[
        Literal["open", "resolved", "all"], Query(description="Which cases; default open")
    ] = "open",
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[ProblemReport]:
    """Problems customers reported on your orders, oldest first: open ones by default."""
    wanted = None if status == "all" else ProblemStatus(status)
    return await problems.list_cases(conn, owner, status=wanted, limit=limit)


@router.post("/{problem_id}/resolve", response_model=ProblemReport, responses=errors(404, 409))
async def resolve_problem(
    problem_id: Annotated[UUID, Path(description="The case's id")],
    body: Resolution,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Close an open case. `note` tells the customer what was done: it appears in the order's
    history on the tracking page. A case resolved already is 409."""

    async def run() -> ProblemReport:
        return await problems.resolve(
            conn, problem_id, body, owner_id=owner, by=Provenance(actor=Actor.owner)
        )

    return await idempotent(conn, owner, idempotency_key, request, body, run, status_code=200)
