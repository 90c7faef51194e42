"""Taking an order: find products, price a draft, carry it out once the customer said yes."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from agent_tools.errors import OrderError, UnknownSku
from agent_tools.service import agents, catalog, drafts, tracking
from agent_tools.tools.args import ConfirmOrderArgs, Item, PlaceOrderArgs, SearchProductsArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import Result, Tool, brief, money


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
        "order": {**brief(order), "tracking_url": tracking.tracking_url(key, order, inv.settings)},
        "already_confirmed": done.repeated,
    }
    if done.draft.kind == "order":
        result["order"]["subtotal"] = money(order.subtotal, order.currency)
        result["order"]["shipping"] = money(order.shipping_fee, order.currency)
        result["next"] = "Give the customer the order number and the tracking link."
    else:
        result["next"] = "Tell the customer the order is cancelled."
    return result


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
)
