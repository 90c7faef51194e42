"""Order events going out: their webhook types, their bodies, and the owner's events feed.

Every `order_events` row is copied into `outbox` by a trigger (migration 0007) in the
transaction that writes it, with the order as it was then; webhook deliveries and customer
emails are fanned out there too. So whatever code adds an event, today's or a later one,
its notifications are durable exactly when the change commits.

The feed pages by the writing transaction's id, and only returns rows whose transaction is
older than the oldest one still running: ids are handed out at insert, not at commit, so
a reader paging by `id > last_seen` would skip an event whose transaction commits after a
later-numbered one has been read. Below the snapshot's xmin every transaction has ended,
so nothing can appear behind the cursor any more.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, StringConstraints, ValidationError

from agent_tools.config import Settings, get_settings
from agent_tools.db import Conn
from agent_tools.errors import ValidationFailed
from agent_tools.models import Order, OrderEvent, OrderStatus, allowed_next
from agent_tools.service import tracking

log = logging.getLogger(__name__)

_TYPES = (
    "select distinct coalesce(k.webhook_type, agent_orders.webhook_type(k.kind, s.status)) as t"
    " from agent_orders.event_kinds k"
    " cross join unnest(array[null] || %(statuses)s::text[]) as s(status)"
    " order by 1"
)
"""Every webhook type an event can go out as: the registered kinds' own types, and the
order's status moves (`order.status_changed` covers those without a type of their own)."""


async def event_types(conn: Conn) -> list[str]:
    """The webhook types an endpoint may subscribe to (`ping` is only sent by the endpoint
    test). Each capability registers its kinds in `agent_orders.event_kinds`."""
    cur = await conn.execute(_TYPES, {"statuses": [s.value for s in OrderStatus]})
    return [r["t"] for r in await cur.fetchall()]


EventType = Annotated[str, StringConstraints(pattern=r"^([a-z]{1,20}\.[a-z_.]{1,40}|ping)$")]


class FeedPage(BaseModel):
    events: list[dict[str, Any]]
    """Each `{id, type, timestamp, data}`: the webhook body plus the event's id."""
    next_cursor: str
    """Pass as `after` for the next page; the same cursor again when nothing is new yet."""


def encode_cursor(xid: int, event_id: int) -> str:
    raw = f"{xid}.{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        xid, event_id = raw.split(".")
        return int(xid), int(event_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("the cursor is not one this API returned", field="after") from exc


def timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ROWS = (
    "select x.event_id, x.type, x.xid::text::bigint as xid, x.order_snapshot::text as snapshot,"
    " e.kind, e.from_status, e.to_status, e.note, e.actor, e.customer_visible, e.note_visible,"
    " e.conversation_id, e.tool_call_id, e.data, e.created_at"
    " from agent_orders.outbox x join agent_orders.order_events e on e.id = x.event_id"
)


async def _history(conn: Conn, rows: list[dict[str, Any]]) -> dict[UUID, list[OrderEvent]]:
    """The events of these rows' orders, up to the newest of the rows, oldest first."""
    orders = list({UUID(str(json.loads(r["snapshot"])["id"])) for r in rows})
    cur = await conn.execute(
        "select id, order_id, kind, from_status, to_status, note, actor, customer_visible,"
        " note_visible, conversation_id, tool_call_id, data, created_at"
        " from agent_orders.order_events"
        " where order_id = any(%(orders)s) and id <= %(last)s order by id",
        {"orders": orders, "last": max(r["event_id"] for r in rows)},
    )
    out: dict[UUID, list[OrderEvent]] = defaultdict(list)
    for r in await cur.fetchall():
        out[r["order_id"]].append(OrderEvent.model_validate(r))
    return out


async def bodies(
    conn: Conn, event_ids: list[int], settings: Settings | None = None
) -> dict[int, dict[str, Any]]:
    """The webhook body `{type, timestamp, data: {order, event}}` of each event. `order` is
    what `GET /api/orders/{id}` returned right after the event (its history up to it). An
    event whose snapshot cannot be read is left out (and logged)."""
    if not event_ids:
        return {}
    cur = await conn.execute(_ROWS + " where x.event_id = any(%(ids)s)", {"ids": event_ids})
    return await _render(conn, await cur.fetchall(), settings)


async def _render(
    conn: Conn, rows: list[dict[str, Any]], settings: Settings | None
) -> dict[int, dict[str, Any]]:
    if not rows:
        return {}
    settings = settings or get_settings()
    key = await tracking.signing_key(conn, settings)
    history = await _history(conn, rows)
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        # Parsed with Decimal: the snapshot's amounts are JSON numbers, never floats here.
        try:
            order = Order.model_validate(json.loads(r["snapshot"], parse_float=Decimal))
        except ValidationError:
            # One unreadable snapshot must not hold up the events claimed beside it: it has no
            # body, and its deliveries fail (and are retried) on their own.
            log.exception("event %s: its order snapshot does not validate", r["event_id"])
            continue
        detail = order.model_dump(mode="json")
        detail["status_history"] = [
            e.model_dump(mode="json") for e in history[order.id] if e.id <= r["event_id"]
        ]
        detail["allowed_next"] = [s.value for s in allowed_next(order.status)]
        detail["tracking_url"] = tracking.tracking_url(key, order, settings)
        event = {
            "id": r["event_id"],
            "kind": r["kind"],
            "from_status": r["from_status"],
            "to_status": r["to_status"],
            "note": r["note"],
            "actor": r["actor"],
            "customer_visible": r["customer_visible"],
            "note_visible": r["note_visible"],
            "data": r["data"],
            "created_at": timestamp(r["created_at"]),
        }
        out[r["event_id"]] = {
            "type": r["type"],
            "timestamp": timestamp(r["created_at"]),
            "data": {"order": detail, "event": event},
        }
    return out


async def feed(
    conn: Conn,
    owner_id: UUID,
    *,
    after: str | None = None,
    types: list[str] | None = None,
    limit: int = 100,
    settings: Settings | None = None,
) -> FeedPage:
    """The owner's events after `after`, in a stable order that a late commit cannot
    slip behind (see the module's docstring)."""
    if not 1 <= limit <= 500:
        raise ValidationFailed("limit must be between 1 and 500", field="limit")
    xid, event_id = decode_cursor(after) if after else (0, 0)
    cur = await conn.execute(
        _ROWS + " where x.owner_id = %(owner)s"
        " and (x.xid, x.event_id) > (%(xid)s::text::xid8, %(id)s)"
        " and x.xid < pg_snapshot_xmin(pg_current_snapshot())"
        " and (%(types)s::text[] is null or x.type = any(%(types)s))"
        " order by x.xid, x.event_id limit %(limit)s",
        {"owner": owner_id, "xid": xid, "id": event_id, "types": types or None, "limit": limit},
    )
    rows = await cur.fetchall()
    rendered = await _render(conn, rows, settings)
    events = [
        {"id": str(r["event_id"]), **rendered[r["event_id"]]}
        for r in rows
        if r["event_id"] in rendered
    ]
    last = (rows[-1]["xid"], rows[-1]["event_id"]) if rows else (xid, event_id)
    return FeedPage(events=events, next_cursor=encode_cursor(*last))
