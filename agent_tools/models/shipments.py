"""Shipments: an order's parcels, their carrier events, and the store's carrier accounts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, StringConstraints

from agent_tools.models.common import MAX_LINES, Quantity, _In


class CarrierEventKind(StrEnum):
    """What a carrier scan means, whatever the carrier or provider called it."""

    label_created = "label_created"
    in_transit = "in_transit"
    out_for_delivery = "out_for_delivery"
    delivered = "delivered"
    failed_attempt = "failed_attempt"
    exception = "exception"
    returned_to_sender = "returned_to_sender"


class Provider(StrEnum):
    """Where carrier updates come from: a tracking provider, a store's own integration."""

    easypost = "easypost"
    aftership = "aftership"
    generic = "generic"


def normalize_tracking_number(value: str) -> str:
    """How a tracking number is kept and matched: upper case, no spaces or dashes (carriers
    print `1Z 999 AA1 01 2345 6784`; their systems send `1Z999AA10123456784`)."""
    return re.sub(r"[\s-]", "", value).upper()


TrackingNumber = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{2,80}$"),
    AfterValidator(normalize_tracking_number),
    StringConstraints(max_length=64),
]
ShortLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


@dataclass(frozen=True)
class TrackingEvent:
    """One carrier event as a provider reported it, normalised."""

    kind: CarrierEventKind
    at: datetime
    """The carrier's time of the scan (timezone-aware)."""
    location: str | None
    description: str | None
    """The carrier's own words."""
    carrier_status: str | None
    """The provider's raw status code, for the owner."""
    dedupe_key: str
    """The provider's event id, or a hash of the event's content."""


@dataclass(frozen=True)
class TrackingUpdate:
    """What one inbound webhook says about one tracking number."""

    tracking_number: str
    carrier: str | None
    events: tuple[TrackingEvent, ...]
    estimated_delivery: date | None = None


class ShipmentLineIn(_In):
    line: Annotated[int, Field(ge=1, le=MAX_LINES)]
    """The line's position in the order's `line_items`, from 1."""
    quantity: Quantity


class ShipmentIn(_In):
    tracking_number: TrackingNumber
    carrier: ShortLine | None = None
    """UPS, USPS, FedEx, DHL or any carrier's name; detected from the number when left out."""
    lines: Annotated[list[ShipmentLineIn], Field(max_length=MAX_LINES)] = []
    """What the parcel holds. Empty: everything of the order not yet in a shipment."""
    estimated_delivery: date | None = None


class CarrierEventIn(_In):
    """A carrier event the owner records by hand (no tracking provider, or a missed scan)."""

    kind: CarrierEventKind
    at: AwareDatetime | None = None
    """When it happened; now when left out."""
    location: ShortLine | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = (
        None
    )


class ShipmentLine(BaseModel):
    line: int
    """Position in the order's `line_items`, from 1."""
    sku: str | None
    name: str
    quantity: int


class CarrierEvent(BaseModel):
    kind: CarrierEventKind
    at: datetime
    location: str | None
    description: str | None
    carrier_status: str | None
    source: str
    received_at: datetime


class Shipment(BaseModel):
    id: UUID
    order_id: UUID
    carrier: str
    tracking_number: str
    carrier_url: str | None
    status: CarrierEventKind | None
    """The latest carrier event's kind (by the carrier's time); null before the first one."""
    status_at: datetime | None
    delivered_at: datetime | None
    estimated_delivery: date | None
    lines: list[ShipmentLine]
    events: list[CarrierEvent]
    """Oldest first, by the carrier's time."""
    created_at: datetime


class CarrierAccountIn(_In):
    agent_id: UUID
    provider: Provider
    secret: Annotated[str, StringConstraints(min_length=8, max_length=200)] | None = None
    """The provider's webhook secret (AfterShip shows it under Settings > Notifications;
    EasyPost takes the one you give when creating the webhook). Left out: one is made (not for
    AfterShip, whose secret is AfterShip's own)."""


class CarrierAccount(BaseModel):
    id: UUID
    agent_id: UUID
    provider: Provider
    webhook_path: str
    """Where the provider posts: `/api/carriers/<provider>/webhook?account=<id>`."""
    created_at: datetime
    updated_at: datetime


class CarrierAccountWithSecret(CarrierAccount):
    secret: str | None
    """Shown once, in the response that set it."""


class UnmatchedUpdate(BaseModel):
    """Carrier updates for a tracking number none of the store's shipments has (yet)."""

    id: int
    agent_id: UUID
    provider: str
    tracking_number: str
    carrier: str | None
    latest_kind: CarrierEventKind | None
    latest_at: datetime | None
    events: int
    updates: int
    first_seen_at: datetime
    last_seen_at: datetime


class IngestResult(BaseModel):
    """What one inbound update did."""

    events: int
    """Carrier events in the update."""
    new: int
    """Events stored for the first time (the rest were replays or duplicates)."""
    shipments: int
    """Shipments the tracking numbers matched."""
    unmatched: int
    """Tracking numbers kept for the owner because no shipment has them."""
