"""Payments: what an order was paid and refunded, Checkout links to pay it, and Stripe's events.

Every decision about money is taken under the order's row lock (`select ... for update`), in
the transaction that records it: two refunds of one order queue behind each other, and the cap
(`amount_refunded <= amount_paid`) is checked by the UPDATE itself and by a table constraint.
A call to Stripe that a decision needs (a Checkout Session, a refund) is a `payments` row in
state `pending`, written in that transaction; `agent_tools.payments.runner` makes the call
after the commit, inline and again from the deliverer until it is done, with an idempotency
key derived from the row, so a retry never makes a second session or refund.

No network here: this module decides and records; the runner talks to Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import NotFound, OrderError, parse
from agent_tools.models import Actor, Order, OrderStatus, PaymentMode, Provenance
from agent_tools.models.payments import ManualPayment, Payment, RefundRequest
from agent_tools.service import orders

_COLUMNS = (
    "id, order_id, kind, provider, state, amount, currency, parent_id, method, reference,"
    " reason, stripe_id, url, expires_at, paid_at, last_error, created_at"
)
_P_COLUMNS = ", ".join("p." + c.strip() for c in _COLUMNS.split(","))
SYSTEM = Provenance(actor=Actor.system)

# Stripe's amounts are integers in the currency's minor unit.
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def minor_units(amount: Decimal, currency: str) -> int:
    """`12.50 USD` -> 1250; `1200 JPY` -> 1200; `1.50 KWD` -> 1500."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return int((amount * 10**exponent).to_integral_value())


def from_minor(value: int, currency: str) -> Decimal:
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    amount: Decimal = (Decimal(value) / 10**exponent).quantize(Decimal("0.01"))
    return amount


class RefundExceeds(OrderError):
    """More was asked back than the order has left to refund."""

    code = "refund_exceeds"
    status = 409


class NothingOwed(OrderError):
    code = "nothing_owed"
    status = 409


class NotStripe(OrderError):
    """The store takes no card payments: it records payments itself (`payment_mode` none)."""

    code = "not_stripe"
    status = 409


class Overpayment(OrderError):
    code = "overpayment"
    status = 409


@dataclass
class Locked:
    """An order's money, read under its row lock."""

    id: UUID
    order_number: str
    owner_id: UUID
    status: OrderStatus
    total: Decimal
    currency: str
    amount_paid: Decimal
    amount_refunded: Decimal
    payment_status: str
    payment_mode: PaymentMode
    stripe_account: str | None
    expiry_hours: int

    @property
    def owed(self) -> Decimal:
        # A refund gives money back; it does not make the customer owe it again.
        return self.total - self.amount_paid

    @property
    def refundable(self) -> Decimal:
        return self.amount_paid - self.amount_refunded


_LOCK = (
    "select o.id, o.order_number, o.owner_id, o.status, o.total, o.currency, o.amount_paid,"
    " o.amount_refunded, o.payment_status, a.payment_mode, a.stripe_account,"
    " a.checkout_expiry_hours as expiry_hours"
    " from agent_orders.orders o join agent_orders.agents a on a.id = o.agent_id"
    " where o.id = %(id)s and (%(owner)s::uuid is null or o.owner_id = %(owner)s)"
    " for update of o"
)


async def _lock(conn: Conn, order_id: UUID, owner_id: UUID | None = None) -> Locked:
    cur = await conn.execute(_LOCK, {"id": order_id, "owner": owner_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no order {order_id}", hint="check the order number")
    return Locked(**row)


def _status(paid: Decimal, refunded: Decimal, total: Decimal, current: str) -> str:
    if paid <= 0:
        return "failed" if current == "failed" else "pending"
    if refunded >= paid:
        return "refunded"
    if refunded > 0:
        return "partially_refunded"
    return "paid" if paid >= total else "pending"


async def _money(conn: Conn, o: Locked, *, paid: Decimal = Decimal(0)) -> None:
    """Add `paid` to the order and set its payment status from its totals."""
    new_paid = o.amount_paid + paid
    status = _status(new_paid, o.amount_refunded, o.total, o.payment_status)
    await conn.execute(
        "update agent_orders.orders set amount_paid = %(paid)s, payment_status = %(status)s,"
        " updated_at = now() where id = %(id)s",
        {"id": o.id, "paid": new_paid, "status": status},
    )
    o.amount_paid, o.payment_status = new_paid, status


async def _insert(conn: Conn, o: Locked, **values: Any) -> Payment:
    row = {
        "order_id": o.id,
        "owner_id": o.owner_id,
        "currency": o.currency,
        "parent_id": None,
        "method": None,
        "reference": None,
        "reason": None,
        "stripe_account": None,
        "stripe_id": None,
        "stripe_payment_intent": None,
        "expires_at": None,
        "paid_at": None,
        **values,
    }
    cols = ", ".join(row)
    cur = await conn.execute(
        f"insert into agent_orders.payments ({cols}) values ("
        + ", ".join(f"%({k})s" for k in row)
        + ") returning "
        + _COLUMNS,
        row,
    )
    created = await cur.fetchone()
    assert created is not None
    return Payment.model_validate(created)


def _amount_text(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01'))} {currency}"


async def _event(
    conn: Conn,
    o: Locked,
    kind: str,
    by: Provenance,
    *,
    note: str | None = None,
    visible: bool = True,
    data: dict[str, Any] | None = None,
) -> None:
    await orders.add_event(
        conn, o.id, kind, by, note=note, visible=visible, note_visible=visible, data=data
    )


def _payment_data(p: Payment) -> dict[str, Any]:
    out = {"payment_id": str(p.id), "amount": str(p.amount), "currency": p.currency}
    if p.method:
        out["method"] = p.method
    if p.stripe_id:
        out["stripe_id"] = p.stripe_id
    return out


# ---- seams in the order's life ------------------------------------------------------------


async def order_placed(conn: Conn, order: Order) -> Payment | None:
    """A confirmed order of a `stripe` store gets its Checkout link (a `pending` row, created
    at Stripe after the commit)."""
    o = await _lock(conn, order.id)
    if o.payment_mode != PaymentMode.stripe or o.owed <= 0:
        return None
    return await _new_checkout(conn, o, o.owed)


async def total_changed(conn: Conn, order_id: UUID) -> None:
    """An order's total changed (an edit): its payment status follows what it was paid."""
    await _money(conn, await _lock(conn, order_id))


async def order_cancelled(conn: Conn, order_id: UUID, by: Provenance) -> list[Payment]:
    """Cancelling an order closes its unpaid links and refunds whatever it was paid."""
    o = await _lock(conn, order_id)
    # A link the customer has is closed at Stripe too (`expiring`: by the payments runner);
    # one not made yet never will be.
    await conn.execute(
        "update agent_orders.payments set state = case when state = 'open' then 'expiring'"
        " else 'expired' end, attempts = 0, next_attempt_at = now(), updated_at = now()"
        " where order_id = %(id)s and kind = 'checkout' and state in ('pending', 'open')",
        {"id": o.id},
    )
    if o.refundable <= 0:
        return []
    return await _refund(conn, o, o.refundable, "order cancelled", by)


# ---- links --------------------------------------------------------------------------------


async def _new_checkout(conn: Conn, o: Locked, amount: Decimal) -> Payment:
    return await _insert(
        conn,
        o,
        kind="checkout",
        provider="stripe",
        state="pending",
        amount=amount,
        stripe_account=o.stripe_account,
        expires_at=datetime.now(UTC) + timedelta(hours=o.expiry_hours),
    )


async def request_link(
    conn: Conn, order_id: UUID, *, by: Provenance = SYSTEM, owner_id: UUID | None = None
) -> Payment:
    """A Checkout link for what the order still owes: the open one if it is for that amount
    and has time left, else a new `pending` one (made at Stripe after the commit)."""
    async with conn.transaction():
        o = await _lock(conn, order_id, owner_id)
        if o.payment_mode != PaymentMode.stripe:
            raise NotStripe(
                "this store takes payment on delivery or by invoice, not by card link",
                hint="record the payment when it arrives (POST /api/orders/{id}/payments)",
            )
        if o.status == OrderStatus.cancelled:
            raise NothingOwed(f"order {o.order_number} is cancelled", hint="nothing to pay")
        if o.owed <= 0:
            raise NothingOwed(f"order {o.order_number} is paid", hint="nothing to pay")
        cur = await conn.execute(
            "select " + _COLUMNS + " from agent_orders.payments"
            " where order_id = %(id)s and kind = 'checkout' and state in ('pending', 'open')"
            " order by created_at desc",
            {"id": o.id},
        )
        usable = None
        for row in await cur.fetchall():
            p = Payment.model_validate(row)
            fresh = p.expires_at is not None and p.expires_at > datetime.now(UTC) + MIN_LEFT
            if usable is None and fresh and p.amount == o.owed:
                usable = p
            elif not fresh or p.amount != o.owed:
                # Superseded: a link for another amount must not be paid any more.
                await conn.execute(
                    "update agent_orders.payments set state = 'expired', updated_at = now()"
                    " where id = %(id)s",
                    {"id": p.id},
                )
        return usable or await _new_checkout(conn, o, o.owed)


MIN_LEFT = timedelta(minutes=10)
"""A link with less time than this left is replaced rather than handed out."""


async def open_link(conn: Conn, order_id: UUID) -> Payment | None:
    """The order's Checkout link the customer can pay now, if there is one."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.payments"
        " where order_id = %(id)s and kind = 'checkout' and state = 'open'"
        " and url is not null and expires_at > now() order by created_at desc limit 1",
        {"id": order_id},
    )
    row = await cur.fetchone()
    return Payment.model_validate(row) if row else None


async def payable(conn: Conn, order_number: str) -> UUID | None:
    """The order's id if its customer can pay it by link now: a `stripe` store's order, not
    cancelled, with something owed."""
    cur = await conn.execute(
        "select o.id from agent_orders.orders o join agent_orders.agents a on a.id = o.agent_id"
        " where o.order_number = %(number)s and a.payment_mode = 'stripe'"
        " and o.status <> 'cancelled' and o.total > o.amount_paid",
        {"number": order_number.strip().upper()},
    )
    row = await cur.fetchone()
    return row["id"] if row else None


async def pending_links(conn: Conn, order_id: UUID) -> list[UUID]:
    """The order's Checkout links still to be made at Stripe."""
    cur = await conn.execute(
        "select id from agent_orders.payments where order_id = %(id)s and kind = 'checkout'"
        " and state = 'pending'",
        {"id": order_id},
    )
    return [r["id"] for r in await cur.fetchall()]


async def list_for_order(conn: Conn, order_id: UUID) -> list[Payment]:
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.payments where order_id = %(id)s"
        " order by created_at, id",
        {"id": order_id},
    )
    return [Payment.model_validate(r) for r in await cur.fetchall()]


# ---- money in and out ---------------------------------------------------------------------


async def record_payment(
    conn: Conn,
    order_id: UUID,
    data: ManualPayment | dict[str, Any],
    *,
    by: Provenance,
    owner_id: UUID | None = None,
) -> Payment:
    """Money the owner received (cash on delivery, bank transfer): the same totals and events
    as a Stripe payment."""
    new = parse(ManualPayment, data)
    async with conn.transaction():
        o = await _lock(conn, order_id, owner_id)
        if o.status == OrderStatus.cancelled:
            raise Overpayment(f"order {o.order_number} is cancelled", hint="nothing is owed on it")
        if new.amount > o.owed:
            raise Overpayment(
                f"{_amount_text(new.amount, o.currency)} is more than the"
                f" {_amount_text(max(o.owed, Decimal(0)), o.currency)} still owed",
                hint="record at most what is owed",
                owed=str(max(o.owed, Decimal("0.00"))),
            )
        p = await _insert(
            conn,
            o,
            kind="payment",
            provider="manual",
            state="succeeded",
            amount=new.amount,
            method=new.method,
            reference=new.reference,
            paid_at=new.paid_at or datetime.now(UTC),
        )
        await conn.execute(
            "update agent_orders.orders set payment_method = coalesce(payment_method,"
            " %(method)s) where id = %(id)s",
            {"id": o.id, "method": new.method},
        )
        await _paid(conn, o, p, by)
    return p


async def _paid(conn: Conn, o: Locked, p: Payment, by: Provenance) -> None:
    """Count `p` as paid: totals, the `payment_succeeded` event, and a pending order moves on
    to `confirmed`."""
    await _money(conn, o, paid=p.amount)
    await _event(
        conn,
        o,
        "payment_succeeded",
        by,
        note=f"Payment of {_amount_text(p.amount, o.currency)} received.",
        data=_payment_data(p),
    )
    if o.status == OrderStatus.pending:
        await orders.update_status(conn, o.id, {"status": OrderStatus.confirmed}, by=by)
        o.status = OrderStatus.confirmed


_RESERVE = (
    "update agent_orders.orders set amount_refunded = amount_refunded + %(amount)s,"
    " payment_status = case when amount_refunded + %(amount)s >= amount_paid then 'refunded'"
    "   else 'partially_refunded' end, updated_at = now()"
    " where id = %(id)s and amount_refunded + %(amount)s <= amount_paid"
    " returning amount_refunded"
)
"""The cap, in the statement that moves the total (the caller holds the row lock)."""

_REFUNDABLE = (
    "select p.id, p.provider, p.stripe_account, p.stripe_payment_intent,"
    " p.amount - coalesce((select sum(r.amount) from agent_orders.payments r"
    "   where r.parent_id = p.id and r.state in ('pending', 'succeeded')), 0) as left"
    " from agent_orders.payments p where p.order_id = %(id)s and p.state = 'succeeded'"
    " and p.kind in ('checkout', 'payment') order by p.paid_at desc nulls last, p.created_at desc"
)


async def refund(
    conn: Conn,
    order_id: UUID,
    amount: Decimal | None,
    *,
    reason: str | None,
    by: Provenance,
    owner_id: UUID | None = None,
) -> list[Payment]:
    """Give back `amount` (default: everything still refundable) of what the order was paid.

    Refunds from Stripe payments are `pending` rows (made at Stripe after the commit); refunds
    of payments the owner recorded are recorded at once. Refused past what is refundable.
    """
    request = parse(RefundRequest, {"amount": amount, "reason": reason})
    async with conn.transaction():
        o = await _lock(conn, order_id, owner_id)
        wanted = request.amount if request.amount is not None else o.refundable
        if wanted <= 0 or wanted > o.refundable:
            raise RefundExceeds(
                f"order {o.order_number} has {_amount_text(o.refundable, o.currency)} left to"
                f" refund (paid {_amount_text(o.amount_paid, o.currency)}, refunded"
                f" {_amount_text(o.amount_refunded, o.currency)})",
                hint="refund at most what is left",
                refundable=str(o.refundable),
            )
        return await _refund(conn, o, wanted, request.reason, by)


async def _refund(
    conn: Conn, o: Locked, amount: Decimal, reason: str | None, by: Provenance
) -> list[Payment]:
    cur = await conn.execute(_RESERVE, {"id": o.id, "amount": amount})
    if await cur.fetchone() is None:
        raise RefundExceeds(
            f"order {o.order_number} has less than {_amount_text(amount, o.currency)} to refund",
            hint="refund at most what is left",
        )
    o.amount_refunded += amount
    cur = await conn.execute(_REFUNDABLE, {"id": o.id})
    sources = [r for r in await cur.fetchall() if r["left"] > 0]
    made: list[Payment] = []
    rest = amount
    for src in sources:
        if rest <= 0:
            break
        part = min(rest, Decimal(src["left"]))
        rest -= part
        stripe = src["provider"] == "stripe"
        p = await _insert(
            conn,
            o,
            kind="refund",
            provider=src["provider"],
            state="pending" if stripe else "succeeded",
            amount=part,
            parent_id=src["id"],
            reason=reason,
            stripe_account=src["stripe_account"],
            stripe_payment_intent=src["stripe_payment_intent"],
            paid_at=None if stripe else datetime.now(UTC),
        )
        if not stripe:
            await _refunded_event(conn, o, p, by)
        made.append(p)
    if rest > 0:  # paid totals without payment rows (set by hand): recorded as manual
        p = await _insert(
            conn,
            o,
            kind="refund",
            provider="manual",
            state="succeeded",
            amount=rest,
            reason=reason,
            paid_at=datetime.now(UTC),
        )
        await _refunded_event(conn, o, p, by)
        made.append(p)
    return made


async def _refunded_event(conn: Conn, o: Locked, p: Payment, by: Provenance) -> None:
    note = f"Refund of {_amount_text(p.amount, o.currency)}"
    await _event(
        conn,
        o,
        "payment_refunded",
        by,
        note=note + (f": {p.reason}." if p.reason else "."),
        data=_payment_data(p) | {"amount_refunded": str(o.amount_refunded)},
    )


# ---- the Stripe calls, as the runner sees them -------------------------------------------


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
        " returning p.stripe_account, p.stripe_payment_intent, p.attempts, " + _P_COLUMNS,
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


async def checkout_created(
    conn: Conn, job: Job, me: str, *, session_id: str, url: str, expires_at: datetime
) -> Payment | None:
    """The session exists at Stripe. If the order was cancelled while it was being made (the
    row went from `pending` to `expired`), it is to be closed there at once."""
    cur = await conn.execute(
        "update agent_orders.payments set state = case when state = 'pending' then 'open'"
        " else 'expiring' end, stripe_id = %(sid)s, url = %(url)s,"
        " expires_at = %(exp)s, attempts = case when state = 'pending' then attempts + 1"
        " else 0 end, next_attempt_at = now(), last_error = null,"
        " locked_until = null, locked_by = null, updated_at = now()"
        " where id = %(id)s and locked_by = %(me)s"
        " and (state = 'pending' or state = 'expired' and stripe_id is null)"
        " returning " + _COLUMNS,
        {"id": job.payment.id, "me": me, "sid": session_id, "url": url, "exp": expires_at},
    )
    row = await cur.fetchone()
    return Payment.model_validate(row) if row else None


async def session_closed(conn: Conn, job: Job, me: str) -> None:
    """The cancelled order's session is expired at Stripe (or was no longer open there)."""
    await conn.execute(
        "update agent_orders.payments set state = 'expired', attempts = attempts + 1,"
        " last_error = null, locked_until = null, locked_by = null, updated_at = now()"
        " where id = %(id)s and locked_by = %(me)s and state = 'expiring'",
        {"id": job.payment.id, "me": me},
    )


async def refund_made(conn: Conn, job: Job, me: str, *, refund_id: str) -> None:
    async with conn.transaction():
        o = await _lock(conn, job.order.id)
        cur = await conn.execute(
            "update agent_orders.payments set state = 'succeeded', stripe_id = %(rid)s,"
            " paid_at = now(), attempts = attempts + 1, last_error = null,"
            " locked_until = null, locked_by = null, updated_at = now()"
            " where id = %(id)s and locked_by = %(me)s and state = 'pending' returning " + _COLUMNS,
            {"id": job.payment.id, "me": me, "rid": refund_id},
        )
        row = await cur.fetchone()
        if row is not None:
            await _refunded_event(conn, o, Payment.model_validate(row), SYSTEM)


async def call_failed(conn: Conn, job: Job, me: str, *, error: str, retry_in: float | None) -> None:
    """A Stripe call that did not go through: tried again after `retry_in` seconds, or (None)
    given up — a refund's amount is then released and the owner told; a link that could not
    be closed is left to expire at Stripe on its own (a payment on it is refunded)."""
    async with conn.transaction():
        o = await _lock(conn, job.order.id)
        cur = await conn.execute(
            "update agent_orders.payments set attempts = attempts + 1, last_error = %(error)s,"
            " state = case when %(retry)s::float8 is not null then state"
            "   when state = 'expiring' then 'expired' else 'failed' end,"
            " next_attempt_at = now() + make_interval(secs => coalesce(%(retry)s::float8, 0)),"
            " locked_until = null, locked_by = null, updated_at = now()"
            " where id = %(id)s and locked_by = %(me)s and state in ('pending', 'expiring')"
            " returning " + _COLUMNS,
            {"id": job.payment.id, "me": me, "error": error[:500], "retry": retry_in},
        )
        row = await cur.fetchone()
        if row is None or retry_in is not None or job.payment.kind != "refund":
            return
        p = Payment.model_validate(row)
        await conn.execute(
            "update agent_orders.orders set amount_refunded = amount_refunded - %(amount)s,"
            " updated_at = now() where id = %(id)s",
            {"id": o.id, "amount": p.amount},
        )
        o.amount_refunded -= p.amount
        await _money(conn, o)
        await _event(
            conn,
            o,
            "payment_flagged",
            SYSTEM,
            note=f"Stripe refused a refund of {_amount_text(p.amount, o.currency)}: {error[:200]}",
            visible=False,
            data=_payment_data(p),
        )


# ---- Stripe's events ----------------------------------------------------------------------


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
        o = await _lock(conn, order_id)
    except NotFound:
        return EventOutcome("unknown_order")
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.payments where order_id = %(order)s"
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
        await _event(
            conn,
            o,
            "payment_failed",
            SYSTEM,
            note="The payment did not go through.",
            data=_payment_data(p),
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
    received = from_minor(total, currency) if isinstance(total, int) and currency else None
    if currency != p.currency or received != p.amount:
        got = f"{received} {currency}" if received is not None else "no amount"
        await _set(
            conn, p.id, "flagged", stripe_id=session.get("id"), intent=intent, error=f"paid {got}"
        )
        await _event(
            conn,
            o,
            "payment_flagged",
            SYSTEM,
            note=f"Stripe reported a payment of {got} for a link of"
            f" {_amount_text(p.amount, p.currency)}: not marked paid; check it in Stripe.",
            visible=False,
            data=_payment_data(p) | {"received": got},
        )
        return EventOutcome("flagged", o.id)
    paid = await _set(conn, p.id, "succeeded", stripe_id=session.get("id"), intent=intent)
    if o.status != OrderStatus.cancelled:
        await _paid(conn, o, paid, SYSTEM)
        return EventOutcome("paid", o.id)
    # Paid after the order was cancelled: keep the record, and give it all back.
    await _money(conn, o, paid=paid.amount)
    await _event(
        conn,
        o,
        "payment_succeeded",
        SYSTEM,
        note=f"Payment of {_amount_text(paid.amount, o.currency)} received after the order"
        " was cancelled: it is refunded in full.",
        data=_payment_data(paid),
    )
    refunds = await _refund(conn, o, paid.amount, "paid after the order was cancelled", SYSTEM)
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
        " where id = %(id)s returning " + _COLUMNS,
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
    o = await _lock(conn, found["order_id"])
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
    extra = from_minor(refunded, currency) - Decimal(parent["ours"])
    if extra <= 0:
        return EventOutcome("already_recorded", o.id)
    extra = min(extra, o.refundable)
    if extra <= 0:
        return EventOutcome("ignored", o.id)
    await conn.execute(_RESERVE, {"id": o.id, "amount": extra})
    o.amount_refunded += extra
    p = await _insert(
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
    await _refunded_event(conn, o, p, SYSTEM)
    return EventOutcome("refunded", o.id)
