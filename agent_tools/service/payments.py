"""Payments: what an order was paid and refunded, and the Checkout links to pay it.

Every decision about money is taken under the order's row lock (`select ... for update`), in
the transaction that records it: two refunds of one order queue behind each other, and the cap
(`amount_refunded <= amount_paid`) is checked by the UPDATE itself and by a table constraint.
A call to Stripe that a decision needs (a Checkout Session, a refund) is a `payments` row in
state `pending`, written in that transaction; `agent_tools.payments.runner` makes the call
after the commit, inline and again from the deliverer until it is done, with an idempotency
key derived from the row, so a retry never makes a second session or refund.

No network here: this module decides and records; the runner talks to Stripe. The runner's
side of those calls is `service.stripe_calls`, Stripe's webhook events `service.stripe_events`;
both decide through the helpers here (`lock_order`, `settle`, `payment_event` ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import NotFound, OrderError, parse
from agent_tools.models import Actor, Order, OrderStatus, PaymentMode, Provenance
from agent_tools.models.payments import ManualPayment, Payment, RefundRequest
from agent_tools.service import orders

COLUMNS = (
    "id, order_id, kind, provider, state, amount, currency, parent_id, method, reference,"
    " reason, stripe_id, url, expires_at, paid_at, last_error, created_at"
)
P_COLUMNS = ", ".join("p." + c.strip() for c in COLUMNS.split(","))
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


async def lock_order(conn: Conn, order_id: UUID, owner_id: UUID | None = None) -> Locked:
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


async def settle(conn: Conn, o: Locked, *, paid: Decimal = Decimal(0)) -> None:
    """Add `paid` to the order and set its payment status from its totals."""
    new_paid = o.amount_paid + paid
    status = _status(new_paid, o.amount_refunded, o.total, o.payment_status)
    await conn.execute(
        "update agent_orders.orders set amount_paid = %(paid)s, payment_status = %(status)s,"
        " updated_at = now() where id = %(id)s",
        {"id": o.id, "paid": new_paid, "status": status},
    )
    o.amount_paid, o.payment_status = new_paid, status


async def insert_payment(conn: Conn, o: Locked, **values: Any) -> Payment:
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
        + COLUMNS,
        row,
    )
    created = await cur.fetchone()
    assert created is not None
    return Payment.model_validate(created)


def amount_text(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01'))} {currency}"


async def payment_event(
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


def payment_data(p: Payment) -> dict[str, Any]:
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
    o = await lock_order(conn, order.id)
    if o.payment_mode != PaymentMode.stripe or o.owed <= 0:
        return None
    return await _new_checkout(conn, o, o.owed)


async def total_changed(conn: Conn, order_id: UUID) -> None:
    """An order's total changed (an edit): its payment status follows what it was paid."""
    await settle(conn, await lock_order(conn, order_id))


async def order_cancelled(conn: Conn, order_id: UUID, by: Provenance) -> list[Payment]:
    """Cancelling an order closes its unpaid links and refunds whatever it was paid."""
    o = await lock_order(conn, order_id)
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
    return await start_refund(conn, o, o.refundable, "order cancelled", by)


# ---- links --------------------------------------------------------------------------------


async def _new_checkout(conn: Conn, o: Locked, amount: Decimal) -> Payment:
    return await insert_payment(
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
        o = await lock_order(conn, order_id, owner_id)
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
            "select " + COLUMNS + " from agent_orders.payments"
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
        "select " + COLUMNS + " from agent_orders.payments"
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
        "select " + COLUMNS + " from agent_orders.payments where order_id = %(id)s"
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
        o = await lock_order(conn, order_id, owner_id)
        if o.status == OrderStatus.cancelled:
            raise Overpayment(f"order {o.order_number} is cancelled", hint="nothing is owed on it")
        if new.amount > o.owed:
            raise Overpayment(
                f"{amount_text(new.amount, o.currency)} is more than the"
                f" {amount_text(max(o.owed, Decimal(0)), o.currency)} still owed",
                hint="record at most what is owed",
                owed=str(max(o.owed, Decimal("0.00"))),
            )
        p = await insert_payment(
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
        await mark_paid(conn, o, p, by)
    return p


async def mark_paid(conn: Conn, o: Locked, p: Payment, by: Provenance) -> None:
    """Count `p` as paid: totals, the `payment_succeeded` event, and a pending order moves on
    to `confirmed`."""
    await settle(conn, o, paid=p.amount)
    await payment_event(
        conn,
        o,
        "payment_succeeded",
        by,
        note=f"Payment of {amount_text(p.amount, o.currency)} received.",
        data=payment_data(p),
    )
    if o.status == OrderStatus.pending:
        await orders.update_status(conn, o.id, {"status": OrderStatus.confirmed}, by=by)
        o.status = OrderStatus.confirmed


RESERVE_REFUND = (
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
        o = await lock_order(conn, order_id, owner_id)
        wanted = request.amount if request.amount is not None else o.refundable
        if wanted <= 0 or wanted > o.refundable:
            raise RefundExceeds(
                f"order {o.order_number} has {amount_text(o.refundable, o.currency)} left to"
                f" refund (paid {amount_text(o.amount_paid, o.currency)}, refunded"
                f" {amount_text(o.amount_refunded, o.currency)})",
                hint="refund at most what is left",
                refundable=str(o.refundable),
            )
        return await start_refund(conn, o, wanted, request.reason, by)


async def start_refund(
    conn: Conn, o: Locked, amount: Decimal, reason: str | None, by: Provenance
) -> list[Payment]:
    cur = await conn.execute(RESERVE_REFUND, {"id": o.id, "amount": amount})
    if await cur.fetchone() is None:
        raise RefundExceeds(
            f"order {o.order_number} has less than {amount_text(amount, o.currency)} to refund",
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
        p = await insert_payment(
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
            await refunded_event(conn, o, p, by)
        made.append(p)
    if rest > 0:  # paid totals without payment rows (set by hand): recorded as manual
        p = await insert_payment(
            conn,
            o,
            kind="refund",
            provider="manual",
            state="succeeded",
            amount=rest,
            reason=reason,
            paid_at=datetime.now(UTC),
        )
        await refunded_event(conn, o, p, by)
        made.append(p)
    return made


async def refunded_event(conn: Conn, o: Locked, p: Payment, by: Provenance) -> None:
    note = f"Refund of {amount_text(p.amount, o.currency)}"
    await payment_event(
        conn,
        o,
        "payment_refunded",
        by,
        note=note + (f": {p.reason}." if p.reason else "."),
        data=payment_data(p) | {"amount_refunded": str(o.amount_refunded)},
    )
