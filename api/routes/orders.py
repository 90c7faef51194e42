"""Owner endpoints for orders: create, list, read, move through the status machine, stats."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from agent_tools.db import Conn
from agent_tools.errors import ValidationFailed, parse
from agent_tools.models import (
    Actor,
    NewOrder,
    Order,
    OrderFilter,
    OrderPage,
    OrderStatus,
    Provenance,
    Stats,
    StatusChange,
    allowed_next,
)
from agent_tools.service import orders, payments, problems, returns, stats, tracking
from api.deps import ConnDep, IdempotencyKey, IfMatch, Instant, OwnerDep, if_match_version
from api.idempotency import idempotent
from api.problems import errors
from api.schemas import OrderDetail

router = APIRouter(prefix="/api/orders", tags=["orders"], responses=errors(401, 422, 503))

BY_OWNER = Provenance(actor=Actor.owner)
OrderKey = Annotated[
    str, Path(max_length=64, description="The order's UUID or its number (ORD-YYYY-NNNNNN)")
]


async def detail(conn: Conn, order: Order) -> OrderDetail:
    events = await orders.list_events(conn, order.id)
    key = await tracking.signing_key(conn)
    return OrderDetail(
        **order.model_dump(),
        status_history=events,
        allowed_next=allowed_next(order.status),
        tracking_url=tracking.tracking_url(key, order),
        problems=await problems.list_for_order(conn, order.id),
        returns=await returns.for_order(conn, order.id),
        payments=await payments.list_for_order(conn, order.id),
        payment_url=link.url if (link := await payments.open_link(conn, order.id)) else None,
    )


def etag(order: Order) -> dict[str, str]:
    return {"ETag": f'"{order.version}"'}


@router.post("/", status_code=201, response_model=OrderDetail, responses=errors(404, 409))
async def create_order(
    body: NewOrder,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Place a manual order for one of your agents.

    `items` are catalog SKUs, priced from the catalog with stock reserved; `custom_lines`
    carry their own price and touch no stock. Send an `Idempotency-Key` to retry safely.
    """

    async def run() -> OrderDetail:
        order = await orders.create_order(conn, body, by=BY_OWNER, owner_id=owner)
        return await detail(conn, order)

    async def restore(stored: dict[str, Any]) -> dict[str, Any]:
        # The link is signed again for the order as it is now: a revoked link stays revoked.
        order = await orders.get_order(conn, stored["id"], owner_id=owner)
        link = tracking.tracking_url(await tracking.signing_key(conn), order)
        return {**stored, "tracking_url": link}

    return await idempotent(
        conn,
        owner,
        idempotency_key,
        request,
        body,
        run,
        secret_fields=("tracking_url",),
        restore=restore,
    )


@router.get("/", response_model=OrderPage)
async def list_orders(
    owner: OwnerDep,
    conn: ConnDep,
    agent_id: UUID | None = None,
    status: Annotated[list[OrderStatus] | None, Query(description="Repeat for several")] = None,
    search: Annotated[
        str | None, Query(max_length=200, description="Order number, customer name or email")
    ] = None,
    created_from: Annotated[Instant | None, Query(description="Inclusive")] = None,
    created_to: Annotated[Instant | None, Query(description="Exclusive")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> OrderPage:
    """Your orders, newest first. Pages neither skip nor repeat orders created meanwhile."""
    filters = parse(
        OrderFilter,
        {
            "agent_id": agent_id,
            "statuses": status or [],
            "search": search,
            "created_from": created_from,
            "created_to": created_to,
        },
    )
    return await orders.list_orders(
        conn, owner_id=owner, filters=filters, cursor=cursor, limit=limit
    )


@router.get("/stats/summary", response_model=Stats)
async def read_stats(
    owner: OwnerDep,
    conn: ConnDep,
    agent_id: UUID | None = None,
    created_from: Instant | None = None,
    created_to: Instant | None = None,
) -> Stats:
    """Order count, revenue per currency (cancelled excluded), counts per status and per day."""
    return await stats.summary(
        conn,
        owner_id=owner,
        agent_id=agent_id,
        created_from=created_from,
        created_to=created_to,
    )


@router.get("/{order_id}", response_model=OrderDetail, responses=errors(404))
async def read_order(
    order_id: OrderKey, owner: OwnerDep, conn: ConnDep, response: Response
) -> OrderDetail:
    """One order with its full `status_history`. The `ETag` is its version."""
    order = await orders.get_order(conn, order_id, owner_id=owner)
    response.headers.update(etag(order))
    return await detail(conn, order)


@router.patch("/{order_id}/status", response_model=OrderDetail, responses=errors(404, 409))
async def update_order_status(
    order_id: OrderKey,
    body: StatusChange,
    owner: OwnerDep,
    conn: ConnDep,
    response: Response,
    if_match: IfMatch = None,
) -> OrderDetail:
    """Move the order to `status`, optionally setting tracking details and a note.

    With `If-Match` (or `expected_version`) the change is refused with 409 if the order has
    changed since. Invalid transitions are 409 too; both list the `allowed` next statuses.
    Sending the current status with new tracking details updates just those.
    """
    if if_match is not None:
        version = if_match_version(if_match)
        if body.expected_version not in (None, version):
            raise ValidationFailed("If-Match and expected_version disagree", field="If-Match")
        body = body.model_copy(update={"expected_version": version})
    order = await orders.update_status(conn, order_id, body, by=BY_OWNER, owner_id=owner)
    response.headers.update(etag(order))
    return await detail(conn, order)


@router.post("/{order_id}/tracking-links/revoke", response_model=OrderDetail, responses=errors(404))
async def revoke_tracking_links(order_id: OrderKey, owner: OwnerDep, conn: ConnDep) -> OrderDetail:
    """Stop every tracking link of this order handed out so far (say, one forwarded to the
    wrong person); they show only the short public view from now on. The response's
    `tracking_url` is the new link to give the customer. Each call revokes the links before
    it, so a retry revokes the link the first call returned."""
    order = await tracking.revoke_links(conn, order_id, owner_id=owner)
    return await detail(conn, order)
