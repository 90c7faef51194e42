"""Each tool's arguments as a pydantic model: the one source of its published JSON schema.

No field has a default (strict mode requires every property; optional ones are nullable) and
no model has a price: prices come from the catalog.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from agent_tools.models import OrderStatus, ProblemKind

Text = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str, Field(max_length=1000)]
OrderNumber = Annotated[str, Field(max_length=40, description="e.g. ORD-2026-123456")]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchProductsArgs(Args):
    query: Annotated[str, Field(max_length=200)] | None = Field(
        description="Product words in the catalog's language, or a sku; null lists the catalog"
    )
    limit: Annotated[int, Field(ge=1, le=20)] | None = Field(description="Default 5")


class Item(Args):
    sku: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="Exact sku from search_products"
    )
    quantity: Annotated[int, Field(ge=1, le=1000)]


class CustomerArgs(Args):
    name: Text
    email: Annotated[str, Field(max_length=254)] | None
    phone: Annotated[str, Field(max_length=32)] | None


class AddressArgs(Args):
    line1: Text
    line2: Text | None
    city: Text
    region: Text | None
    postal_code: Annotated[str, Field(max_length=20)] | None
    country: Annotated[str, Field(min_length=2, max_length=60)] = Field(
        description="Country name or ISO code, e.g. US, Germany, España"
    )
    recipient_name: Text | None = Field(
        description="Name on the label if not the customer's (a gift); else null"
    )
    recipient_phone: Annotated[str, Field(max_length=32)] | None


class PlaceOrderArgs(Args):
    items: Annotated[list[Item], Field(min_length=1, max_length=50)]
    customer: CustomerArgs
    shipping_address: AddressArgs
    payment_method: Annotated[str, Field(max_length=100)] | None
    customer_notes: Note | None


class ConfirmOrderArgs(Args):
    draft_id: Annotated[str, Field(min_length=1, max_length=64)]


class GetOrderStatusArgs(Args):
    order_number: OrderNumber
    email: Annotated[str, Field(max_length=254)] | None = Field(
        description="Email the customer gave; the number plus the order's email shows its details"
    )


class ListMyOrdersArgs(Args):
    status: OrderStatus | None
    limit: Annotated[int, Field(ge=1, le=20)] | None = Field(description="Default 5")


class CancelOrderArgs(Args):
    order_number: OrderNumber
    reason: Note | None = Field(description="The customer's own words; null unless they gave one")


class ReportProblemArgs(Args):
    order_number: OrderNumber
    kind: ProblemKind
    details: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        description="What the customer said happened"
    )


class NewAddressArgs(Args):
    """A changed shipping address: `AddressArgs` without the descriptions and limits the model
    has already read in place_order (the order's own address model checks them)."""

    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str | None
    country: str
    recipient_name: str | None
    recipient_phone: str | None


class ReturnItem(Args):
    sku: str
    quantity: Annotated[int, Field(ge=1, le=1000)]


class ModifyOrderArgs(Args):
    order_number: OrderNumber
    items: list[Item] | None = Field(description="Complete new list; null: unchanged")
    shipping_address: NewAddressArgs | None = Field(description="null: unchanged")


class RequestReturnArgs(Args):
    order_number: OrderNumber
    items: list[ReturnItem] | None = Field(description="null: all")
    reason: Note | None = Field(description="The customer's own words, or null")
