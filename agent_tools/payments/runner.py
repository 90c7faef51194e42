"""Makes the Stripe calls that `service.payments` wrote down as `pending` rows: inline right
after the commit that decided them (best effort: a failure here is only logged), and from the
deliverer until each is done. Every attempt at a row sends the same idempotency key, so a
call repeated after a crash or a timeout returns Stripe's first answer instead of a second
session or refund."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from uuid import UUID

import stripe

from agent_tools.config import Settings, get_settings
from agent_tools.db import Database
from agent_tools.delivery import retry
from agent_tools.payments import stripe_gateway
from agent_tools.service import payments, stripe_calls, tracking

log = logging.getLogger(__name__)

ME = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:payments"

_PERMANENT = (
    stripe.InvalidRequestError,
    stripe.CardError,
    stripe.AuthenticationError,
    stripe.PermissionError,
    stripe.IdempotencyError,
)
"""Stripe said no to the request itself: sending it again cannot succeed."""


async def run_pending(db: Database, ids: list[UUID], settings: Settings | None = None) -> None:
    """Make these rows' Stripe calls now, if nobody else is making them. Never raises."""
    if not ids:
        return
    settings = settings or get_settings()
    try:
        async with db.connection() as conn:
            jobs = await stripe_calls.claim(conn, ME, settings.delivery_lease, ids=ids)
        for job in jobs:
            await perform(db, job, ME, settings)
    except Exception:
        log.warning("payment calls left to the deliverer", exc_info=True)


async def perform(db: Database, job: stripe_calls.Job, me: str, settings: Settings) -> None:
    """One claimed row's call, and its outcome recorded."""
    error: str | None = None
    permanent = False
    done: tuple[str, ...] = ()
    try:
        sc = stripe_gateway.client(settings)
        if job.payment.state == "expiring":
            # No longer open at Stripe (expired, or paid: that payment's event refunds it).
            with contextlib.suppress(stripe.InvalidRequestError):
                await stripe_gateway.expire_session(sc, job)
            async with db.connection() as conn:
                await stripe_calls.session_closed(conn, job, me)
            return
        if job.payment.kind == "checkout":
            async with db.connection() as conn:
                key = await tracking.signing_key(conn, settings)
            back = tracking.tracking_url(key, job.order, settings)
            sid, url, expires = await stripe_gateway.create_session(sc, job, back)
            async with db.connection() as conn:
                await stripe_calls.checkout_created(
                    conn, job, me, session_id=sid, url=url, expires_at=expires
                )
            return
        refund_id = await stripe_gateway.create_refund(sc, job)
        done = (refund_id,)
    except stripe_gateway.NotConfigured as exc:
        error = str(exc)
    except stripe_gateway.NoPaymentIntent as exc:
        error, permanent = str(exc), True
    except _PERMANENT as exc:
        error, permanent = f"{type(exc).__name__}: {exc.user_message or exc}", True
    except stripe.StripeError as exc:
        error = f"{type(exc).__name__}: {exc.user_message or exc}"
    async with db.connection() as conn:
        if done:
            await stripe_calls.refund_made(conn, job, me, refund_id=done[0])
            return
        assert error is not None
        wait = None if permanent else retry.next_delay(job.attempts + 1, settings.retry_scale)
        log.warning("stripe %s for payment %s failed: %s", job.payment.kind, job.payment.id, error)
        await stripe_calls.call_failed(conn, job, me, error=error, retry_in=wait)


async def claim(db: Database, me: str, room: int, settings: Settings) -> list[stripe_calls.Job]:
    """Due rows for the deliverer."""
    async with db.connection() as conn:
        return await stripe_calls.claim(conn, me, settings.delivery_lease, limit=room)


async def payment_url(db: Database, order_id: UUID, settings: Settings | None = None) -> str | None:
    """The order's Checkout link after its commit: made at Stripe now if it is still
    `pending`; None if there is none (paid, `none` store) or Stripe could not be reached."""
    async with db.connection() as conn:
        ids = await payments.pending_links(conn, order_id)
    await run_pending(db, ids, settings)
    async with db.connection() as conn:
        link = await payments.open_link(conn, order_id)
    return link.url if link else None
