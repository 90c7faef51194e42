"""The six tools: each checks identity from the context, calls the service, returns compact JSON.

No SQL here. Money leaves as strings with the currency ("12.50 USD").
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agent_tools.errors import (
    Forbidden,
    InvalidTransition,
    NotFound,
    OrderError,
    UnknownSku,
    ValidationFailed,
)
from agent_tools.models import CANCELLABLE, Order
from agent_tools.service import agents, catalog, drafts, orders, tracking
from agent_tools.tools.args import (
    Args,
    CancelOrderArgs,
    ConfirmOrderArgs,
    GetOrderStatusArgs,
    Item,
    ListMyOrdersArgs,
    PlaceOrderArgs,
    SearchProductsArgs,
)
from agent_tools.tools.context import Invocation
from agent_tools.tools.strict import strict_schema

Result = dict[str, Any]


class IdentityRequired(Forbidden):
    code = "identity_required"


def money(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01'))} {currency}"


def _order_number(text: str) -> str:
    number = text.strip().upper()
    if not orders.ORDER_NUMBER.match(number):
        raise ValidationFailed(
            f"order_number {text[:40]!r} is not an order number",
            field="order_number",
            hint="order numbers look like ORD-2026-123456; ask the customer for theirs",
        )
    return number


def _brief(order: Order) -> Result:
    return {
        "order_number": order.order_number,
        "status": order.status.value,
        "placed": order.created_at.date().isoformat(),
        "items": [f"{ln.quantity} x {ln.name}" for ln in order.line_items],
        "total": money(order.total, order.currency),
    }


async def search_products(inv: Invocation, a: SearchProductsArgs) -> Result:
    agent = await agents.get_agent(inv.conn, inv.ctx.agent_id)
    found = await catalog.search_products(inv.conn, agent.id, a.query, limit=a.limit or 10)
    products = []
    for p in found:
        entry: Result = {
            "sku": p.sku,
            "name": p.name,
            "price": money(p.unit_price, agent.currency),
            "in_stock": p.stock is None or p.stock > 0,
        }
        if p.stock is not None:
            entry["available"] = p.stock
        if p.description:
            entry["description"] = p.description[:160]
        products.append(entry)
    result: Result = {"products": products}
    if not products:
        result["hint"] = "nothing matched; try fewer or other words, or null to list all"
    return result


async def _check_skus(inv: Invocation, items: Sequence[Item]) -> None:
    """Refuse the first sku the catalog does not sell, suggesting the nearest ones."""
    known = {s.upper(): s for s in await catalog.all_skus(inv.conn, inv.ctx.agent_id)}
    for i, item in enumerate(items):
        if item.sku in known.values():
            continue
        close = [known[m] for m in difflib.get_close_matches(item.sku.upper(), known, n=3)]
        guess = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise UnknownSku(
            f"unknown sku {item.sku[:64]!r}{guess}",
            hint="call search_products to find the exact sku",
            field=f"items[{i}].sku",
            suggestions=close or None,
        )


async def place_order(inv: Invocation, a: PlaceOrderArgs) -> Result:
    ctx = inv.ctx
    # The bound identity wins over whatever the model wrote.
    email = ctx.customer_email or a.customer.email
    phone = ctx.customer_phone or a.customer.phone
    try:
        draft, quote = await drafts.draft_order(
            inv.conn,
            {
                "agent_id": ctx.agent_id,
                "conversation_id": ctx.conversation_id,
                "customer": {"name": a.customer.name, "email": email, "phone": phone},
                "shipping_address": a.shipping_address.model_dump(),
                "items": [i.model_dump() for i in a.items],
                "payment_method": a.payment_method,
                "customer_notes": a.customer_notes,
            },
            conversation_id=ctx.conversation_id,
            turn=ctx.turn,
            ttl_seconds=inv.settings.draft_ttl_seconds,
        )
    except OrderError:
        # An unknown sku is the likeliest mistake, and the most useful answer names the
        # nearest ones; only a refused draft pays for reading the whole catalog.
        await _check_skus(inv, a.items)
        raise
    order = draft.payload["order"]
    address = order["shipping_address"]
    cur = quote.currency
    return {
        "draft_id": draft.id,
        "status": "awaiting_confirmation",
        "summary": {
            "items": [
                {
                    "sku": ln.sku,
                    "name": ln.name,
                    "quantity": ln.quantity,
                    "unit_price": money(ln.unit_price, cur),
                    "line_total": money(ln.line_total, cur),
                }
                for ln in quote.lines
            ],
            "subtotal": money(quote.subtotal, cur),
            "shipping": money(quote.shipping_fee, cur),
            "total": money(quote.total, cur),
            "customer": {k: v for k, v in order["customer"].items() if v},
            "ship_to": ", ".join(
                str(address[k])
                for k in ("line1", "line2", "city", "region", "postal_code", "country")
                if address.get(k)
            ),
            "payment_method": order["payment_method"],
            "customer_notes": order["customer_notes"],
        },
        "expires_at": draft.expires_at.isoformat(timespec="seconds"),
        "next": "Read this summary to the customer and ask for an explicit yes. "
        "Call confirm_order with this draft_id only after they reply yes.",
    }


async def confirm_order(inv: Invocation, a: ConfirmOrderArgs) -> Result:
    ctx = inv.ctx
    done = await drafts.confirm(
        inv.conn,
        a.draft_id,
        agent_id=ctx.agent_id,
        conversation_id=ctx.conversation_id,
        turn=ctx.turn,
        by=inv.by,
    )
    order = done.order
    key = await tracking.signing_key(inv.conn, inv.settings)
    result: Result = {
        "order": {**_brief(order), "tracking_url": tracking.tracking_url(key, order, inv.settings)},
        "already_confirmed": done.repeated,
    }
    if done.draft.kind == "order":
        result["order"]["subtotal"] = money(order.subtotal, order.currency)
        result["order"]["shipping"] = money(order.shipping_fee, order.currency)
        result["next"] = "Give the customer the order number and the tracking link."
    else:
        result["next"] = "Tell the customer the order is cancelled."
    return result


async def get_order_status(inv: Invocation, a: GetOrderStatusArgs) -> Result:
    ctx = inv.ctx
    number = _order_number(a.order_number)
    try:
        order, events = await orders.get_order_with_events(
            inv.conn, number, agent_id=ctx.agent_id, customer_visible_only=True
        )
    except NotFound:
        raise NotFound(
            f"no order {number} at this store",
            hint="check the order number with the customer",
        ) from None
    email = (a.email or "").strip().lower()
    matches = bool(email) and email == order.customer_email
    full = ctx.owns(order) or matches
    view = tracking.build_view(order, events, full=full)
    result: Result = {
        "order_number": view.order_number,
        "status": view.status.value,
        "items": [f"{i.quantity} x {i.name}" for i in view.items],
        "timeline": [
            {"at": e.at.isoformat(timespec="minutes"), "event": e.kind}
            | ({"status": e.status.value} if e.status else {})
            | ({"note": e.note} if e.note else {})
            for e in view.timeline
        ],
        "carrier": view.carrier,
        "tracking_number": view.tracking_number,
        "carrier_url": view.carrier_url,
        "estimated_delivery": view.estimated_delivery.isoformat()
        if view.estimated_delivery
        else None,
        "ships_to": ", ".join(x for x in (view.city, view.country) if x),
        "details": "full" if full else "redacted",
    }
    if view.customer is not None:
        c = view.customer
        key = await tracking.signing_key(inv.conn, inv.settings)
        result["customer"] = {
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "address": c.shipping_address,
        }
        result["total"] = money(c.total, view.currency)
        result["tracking_url"] = tracking.tracking_url(key, order, inv.settings)
    elif a.email:
        result["hint"] = "the email does not match this order; personal details are withheld"
    return result


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
    if ctx.customer_verified and ctx.customer_email:
        scopes.append({**base, "customer_email": ctx.customer_email})
    if ctx.customer_verified and phone:
        scopes.append({**base, "customer_phone_digits": phone})
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
    return {"orders": [_brief(o) for o in mine]}


async def cancel_order(inv: Invocation, a: CancelOrderArgs) -> Result:
    ctx = inv.ctx
    number = _order_number(a.order_number)
    missing = NotFound(
        f"no order {number} of this customer",
        hint="check the number; only the customer's own orders can be cancelled here",
    )
    try:
        order = await orders.get_order(inv.conn, number, agent_id=ctx.agent_id)
    except NotFound:
        raise missing from None
    if not ctx.owns(order):
        raise missing
    if order.status not in CANCELLABLE:
        raise InvalidTransition(
            f"{number} is {order.status.value} and can no longer be cancelled",
            hint="orders can be cancelled only before they ship",
            current=order.status.value,
        )
    draft = await drafts.draft_cancel(
        inv.conn,
        order,
        reason=a.reason,
        conversation_id=ctx.conversation_id,
        turn=ctx.turn,
        ttl_seconds=inv.settings.draft_ttl_seconds,
    )
    return {
        "draft_id": draft.id,
        "status": "awaiting_confirmation",
        "summary": {**_brief(order), "action": "cancel", "reason": a.reason},
        "expires_at": draft.expires_at.isoformat(timespec="seconds"),
        "next": "Ask the customer to confirm the cancellation. "
        "Call confirm_order with this draft_id only after they reply yes.",
    }


@dataclass(frozen=True)
class Tool:
    """A tool's name, description for the model, argument model and handler, together."""

    name: str
    description: str
    args: type[Args]
    run: Callable[[Invocation, Any], Awaitable[Result]]
    writes: bool = False
    """Whether it can create or change orders (parallel calls are turned off for these)."""
    schema: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", strict_schema(self.args.model_json_schema()))


TOOLS: tuple[Tool, ...] = (
    Tool(
        "search_products",
        "Search this store's catalog. Returns sku, name, price and stock. "
        "Use it to find exact skus before place_order.",
        SearchProductsArgs,
        search_products,
    ),
    Tool(
        "place_order",
        "Price an order from the catalog and save it as a draft; no order exists yet. "
        "Returns draft_id and a summary: read it back and ask the customer for a clear yes.",
        PlaceOrderArgs,
        place_order,
        writes=True,
    ),
    Tool(
        "confirm_order",
        "Carry out a draft from place_order or cancel_order, only after the customer "
        "said yes in a new message. Returns the order number and tracking link. "
        "Safe to repeat.",
        ConfirmOrderArgs,
        confirm_order,
        writes=True,
    ),
    Tool(
        "get_order_status",
        "Status, timeline, carrier and delivery estimate of an order. Personal details "
        "only if the order is this customer's or the email matches.",
        GetOrderStatusArgs,
        get_order_status,
    ),
    Tool(
        "list_my_orders",
        "The current customer's recent orders (signed-in customer, or placed in this chat).",
        ListMyOrdersArgs,
        list_my_orders,
    ),
    Tool(
        "cancel_order",
        "Draft cancelling the customer's own order before it ships. Returns draft_id: "
        "confirm_order it after the customer says yes.",
        CancelOrderArgs,
        cancel_order,
        writes=True,
    ),
)
