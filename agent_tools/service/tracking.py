"""What a customer may see of an order: tracking links, redaction, carrier links.

The public JSON endpoint, the tracking page and the `get_order_status` tool all build their
answer here, so they can never disagree about what is shown to whom.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel

from agent_tools.carriers import carrier_url as carrier_url
from agent_tools.config import Settings, get_settings
from agent_tools.db import Conn
from agent_tools.errors import NotFound
from agent_tools.models import FLOW, Order, OrderStatus
from agent_tools.models.shipments import CarrierEventKind
from agent_tools.service.orders import COLUMNS, ORDER_NUMBER, get_order

_keys: dict[tuple[str, str, str], bytes] = {}


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


class TrackedItem(BaseModel):
    name: str
    quantity: int


class TrackedEvent(BaseModel):
    at: datetime
    kind: str
    """An order event's kind, or for a carrier scan its kind (`in_transit`, `delivered` ...)."""
    status: OrderStatus | None
    note: str | None
    """Only in the full view: notes meant for the customer, and the carrier's own words."""
    shipment: int | None = None
    """For a carrier scan, which of the order's shipments (from 1)."""
    location: str | None = None
    """Only in the full view: where the carrier scanned the parcel."""


class TrackedShipment(BaseModel):
    """One parcel: its state for anyone with the number; carrier, number and contents only in
    the full view."""

    number: int
    """From 1, in the order the shipments were made."""
    status: CarrierEventKind | None
    """The carrier's latest word (null until its first scan)."""
    status_at: datetime | None
    delivered_at: datetime | None
    estimated_delivery: date | None
    carrier: str | None
    tracking_number: str | None
    carrier_url: str | None
    items: list[TrackedItem] | None


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
    """Oldest first; carrier scans placed by the carrier's time among the order's steps."""
    shipments: list[TrackedShipment] = []
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


def _iso(column: str) -> str:
    """`column` (a timestamptz) as JSON text the way the API writes times everywhere else:
    UTC, "Z", microseconds only when there are any."""
    return (
        f"case when {column} is not null then to_char({column} at time zone 'UTC',"
        f" 'YYYY-MM-DD\"T\"HH24:MI:SS') || case when date_trunc('second', {column}) <> {column}"
        f" then to_char({column} at time zone 'UTC', '.US') else '' end || 'Z' end"
    )


# When a step happened: the time its writer reported (`data.at`, always written from a
# datetime), else when it was recorded. The pattern keeps a malformed value from failing the read.
_HAPPENED = (
    "case when e.data->>'at' ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d'"
    " then (e.data->>'at')::timestamptz else e.created_at end"
)
_NOT_NOTE = " and e.kind <> 'note'"
_STEPS = ", ".join(f"'{s.value}'" for s in FLOW)  # constants of the code, not input
_STEPS_JSON = "'[" + ",".join(f'"{s.value}"' for s in FLOW) + "]'"


def _value(expr: str) -> str:
    """An SQL value as JSON text (null stays SQL null, for `_object` to write)."""
    return f"to_json({expr})::text"


def _object(*fields: tuple[str, str]) -> str:
    """SQL building a compact JSON object (as Python's JSON writers do: no spaces) in the order
    given; each value is SQL giving JSON text, or null."""
    parts = " || ',' || ".join(
        f"'\"{name}\":' || coalesce({value}, 'null')" for name, value in fields
    )
    return "('{' || " + parts + " || '}')"


def _array(element: str, source: str, order: str, brackets: str = "[]") -> str:
    """SQL building a compact JSON array of `element` (JSON text) over the rows of `source`;
    with `brackets="{}"` and `"key":value` elements, an object."""
    return (
        f"(select '{brackets[0]}' || coalesce(string_agg({element}, ',' order by {order}), '')"
        f" || '{brackets[1]}' from {source})"
    )


def _view_sql(full: bool) -> str:
    """The one place the tracking view is built: compact JSON text over the order row `o`, in
    the field order of `TrackingView`. `full` adds what only the order's customer may see.

    Built by the database so that the public route sends it as it comes: nothing to parse,
    validate or serialise in Python on the busiest path."""

    def only_full(expr: str) -> str:
        return expr if full else "null"

    visible = (
        "e.order_id = o.id and e.customer_visible"
        # A note without its text says nothing: the public view leaves it out. A parcel's
        # state changes are shown as its carrier scans, below.
        f"{'' if full else _NOT_NOTE} and e.kind not in ({_PARCEL_KINDS})"
    )
    # The order's steps keep their order (by id); each carrier scan goes, in the carrier's
    # order, just before the first step that happened no earlier than it.
    events = (
        f"(select e.id as k1, 1 as k2, null::timestamptz as k3, e.kind, e.to_status, e.note,"
        f" e.note_visible, {_HAPPENED} as at, null::int as shipment, null as location"
        f" from agent_orders.order_events e where {visible}"
        " union all"
        f" select coalesce((select min(e.id) from agent_orders.order_events e where {visible}"
        f"   and {_HAPPENED} >= c.occurred_at), 9223372036854775807), 0, c.occurred_at, c.kind,"
        " null, c.description, true, c.occurred_at, s.number, c.location"
        f" from {_PARCELS} join agent_orders.carrier_events c on c.shipment_id = s.id) t"
    )
    event = _object(
        ("at", _value(_iso("t.at"))),
        ("kind", _value("t.kind")),
        ("status", _value("t.to_status")),
        ("note", only_full(_value("case when t.note_visible then t.note end"))),
        ("shipment", _value("t.shipment")),
        ("location", only_full(_value("t.location"))),
    )
    parcel_item = _object(
        ("name", _value("coalesce(o.line_items->sl.line_index->>'name', '')")),
        ("quantity", _value("sl.quantity")),
    )
    parcel = _object(
        ("number", _value("s.number")),
        ("status", _value("s.status")),
        ("status_at", _value(_iso("s.status_at"))),
        ("delivered_at", _value(_iso("s.delivered_at"))),
        (
            "estimated_delivery",
            _value("case when s.delivered_at is null then s.estimated_delivery end"),
        ),
        ("carrier", only_full(_value("s.carrier"))),
        ("tracking_number", only_full(_value("s.tracking_number"))),
        # Filled in by `Lookup.view`, like the order's own.
        ("carrier_url", "null"),
        (
            "items",
            only_full(
                _array(
                    parcel_item,
                    "agent_orders.shipment_lines sl where sl.shipment_id = s.id",
                    "sl.line_index",
                )
            ),
        ),
    )
    item = _object(
        ("name", _value("li.v->>'name'")), ("quantity", _value("(li.v->>'quantity')::int"))
    )
    address = _array(
        "to_json(a.key)::text || ':' || to_json(a.value)::text",
        "jsonb_each_text(o.shipping_address) with ordinality as a(key, value, n)",
        "a.n",
        "{}",
    )
    customer = _object(
        ("name", _value("o.customer_name")),
        ("email", _value("o.customer_email")),
        ("phone", _value("o.customer_phone")),
        ("shipping_address", address),
        ("total", _value("o.total::text")),
        ("subtotal", _value("o.subtotal::text")),
        ("shipping_fee", _value("o.shipping_fee::text")),
    )
    return _object(
        ("order_number", _value("o.order_number")),
        ("status", _value("o.status")),
        (
            "progress",
            "case when o.status = 'cancelled' then '0'"
            f" else array_position(array[{_STEPS}], o.status)::text end",
        ),
        ("steps", _STEPS_JSON),
        ("created_at", _value(_iso("o.created_at"))),
        ("updated_at", _value(_iso("o.updated_at"))),
        # Once delivered (or cancelled) an estimate is only noise, and a wrong one at that.
        (
            "estimated_delivery",
            "case when o.status in ('delivered', 'cancelled') then null"
            f" else {_value('o.estimated_delivery')} end",
        ),
        ("delivered_at", _value(_iso("o.delivered_at"))),
        ("timeline", _array(event, events, "t.k1, t.k2, t.k3")),
        ("shipments", _array(parcel, _PARCELS, "s.number")),
        ("full", "'true'" if full else "'false'"),
        ("items", only_full(_array(item, _LINES, "li.n"))),
        ("currency", only_full(_value("o.currency"))),
        ("carrier", only_full(_value("o.carrier"))),
        ("tracking_number", only_full(_value("o.tracking_number"))),
        # Filled in by `Lookup.view`: the carrier's link is made from a table in this module.
        ("carrier_url", "null"),
        ("city", only_full(_value("o.shipping_address->>'city'"))),
        ("country", only_full(_value("o.shipping_address->>'country'"))),
        ("customer", only_full(customer)),
    )


_LINES = "jsonb_array_elements(o.line_items) with ordinality as li(v, n)"
_PARCELS = (
    "(select s.*, row_number() over (order by s.created_at, s.id) as number"
    " from agent_orders.shipments s where s.order_id = o.id) s"
)
"""The order's shipments, numbered from 1 in the order they were made."""
_PARCEL_KINDS = ", ".join(f"'shipment_{k.value}'" for k in CarrierEventKind)  # constants


_BY = {"number": "o.order_number = %(key)s", "id": "o.id = %(key)s"}
_PUBLIC_MANY = (
    f"select o.order_number, o.id::text as id, {_view_sql(False)} as view"
    " from agent_orders.orders o"
    " where o.order_number = any(%(numbers)s::text[]) or o.id = any(%(ids)s::uuid[])"
)
"""Public views alone, as JSON text: what the busiest public route sends as it comes."""
_LOOKUP = {
    k: f"select {COLUMNS}, {_view_sql(False)} as public_view, {_view_sql(True)} as full_view"
    " from agent_orders.orders o"
    f" where {w} and (%(agent)s::uuid is null or o.agent_id = %(agent)s)"
    for k, w in _BY.items()
}
"""The order and both of its views in one round trip, for callers that decide who sees what."""


def _key(number: str) -> tuple[str, object]:
    """Which lookup an order number (or id) takes; `NotFound` when it is neither."""
    text = number.strip()
    if ORDER_NUMBER.match(text.upper()):
        return "number", text.upper()
    try:
        return "id", UUID(text)
    except ValueError:
        raise NotFound(
            "no order with that number and email", hint="check the order number"
        ) from None


def public_key(order_number: str) -> str:
    """What `public_views` looks an order up by: its number, upper case, or its id's canonical
    text. `NotFound` when the text is neither."""
    return str(_key(order_number)[1])


async def public_views(conn: Conn, keys: list[str]) -> dict[str, bytes]:
    """The public views of the orders of `keys` (from `public_key`) as JSON bytes, built by the
    database in one statement: nothing to parse, validate or serialise on the way out. An
    order that does not exist is left out."""
    numbers: list[str] = []
    ids: list[str] = []
    for key in keys:
        (numbers if ORDER_NUMBER.match(key) else ids).append(key)
    cur = await conn.execute(_PUBLIC_MANY, {"numbers": numbers, "ids": ids}, prepare=True)
    found: dict[str, bytes] = {}
    for row in await cur.fetchall():
        view = str(row["view"]).encode()
        found[row["order_number"]] = view
        found[row["id"]] = view
    return found


@dataclass(frozen=True)
class Lookup:
    """An order with its public and full views (JSON text from `_view_sql`)."""

    order: Order
    public: str
    full: str

    def view(self, *, full: bool) -> TrackingView:
        data = json.loads(self.full if full else self.public)
        if full:
            data["carrier_url"] = carrier_url(data["carrier"], data["tracking_number"])
            for parcel in data["shipments"]:
                parcel["carrier_url"] = carrier_url(parcel["carrier"], parcel["tracking_number"])
        return TrackingView.model_validate(data)


async def lookup(conn: Conn, order_number: str, *, agent_id: UUID | None = None) -> Lookup:
    """The order and both views; `NotFound` when there is none (within `agent_id`)."""
    which, key = _key(order_number)
    cur = await conn.execute(_LOOKUP[which], {"key": key, "agent": agent_id})
    row = await cur.fetchone()
    if row is None:
        raise NotFound("no order with that number and email", hint="check the order number")
    public, full = row.pop("public_view"), row.pop("full_view")
    return Lookup(Order.model_validate(row), public, full)


async def track(
    conn: Conn,
    order_number: str,
    *,
    email: str | None = None,
    token: str | None = None,
) -> TrackingView:
    """The view of an order for whoever asks. Personal details only with the matching email or
    token. A wrong email is answered exactly like an unknown number, so the two cannot be told
    apart."""
    found = await lookup(conn, order_number)
    order = found.order
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
    return found.view(full=full)
