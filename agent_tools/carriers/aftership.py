"""AfterShip: `tracking_update` webhooks, signed with `aftership-hmac-sha256`, the base64 of
an HMAC-SHA256 of the raw body keyed with the account's webhook secret.

`msg` is the tracking with all its `checkpoints` so far; each is stored once, keyed by its
content. A checkpoint time without a zone (AfterShip sends the carrier's local time when the
carrier gives no zone) is taken as UTC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from agent_tools.carriers import (
    PayloadInvalid,
    check_signature,
    parse_day,
    parse_time,
    scan,
    text,
)
from agent_tools.models.shipments import CarrierEventKind, TrackingUpdate

HEADER = "aftership-hmac-sha256"

TAGS = {
    "InfoReceived": CarrierEventKind.label_created,
    "InTransit": CarrierEventKind.in_transit,
    "OutForDelivery": CarrierEventKind.out_for_delivery,
    "AvailableForPickup": CarrierEventKind.out_for_delivery,
    "AttemptFail": CarrierEventKind.failed_attempt,
    "Delivered": CarrierEventKind.delivered,
    "Exception": CarrierEventKind.exception,
}
"""AfterShip's delivery statuses (`tag`). `Pending` and `Expired` say nothing of the parcel."""

RETURNED = frozenset({"Exception_010", "Exception_011"})
"""Sub-statuses "returning to sender" and "returned to sender"."""


def signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    check_signature(signature(secret, body), headers, HEADER)


def _kind(checkpoint: Mapping[str, Any]) -> CarrierEventKind | None:
    if checkpoint.get("subtag") in RETURNED:
        return CarrierEventKind.returned_to_sender
    return TAGS.get(str(checkpoint.get("tag")))


def _location(cp: Mapping[str, Any]) -> str | None:
    if isinstance(cp.get("location"), str) and cp["location"].strip():
        return text(cp["location"], 200)
    parts = [cp.get(k) for k in ("city", "state", "zip", "country_iso3")]
    return text(", ".join(str(p) for p in parts if isinstance(p, str) and p.strip()), 200)


def parse(payload: Any) -> list[TrackingUpdate]:
    if not isinstance(payload, Mapping) or not isinstance(payload.get("msg"), Mapping):
        raise PayloadInvalid("an AfterShip webhook body has a msg object")
    if payload.get("event", "tracking_update") != "tracking_update":
        return []  # estimated-delivery revisions and the like: no scan in them
    msg = payload["msg"]
    if not isinstance(msg.get("tracking_number"), str):
        raise PayloadInvalid("msg.tracking_number is missing")
    checkpoints = msg.get("checkpoints") or []
    if not isinstance(checkpoints, list):
        raise PayloadInvalid("msg.checkpoints is a list")
    events = []
    for cp in checkpoints:
        if not isinstance(cp, Mapping):
            raise PayloadInvalid("each checkpoint is an object")
        kind, at = _kind(cp), parse_time(cp.get("checkpoint_time"))
        if kind is None or at is None:
            continue
        location = _location(cp)
        message = text(cp.get("message"), 500)
        raw = text(cp.get("subtag"), 100) or text(cp.get("tag"), 100)
        events.append(
            scan("aftership", kind, at, location=location, description=message, carrier_status=raw)
        )
    eta = msg.get("expected_delivery") or msg.get("order_promised_delivery_date")
    return [
        TrackingUpdate(
            tracking_number=msg["tracking_number"],
            carrier=text(msg.get("slug"), 64),
            events=tuple(events),
            estimated_delivery=parse_day(eta),
        )
    ]
