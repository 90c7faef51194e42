"""Carrier updates from outside: which carrier a number belongs to, and each tracking
provider's webhook (its signature, checked before anything else is read, and its payload,
turned into `TrackingUpdate`s with normalised event kinds).

A provider module has `verify(secret, body, headers)`, which raises `SignatureInvalid`, and
`parse(payload)`, which raises `PayloadInvalid` for a payload it cannot understand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from agent_tools.models.shipments import (
    CarrierEventKind,
    Provider,
    TrackingEvent,
    TrackingUpdate,
)

CARRIER_LINKS = {
    "ups": "https://www.ups.com/track?tracknum={n}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={n}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?tracking-id={n}",
}


def carrier_url(carrier: str | None, number: str | None) -> str | None:
    """The carrier's own tracking page for the number, for the carriers we know."""
    if not carrier or not number:
        return None
    pattern = CARRIER_LINKS.get(carrier.strip().lower())
    return pattern.format(n=quote(number, safe="")) if pattern else None


class SignatureInvalid(Exception):
    """The webhook is unsigned, or not signed with the account's secret."""


class PayloadInvalid(Exception):
    """A correctly signed webhook whose body is not what the provider documents."""


def content_key(source: str, *parts: object) -> str:
    """The dedupe key of an event without an id of its own: the hash of what it says."""
    raw = json.dumps([source, *parts], default=str, separators=(",", ":"))
    return f"{source}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"


def check_signature(expected: str, headers: Mapping[str, str], header: str) -> None:
    """`SignatureInvalid` unless the `header` holds `expected` (compared in constant time)."""
    given = headers.get(header)
    if not given:
        raise SignatureInvalid(f"no {header} header")
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise SignatureInvalid(f"{header} does not match the account's webhook secret")


def scan(
    source: str,
    kind: CarrierEventKind,
    at: datetime,
    *,
    location: str | None,
    description: str | None,
    carrier_status: str | None,
) -> TrackingEvent:
    """A provider's scan that has no id of its own: stored once, keyed by what it says."""
    return TrackingEvent(
        kind=kind,
        at=at,
        location=location,
        description=description,
        carrier_status=carrier_status,
        dedupe_key=content_key(source, at.isoformat(), carrier_status, description, location),
    )


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time as providers send it; one without a zone is taken as UTC, a bare
    date as its midnight in UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        try:
            day = date.fromisoformat(text[:10])
        except ValueError:
            return None
        at = datetime(day.year, day.month, day.day)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def parse_day(value: object) -> date | None:
    at = parse_time(value)
    return at.date() if at else None


def text(value: object, limit: int) -> str | None:
    """A provider's free text, trimmed to what the database keeps; None when empty."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(value.replace("\x00", "").split())
    return cleaned[:limit] or None


def new_secret(provider: Provider) -> str:
    """A webhook secret to give the provider: Standard Webhooks' `whsec_` form for the
    generic format, a plain random string for EasyPost."""
    if provider == Provider.generic:
        return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


Verify = Callable[[str, bytes, Mapping[str, str]], None]
Parse = Callable[[Any], list[TrackingUpdate]]


def provider(name: Provider) -> tuple[Verify, Parse]:
    from agent_tools.carriers import aftership, easypost, generic

    module = {Provider.easypost: easypost, Provider.aftership: aftership}.get(name, generic)
    return module.verify, module.parse
