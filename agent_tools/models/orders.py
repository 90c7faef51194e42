"""Orders: the status machine, what creating or changing an order takes, and what it returns."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from agent_tools.models.common import (
    MAX_LINES,
    Currency,
    Email,
    Money,
    Name,
    Note,
    Phone,
    Quantity,
    ShortText,
    Sku,
    _In,
)


class OrderStatus(StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    processing = "processing"
    packaged = "packaged"
    shipped = "shipped"
    delivered = "delivered"
    cancelled = "cancelled"


FLOW: tuple[OrderStatus, ...] = (
    OrderStatus.pending,
    OrderStatus.confirmed,
    OrderStatus.processing,
    OrderStatus.packaged,
    OrderStatus.shipped,
    OrderStatus.delivered,
)
"""The forward path. Any forward step may skip states."""

FINAL = frozenset({OrderStatus.delivered, OrderStatus.cancelled})
CANCELLABLE = frozenset(FLOW[: FLOW.index(OrderStatus.shipped)])


def allowed_next(current: OrderStatus) -> list[OrderStatus]:
    """Every status an order in `current` may move to, in display order."""
    if current in FINAL:
        return []
    later = list(FLOW[FLOW.index(current) + 1 :])
    return [*later, OrderStatus.cancelled] if current in CANCELLABLE else later


class Actor(StrEnum):
    owner = "owner"
    agent = "agent"
    customer = "customer"
    system = "system"


class PaymentStatus(StrEnum):
    pending = "pending"
    paid = "paid"
    partially_refunded = "partially_refunded"
    refunded = "refunded"
    failed = "failed"


class Address(_In):
    line1: Name
    line2: ShortText | None = None
    city: Name
    region: ShortText | None = None
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = (
        None
    )
    country: Annotated[
        str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
    ]
    """ISO 3166-1 alpha-2, e.g. "US"."""
    recipient_name: Name | None = None
    """Who the parcel is for, when not the customer (a gift): the name on the label."""
    recipient_phone: Phone | None = None
    """The recipient's phone, for the carrier."""


class Customer(_In):
    name: Name
    email: Email | None = None
    phone: Phone | None = None


class ItemIn(_In):
    """A catalog line: priced from the catalog, stock reserved."""

    sku: Sku
    quantity: Quantity


class CustomLineIn(_In):
    """An owner-priced line for manual orders; touches no stock."""

    name: Name
    quantity: Quantity
    unit_price: Money
    sku: Sku | None = None

    def line(self) -> LineItem:
        """The order line, at the owner's price."""
        return LineItem(
            sku=self.sku,
            name=self.name,
            quantity=self.quantity,
            unit_price=self.unit_price,
            line_total=self.unit_price * self.quantity,
        )


class NewOrder(_In):
    agent_id: UUID
    customer: Customer
    shipping_address: Address
    items: Annotated[list[ItemIn], Field(max_length=MAX_LINES)] = []
    custom_lines: Annotated[list[CustomLineIn], Field(max_length=MAX_LINES)] = []
    currency: Currency | None = None
    """If given, must equal the agent's currency."""
    payment_method: ShortText | None = None
    payment_status: PaymentStatus = PaymentStatus.pending
    customer_notes: Note | None = None
    internal_notes: Note | None = None
    conversation_id: ShortText | None = None
    metadata: dict[str, Any] = {}
    contact_verified: bool = False
    """Whether the host (or the owner) checked the customer's email and phone. Only then do
    they make the order the customer's in a later conversation (`list_my_orders`)."""

    @model_validator(mode="after")
    def _lines(self) -> NewOrder:
        n = len(self.items) + len(self.custom_lines)
        if n == 0:
            raise ValueError("an order needs at least one item")
        if n > MAX_LINES:
            raise ValueError(f"an order has at most {MAX_LINES} lines")
        return self

    @field_validator("payment_status")
    @classmethod
    def _no_refund_yet(cls, v: PaymentStatus) -> PaymentStatus:
        if v in (PaymentStatus.partially_refunded, PaymentStatus.refunded):
            raise ValueError(
                "a new order cannot start refunded: place it as paid, then record the refund"
                " (POST /api/orders/{id}/refunds)"
            )
        return v

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        import json

        if len(json.dumps(v, default=str)) > 8000:
            raise ValueError("metadata is limited to 8000 bytes of JSON")
        return v


class LineItem(BaseModel):
    sku: str | None
    name: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal
    stock_reserved: bool = False


class Order(BaseModel):
    id: UUID
    order_number: str
    agent_id: UUID
    owner_id: UUID
    conversation_id: str | None
    customer_name: str
    customer_email: str | None
    customer_phone: str | None
    shipping_address: dict[str, Any]
    line_items: list[LineItem]
    subtotal: Decimal
    shipping_fee: Decimal
    total: Decimal
    currency: str
    status: OrderStatus
    tracking_number: str | None
    carrier: str | None
    estimated_delivery: date | None
    customer_notes: str | None
    internal_notes: str | None
    payment_status: PaymentStatus
    payment_method: str | None
    amount_paid: Decimal = Decimal("0.00")
    """Money received for the order (Stripe or recorded by the owner)."""
    amount_refunded: Decimal = Decimal("0.00")
    """Refunds decided (made, or on their way at Stripe); never more than `amount_paid`."""
    metadata: dict[str, Any]
    contact_verified: bool
    """Whether the email/phone were verified by the host, not just typed into a chat."""
    tracking_token_version: int
    """Part of the tracking link's token: raising it revokes every link handed out so far."""
    version: int
    created_at: datetime
    updated_at: datetime
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None


class OrderEvent(BaseModel):
    id: int
    order_id: UUID
    kind: str
    from_status: OrderStatus | None
    to_status: OrderStatus | None
    note: str | None
    actor: Actor
    customer_visible: bool
    note_visible: bool
    """Whether `note` is for the customer (shown in the full tracking view only)."""
    conversation_id: str | None
    tool_call_id: str | None
    data: dict[str, Any]
    created_at: datetime


class StatusChange(_In):
    status: OrderStatus
    note: Note | None = None
    tracking_number: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = None
    carrier: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None
    ) = None
    estimated_delivery: date | None = None
    at: AwareDatetime | None = None
    """When the step happened (a carrier's delivery scan), if earlier than now: the timeline
    and `shipped_at`/`delivered_at` show it. Not before the order was placed or shipped."""
    expected_version: int | None = None
    """Optimistic concurrency: refuse if the order changed since this version was read."""
    note_for_customer: bool = False
    """Show `note` to the customer in the full tracking view; otherwise it stays internal."""


class Provenance(_In):
    """Who caused a change, kept on its event so a dispute can be replayed."""

    actor: Actor = Actor.system
    conversation_id: str | None = None
    tool_call_id: str | None = None


class OrderFilter(_In):
    agent_id: UUID | None = None
    statuses: list[OrderStatus] = []
    search: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    customer_email: Email | None = None
    customer_phone_digits: Annotated[str, StringConstraints(pattern=r"^[0-9]{5,32}$")] | None = None
    """Orders whose phone has exactly these digits, whatever its punctuation."""
    conversation_id: str | None = None
    contact_verified: bool | None = None
    """Only orders whose contact details were (or were not) verified by the host."""


class OrderPage(BaseModel):
    orders: list[Order]
    next_cursor: str | None
