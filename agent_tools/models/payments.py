"""Payments: money received for an order, refunds, and Stripe Checkout links."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints

from agent_tools.models.common import MAX_MONEY, _In, _money

Amount = Annotated[Decimal, Field(gt=0, le=MAX_MONEY), AfterValidator(_money)]
"""A positive amount of money, at most two decimals."""


class Payment(BaseModel):
    id: UUID
    order_id: UUID
    kind: Literal["checkout", "payment", "refund"]
    """`checkout`: a Stripe Checkout Session; `payment`: money recorded as received;
    `refund`: money given back."""
    provider: Literal["stripe", "manual"]
    state: Literal["pending", "open", "expiring", "succeeded", "failed", "expired", "flagged"]
    """`pending`: the Stripe call is still to be made (it will be, at least once); `open`: a
    Checkout link waiting for the customer; `expiring`: its order was cancelled, and the call
    that closes the link at Stripe is still to be made; `flagged`: paid, but not what the
    order asked."""
    amount: Decimal
    currency: str
    parent_id: UUID | None
    method: str | None
    reference: str | None
    reason: str | None
    stripe_id: str | None
    url: str | None
    """The Checkout link (checkout rows, once created)."""
    expires_at: datetime | None
    paid_at: datetime | None
    last_error: str | None
    created_at: datetime


class ManualPayment(_In):
    """A payment the owner received outside Stripe (cash on delivery, bank transfer)."""

    method: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    amount: Amount
    reference: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = (
        None
    )
    paid_at: AwareDatetime | None = None
    """When it was received; default now."""


class RefundRequest(_In):
    amount: Amount | None = None
    """Default: everything still refundable."""
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
