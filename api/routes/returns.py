"""Owner endpoints for returns: the queue, and each step (approve, reject, receive, refund)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from agent_tools.models import Actor, Provenance
from agent_tools.models.changes import OPEN_RETURNS, Return, ReturnDecision, ReturnState
from agent_tools.service import returns
from api.deps import ConnDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(prefix="/api/returns", tags=["returns"], responses=errors(401, 422, 503))

ReturnId = Annotated[UUID, Path(description="The return's id")]


@router.get("/", response_model=list[Return])
async def list_returns(
    owner: OwnerDep,
    conn: ConnDep,
    state: Annotated[
        list[ReturnState] | None,
        Query(
            description="Repeat for several; default: the open ones (requested, approved, received)"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Return]:
    """Returns of your orders' items, oldest first."""
    states = state or sorted(OPEN_RETURNS, key=list(ReturnState).index)
    return await returns.list_returns(conn, owner, states=states, limit=limit)


async def _step(
    to: ReturnState,
    return_id: UUID,
    body: ReturnDecision | None,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: str | None,
) -> JSONResponse:
    decision = body or ReturnDecision()

    async def run() -> Return:
        return await returns.advance(
            conn, return_id, to, decision, owner_id=owner, by=Provenance(actor=Actor.owner)
        )

    return await idempotent(conn, owner, idempotency_key, request, decision, run, status_code=200)


@router.post("/{return_id}/approve", response_model=Return, responses=errors(404, 409))
async def approve_return(
    return_id: ReturnId,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    body: ReturnDecision | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Accept a requested return: the customer may send the items back. An optional `note`
    (return instructions) is shown to the customer. 409 unless it is `requested`."""
    return await _step(ReturnState.approved, return_id, body, owner, conn, request, idempotency_key)


@router.post("/{return_id}/reject", response_model=Return, responses=errors(404, 409))
async def reject_return(
    return_id: ReturnId,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    body: ReturnDecision | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Refuse a requested or approved return; `note` tells the customer why. The items can
    be asked for again in another return."""
    return await _step(ReturnState.rejected, return_id, body, owner, conn, request, idempotency_key)


@router.post("/{return_id}/receive", response_model=Return, responses=errors(404, 409))
async def receive_return(
    return_id: ReturnId,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    body: ReturnDecision | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The items arrived: their units go back to stock. 409 unless it is `approved`."""
    return await _step(ReturnState.received, return_id, body, owner, conn, request, idempotency_key)


@router.post("/{return_id}/refund", response_model=Return, responses=errors(404, 409))
async def refund_return(
    return_id: ReturnId,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    body: ReturnDecision | None = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Refund a received return: the returned units' price (`amount`), never more than the
    order has left to refund. The refund is recorded on the return (`refunded`) and in the
    order's history. 409 unless it is `received`."""
    return await _step(ReturnState.refunded, return_id, body, owner, conn, request, idempotency_key)
