"""After the order: its status and timeline, and the customer's own orders."""

from __future__ import annotations

from typing import Any

from agent_tools.errors import NotFound
from agent_tools.models import Order, OrderStatus
from agent_tools.service import orders, problems, returns, tracking
from agent_tools.tools.args import GetOrderStatusArgs, ListMyOrdersArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import (
    MAX_LIST,
    IdentityRequired,
    Result,
    Tool,
    brief,
    money,
    order_number,
    ship_to,
)
from agent_tools.tools.handlers.paying import payment


async def get_order_status(inv: Invocation, a: GetOrderStatusArgs) -> Result:
    ctx = inv.ctx
    number = order_number(a.order_number)
    try:
        found = await tracking.lookup(inv.conn, number, agent_id=ctx.agent_id)
    except NotFound:
        raise NotFound(
            f"no order {number} at this store",
            hint="check the order number with the customer",
        ) from None
    order = found.order
    email = (a.email or "").strip().lower()
    matches = bool(email) and email == order.customer_email
    full = ctx.owns(order) or matches
    view = found.view(full=full)
    timeline = [
        {"at": e.at.isoformat(timespec="minutes"), "event": e.kind}
        | ({"status": e.status.value} if e.status else {})
        | ({"note": e.note} if e.note else {})
        for e in view.timeline
        if e.shipment is None  # carrier scans: only each parcel's latest, under `shipments`
    ]
    result: Result = {
        "order_number": view.order_number,
        "status": view.status.value,
        "timeline": timeline[-MAX_LIST:],
    }
    if view.delivered_at is not None:
        # Delivered means delivered: the time it happened, and no estimate beside it.
        result["delivered_at"] = view.delivered_at.isoformat(timespec="minutes")
    elif view.status != OrderStatus.cancelled:
        eta = view.estimated_delivery
        result["estimated_delivery"] = eta.isoformat() if eta else None
    if len(timeline) > MAX_LIST:
        result["earlier_events"] = len(timeline) - MAX_LIST
    if view.shipments:
        result["shipments"] = [_parcel(view, s) for s in view.shipments[:MAX_LIST]]
    if view.customer is not None:
        items = view.items or []
        result["items"] = [f"{i.quantity} x {i.name}" for i in items[:MAX_LIST]]
        if len(items) > MAX_LIST:
            result["more_items"] = len(items) - MAX_LIST
        result["carrier"] = view.carrier
        result["tracking_number"] = view.tracking_number
        result["carrier_url"] = view.carrier_url
        result["ships_to"] = ", ".join(x for x in (view.city, view.country) if x) or None
        c = view.customer
        key = await tracking.signing_key(inv.conn, inv.settings)
        result["details"] = "full"
        result["customer"] = {
            k: v for k, v in {"name": c.name, "email": c.email, "phone": c.phone}.items() if v
        }
        result["ship_to"] = ship_to(c.shipping_address)
        cases = await problems.list_for_order(inv.conn, order.id)
        if cases:
            result["problems"] = [
                {
                    "kind": p.kind.value,
                    "status": p.status.value,
                    "reported_at": p.created_at.isoformat(timespec="minutes"),
                }
                | ({"resolution": p.resolution} if p.resolution else {})
                for p in cases[:MAX_LIST]
            ]
        taken_back = await returns.for_order(inv.conn, order.id)
        if taken_back:
            result["returns"] = [
                {
                    "state": r.state.value,
                    "items": [f"{ln.quantity} x {ln.name}" for ln in r.lines],
                    "requested": r.created_at.date().isoformat(),
                }
                | (
                    {"refunded": money(r.refunded, order.currency)}
                    if r.refunded is not None
                    else {}
                )
                | ({"note": r.note} if r.note else {})
                for r in taken_back[-MAX_LIST:]
            ]
        result["total"] = money(c.total, order.currency)
        # The bound customer's own unpaid order gets its payment link (a fresh one if needed).
        result["payment"] = await payment(inv, order, link=ctx.owns(order))
        result["tracking_url"] = tracking.tracking_url(key, order, inv.settings)
    else:
        result["details"] = "redacted"
        if a.email:
            result["redacted_reason"] = "the email given does not match the one used for this order"
            result["hint"] = (
                "ask the customer to check the email they ordered with; do not share items,"
                " address or total until the number and that email match"
            )
        else:
            result["redacted_reason"] = (
                "only the order number was given, and this chat's customer is not known to"
                " own the order"
            )
            result["hint"] = (
                "status and delivery are shown; ask for the email used for this order to see"
                " the items, carrier, address and total"
            )
    return {k: v for k, v in result.items() if v is not None}


def _parcel(view: tracking.TrackingView, s: tracking.TrackedShipment) -> Result:
    """A parcel and the carrier's latest word on it ("out_for_delivery" at 08:02, where)."""
    latest = next(
        (e for e in reversed(view.timeline) if e.shipment == s.number and e.at == s.status_at),
        None,
    )
    out: Result = {
        "parcel": s.number,
        "carrier": s.carrier,
        "tracking_number": s.tracking_number,
        "carrier_url": s.carrier_url,
        "latest": s.status.value if s.status else "awaiting carrier scan",
        "at": s.status_at.isoformat(timespec="minutes") if s.status_at else None,
        "where": latest.location if latest else None,
        "carrier_says": latest.note if latest else None,
    }
    if s.delivered_at is None and s.estimated_delivery:
        out["estimated_delivery"] = s.estimated_delivery.isoformat()
    return {k: v for k, v in out.items() if v is not None}


async def _has_orders_here(inv: Invocation, filtered: bool) -> bool:
    """Whether this conversation placed any order (only worth asking if a filter hid them)."""
    if not filtered:
        return False
    scope = {"agent_id": inv.ctx.agent_id, "conversation_id": inv.ctx.conversation_id}
    page = await orders.list_orders(inv.conn, owner_id=None, filters=scope, limit=1)
    return bool(page.orders)


async def list_my_orders(inv: Invocation, a: ListMyOrdersArgs) -> Result:
    ctx = inv.ctx
    limit = a.limit or 5
    base: dict[str, Any] = {
        "agent_id": ctx.agent_id,
        "statuses": [a.status] if a.status else [],
    }
    scopes = [{**base, "conversation_id": ctx.conversation_id}]
    phone = ctx.phone_digits()
    verified = ctx.customer_verified and bool(ctx.customer_email or phone)
    # By email or phone only orders whose contact the host verified when they were placed.
    if ctx.customer_verified and ctx.customer_email:
        scopes.append({**base, "customer_email": ctx.customer_email, "contact_verified": True})
    if ctx.customer_verified and phone:
        scopes.append({**base, "customer_phone_digits": phone, "contact_verified": True})
    found: dict[Any, Order] = {}
    for scope in scopes:
        page = await orders.list_orders(inv.conn, owner_id=None, filters=scope, limit=limit)
        found.update({o.id: o for o in page.orders})
    mine = sorted(found.values(), key=lambda o: (o.created_at, str(o.id)), reverse=True)[:limit]
    if not mine and not verified and not await _has_orders_here(inv, a.status is not None):
        raise IdentityRequired(
            "this customer is not identified, and no order was placed in this conversation",
            hint="ask the customer for their order number (and email), then call get_order_status",
        )
    return {"orders": [brief(o) for o in mine]}


TOOLS: tuple[Tool, ...] = (
    Tool(
        "get_order_status",
        "Status, timeline, and delivery estimate or time of an order. Items, carrier, address, "
        "total and returns only for this chat's own orders or with the order's email.",
        GetOrderStatusArgs,
        get_order_status,
    ),
    Tool(
        "list_my_orders",
        "The current customer's recent orders (signed-in customer, or placed in this chat).",
        ListMyOrdersArgs,
        list_my_orders,
    ),
)
