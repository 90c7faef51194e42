"""Agents (stores) and their catalog products."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from agent_tools.models.common import Currency, Money, Name, Note, Sku, _In

Language = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
]
"""A BCP 47 language tag in its usual lower-case form: "en", "es", "pt-BR"."""
Keyword = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=60)
]
MAX_KEYWORDS = 20
ReturnWindow = Annotated[int, Field(ge=0, le=365)]


class ConfirmationMode(StrEnum):
    """How a store takes the customer's final yes to a draft (the rule: `service.drafts`)."""

    turns = "turns"
    """The host counts customer messages: a yes in a later turn confirms (own agent loops)."""
    elicitation = "elicitation"
    """The host's UI asks the human (MCP elicitation, Agents SDK approval), or the page."""
    page = "page"
    """Only the trusted confirmation page `/confirm/{token}` places the order."""


class PaymentMode(StrEnum):
    """How a store's customers pay (the rules: `service.payments`)."""

    none = "none"
    """On delivery or by invoice: the owner records payments (`POST .../payments`)."""
    stripe = "stripe"
    """A Stripe Checkout link for each confirmed order; Stripe's webhook marks it paid."""


StripeAccount = Annotated[str, StringConstraints(pattern=r"^acct_[A-Za-z0-9]{1,64}$")]
ExpiryHours = Annotated[int, Field(ge=1, le=24)]


class AgentIn(_In):
    name: Name
    currency: Currency = "USD"
    shipping_fee: Money = Decimal("0.00")
    confirmation: ConfirmationMode = ConfirmationMode.turns
    """How the customer's final yes to an order or cancellation reaches the store."""
    language: Language = "en"
    """The catalog's language: the model searches in it and reads product names as written."""
    return_window_days: ReturnWindow = 30
    """Days after delivery a customer may ask to return items; 0: no returns."""
    editable_while_processing: bool = False
    """Whether orders can still be edited while `processing` (always while pending or
    confirmed; never once packaged)."""
    payment_mode: PaymentMode = PaymentMode.none
    """`none` (pay on delivery or by invoice) or `stripe` (a Checkout link per order)."""
    stripe_account: StripeAccount | None = None
    """A Stripe Connect account (acct_...) the store is paid into; null: the platform's."""
    checkout_expiry_hours: ExpiryHours = 24
    """How long a Checkout link stays payable (1 to 24 hours)."""


class AgentSettings(_In):
    name: Name | None = None
    currency: Currency | None = None
    shipping_fee: Money | None = None
    confirmation: ConfirmationMode | None = None
    language: Language | None = None
    return_window_days: ReturnWindow | None = None
    editable_while_processing: bool | None = None
    payment_mode: PaymentMode | None = None
    stripe_account: StripeAccount | None = None
    checkout_expiry_hours: ExpiryHours | None = None


class Agent(BaseModel):
    id: UUID
    owner_id: UUID
    name: str
    currency: str
    shipping_fee: Decimal
    confirmation: ConfirmationMode
    language: str = "en"
    return_window_days: int = 30
    editable_while_processing: bool = False
    payment_mode: PaymentMode = PaymentMode.none
    stripe_account: str | None = None
    checkout_expiry_hours: int = 24
    created_at: datetime
    updated_at: datetime


class ProductIn(_In):
    sku: Sku
    name: Name
    description: Note = ""
    unit_price: Money
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    """`None`: stock is not tracked."""
    active: bool = True
    keywords: Annotated[list[Keyword], Field(max_length=MAX_KEYWORDS)] = []
    """Other words customers use for it (synonyms, other languages); search finds them."""


class Product(BaseModel):
    id: UUID
    agent_id: UUID
    sku: str
    name: str
    description: str
    unit_price: Decimal
    stock: int | None
    active: bool
    keywords: list[str] = []
    created_at: datetime
    updated_at: datetime
