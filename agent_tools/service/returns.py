"""Returns: items of a delivered order coming back, `requested -> approved -> received ->
refunded`, or `rejected`.

A customer asks through the agent (a draft, confirmed like every write) within the store's
return window; the owner approves or rejects, receives the parcel (its units go back to
stock) and refunds. Each step is one transaction with a customer-visible event on the order,
so its history, the tracking page, webhooks and the feed tell the story. A return can never
hold more of a sku than was delivered minus what other returns (not rejected) already hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from agent_tools.db import Conn
from agent_tools.errors import InvalidTransition, NotFound, OrderError, ValidationFailed, parse
from agent_tools.models import LineItem, Order, OrderStatus, Provenance
from agent_tools.models.changes import (
    Return,
    ReturnDecision,
    ReturnItemIn,
    ReturnState,
)
from agent_tools.service import agents, orders, payments, stock

_SELECT = (
    "select r.id, r.order_id, o.order_number, r.state, r.lines, r.amount, r.refunded,"
    " o.currency, r.reason, r.note, r.requested_by, r.conversation_id, r.created_at,"
    " r.updated_at, r.approved_at, r.received_at, r.refunded_at, r.rejected_at"
    " from {} r join agent_orders.orders o on o.id = r.order_id"
)
"""A return with its order's number and currency; `{}` is the table or a CTE."""
_RETURNS = _SELECT.format("agent_orders.returns")

NEXT: dict[ReturnState, tuple[ReturnState, ...]] = {
    ReturnState.requested: (ReturnState.approved, ReturnState.rejected),
    ReturnState.approved: (ReturnState.received, ReturnState.rejected),
    ReturnState.received: (ReturnState.refunded,),
    ReturnState.refunded: (),
    ReturnState.rejected: (),
}
"""The owner's steps from each state."""

LABELS = {
    ReturnState.requested: "Return requested",
    ReturnState.approved: "Return approved",
    ReturnState.received: "Returned items received",
    ReturnState.refunded: "Return refunded",
    ReturnState.rejected: "Return rejected",
}


class NotDelivered(OrderError):
    code = "not_delivered"
    status = 409


class ReturnWindowClosed(OrderError):
    code = "return_window_closed"
    status = 409


class NothingToRefund(OrderError):
    code = "nothing_to_refund"
    status = 409


class TooManyReturned(OrderError):
    """More units of a sku than were delivered and are not already being returned."""

    code = "exceeds_returnable"
    status = 409


def _held_back(existing: Sequence[Return]) -> dict[str, int]:
    """Units of each sku in returns that still count (every state but rejected)."""
    out: dict[str, int] = defaultdict(int)
    for r in existing:
        if r.state != ReturnState.rejected:
            for line in r.lines:
                if line.sku:
                    out[line.sku] += line.quantity
    return out


def returnable(order: Order, existing: Sequence[Return]) -> dict[str, int]:
    """Units of each sku the customer may still return: delivered minus held in returns."""
    delivered: dict[str, int] = defaultdict(int)
    for line in order.line_items:
        if line.sku:
            delivered[line.sku] += line.quantity
    back = _held_back(existing)
    return {s: q - back.get(s, 0) for s, q in delivered.items() if q - back.get(s, 0) > 0}


def check_window(order: Order, window_days: int, now: datetime | None = None) -> None:
    """Refuse a return the store does not take: not delivered, no returns, or too late."""
    if order.status != OrderStatus.delivered or order.delivered_at is None:
        raise NotDelivered(
            f"order {order.order_number} is {order.status.value}: only delivered orders can be"
            " returned",
            hint="before shipment the order can be changed or cancelled; once shipped, wait"
            " for delivery",
            current=order.status.value,
        )
    if window_days <= 0:
        raise ReturnWindowClosed(
            "this store does not take returns",
            hint="tell the customer; for a damaged or wrong item use report_problem",
        )
    closes = order.delivered_at + timedelta(days=window_days)
    if (now or datetime.now(UTC)) > closes:
        raise ReturnWindowClosed(
            f"the {window_days}-day return window of order {order.order_number} closed on"
            f" {closes:%Y-%m-%d}",
            hint="tell the customer the return window has closed; for a damaged or wrong item"
            " use report_problem",
            closed_on=closes.date().isoformat(),
        )


def return_lines(
    order: Order, existing: Sequence[Return], items: Sequence[ReturnItemIn] | None
) -> list[LineItem]:
    """The returned units as lines at the price they were sold at; `items` None: everything
    still returnable. Refuses skus not on the order and more than is returnable."""
    left = returnable(order, existing)
    if items is None:
        wanted = dict(left)
        if not wanted:
            raise TooManyReturned(
                f"every item of order {order.order_number} is already being returned",
                hint="get_order_status shows the open returns",
            )
    else:
        if not items:
            raise ValidationFailed(
                "no items to return", field="items", hint="name the items, or null for all"
            )
        wanted = defaultdict(int)
        for item in items:
            wanted[item.sku] += item.quantity
    for i, (sku, qty) in enumerate(wanted.items()):
        on_order = sum(ln.quantity for ln in order.line_items if ln.sku == sku)
        if not on_order:
            raise ValidationFailed(
                f"{sku!r} is not on order {order.order_number}",
                field=f"items[{i}].sku",
                hint="return only skus of the order (get_order_status lists its items)",
            )
        if qty > left.get(sku, 0):
            raise TooManyReturned(
                f"{sku}: asked to return {qty}, only {left.get(sku, 0)} can be"
                f" (delivered {on_order}, {on_order - left.get(sku, 0)} already being returned)",
                hint="ask for at most the returnable quantity",
                sku=sku,
                returnable=left.get(sku, 0),
            )
    # Units already in returns are taken from the first lines of their sku; this return's
    # units come after them, at those lines' prices.
    skip = _held_back(existing)
    out: list[LineItem] = []
    for line in order.line_items:
        if not line.sku or not wanted.get(line.sku):
            continue
        passed = min(skip.get(line.sku, 0), line.quantity)
        skip[line.sku] = skip.get(line.sku, 0) - passed
        take = min(line.quantity - passed, wanted[line.sku])
        if take > 0:
            wanted[line.sku] -= take
            out.append(
                line.model_copy(update={"quantity": take, "line_total": line.unit_price * take})
            )
    return out


async def for_order(conn: Conn, order_id: UUID, *, lock: bool = False) -> list[Return]:
    """An order's returns, oldest first."""
    cur = await conn.execute(
        _RETURNS
        + " where r.order_id = %(order)s order by r.created_at, r.id"
        + (" for update of r" if lock else ""),
        {"order": order_id},
    )
    return [Return.model_validate(r) for r in await cur.fetchall()]


async def preview(conn: Conn, order: Order, items: Sequence[ReturnItemIn] | None) -> list[LineItem]:
    """What a return of `items` would hold, checked against the window and earlier returns."""
    agent = await agents.get_agent(conn, order.agent_id)
    check_window(order, agent.return_window_days)
    return return_lines(order, await for_order(conn, order.id), items)


def _summary(lines: Sequence[LineItem]) -> str:
    return ", ".join(f"{ln.quantity} x {ln.name}" for ln in lines)


async def request(
    conn: Conn,
    order_id: UUID,
    items: Sequence[ReturnItemIn | dict[str, Any]] | None,
    *,
    reason: str | None,
    by: Provenance,
    draft_id: str | None = None,
    agent_id: UUID | None = None,
) -> Return:
    """Open a return (state `requested`) on a delivered order, checked again under the order's
    lock so two requests at once cannot return the same unit twice."""
    wanted = None if items is None else [parse(ReturnItemIn, i) for i in items]
    async with conn.transaction():
        order = await orders.get_order(conn, order_id, agent_id=agent_id, for_update=True)
        agent = await agents.get_agent(conn, order.agent_id)
        check_window(order, agent.return_window_days)
        lines = return_lines(order, await for_order(conn, order.id), wanted)
        amount = sum((ln.line_total for ln in lines), Decimal("0.00"))
        cur = await conn.execute(
            "with new as (insert into agent_orders.returns (order_id, owner_id, agent_id, lines,"
            " amount, reason, requested_by, conversation_id, tool_call_id, draft_id)"
            " values (%(order)s, %(owner)s, %(agent)s, %(lines)s, %(amount)s, %(reason)s,"
            " %(actor)s, %(conv)s, %(call)s, %(draft)s) returning *) " + _SELECT.format("new"),
            {
                "order": order.id,
                "owner": order.owner_id,
                "agent": order.agent_id,
                "lines": Jsonb([orders.line_json(ln) for ln in lines]),
                "amount": amount,
                "reason": reason,
                "actor": by.actor.value,
                "conv": by.conversation_id,
                "call": by.tool_call_id,
                "draft": draft_id,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        created = Return.model_validate(row)
        await orders.add_event(
            conn,
            order.id,
            "return_requested",
            by,
            note=f"{LABELS[ReturnState.requested]}: {_summary(lines)}",
            note_visible=True,
            data=_event_data(created),
        )
    return created


async def by_draft(conn: Conn, draft_id: str) -> Return | None:
    cur = await conn.execute(_RETURNS + " where r.draft_id = %(draft)s", {"draft": draft_id})
    row = await cur.fetchone()
    return Return.model_validate(row) if row else None


async def advance(
    conn: Conn,
    return_id: UUID,
    to: ReturnState,
    data: ReturnDecision | dict[str, Any] | None = None,
    *,
    owner_id: UUID,
    by: Provenance,
) -> Return:
    """The owner's next step on a return: approve, reject (with a note for the customer),
    receive (units back to stock) or refund (the returned units' price, never more than the
    order has left to refund)."""
    decision = parse(ReturnDecision, data or {})
    async with conn.transaction():
        cur = await conn.execute(
            _RETURNS + " where r.id = %(id)s and r.owner_id = %(owner)s for update of r",
            {"id": return_id, "owner": owner_id},
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no return {return_id}", hint="check the return's id")
        current = Return.model_validate(row)
        if to not in NEXT[current.state]:
            allowed = [s.value for s in NEXT[current.state]]
            raise InvalidTransition(
                f"return {return_id} is {current.state.value} and cannot become {to.value}",
                hint=f"allowed next: {', '.join(allowed)}" if allowed else "this return is final",
                current=current.state.value,
                allowed=allowed,
            )
        refunded = None
        order = await orders.get_order(conn, current.order_id, for_update=True)
        if to == ReturnState.received:
            await stock.give_back(conn, order.agent_id, current.lines)
        elif to == ReturnState.refunded:
            refunded = await _refund(conn, order, current, by)
        cur = await conn.execute(
            "with changed as (update agent_orders.returns set state = %(state)s,"
            " note = coalesce(%(note)s, note), refunded = coalesce(%(refunded)s, refunded),"
            " updated_at = now(),"
            " approved_at = case when %(state)s = 'approved' then now() else approved_at end,"
            " received_at = case when %(state)s = 'received' then now() else received_at end,"
            " refunded_at = case when %(state)s = 'refunded' then now() else refunded_at end,"
            " rejected_at = case when %(state)s = 'rejected' then now() else rejected_at end"
            " where id = %(id)s returning *) " + _SELECT.format("changed"),
            {"id": return_id, "state": to.value, "note": decision.note, "refunded": refunded},
        )
        updated_row = await cur.fetchone()
        assert updated_row is not None
        updated = Return.model_validate(updated_row)
        note = LABELS[to]
        if to == ReturnState.refunded:
            note += f": {updated.refunded} {order.currency}"
        if decision.note:
            note += f". {decision.note}"
        await orders.add_event(
            conn,
            order.id,
            f"return_{to.value}",
            by,
            note=note,
            note_visible=True,
            data=_event_data(updated),
        )
    return updated


async def _refund(conn: Conn, order: Order, current: Return, by: Provenance) -> Decimal:
    """Give back the returned units' price through the payment layer (a Stripe refund, or one
    recorded for payments the owner recorded), never more than the order has left."""
    left = order.amount_paid - order.amount_refunded
    if left <= 0:
        raise NothingToRefund(
            f"order {order.order_number} has nothing paid left to refund",
            hint="record the order's payment first (POST /api/orders/{id}/payments), or reject"
            " the return",
        )
    amount = min(current.amount, left)
    await payments.refund(conn, order.id, amount, reason="items returned", by=by)
    return amount


def _event_data(r: Return) -> dict[str, Any]:
    data: dict[str, Any] = {
        "return_id": str(r.id),
        "state": r.state.value,
        "items": [{"sku": ln.sku, "name": ln.name, "quantity": ln.quantity} for ln in r.lines],
        "amount": str(r.amount),
    }
    if r.refunded is not None:
        data["refunded"] = str(r.refunded)
    return data


async def list_returns(
    conn: Conn,
    owner_id: UUID,
    *,
    states: Sequence[ReturnState] = (),
    limit: int = 50,
) -> list[Return]:
    """The owner's returns, oldest first (the queue to work through)."""
    cur = await conn.execute(
        _RETURNS + " where r.owner_id = %(owner)s"
        " and (cardinality(%(states)s::text[]) = 0 or r.state = any(%(states)s))"
        " order by r.created_at, r.id limit %(limit)s",
        {"owner": owner_id, "states": [s.value for s in states], "limit": limit},
    )
    return [Return.model_validate(r) for r in await cur.fetchall()]
