"""The generic format, for a store's own integration: JSON signed with Standard Webhooks
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` with the account's
`whsec_` secret; a timestamp more than 5 minutes off is refused).

    {"tracking_number": "1Z999AA10123456784",
     "carrier": "UPS",                                   # optional
     "estimated_delivery": "2026-12-02",                 # optional
     "events": [{"id": "scan-81723",                     # optional: dedupes by id, else content
                 "kind": "in_transit",                   # one of the seven kinds
                 "at": "2026-11-28T09:12:00Z",           # the carrier's time, with a zone
                 "location": "Louisville, KY, US",        # optional
                 "description": "Departed FedEx hub"}]}  # optional: the carrier's words
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticError
from standardwebhooks import Webhook, WebhookVerificationError

from agent_tools.carriers import PayloadInvalid, SignatureInvalid, content_key
from agent_tools.errors import field_path
from agent_tools.models.shipments import CarrierEventKind, TrackingEvent, TrackingUpdate

Line = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    kind: CarrierEventKind
    at: AwareDatetime
    location: Line | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = (
        None
    )


class _Update(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_number: Annotated[str, StringConstraints(min_length=1, max_length=80)]
    carrier: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    estimated_delivery: date | None = None
    events: Annotated[list[_Event], Field(max_length=500)]


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    try:
        Webhook(secret).verify(body, dict(headers), json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureInvalid(str(exc)) from None
    except ValueError:  # a malformed signature header, or a body that is not UTF-8
        raise SignatureInvalid("malformed webhook-signature") from None


def check_secret(secret: str) -> None:
    """Refuse a secret Standard Webhooks cannot use (it is base64, optionally `whsec_`)."""
    try:
        Webhook(secret)
    except Exception as exc:  # the library raises whatever base64 decoding raised
        raise ValueError("a generic account's secret is whsec_ followed by base64") from exc


def parse(payload: Any) -> list[TrackingUpdate]:
    try:
        update = _Update.model_validate(payload)
    except PydanticError as exc:
        first = exc.errors()[0]
        raise PayloadInvalid(f"{field_path(first['loc']) or 'body'}: {first['msg']}") from None
    events = tuple(
        TrackingEvent(
            kind=e.kind,
            at=e.at,
            location=e.location or None,
            description=e.description or None,
            carrier_status=None,
            dedupe_key=f"generic:id:{e.id}"
            if e.id
            else content_key("generic", e.at.isoformat(), e.kind, e.description, e.location),
        )
        for e in update.events
    )
    return [
        TrackingUpdate(
            tracking_number=update.tracking_number,
            carrier=update.carrier or None,
            events=events,
            estimated_delivery=update.estimated_delivery,
        )
    ]
