"""Carrier webhooks as the providers send them: bodies shaped like their published examples
(EasyPost's tracker Event, AfterShip's tracking_update, our generic format) and signed the
way each provider signs. A scan is `(kind, time, city)` with our kind names."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook

Scan = tuple[str, datetime, str]

T0 = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=5)
"""Five days ago at 08:00: carrier times in the past (tests backdate their orders further)."""


def at(hours: float) -> datetime:
    """A time `hours` after T0."""
    return T0 + timedelta(hours=hours)


def stamp(hours: float) -> str:
    """`at(hours)` as the API shows it, to the second."""
    return at(hours).strftime("%Y-%m-%dT%H:%M:%S")


_EASYPOST = {
    "label_created": "pre_transit",
    "in_transit": "in_transit",
    "out_for_delivery": "out_for_delivery",
    "delivered": "delivered",
    "failed_attempt": "failure",
    "exception": "failure",
    "returned_to_sender": "return_to_sender",
}
_AFTERSHIP = {
    "label_created": ("InfoReceived", "InfoReceived_001"),
    "in_transit": ("InTransit", "InTransit_007"),
    "out_for_delivery": ("OutForDelivery", "OutForDelivery_001"),
    "delivered": ("Delivered", "Delivered_001"),
    "failed_attempt": ("AttemptFail", "AttemptFail_001"),
    "exception": ("Exception", "Exception_004"),
    "returned_to_sender": ("Exception", "Exception_011"),
}


def easypost_body(tracking_code: str, scans: list[Scan], carrier: str = "UPS") -> dict[str, Any]:
    """A `tracker.updated` Event whose Tracker holds `scans` as its tracking_details."""
    details = [
        {
            "object": "TrackingDetail",
            "message": f"{kind.replace('_', ' ').capitalize()} at {city}",
            "description": None,
            "status": _EASYPOST[kind],
            "status_detail": "attempted_delivery" if kind == "failed_attempt" else "status_update",
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": carrier,
            "carrier_code": None,
            "tracking_location": {
                "object": "TrackingLocation",
                "city": city,
                "state": "KY",
                "country": "US",
                "zip": None,
            },
        }
        for kind, when, city in scans
    ]
    tracker = {
        "object": "Tracker",
        "id": "trk_" + uuid.uuid5(uuid.NAMESPACE_DNS, tracking_code).hex,
        "mode": "test",
        "tracking_code": tracking_code,
        "status": _EASYPOST[scans[-1][0]] if scans else "unknown",
        "status_detail": "status_update",
        "created_at": "2026-11-20T07:00:00Z",
        "updated_at": "2026-11-20T07:00:00Z",
        "signed_by": None,
        "weight": 17.6,
        "est_delivery_date": "2026-11-24T00:00:00Z",
        "shipment_id": None,
        "carrier": carrier,
        "tracking_details": details,
        "carrier_detail": None,
        "finalized": True,
        "is_return": False,
        "public_url": "https://track.easypost.com/djE6dHJrX2QxYTE2",
    }
    return {
        "object": "Event",
        "id": "evt_" + uuid.uuid4().hex,
        "mode": "test",
        "description": "tracker.updated",
        "previous_attributes": {"status": "in_transit"},
        "pending_urls": [],
        "completed_urls": [],
        "created_at": "2026-11-20T07:00:00Z",
        "updated_at": "2026-11-20T07:00:00Z",
        "result": tracker,
        "status": "pending",
    }


def aftership_body(tracking_number: str, scans: list[Scan], slug: str = "ups") -> dict[str, Any]:
    """A `tracking_update` webhook whose msg holds `scans` as its checkpoints."""
    checkpoints = [
        {
            "slug": slug,
            "city": city,
            "created_at": "2026-11-20T07:00:00+00:00",
            "location": f"{city}, KY, USA",
            "country_name": "USA",
            "message": f"{kind.replace('_', ' ').capitalize()} at {city}",
            "country_iso3": "USA",
            "tag": _AFTERSHIP[kind][0],
            "subtag": _AFTERSHIP[kind][1],
            "subtag_message": kind,
            "checkpoint_time": when.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "coordinates": [],
            "state": "KY",
            "zip": None,
            "raw_tag": "FPX_L_RPIF",
        }
        for kind, when, city in scans
    ]
    last = _AFTERSHIP[scans[-1][0]] if scans else ("Pending", "Pending_001")
    return {
        "event_id": str(uuid.uuid4()),
        "event": "tracking_update",
        "is_tracking_first_tag": True,
        "msg": {
            "id": "grhrexm6t3hiwkjwq37jd003",
            "tracking_number": tracking_number,
            "title": tracking_number,
            "note": None,
            "origin_country_iso3": "USA",
            "destination_country_iso3": "USA",
            "shipment_package_count": None,
            "active": True,
            "order_id": None,
            "slug": slug,
            "tag": last[0],
            "subtag": last[1],
            "expected_delivery": "2026-11-24",
            "checkpoints": checkpoints,
        },
        "ts": 1764000000,
    }


def generic_body(tracking_number: str, scans: list[Scan], carrier: str = "UPS") -> dict[str, Any]:
    return {
        "tracking_number": tracking_number,
        "carrier": carrier,
        "events": [
            {
                "kind": kind,
                "at": when.isoformat(),
                "location": f"{city}, US",
                "description": f"{kind} at {city}",
            }
            for kind, when, city in scans
        ],
    }


BODIES = {"easypost": easypost_body, "aftership": aftership_body, "generic": generic_body}


def sign(provider: str, secret: str, raw: bytes) -> dict[str, str]:
    """The headers each provider sends with `raw`."""
    if provider == "easypost":
        key = unicodedata.normalize("NFKD", secret).encode()
        digest = hmac.new(key, raw, hashlib.sha256).hexdigest()
        return {"X-Hmac-Signature": f"hmac-sha256-hex={digest}"}
    if provider == "aftership":
        digest = base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest())
        return {"aftership-hmac-sha256": digest.decode()}
    msg_id = "msg_" + uuid.uuid4().hex
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, raw.decode()),
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()
