"""Owner endpoint for editing an order before it ships (items, address, contact, notes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from agent_tools.errors import ValidationFailed
from agent_tools.models import Actor, Provenance
from agent_tools.models.changes import EditPlan, OrderEdit
from agent_tools.service import edits
from api.deps import ConnDep, IfMatch, OwnerDep, if_match_version
from api.problems import errors
from api.routes.orders import OrderKey, detail, etag
from api.schemas import OrderDetail

router = APIRouter(prefix="/api/orders", tags=["orders"], responses=errors(401, 422, 503))


@router.patch("/{order_id}", response_model=OrderDetail | EditPlan, responses=errors(404, 409))
async def edit_order(
    order_id: OrderKey,
    body: OrderEdit,
    owner: OwnerDep,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
    dry_run: Annotated[
        bool, Query(description="Only work out the change: return its plan, write nothing")
    ] = False,
) -> OrderDetail | EditPlan:
    """Change an order before it ships: `items` (catalog lines; units it had keep their
    price, added ones are priced from the catalog), `custom_lines`, `shipping_address`,
    `customer` (name, email and phone together), `customer_notes`, `internal_notes`. Omitted
    fields stay as they are.

    One transaction: stock moves by the difference (409 `out_of_stock` if it is not there),
    totals are recomputed, an `edited` event records the before/after diff and the version
    goes up. Send `If-Match` with the version you read: a stale one is 409
    `version_conflict` with `current_version`. Pending and confirmed orders can be edited
    (processing too if the agent's `editable_while_processing` is on); later ones are 409
    `not_editable`. A paid order is refunded what it was paid beyond the new total
    (`refund`); what it owes more (`owed`) gets a payment link in a `stripe` store. With
    `dry_run=true` the answer is the plan (`before`, `after`, `changed`, `difference`,
    `stock`, `refund`, `owed`) and nothing is written.
    """
    if if_match is not None:
        version = if_match_version(if_match)
        if body.expected_version not in (None, version):
            raise ValidationFailed("If-Match and expected_version disagree", field="If-Match")
        body = body.model_copy(update={"expected_version": version})
    if dry_run:
        return await edits.preview(conn, order_id, body, owner_id=owner)
    order, _ = await edits.apply(
        conn, order_id, body, by=Provenance(actor=Actor.owner), owner_id=owner
    )
    response.headers.update(etag(order))
    return await detail(conn, order)
