"""Owner endpoint for moving many orders at once."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agent_tools.models import Actor, Provenance
from agent_tools.models.changes import BulkOutcome, BulkStatusChange
from agent_tools.service import bulk
from api.deps import ConnDep, DbDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(prefix="/api/orders/bulk", tags=["orders"], responses=errors(401, 422, 503))


@router.post("/status", response_model=BulkOutcome, responses=errors(409))
async def update_statuses(
    body: BulkStatusChange,
    owner: OwnerDep,
    db: DbDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Move up to 500 orders (ids or numbers; an object per order adds `carrier`,
    `tracking_number` or `expected_version`) to one `status`.

    Each order moves in its own transaction; the answer lists every order in the order given,
    `ok` or its `problem` (`invalid_transition` with `allowed`, `version_conflict` with
    `current_version`, `not_found`): a partial success is normal, and nothing is
    half-applied within one order. With an `Idempotency-Key` a retry gets the first answer
    again (a request cut off midway runs again: orders already moved then answer
    `invalid_transition`).
    """

    async def run() -> BulkOutcome:
        # The orders move on connections of their own; `conn` holds the key meanwhile.
        return await bulk.update_statuses(
            db, body, owner_id=owner, by=Provenance(actor=Actor.owner)
        )

    return await idempotent(conn, owner, idempotency_key, request, body, run, status_code=200)
