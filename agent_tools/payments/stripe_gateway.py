"""The Stripe adapter: the official library's async calls, one idempotency key per call and
the store's connected account (Stripe Connect) when it has one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe

from agent_tools.config import Settings
from agent_tools.service.payments import minor_units
from agent_tools.service.stripe_calls import Job

TIMEOUT = 20.0


class NotConfigured(Exception):
    """STRIPE_SECRET_KEY is not set."""


class NoPaymentIntent(Exception):
    """A refund of a payment Stripe never named a payment intent for: nothing to call."""


def client(settings: Settings) -> stripe.StripeClient:
    if settings.stripe_secret_key is None:
        raise NotConfigured("STRIPE_SECRET_KEY is not set")
    base = settings.stripe_api_base
    return stripe.StripeClient(
        settings.stripe_secret_key.get_secret_value(),
        base_addresses={"api": base.rstrip("/")} if base else None,
        # Retries are ours (the deliverer, with the same idempotency key), not the library's.
        max_network_retries=0,
        http_client=stripe.HTTPXClient(timeout=TIMEOUT, allow_sync_methods=False),
    )


def _options(job: Job) -> stripe.RequestOptions:
    options: stripe.RequestOptions = {"idempotency_key": job.idempotency_key}
    if job.stripe_account:
        options["stripe_account"] = job.stripe_account
    return options


def session_params(job: Job, return_url: str) -> dict[str, Any]:
    """A Checkout Session (mode `payment`) for the job's amount: the order's own lines and
    shipping when it is the whole order, one balance line otherwise."""
    order, p = job.order, job.payment
    cur = p.currency.lower()

    def line(name: str, unit: Any, quantity: int) -> dict[str, Any]:
        return {
            "quantity": quantity,
            "price_data": {
                "currency": cur,
                "unit_amount": minor_units(unit, p.currency),
                "product_data": {"name": name[:250]},
            },
        }

    if p.amount == order.total:
        lines = [line(ln.name, ln.unit_price, ln.quantity) for ln in order.line_items]
        if order.shipping_fee > 0:
            lines.append(line("Shipping", order.shipping_fee, 1))
    else:
        lines = [line(f"Order {order.order_number}: amount due", p.amount, 1)]
    metadata = {
        "order_id": str(order.id),
        "order_number": order.order_number,
        "payment_id": str(p.id),
    }
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": lines,
        "client_reference_id": str(order.id),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": return_url,
        "cancel_url": return_url,
    }
    if p.expires_at is not None:
        params["expires_at"] = int(p.expires_at.timestamp())
    if order.customer_email:
        params["customer_email"] = order.customer_email
    return params


async def create_session(
    sc: stripe.StripeClient, job: Job, return_url: str
) -> tuple[str, str, datetime]:
    """(session id, its url, when it expires)."""
    session = await sc.v1.checkout.sessions.create_async(
        session_params(job, return_url),  # type: ignore[arg-type]
        _options(job),
    )
    if not session.url:
        raise stripe.APIError("Stripe returned a Checkout Session without a url")
    return session.id, session.url, datetime.fromtimestamp(session.expires_at, UTC)


async def expire_session(sc: stripe.StripeClient, job: Job) -> None:
    """Close the job's Checkout Session: its order was cancelled."""
    assert job.payment.stripe_id is not None
    await sc.v1.checkout.sessions.expire_async(job.payment.stripe_id, options=_options(job))


async def create_refund(sc: stripe.StripeClient, job: Job) -> str:
    """The refund's id. A refund is made against the payment's payment intent."""
    if not job.payment_intent:
        raise NoPaymentIntent("the payment has no Stripe payment intent to refund")
    order, p = job.order, job.payment
    refund = await sc.v1.refunds.create_async(
        {
            "payment_intent": job.payment_intent,
            "amount": minor_units(p.amount, p.currency),
            "reason": "requested_by_customer",
            "metadata": {
                "order_id": str(order.id),
                "order_number": order.order_number,
                "payment_id": str(p.id),
            },
        },
        _options(job),
    )
    return refund.id
