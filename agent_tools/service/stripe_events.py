"""Stripe's webhook events, applied once each: a Checkout Session paid, failed or expired, and
refunds made in Stripe's dashboard. Every change goes through the order's row lock and the
decisions of `service.payments`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import NotFound
from agent_tools.models import OrderStatus
from agent_tools.models.payments import Payment
from agent_tools.service import payments


@dataclass
class EventOutcome:
    outcome: str
    """What was done: `paid`, `flagged`, `expired`, `failed`, `refunded`, `duplicate`,
    `unknown_order`, `ignored`, ..."""
    order_id: UUID | None = None
    pending: list[UUID] = field(default_factory=list)
    """Payment rows now waiting for a Stripe call (a refund of a cancelled order)."""


SESSION_EVENTS = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)


async def handle_stripe_event(conn: Conn, event: dict[str, Any]) -> EventOutcome:
    """Apply one verified Stripe event, once: its id is recorded in the same transaction, so a
    replay (or a second delivery racing this one) finds it and changes nothing."""
    async with conn.transaction():
        cur = await conn.execute(
            "insert into agent_orders.stripe_events (id, type, outcome) values"
            " (%(id)s, %(type)s, 'received') on conflict (id) do nothing returning id",
            {"id": str(event["id"]), "type": str(event["type"])},
        )
        if await cur.fetchone() is None:
            return EventOutcome("duplicate")
        obj = event["data"]["object"]
        if event["type"] in SESSION_EVENTS:
            result = await _session_event(conn, event["type"], obj)
        elif event["type"] == "charge.refunded":
            result = await _charge_refunded(conn, obj)
        else:
            result = EventOutcome("ignored")
        await conn.execute(
            "update agent_orders.stripe_events set outcome = %(outcome)s, order_id = %(order)s"
            " where id = %(id)s",
            {"id": str(event["id"]), "outcome": result.outcome, "order": result.order_id},
        )
        return result


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


async def _session_event(conn: Conn, kind: str, session: dict[str, Any]) -> EventOutcome:
    metadata = session.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    order_id = _uuid(metadata.get("order_id") or session.get("client_reference_id"))
    payment_id = _uuid(metadata.get("payment_id"))
    if order_id is None:
        return EventOutcome("unknown_order")
    try:
        o = await payments.lock_order(conn, order_id)
    except NotFound:
        return EventOutcome("unknown_order")
    cur = await conn.execute(
        "select " + payments.COLUMNS + " from agent_orders.payments where order_id = %(order)s"
        " and kind = 'checkout' and (id = %(pid)s or stripe_id = %(sid)s) for update",
        {"order": o.id, "pid": payment_id, "sid": str(session.get("id"))},
    )
    row = await cur.fetchone()
    if row is None:
        return EventOutcome("unknown_session", o.id)
    p = Payment.model_validate(row)
    done = p.state in ("succeeded", "flagged")
    if kind == "checkout.session.expired":
        if done or p.state == "failed":
            return EventOutcome("ignored", o.id)
        await _set(conn, p.id, "expired")
        return EventOutcome("expired", o.id)
    if kind == "checkout.session.async_payment_failed":
        if done:
            return EventOutcome("ignored", o.id)
        await _set(conn, p.id, "failed", stripe_id=session.get("id"))
        if o.amount_paid <= 0:
            await conn.execute(
                "update agent_orders.orders set payment_status = 'failed', updated_at = now()"
                " where id = %(id)s",
                {"id": o.id},
            )
        await payments.payment_event(
            conn,
            o,
            "payment_failed",
            payments.SYSTEM,
            note="The payment did not go through.",
            data=payments.payment_data(p),
        )
        return EventOutcome("failed", o.id)
    # completed or async_payment_succeeded
    if done:
        return EventOutcome("already_recorded", o.id)
    intent = session.get("payment_intent")
    intent = intent.get("id") if isinstance(intent, dict) else intent
    if session.get("payment_status") != "paid":
        # Paid by a delayed method (a bank debit): async_payment_succeeded follows.
        await _set(conn, p.id, p.state, stripe_id=session.get("id"), intent=intent)
        return EventOutcome("awaiting_payment", o.id)
    currency = str(session.get("currency") or "").upper()
    total = session.get("amount_total")
    received = payments.from_minor(total, currency) if isinstance(total, int) and currency else None
    if currency != p.currency or received != p.amount:
        got = f"{received} {currency}" if received is not None else "no amount"
        await _set(
            conn, p.id, "flagged", stripe_id=session.get("id"), intent=intent, error=f"paid {got}"
        )
        await payments.payment_event(
            conn,
            o,
            "payment_flagged",
            payments.SYSTEM,
            note=f"Stripe reported a payment of {got} for a link of"
            f" {payments.amount_text(p.amount, p.currency)}: not marked paid; check it in Stripe.",
            visible=False,
            data=payments.payment_data(p) | {"received": got},
        )
        return EventOutcome("flagged", o.id)
    paid = await _set(conn, p.id, "succeeded", stripe_id=session.get("id"), intent=intent)
    if o.status != OrderStatus.cancelled:
        await payments.mark_paid(conn, o, paid, payments.SYSTEM)
        return EventOutcome("paid", o.id)
    # Paid after the order was cancelled: keep the record, and give it all back.
    await payments.settle(conn, o, paid=paid.amount)
    await payments.payment_event(
        conn,
        o,
        "payment_succeeded",
        payments.SYSTEM,
        note=f"Payment of {payments.amount_text(paid.amount, o.currency)} received after the order"
        " was cancelled: it is refunded in full.",
        data=payments.payment_data(paid),
    )
    refunds = await payments.start_refund(
        conn, o, paid.amount, "paid after the order was cancelled", payments.SYSTEM
    )
    return EventOutcome("refunding", o.id, [r.id for r in refunds if r.state == "pending"])


async def _set(
    conn: Conn,
    payment_id: UUID,
    state: str,
    *,
    stripe_id: Any = None,
    intent: Any = None,
    error: str | None = None,
) -> Payment:
    cur = await conn.execute(
        "update agent_orders.payments set state = %(state)s,"
        " stripe_id = coalesce(stripe_id, %(sid)s),"
        " stripe_payment_intent = coalesce(%(pi)s, stripe_payment_intent),"
        " paid_at = case when %(state)s = 'succeeded' then now() else paid_at end,"
        " last_error = coalesce(%(error)s, last_error), updated_at = now()"
        " where id = %(id)s returning " + payments.COLUMNS,
        {
            "id": payment_id,
            "state": state,
            "sid": str(stripe_id) if stripe_id else None,
            "pi": str(intent) if intent else None,
            "error": error,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Payment.model_validate(row)


async def _charge_refunded(conn: Conn, charge: dict[str, Any]) -> EventOutcome:
    """A refund made in Stripe's dashboard: recorded for what our own refunds do not cover."""
    intent = charge.get("payment_intent")
    intent = intent.get("id") if isinstance(intent, dict) else intent
    if not intent:
        return EventOutcome("unknown_order")
    cur = await conn.execute(
        "select order_id from agent_orders.payments where stripe_payment_intent = %(pi)s"
        " and state = 'succeeded' and kind in ('checkout', 'payment') limit 1",
        {"pi": str(intent)},
    )
    found = await cur.fetchone()
    if found is None:
        return EventOutcome("unknown_order")
    o = await payments.lock_order(conn, found["order_id"])
    cur = await conn.execute(
        "select p.id, p.stripe_account, coalesce((select sum(r.amount) from"
        " agent_orders.payments r where r.parent_id = p.id"
        " and r.state in ('pending', 'succeeded')), 0) as ours"
        " from agent_orders.payments p where p.stripe_payment_intent = %(pi)s"
        " and p.state = 'succeeded' and p.kind in ('checkout', 'payment') for update of p",
        {"pi": str(intent)},
    )
    parent = await cur.fetchone()
    assert parent is not None
    refunded = charge.get("amount_refunded")
    currency = str(charge.get("currency") or "").upper()
    if not isinstance(refunded, int) or currency != o.currency:
        return EventOutcome("ignored", o.id)
    extra = payments.from_minor(refunded, currency) - Decimal(parent["ours"])
    if extra <= 0:
        return EventOutcome("already_recorded", o.id)
    extra = min(extra, o.refundable)
    if extra <= 0:
        return EventOutcome("ignored", o.id)
    await conn.execute(payments.RESERVE_REFUND, {"id": o.id, "amount": extra})
    o.amount_refunded += extra
    p = await payments.insert_payment(
        conn,
        o,
        kind="refund",
        provider="stripe",
        state="succeeded",
        amount=extra,
        parent_id=parent["id"],
        reason="refunded in Stripe",
        stripe_account=parent["stripe_account"],
        stripe_id=str(charge.get("id")) + ":" + str(refunded),
        paid_at=datetime.now(UTC),
    )
    await payments.refunded_event(conn, o, p, payments.SYSTEM)
    return EventOutcome("refunded", o.id)
