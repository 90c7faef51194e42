"""EasyPost: `tracker.created` / `tracker.updated` events, signed the way its official client
library's `validate_webhook` checks them.

The signature is `X-Hmac-Signature: hmac-sha256-hex=<hex>`, an HMAC-SHA256 of the raw body
keyed with the webhook secret after Unicode NFKD normalisation (so a secret typed with a
composed or a decomposed accent signs alike). The event's `result` is the Tracker, whose
`tracking_details` hold every scan so far; each is stored once, keyed by its content.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
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

HEADER = "x-hmac-signature"

KINDS = {
    "pre_transit": CarrierEventKind.label_created,
    "in_transit": CarrierEventKind.in_transit,
    "out_for_delivery": CarrierEventKind.out_for_delivery,
    "available_for_pickup": CarrierEventKind.out_for_delivery,
    "delivered": CarrierEventKind.delivered,
    "return_to_sender": CarrierEventKind.returned_to_sender,
    "failure": CarrierEventKind.exception,
    "error": CarrierEventKind.exception,
}
"""EasyPost's tracker statuses. `unknown` and `cancelled` move nothing and are not kept."""


def signature(secret: str, body: bytes) -> str:
    key = unicodedata.normalize("NFKD", secret).encode()
    return "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    check_signature(signature(secret, body), headers, HEADER)


def _kind(detail: Mapping[str, Any]) -> CarrierEventKind | None:
    status = detail.get("status")
    if status == "failure" and "attempt" in str(detail.get("status_detail") or ""):
        return CarrierEventKind.failed_attempt
    return KINDS.get(str(status))


def _location(loc: object) -> str | None:
    if not isinstance(loc, Mapping):
        return None
    parts = [loc.get(k) for k in ("city", "state", "zip", "country")]
    return text(", ".join(str(p) for p in parts if isinstance(p, str) and p.strip()), 200)


def parse(payload: Any) -> list[TrackingUpdate]:
    if not isinstance(payload, Mapping) or payload.get("object") != "Event":
        raise PayloadInvalid("an EasyPost webhook body is an Event object")
    if payload.get("description") not in ("tracker.created", "tracker.updated"):
        return []  # batch, refund, report events: nothing to track
    tracker = payload.get("result")
    if not isinstance(tracker, Mapping) or not isinstance(tracker.get("tracking_code"), str):
        raise PayloadInvalid("a tracker event's result is a Tracker with a tracking_code")
    details = tracker.get("tracking_details") or []
    if not isinstance(details, list):
        raise PayloadInvalid("tracking_details is a list")
    events = []
    for detail in details:
        if not isinstance(detail, Mapping):
            raise PayloadInvalid("each tracking detail is an object")
        kind, at = _kind(detail), parse_time(detail.get("datetime"))
        if kind is None or at is None:
            continue
        location = _location(detail.get("tracking_location"))
        message = text(detail.get("message"), 500)
        raw = text(detail.get("status_detail"), 100) or text(detail.get("status"), 100)
        events.append(
            scan("easypost", kind, at, location=location, description=message, carrier_status=raw)
        )
    return [
        TrackingUpdate(
            tracking_number=tracker["tracking_code"],
            carrier=text(tracker.get("carrier"), 64),
            events=tuple(events),
            estimated_delivery=parse_day(tracker.get("est_delivery_date")),
        )
    ]
