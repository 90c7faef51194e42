"""The Stripe calls as the payments runner sees them: a `pending` (or `expiring`) row of
`agent_orders.payments` is claimed for a lease, its call made by `agent_tools.payments.runner`,
and the outcome recorded here under the order's row lock (`payments.lock_order`). Every
attempt at a row carries the same idempotency key, derived from the row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.models import Order
from agent_tools.models.payments import Payment
from agent_tools.service import orders, payments


@dataclass
class Job:
    """A `pending` (or `expiring`) row claimed for a Stripe call, with what the call needs."""

    payment: Payment
    order: Order
    stripe_account: str | None
    payment_intent: str | None
    attempts: int
    idempotency_key: str = field(init=False)

    def __post_init__(self) -> None:
        # Derived from the row: every attempt at this row is the same request to Stripe.
        call = "expire" if self.payment.state == "expiring" else self.payment.kind
        self.idempotency_key = f"agent-orders-{call}-{self.payment.id}"


async def claim(
    conn: Conn, me: str, lease: float, *, ids: list[UUID] | None = None, limit: int = 10
) -> list[Job]:
    """Take `pending` and `expiring` rows (these `ids`, or any that are due) for a lease."""
    cur = await conn.execute(
        "with due as ("
        " select id from agent_orders.payments where state in ('pending', 'expiring')"
        " and (%(ids)s::uuid[] is not null and id = any(%(ids)s)"
        "   or %(ids)s::uuid[] is null and next_attempt_at <= now())"
        " and (locked_until is null or locked_until < now())"
        " order by next_attempt_at limit %(n)s for update skip locked"
        ") update agent_orders.payments p set locked_until = now()"
        " + make_interval(secs => %(lease)s), locked_by = %(me)s from due where p.id = due.id"
        " returning p.stripe_account, p.stripe_payment_intent, p.attempts, " + payments.P_COLUMNS,
        {"ids": ids, "n": limit, "lease": lease, "me": me},
    )
    rows = await cur.fetchall()
    jobs = []
    for r in rows:
        order = await orders.get_order(conn, r["order_id"])
        jobs.append(
            Job(
                payment=Payment.model_validate(r),
                order=order,
                stripe_account=r["stripe_account"],
                payment_intent=r["stripe_payment_intent"],
                attempts=r["attempts"],
            )
        )
    return jobs


async def _record(
    conn: Conn, job: Job, me: str, changes: str, *, states: str, **params: Any
) -> dict[str, Any] | None:
    """Write `changes` to the job's row and end its lease, if this runner still holds the
    lease and the row's state meets `states`; the row as it is now, or None (nothing written:
    the lease ran out and another runner took the row, or its state moved on)."""
    cur = await conn.execute(
        "update agent_orders.payments set " + changes + ", locked_until = null,"
        " locked_by = null, updated_at = now()"
        " where id = %(id)s and locked_by = %(me)s and (" + states + ")"
        " returning " + payments.COLUMNS,
        {"id": job.payment.id, "me": me, **params},
    )
    return await cur.fetchone()


async def checkout_created(
    conn: Conn, job: Job, me: str, *, session_id: str, url: str, expires_at: datetime
) -> Payment | None:
    """The session exists at Stripe. If the order was cancelled while it was being made (the
    row went from `pending` to `expired`), it is to be closed there at once."""
    row = await _record(
        conn,
        job,
        me,
        "state = case when state = 'pending' then 'open' else 'expiring' end,"
        " stripe_id = %(sid)s, url = %(url)s, expires_at = %(exp)s,"
        " attempts = case when state = 'pending' then attempts + 1 else 0 end,"
        " next_attempt_at = now(), last_error = null",
        states="state = 'pending' or state = 'expired' and stripe_id is null",
        sid=session_id,
        url=url,
        exp=expires_at,
    )
    return Payment.model_validate(row) if row else None


async def session_closed(conn: Conn, job: Job, me: str) -> None:
    """The cancelled order's session is expired at Stripe (or was no longer open there)."""
    await _record(
        conn,
        job,
        me,
        "state = 'expired', attempts = attempts + 1, last_error = null",
        states="state = 'expiring'",
    )


async def refund_made(conn: Conn, job: Job, me: str, *, refund_id: str) -> None:
    async with conn.transaction():
        o = await payments.lock_order(conn, job.order.id)
        row = await _record(
            conn,
            job,
            me,
            "state = 'succeeded', stripe_id = %(rid)s, paid_at = now(),"
            " attempts = attempts + 1, last_error = null",
            states="state = 'pending'",
            rid=refund_id,
        )
        if row is not None:
            await payments.refunded_event(conn, o, Payment.model_validate(row), payments.SYSTEM)


async def call_failed(conn: Conn, job: Job, me: str, *, error: str, retry_in: float | None) -> None:
    """A Stripe call that did not go through: tried again after `retry_in` seconds, or (None)
    given up — a refund's amount is then released and the owner told; a link that could not
    be closed is left to expire at Stripe on its own (a payment on it is refunded)."""
    async with conn.transaction():
        o = await payments.lock_order(conn, job.order.id)
        row = await _record(
            conn,
            job,
            me,
            "attempts = attempts + 1, last_error = %(error)s,"
            " state = case when %(retry)s::float8 is not null then state"
            "   when state = 'expiring' then 'expired' else 'failed' end,"
            " next_attempt_at = now() + make_interval(secs => coalesce(%(retry)s::float8, 0))",
            states="state in ('pending', 'expiring')",
            error=error[:500],
            retry=retry_in,
        )
        if row is None or retry_in is not None or job.payment.kind != "refund":
            return
        p = Payment.model_validate(row)
        await conn.execute(
            "update agent_orders.orders set amount_refunded = amount_refunded - %(amount)s,"
            " updated_at = now() where id = %(id)s",
            {"id": o.id, "amount": p.amount},
        )
        o.amount_refunded -= p.amount
        await payments.settle(conn, o)
        await payments.payment_event(
            conn,
            o,
            "payment_flagged",
            payments.SYSTEM,
            note=f"Stripe refused a refund of {payments.amount_text(p.amount, o.currency)}:"
            f" {error[:200]}",
            visible=False,
            data=payments.payment_data(p),
        )
