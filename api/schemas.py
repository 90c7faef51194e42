"""Request and response bodies that exist only over HTTP; the rest are the domain models."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel

from agent_tools.models import Order, OrderEvent, OrderStatus, ProblemReport, Product, ProductIn
from agent_tools.models.changes import Return
from agent_tools.models.payments import Payment
from agent_tools.service.api_keys import ApiKey
from agent_tools.service.catalog import MAX_BATCH


class OrderDetail(Order):
    status_history: list[OrderEvent]
    """Every event of the order, oldest first."""
    allowed_next: list[OrderStatus]
    """Statuses the order may move to now."""
    tracking_url: str
    """The customer's tracking link (carries the order's tracking token)."""
    problems: list[ProblemReport]
    """Problems the customer reported on this order (open and resolved cases), oldest first."""
    returns: list[Return]
    """Returns of this order's items, oldest first."""
    payments: list[Payment] = []
    """Checkout links, payments and refunds, oldest first."""
    payment_url: str | None = None
    """The Checkout link the customer can pay now (stripe stores, while something is owed)."""


class ProductsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    products: Annotated[list[ProductIn], Field(min_length=1, max_length=MAX_BATCH)]


Products = RootModel[list[Product]]


class ApiKeyCreated(ApiKey):
    key: str | None
    """The full key. Shown once: only its hash is stored (null when an `Idempotency-Key`
    retry replays the creation)."""


class Health(BaseModel):
    status: str = "ok"
