"""Payments over HTTP: Stripe's signed webhook, Checkout links, refunds and manual payments.

Each write commits first; the Stripe call it decided (a Checkout Session, a refund) is then
made inline, best effort, and by the deliverer until it is done.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import stripe
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.errors import OrderError
from agent_tools.models import Actor, PaymentStatus, Provenance
from agent_tools.models.payments import ManualPayment, Payment, RefundRequest
from agent_tools.payments import runner
from agent_tools.service import orders, payments, stripe_events
from api.deps import DbDep, IdempotencyKey, OwnerDep, StateDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(tags=["payments"], responses=errors(422, 503))

BY_OWNER = Provenance(actor=Actor.owner)
OrderKey = Annotated[
    str, Path(max_length=64, description="The order's UUID or its number (ORD-YYYY-NNNNNN)")
]


class InvalidSignature(OrderError):
    """The request is not a Stripe event signed with this server's webhook secret."""

    code = "invalid_signature"
    status = 400


class OrderPayments(BaseModel):
    """An order's money: totals, the link to pay it, and every payment and refund."""

    order_id: UUID
    order_number: str
    payment_status: PaymentStatus
    currency: str
    total: Decimal
    amount_paid: Decimal
    amount_refunded: Decimal
    payment_url: str | None
    """The Checkout link the customer can pay now (stripe stores, while something is owed)."""
    payments: list[Payment]


async def _view(conn: Conn, order_id: UUID) -> OrderPayments:
    order = await orders.get_order(conn, order_id)
    link = await payments.open_link(conn, order.id)
    return OrderPayments(
        order_id=order.id,
        order_number=order.order_number,
        payment_status=order.payment_status,
        currency=order.currency,
        total=order.total,
        amount_paid=order.amount_paid,
        amount_refunded=order.amount_refunded,
        payment_url=link.url if link else None,
        payments=await payments.list_for_order(conn, order.id),
    )


async def _write(
    db: DbDep,
    state: StateDep,
    owner: UUID,
    order_key: str,
    key: str | None,
    request: Request,
    body: BaseModel,
    write: Any,
) -> JSONResponse:
    """Run `write(conn, order_id) -> [Payment]` under the Idempotency-Key, commit, make the
    Stripe calls it queued, and answer with the order's payments as they are then."""
    pending: list[UUID] = []
    async with db.connection() as conn:
        order = await orders.get_order(conn, order_key, owner_id=owner)

        async def run() -> OrderPayments:
            made = await write(conn, order.id)
            pending.extend(p.id for p in made if p.state == "pending")
            return await _view(conn, order.id)

        response = await idempotent(conn, owner, key, request, body, run)
    if not pending:
        return response
    await runner.run_pending(db, pending, state.settings)
    async with db.connection() as conn:
        view = await _view(conn, order.id)
    return JSONResponse(view.model_dump(mode="json"), status_code=response.status_code)


@router.post(
    "/api/orders/{order_id}/refunds",
    status_code=201,
    response_model=OrderPayments,
    responses=errors(401, 404, 409),
)
async def create_refund(
    order_id: OrderKey,
    body: RefundRequest,
    owner: OwnerDep,
    db: DbDep,
    state: StateDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Refund `amount` (default: everything still refundable) of what the order was paid.

    Never more than was paid minus what was refunded (409 `refund_exceeds`), checked under
    the order's lock. Stripe payments are refunded at Stripe (a `pending` refund until Stripe
    has it; retried until it does), payments you recorded are recorded as refunded at once.
    """

    async def write(conn: Conn, oid: UUID) -> list[Payment]:
        return await payments.refund(conn, oid, body.amount, reason=body.reason, by=BY_OWNER)

    return await _write(db, state, owner, order_id, idempotency_key, request, body, write)


@router.post(
    "/api/orders/{order_id}/payments",
    status_code=201,
    response_model=OrderPayments,
    responses=errors(401, 404, 409),
)
async def record_payment(
    order_id: OrderKey,
    body: ManualPayment,
    owner: OwnerDep,
    db: DbDep,
    state: StateDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Record a payment you received yourself (cash on delivery, bank transfer, invoice).

    At most what is still owed (409 `overpayment`); a pending order moves to `confirmed`,
    and a `payment.succeeded` event (webhooks, feed, the customer's receipt) goes out.
    """

    async def write(conn: Conn, oid: UUID) -> list[Payment]:
        return [await payments.record_payment(conn, oid, body, by=BY_OWNER)]

    return await _write(db, state, owner, order_id, idempotency_key, request, body, write)


@router.post(
    "/api/orders/{order_id}/payment-link",
    response_model=OrderPayments,
    responses=errors(401, 404, 409),
)
async def create_payment_link(
    order_id: OrderKey, owner: OwnerDep, db: DbDep, state: StateDep
) -> OrderPayments:
    """A Stripe Checkout link for what the order still owes: the open one while it has time
    left, else a fresh one (an expired link is replaced). `payment_url` is null if Stripe could
    not be reached; it is retried in the background, so ask again in a moment."""
    async with db.connection() as conn:
        order = await orders.get_order(conn, order_id, owner_id=owner)
        link = await payments.request_link(conn, order.id, by=BY_OWNER)
    if link.state == "pending":
        await runner.run_pending(db, [link.id], state.settings)
    async with db.connection() as conn:
        return await _view(conn, order.id)


@router.post(
    "/api/payments/stripe/webhook",
    responses=errors(400),
    summary="Receive a Stripe event",
)
async def receive_stripe_event(request: Request, db: DbDep, state: StateDep) -> dict[str, Any]:
    """Stripe's webhook endpoint: `checkout.session.completed`, `...async_payment_succeeded`,
    `...async_payment_failed`, `...expired` and `charge.refunded`.

    The `Stripe-Signature` is verified over the raw body with `STRIPE_WEBHOOK_SECRET`
    (5-minute tolerance); anything unsigned, signed with another secret or stale is a 400 and
    changes nothing. Each event id is handled once; a replay answers `duplicate`.
    """
    secret = state.settings.stripe_webhook_secret
    if secret is None:
        raise InvalidSignature(
            "this server has no STRIPE_WEBHOOK_SECRET, so no event can be verified",
            hint="set STRIPE_WEBHOOK_SECRET to the endpoint's signing secret from Stripe",
        )
    body = await request.body()
    try:
        stripe.Webhook.construct_event(
            body, request.headers.get("stripe-signature"), secret.get_secret_value(), tolerance=300
        )
        event = json.loads(body)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise InvalidSignature(
            "not a Stripe event signed with this endpoint's secret",
            hint="check STRIPE_WEBHOOK_SECRET against the endpoint's signing secret in Stripe",
        ) from exc
    data = event.get("data") if isinstance(event, dict) else None
    if not (
        isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    ):
        raise InvalidSignature("a signed body that is not a Stripe event (id, type, data.object)")
    async with db.connection() as conn:
        outcome = await stripe_events.handle_stripe_event(conn, event)
    await runner.run_pending(db, outcome.pending, state.settings)
    return {"received": True, "outcome": outcome.outcome}
