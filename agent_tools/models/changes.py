"""After the order: editing it before it ships, returning items after delivery, bulk moves."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints, model_validator

from agent_tools.models.common import MAX_LINES, Note, Quantity, Sku, _In
from agent_tools.models.orders import (
    Actor,
    Address,
    Customer,
    CustomLineIn,
    ItemIn,
    LineItem,
    OrderStatus,
)


class OrderEdit(_In):
    """A change to an order before it ships. Every field left out (or null) stays as it is.

    `items` replaces the order's catalog lines, `custom_lines` its owner-priced lines. Units
    the order already had keep the price they were sold at; added units are priced from the
    catalog, and stock moves by the difference.
    """

    items: Annotated[list[ItemIn], Field(max_length=MAX_LINES)] | None = None
    custom_lines: Annotated[list[CustomLineIn], Field(max_length=MAX_LINES)] | None = None
    shipping_address: Address | None = None
    customer: Customer | None = None
    """Name, email and phone together (a changed email or phone is no longer verified)."""
    customer_notes: Note | None = None
    internal_notes: Note | None = None
    expected_version: int | None = None
    """Optimistic concurrency: refuse if the order changed since this version was read."""

    @model_validator(mode="after")
    def _something(self) -> OrderEdit:
        fields = self.model_fields_set - {"expected_version"}
        if not any(getattr(self, f) is not None for f in fields):
            raise ValueError(
                "nothing to change: give items, custom_lines, shipping_address, customer or notes"
            )
        return self


class OrderSide(BaseModel):
    """One side (before or after) of an edit: what an edit can change."""

    line_items: list[LineItem]
    subtotal: Decimal
    shipping_fee: Decimal
    total: Decimal
    shipping_address: dict[str, Any]
    customer_name: str
    customer_email: str | None
    customer_phone: str | None
    customer_notes: str | None
    internal_notes: str | None


class EditPlan(BaseModel):
    """An edit worked out against the order and the catalog: both sides and the difference."""

    order_id: UUID
    order_number: str
    version: int
    """The order's version the plan was made from; applying it refuses any other."""
    currency: str
    before: OrderSide
    after: OrderSide
    changed: list[str]
    """What differs: `items`, `shipping_address`, `customer`, `customer_notes`,
    `internal_notes`."""
    difference: Decimal
    """`after.total - before.total`: positive, the customer owes more; negative, a refund."""
    stock: dict[str, int]
    """Units of each sku taken from (positive) or given back to (negative) stock."""
    refund: Decimal = Decimal("0.00")
    """What the order was paid beyond its new total: refunded through the payment layer."""
    owed: Decimal = Decimal("0.00")
    """What a part-paid order owes after the change: a payment link asks for it (stores
    taking card payments); otherwise the store records it when it arrives."""


class ReturnState(StrEnum):
    requested = "requested"
    approved = "approved"
    received = "received"
    refunded = "refunded"
    rejected = "rejected"


OPEN_RETURNS = frozenset({ReturnState.requested, ReturnState.approved, ReturnState.received})
"""Returns still under way (the customer is waiting for something)."""


class ReturnItemIn(_In):
    sku: Sku
    quantity: Quantity


class Return(BaseModel):
    """Items of a delivered order on their way back: requested by the customer through the
    agent, then approved (or rejected), received (restocked) and refunded by the owner."""

    id: UUID
    order_id: UUID
    order_number: str
    state: ReturnState
    lines: list[LineItem]
    """The returned units, at the price they were sold at."""
    amount: Decimal
    """What the returned units cost: the most a refund of this return gives back."""
    refunded: Decimal | None
    """The refund issued (or recorded) at the `refunded` step."""
    currency: str
    reason: str | None
    note: str | None
    """The owner's note on rejecting; shown to the customer."""
    requested_by: Actor
    conversation_id: str | None
    created_at: datetime
    updated_at: datetime
    approved_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    rejected_at: datetime | None


class ReturnDecision(_In):
    note: Note | None = None
    """For the customer: why a return is rejected, or anything they should know."""


class BulkTarget(_In):
    order: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    """The order's UUID or number."""
    carrier: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = None
    tracking_number: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = None
    expected_version: int | None = None


MAX_BULK = 500


class BulkStatusChange(_In):
    status: OrderStatus
    orders: Annotated[
        list[
            Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
            | BulkTarget
        ],
        Field(min_length=1, max_length=MAX_BULK),
    ]
    """Order ids or numbers, or objects adding a carrier, tracking number or version."""
    note: Note | None = None
    note_for_customer: bool = False


class BulkResult(BaseModel):
    order: str
    """The id or number as given."""
    ok: bool
    order_number: str | None = None
    status: OrderStatus | None = None
    version: int | None = None
    problem: dict[str, Any] | None = None
    """When not ok: `code` (`invalid_transition`, `version_conflict`, `not_found`, ...),
    `detail` and what the error adds (`allowed`, `current_version`)."""


class BulkOutcome(BaseModel):
    status: OrderStatus
    succeeded: int
    failed: int
    results: list[BulkResult]
    """One per order, in the order given."""
