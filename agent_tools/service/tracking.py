"""What a customer may see of an order: tracking links, redaction, carrier links.

The public JSON endpoint, the tracking page and the `get_order_status` tool all build their
answer here, so they can never disagree about what is shown to whom.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import quote
from uuid import UUID

from pydantic import BaseModel

from agent_tools.config import Settings, get_settings
from agent_tools.db import Conn
from agent_tools.errors import NotFound
from agent_tools.models import FLOW, Order, OrderEvent, OrderStatus
from agent_tools.service.orders import get_order, get_order_with_events

_keys: dict[tuple[str, str, str], bytes] = {}

CARRIER_LINKS = {
    "ups": "https://www.ups.com/track?tracknum={n}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={n}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={n}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-express.html?tracking-id={n}",
}


async def signing_key(conn: Conn, settings: Settings | None = None) -> bytes:
    """The key behind tracking tokens: configured, or generated once and kept in the database."""
    settings = settings or get_settings()
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    ident = (str(conn.info.host), str(conn.info.port), conn.info.dbname)
    key = _keys.get(ident)
    if key is None:
        await conn.execute(
            "insert into agent_orders.instance (secret_key) values (%(k)s) on conflict do nothing",
            {"k": secrets.token_urlsafe(32)},
        )
        cur = await conn.execute("select secret_key from agent_orders.instance")
        row = await cur.fetchone()
        assert row is not None
        key = _keys[ident] = row["secret_key"].encode()
    return key


def tracking_token(key: bytes, order_id: object, version: int = 1) -> str:
    """192 bits of HMAC over the order's id and token version: unguessable, valid for that one
    order until the owner raises its version. Version 1 signs what the first links carried."""
    message = f"track:{order_id}" if version == 1 else f"track:{order_id}:v{version}"
    mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def order_token(key: bytes, order: Order) -> str:
    """The token of `order`'s current tracking links."""
    return tracking_token(key, order.id, order.tracking_token_version)


def tracking_url(key: bytes, order: Order, settings: Settings | None = None) -> str:
    base = (settings or get_settings()).public_url.rstrip("/")
    return f"{base}/track/{order.order_number}?token={order_token(key, order)}"


async def revoke_links(conn: Conn, key: UUID | str, *, owner_id: UUID | None = None) -> Order:
    """Invalidate every tracking link of one order handed out so far; new links work."""
    order = await get_order(conn, key, owner_id=owner_id)
    cur = await conn.execute(
        "update agent_orders.orders set tracking_token_version = tracking_token_version + 1"
        " where id = %(id)s returning tracking_token_version",
        {"id": order.id},
    )
    row = await cur.fetchone()
    assert row is not None
    return order.model_copy(update={"tracking_token_version": row["tracking_token_version"]})


def carrier_url(carrier: str | None, number: str | None) -> str | None:
    if not carrier or not number:
        return None
    pattern = CARRIER_LINKS.get(carrier.strip().lower())
    return pattern.format(n=quote(number, safe="")) if pattern else None


class TrackedItem(BaseModel):
    name: str
    quantity: int


class TrackedEvent(BaseModel):
    at: datetime
    kind: str
    status: OrderStatus | None
    note: str | None
    """Only in the full view, and only notes meant for the customer."""


class Contact(BaseModel):
    """Shown only to the order's customer (matching email or tracking token)."""

    name: str
    email: str | None
    phone: str | None
    shipping_address: dict[str, str]
    total: Decimal
    subtotal: Decimal
    shipping_fee: Decimal


class TrackingView(BaseModel):
    """What anyone with the order number sees: status, progress, dates and the delivery
    estimate. Items, destination, carrier, notes and personal details are null unless `full`
    (the order's email or its tracking link's token was given)."""

    order_number: str
    status: OrderStatus
    progress: int
    """Steps done out of the six of the normal flow; 0 when cancelled."""
    steps: list[OrderStatus]
    created_at: datetime
    updated_at: datetime
    estimated_delivery: date | None
    delivered_at: datetime | None
    timeline: list[TrackedEvent]
    full: bool
    """Whether the details below are included."""
    items: list[TrackedItem] | None
    currency: str | None
    carrier: str | None
    tracking_number: str | None
    carrier_url: str | None
    city: str | None
    country: str | None
    customer: Contact | None


def happened(event: OrderEvent) -> datetime:
    """When an event's step happened: the time its writer reported, else when it was recorded."""
    at = event.data.get("at")
    if isinstance(at, str):
        try:
            return datetime.fromisoformat(at)
        except ValueError:
            pass
    return event.created_at


def build_view(order: Order, events: list[OrderEvent], *, full: bool) -> TrackingView:
    address = order.shipping_address
    progress = 0 if order.status == OrderStatus.cancelled else FLOW.index(order.status) + 1
    timeline = [
        TrackedEvent(
            at=happened(e),
            kind=e.kind,
            status=e.to_status,
            note=e.note if full and e.note_visible else None,
        )
        for e in events
        # A note without its text says nothing: the public view leaves it out.
        if e.customer_visible and (full or e.kind != "note")
    ]
    return TrackingView(
        order_number=order.order_number,
        status=order.status,
        progress=progress,
        steps=list(FLOW),
        created_at=order.created_at,
        updated_at=order.updated_at,
        # Once delivered (or cancelled) an estimate is only noise, and a wrong one at that.
        estimated_delivery=None
        if order.status in (OrderStatus.delivered, OrderStatus.cancelled)
        else order.estimated_delivery,
        delivered_at=order.delivered_at,
        timeline=timeline,
        full=full,
        items=[TrackedItem(name=ln.name, quantity=ln.quantity) for ln in order.line_items]
        if full
        else None,
        currency=order.currency if full else None,
        carrier=order.carrier if full else None,
        tracking_number=order.tracking_number if full else None,
        carrier_url=carrier_url(order.carrier, order.tracking_number) if full else None,
        city=address.get("city") if full else None,
        country=address.get("country") if full else None,
        customer=Contact(
            name=order.customer_name,
            email=order.customer_email,
            phone=order.customer_phone,
            shipping_address={k: str(v) for k, v in address.items()},
            total=order.total,
            subtotal=order.subtotal,
            shipping_fee=order.shipping_fee,
        )
        if full
        else None,
    )


async def track(
    conn: Conn,
    order_number: str,
    *,
    email: str | None = None,
    token: str | None = None,
    agent_id: object = None,
) -> TrackingView:
    """The public view of an order. Personal details only with the matching email or token.

    A wrong email is answered exactly like an unknown number, so the two cannot be told apart.
    """
    try:
        order, events = await get_order_with_events(
            conn,
            order_number,
            agent_id=agent_id,  # type: ignore[arg-type]
            customer_visible_only=True,
        )
    except NotFound:
        raise NotFound(
            "no order with that number and email", hint="check the order number"
        ) from None
    full = False
    if token:
        key = await signing_key(conn)
        full = hmac.compare_digest(token.encode(), order_token(key, order).encode())
    if email is not None and not full:
        given = email.strip().lower()
        if not order.customer_email or not hmac.compare_digest(
            given.encode(), order.customer_email.encode()
        ):
            raise NotFound("no order with that number and email", hint="check the order number")
        full = True
    return build_view(order, events, full=full)
