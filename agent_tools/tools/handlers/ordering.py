"""Taking an order: find products, price a draft, carry it out once the customer said yes.

A refusal says what did not happen (no draft, no order), whether the draft can still be
confirmed, and, for stock, what is available line by line: the model must be able to act on
every hint without guessing.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from agent_tools.errors import InvalidTransition, NotFound, OrderError, OutOfStock, UnknownSku
from agent_tools.models import Product
from agent_tools.service import addresses, agents, catalog, drafts, mail, returns, tracking
from agent_tools.tools.args import ConfirmOrderArgs, Item, PlaceOrderArgs, SearchProductsArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import (
    Result,
    Tool,
    awaiting,
    brief,
    confirm_url,
    language_name,
    money,
    ship_to,
)
from agent_tools.tools.handlers.paying import payment

ANY_QUANTITY = "any quantity"
"""`available` of a product whose stock the store does not count."""


def available(product: Product | None) -> int | str:
    """What can be ordered of a product now: a count, `ANY_QUANTITY`, or 0 if not sold."""
    if product is None or not product.active:
        return 0
    return ANY_QUANTITY if product.stock is None else product.stock


def _product(p: Product, currency: str) -> Result:
    entry: Result = {
        "sku": p.sku,
        "name": p.name,
        "price": money(p.unit_price, currency),
        "available": available(p),
    }
    if p.description:
        entry["description"] = p.description[:160]
    return entry


async def search_products(inv: Invocation, a: SearchProductsArgs) -> Result:
    agent = await agents.get_agent(inv.conn, inv.ctx.agent_id)
    found = await catalog.search_products(inv.conn, agent.id, a.query, limit=a.limit or 5)
    products = [_product(p, agent.currency) for p in found.products]
    language = language_name(agent.language)
    if found.closest and products:
        return {
            "products": [],
            "closest": products,
            "hint": "nothing matched every word; these come closest. Ask the customer if one"
            f" of them is what they want, or search again with other words in {language}",
        }
    result: Result = {"products": products}
    if found.searched_for:
        result["searched_for"] = found.searched_for
    if not products:
        result["hint"] = (
            f"nothing matched; the catalog is in {language}: search again with {language}"
            " words, fewer words, or query null to list the catalog"
        )
    return result


async def check_skus(inv: Invocation, items: Sequence[Item]) -> None:
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


async def _availability(inv: Invocation, lines: Sequence[tuple[str, int]]) -> list[Result]:
    """Every line (sku, quantity) with what the catalog can sell of it now."""
    _, products = await catalog.offer(inv.conn, inv.ctx.agent_id, [s for s, _ in lines])
    out = []
    for i, (sku, quantity) in enumerate(lines):
        product = products.get(sku)
        out.append(
            {
                "line": i,
                "sku": sku,
                "name": product.name if product else None,
                "requested": quantity,
                "available": available(product),
            }
        )
    return out


def _shortfalls(lines: list[Result]) -> dict[str, list[Result]]:
    """The lines of each sku the catalog cannot sell in full (a sku may be on several)."""
    by_sku: dict[str, list[Result]] = {}
    for ln in lines:
        by_sku.setdefault(ln["sku"], []).append(ln)
    return {
        sku: group
        for sku, group in by_sku.items()
        if isinstance(left := group[0]["available"], int)
        and left < sum(ln["requested"] for ln in group)
    }


def _stock_hint(lines: list[Result], *, placed: str) -> str:
    sold_out = [ln for ln in lines if ln["available"] == 0]
    offer = (
        "offer alternatives (search_products) for what is sold out"
        if sold_out
        else "offer the available quantity"
    )
    return f"tell the customer; {offer}, then call place_order again and read back {placed}"


def _shortfall_message(lines: list[Result]) -> str:
    short = _shortfalls(lines)
    if not short:
        return "some items (stock has changed since; see available per line)"
    parts = []
    for sku, group in short.items():
        left = group[0]["available"]
        where = ", ".join(f"items[{ln['line']}]" for ln in group)
        asked = sum(ln["requested"] for ln in group)
        parts.append(
            f"{where} {sku}: asked {asked}, "
            + ("none available" if left == 0 else f"only {left} available")
        )
    return "; ".join(parts)


async def place_order(inv: Invocation, a: PlaceOrderArgs) -> Result:
    ctx = inv.ctx
    # The bound identity wins over whatever the model wrote.
    email = ctx.customer_email or a.customer.email
    phone = ctx.customer_phone or a.customer.phone
    # Verified only if every contact detail on the order is one the host bound and checked:
    # an address the model typed never becomes someone's identity later.
    verified = (
        ctx.customer_verified
        and bool(email or phone)
        and (email is None or email == ctx.customer_email)
        and (phone is None or phone == ctx.customer_phone)
    )
    key = await tracking.signing_key(inv.conn, inv.settings)
    address = addresses.normalise(a.shipping_address.model_dump())
    try:
        draft, quote = await drafts.draft_order(
            inv.conn,
            {
                "agent_id": ctx.agent_id,
                "conversation_id": ctx.conversation_id,
                "customer": {"name": a.customer.name, "email": email, "phone": phone},
                "shipping_address": address,
                "items": [i.model_dump() for i in a.items],
                "payment_method": a.payment_method,
                "customer_notes": a.customer_notes,
                "contact_verified": verified,
            },
            conversation_id=ctx.conversation_id,
            turn=ctx.turn,
            ttl_seconds=inv.settings.draft_ttl_seconds,
            key=key,
        )
    except OutOfStock:
        lines = await _availability(inv, [(i.sku, i.quantity) for i in a.items])
        raise OutOfStock(
            f"no draft was saved: not enough stock for {_shortfall_message(lines)}",
            hint=_stock_hint(lines, placed="the summary"),
            items=[ln for group in _shortfalls(lines).values() for ln in group],
        ) from None
    except OrderError:
        # An unknown sku is the likeliest mistake, and the most useful answer names the
        # nearest ones; only a refused draft pays for reading the whole catalog.
        await check_skus(inv, a.items)
        raise
    order = draft.payload["order"]
    cur = quote.currency
    summary: Result = {
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
        "ship_to": ship_to(order["shipping_address"]),
        "payment_method": order["payment_method"],
        "customer_notes": order["customer_notes"],
    }
    result = awaiting(inv, key, draft, {k: v for k, v in summary.items() if v is not None})
    if draft.replaces:
        result["replaces_draft_id"] = draft.replaces[0]
        result["next"] += f" Draft {draft.replaces[0]} is replaced and can no longer be confirmed."
    duplicate = draft.repeats
    if duplicate is not None:
        result["warning"] = {"code": "possible_duplicate", "order_number": duplicate}
        result["next"] = (
            f"This repeats order {duplicate}, placed in this chat minutes ago. Ask the customer"
            " whether they want a second, separate order; confirm this draft only if they say"
            " so. " + result["next"]
        )
    return result


async def _not_done(inv: Invocation, draft_id: str, exc: OrderError) -> OrderError:
    """A refused confirmation, restated: nothing happened, the draft is spent, and (for an
    order) what the catalog can sell of each line now."""
    draft = await drafts.find(
        inv.conn, draft_id, agent_id=inv.ctx.agent_id, conversation_id=inv.ctx.conversation_id
    )
    if draft is not None and draft.kind in ("modify", "return"):
        what = "changed" if draft.kind == "modify" else "returned"
        exc.message = f"nothing was {what}: {exc.message}"
        exc.details["draft_usable"] = False
        return exc
    if draft is None or draft.kind != "order":
        if isinstance(exc, InvalidTransition) and exc.details.get("current") == "cancelled":
            return InvalidTransition(
                "the order is already cancelled",
                hint="tell the customer it is already cancelled; nothing more to do",
                current="cancelled",
                draft_usable=False,
            )
        if isinstance(exc, InvalidTransition):
            return InvalidTransition(
                f"the order was not cancelled: {exc.message}",
                hint="tell the customer it can no longer be cancelled; "
                "if it arrives damaged or wrong, use report_problem",
                current=exc.details.get("current"),
                draft_usable=False,
            )
        return exc
    wanted: list[tuple[str, int]] = [
        (item["sku"], item["quantity"]) for item in draft.payload["order"]["items"]
    ]
    lines = await _availability(inv, wanted)
    if isinstance(exc, OutOfStock):
        message = f"no order was created: not enough stock for {_shortfall_message(lines)}"
    elif isinstance(exc, UnknownSku):
        gone = [ln["sku"] for ln in lines if ln["available"] == 0]
        message = f"no order was created: no longer sold: {', '.join(gone)}"
    else:
        message = f"no order was created: {exc.message}"
    details: dict[str, Any] = {"draft_usable": False, "items": lines}
    if isinstance(exc, OutOfStock | UnknownSku):
        return OutOfStock(message, hint=_stock_hint(lines, placed="the new summary"), **details)
    return type(exc)(message, hint=exc.hint, **details)


async def confirm_order(inv: Invocation, a: ConfirmOrderArgs) -> Result:
    ctx = inv.ctx
    key = await tracking.signing_key(inv.conn, inv.settings)
    try:
        done = await drafts.confirm(
            inv.conn,
            a.draft_id,
            agent_id=ctx.agent_id,
            conversation_id=ctx.conversation_id,
            turn=ctx.turn,
            by=inv.by,
            approved=ctx.approved_draft_id == a.draft_id,
        )
    except drafts.ConfirmationRequired as exc:
        exc.details["draft_usable"] = True
        # The page works under every setting: the one way forward any channel can offer.
        exc.details["confirm_url"] = confirm_url(inv, key, a.draft_id)
        raise
    except (drafts.DraftExpired, drafts.DraftReplaced, NotFound) as exc:
        exc.details["draft_usable"] = False
        raise
    except OrderError as exc:
        raise await _not_done(inv, a.draft_id, exc) from None
    order = done.order
    result: Result = {
        "order": {**brief(order), "tracking_url": tracking.tracking_url(key, order, inv.settings)},
        "already_confirmed": done.repeated,
    }
    smtp = inv.settings.smtp_url is not None
    if done.draft.kind == "order":
        cur = order.currency
        result["order"] |= {
            "items": [
                {
                    "sku": ln.sku,
                    "name": ln.name,
                    "quantity": ln.quantity,
                    "line_total": money(ln.line_total, cur),
                }
                for ln in order.line_items
            ],
            "subtotal": money(order.subtotal, cur),
            "shipping": money(order.shipping_fee, cur),
            "ship_to": ship_to(order.shipping_address),
        }
        email = mail.notice(done.mail_to, smtp=smtp)
        result["confirmation_email"] = email
        result["payment"] = await payment(inv, order, link=True, mode=done.draft.payment_mode)
        result["next"] = (
            "Tell the customer the order is placed: its number, what was ordered, the total, "
            "where it ships, and the tracking link"
            + (
                f"; a confirmation email is on its way to {email['to']}."
                if email["will_be_sent"]
                else "; no confirmation email will be sent, so ask them to keep the number"
                " and the link."
            )
        )
    elif done.draft.kind == "modify":
        result["order"]["items"] = [f"{ln.quantity} x {ln.name}" for ln in order.line_items]
        result["order"]["ship_to"] = ship_to(order.shipping_address)
        result["next"] = (
            "Tell the customer the order is changed: its items, total and where it ships now."
        )
        if order.amount_paid > 0:
            result["payment"] = await payment(inv, order, link=True, mode=done.draft.payment_mode)
    elif done.draft.kind == "return":
        opened = await returns.by_draft(inv.conn, done.draft.id)
        assert opened is not None
        result["return"] = {
            "state": opened.state.value,
            "items": [f"{ln.quantity} x {ln.name}" for ln in opened.lines],
            "refund_up_to": money(opened.amount, order.currency),
        }
        email = mail.notice(done.mail_to, smtp=smtp)
        result["return_email"] = email
        result["next"] = (
            "Tell the customer the return is requested: the store will tell them how to send"
            " the items back, and refunds once they arrive. Promise no date."
        )
    else:
        email = mail.notice(done.mail_to, smtp=smtp)
        result["cancellation_email"] = email
        result["next"] = "Tell the customer the order is cancelled" + (
            f"; an email confirming it goes to {email['to']}." if email["will_be_sent"] else "."
        )
        if order.amount_refunded > 0:
            result["payment"] = await payment(inv, order, link=False, mode=done.draft.payment_mode)
            result["next"] += " What they paid is refunded to how they paid."
    return result


TOOLS: tuple[Tool, ...] = (
    Tool(
        "search_products",
        "Search this store's catalog (in the catalog's language). Returns sku, name, price and "
        "the quantity available; when nothing matches, the closest products and a hint. "
        "Use it to find exact skus before place_order.",
        SearchProductsArgs,
        search_products,
    ),
    Tool(
        "place_order",
        "Price an order from the catalog as a draft (no order yet; replaces the chat's "
        "earlier draft). Read the summary back and ask for a clear yes. A warning "
        "possible_duplicate means it was just ordered: ask first.",
        PlaceOrderArgs,
        place_order,
        writes=True,
    ),
    Tool(
        "confirm_order",
        "Carry out a draft of place_order, cancel_order, modify_order or request_return "
        "once the customer said yes in a new message. Safe to repeat.",
        ConfirmOrderArgs,
        confirm_order,
        writes=True,
        destructive=True,
        idempotent=True,
    ),
)
