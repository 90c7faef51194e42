"""Shipments: an order's parcels, their append-only carrier events, and what those events do
to the order's status.

The rule, in one place (`_advance`): an order is `shipped` once every line is in a shipment
and every shipment has had a carrier scan, and `delivered` (at the carrier's time) once every
shipment is delivered. Carrier events only ever move an order forward through the status
machine (`orders.update_status`): an old `in_transit` that arrives after `delivered` is kept
and shown, and changes nothing. Each event is stored once per shipment, keyed by the
provider's id or its content, so replays and duplicates add nothing.

Every function runs inside the caller's transaction and locks the order rows it may move
(in id order) before touching their shipments, so two parcels delivered at once cannot both
miss that the other one is delivered.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from agent_tools.carriers import carrier_url, content_key
from agent_tools.carriers.detect import carrier_name
from agent_tools.db import Conn
from agent_tools.errors import Conflict, InvalidTransition, NotFound, ValidationFailed, parse
from agent_tools.models import FINAL, FLOW, Order, OrderStatus, Provenance, allowed_next
from agent_tools.models.shipments import (
    CarrierEventIn,
    CarrierEventKind,
    IngestResult,
    Shipment,
    ShipmentIn,
    TrackingEvent,
    TrackingUpdate,
    UnmatchedUpdate,
    normalize_tracking_number,
)
from agent_tools.service import orders

SYSTEM = Provenance()
MAX_KEPT_EVENTS = 200
"""Events kept per unmatched tracking number (the newest)."""

_SHIPMENTS = (
    "select s.id, s.order_id, s.carrier, s.tracking_number, s.status, s.status_at,"
    " s.first_scan_at, s.delivered_at, s.estimated_delivery, s.created_at,"
    " (select coalesce(json_agg(json_build_object('line_index', l.line_index,"
    "   'quantity', l.quantity) order by l.line_index), '[]')"
    "  from agent_orders.shipment_lines l where l.shipment_id = s.id) as lines,"
    " (select coalesce(json_agg(json_build_object('kind', e.kind, 'at', e.occurred_at,"
    "   'location', e.location, 'description', e.description,"
    "   'carrier_status', e.carrier_status, 'source', e.source, 'received_at', e.received_at)"
    "   order by e.occurred_at, e.id), '[]')"
    "  from agent_orders.carrier_events e where e.shipment_id = s.id) as events"
    " from agent_orders.shipments s where s.order_id = %(order)s order by s.created_at, s.id"
)
"""An order's shipments with their lines and events: one round trip."""


def _shipment(order: Order, row: dict[str, Any]) -> Shipment:
    lines = []
    for ln in row["lines"]:
        item = (
            order.line_items[ln["line_index"]] if ln["line_index"] < len(order.line_items) else None
        )
        lines.append(
            {
                "line": ln["line_index"] + 1,
                "sku": item.sku if item else None,
                "name": item.name if item else "(line removed)",
                "quantity": ln["quantity"],
            }
        )
    return Shipment.model_validate(
        {
            **row,
            "lines": lines,
            "carrier_url": carrier_url(row["carrier"], row["tracking_number"]),
        }
    )


async def for_order(conn: Conn, order: Order) -> list[Shipment]:
    """The order's shipments, oldest first, each with its lines and carrier events."""
    cur = await conn.execute(_SHIPMENTS, {"order": order.id})
    return [_shipment(order, r) for r in await cur.fetchall()]


async def _allocated(conn: Conn, order_id: UUID) -> dict[int, int]:
    cur = await conn.execute(
        "select l.line_index, sum(l.quantity)::int as q from agent_orders.shipment_lines l"
        " join agent_orders.shipments s on s.id = l.shipment_id"
        " where s.order_id = %(order)s group by l.line_index",
        {"order": order_id},
    )
    return {r["line_index"]: r["q"] for r in await cur.fetchall()}


async def _insert(
    conn: Conn,
    order: Order,
    tracking_number: str,
    carrier: str,
    lines: dict[int, int],
    estimated_delivery: object = None,
) -> UUID:
    cur = await conn.execute(
        "insert into agent_orders.shipments (order_id, agent_id, carrier, tracking_number,"
        " estimated_delivery) values (%(order)s, %(agent)s, %(carrier)s, %(tn)s, %(eta)s)"
        " returning id",
        {
            "order": order.id,
            "agent": order.agent_id,
            "carrier": carrier,
            "tn": tracking_number,
            "eta": estimated_delivery,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(
        "insert into agent_orders.shipment_lines (shipment_id, line_index, quantity)"
        " select %(id)s, i, q from unnest(%(idx)s::int[], %(qs)s::int[]) as v(i, q)",
        {"id": row["id"], "idx": list(lines), "qs": list(lines.values())},
    )
    shipment_id: UUID = row["id"]
    return shipment_id


async def create_shipment(
    conn: Conn,
    key: UUID | str,
    data: ShipmentIn | dict[str, Any],
    *,
    owner_id: UUID | None = None,
    by: Provenance = SYSTEM,
) -> Shipment:
    """Add a parcel to an order: its tracking number, carrier (detected when not given) and
    lines (everything not yet shipped when none are given). Carrier updates kept for that
    number before it was known are applied to it at once."""
    new = parse(ShipmentIn, data)
    async with conn.transaction():
        order = await orders.get_order(conn, key, owner_id=owner_id, for_update=True)
        if order.status in FINAL:
            raise InvalidTransition(
                f"order {order.order_number} is {order.status.value}: it takes no new shipment",
                current=order.status.value,
                allowed=[],
            )
        taken = await _allocated(conn, order.id)
        left = {
            i: ln.quantity - taken.get(i, 0)
            for i, ln in enumerate(order.line_items)
            if ln.quantity > taken.get(i, 0)
        }
        if new.lines:
            lines: dict[int, int] = defaultdict(int)
            for n, ln in enumerate(new.lines):
                lines[ln.line - 1] += ln.quantity
                if ln.line > len(order.line_items):
                    raise ValidationFailed(
                        f"the order has {len(order.line_items)} lines, not {ln.line}",
                        field=f"lines[{n}].line",
                    )
                if lines[ln.line - 1] > left.get(ln.line - 1, 0):
                    raise ValidationFailed(
                        f"line {ln.line} has {left.get(ln.line - 1, 0)} left to ship",
                        field=f"lines[{n}].quantity",
                        hint="each unit ships in one shipment; see the order's shipments",
                    )
        elif left:
            lines = left
        else:
            raise Conflict(
                f"every line of order {order.order_number} is in a shipment already",
                hint="list the lines this parcel holds, or correct an existing shipment",
            )
        carrier = carrier_name(new.carrier, new.tracking_number)
        shipment_id = await _insert(
            conn, order, new.tracking_number, carrier, dict(lines), new.estimated_delivery
        )
        if order.tracking_number is None:
            # The order's own carrier fields name its first parcel (mails, older clients).
            await conn.execute(
                "update agent_orders.orders set tracking_number = %(tn)s, carrier = %(c)s,"
                " estimated_delivery = coalesce(estimated_delivery, %(eta)s),"
                " version = version + 1, updated_at = now() where id = %(id)s",
                {
                    "tn": new.tracking_number,
                    "c": carrier,
                    "eta": new.estimated_delivery,
                    "id": order.id,
                },
            )
        await orders.add_event(
            conn,
            order.id,
            "shipment_created",
            by,
            data={
                "shipment_id": str(shipment_id),
                "carrier": carrier,
                "tracking_number": new.tracking_number,
                "lines": [{"line": i + 1, "quantity": q} for i, q in sorted(lines.items())],
            },
        )
        kept = await _take_unmatched(conn, order.agent_id, new.tracking_number)
        if kept is not None:
            source, events = kept
            await _apply(conn, order.id, shipment_id, events, source)
        order = await orders.get_order(conn, order.id)
        for shipment in await for_order(conn, order):
            if shipment.id == shipment_id:
                return shipment
    raise AssertionError("the shipment just made is missing")  # pragma: no cover


async def record_event(
    conn: Conn,
    key: UUID | str,
    shipment_id: UUID,
    data: CarrierEventIn | dict[str, Any],
    *,
    owner_id: UUID | None = None,
) -> Shipment:
    """A carrier event the owner records by hand; it counts like one from a provider."""
    new = parse(CarrierEventIn, data)
    now = datetime.now(UTC)
    at = new.at or now
    if at > now + orders.FUTURE_SKEW:
        raise ValidationFailed("at is in the future", field="at")
    event = TrackingEvent(
        kind=new.kind,
        at=at,
        location=new.location,
        description=new.description,
        carrier_status=None,
        dedupe_key=content_key("owner", at.isoformat(), new.kind, new.description, new.location),
    )
    async with conn.transaction():
        order = await orders.get_order(conn, key, owner_id=owner_id, for_update=True)
        cur = await conn.execute(
            "select id from agent_orders.shipments where id = %(id)s and order_id = %(order)s",
            {"id": shipment_id, "order": order.id},
        )
        if await cur.fetchone() is None:
            raise NotFound(f"order {order.order_number} has no shipment {shipment_id}")
        await _apply(conn, order.id, shipment_id, [event], "owner")
        order = await orders.get_order(conn, order.id)
        return next(s for s in await for_order(conn, order) if s.id == shipment_id)


async def ingest(
    conn: Conn, agent_id: UUID, source: str, updates: list[TrackingUpdate]
) -> IngestResult:
    """Apply a provider's updates to the store's shipments with those tracking numbers; keep
    those no shipment has for the owner."""
    counts = {"events": 0, "new": 0, "shipments": 0, "unmatched": 0}
    async with conn.transaction():
        for update in updates:
            number = normalize_tracking_number(update.tracking_number)[:64]
            counts["events"] += len(update.events)
            cur = await conn.execute(
                "select s.id, s.order_id from agent_orders.shipments s"
                " where s.agent_id = %(agent)s and s.tracking_number = %(tn)s"
                " order by s.order_id",
                {"agent": agent_id, "tn": number},
            )
            found = await cur.fetchall()
            if not found:
                counts["unmatched"] += 1
                await _keep_unmatched(conn, agent_id, source, number, update)
                continue
            # Orders locked in id order: two webhooks for two orders never deadlock.
            await conn.execute(
                "select id from agent_orders.orders where id = any(%(ids)s) order by id for update",
                {"ids": sorted({r["order_id"] for r in found})},
            )
            for row in found:
                counts["shipments"] += 1
                if update.estimated_delivery is not None:
                    await conn.execute(
                        "update agent_orders.shipments set estimated_delivery = %(eta)s,"
                        " updated_at = now() where id = %(id)s",
                        {"eta": update.estimated_delivery, "id": row["id"]},
                    )
                counts["new"] += await _apply(
                    conn, row["order_id"], row["id"], list(update.events), source
                )
    return IngestResult(**counts)


async def _apply(
    conn: Conn, order_id: UUID, shipment_id: UUID, events: list[TrackingEvent], source: str
) -> int:
    """Store the events a shipment has not seen, refresh its state, tell the order's
    subscribers when its latest event is new, and move the order on. The order row is locked
    by the caller. Returns how many events were new."""
    if not events:
        return 0
    cur = await conn.execute(
        "insert into agent_orders.carrier_events (shipment_id, kind, occurred_at, location,"
        " description, carrier_status, source, dedupe_key)"
        " select %(shipment)s, k, t, l, d, c, %(source)s, key from unnest(%(kinds)s::text[],"
        " %(times)s::timestamptz[], %(locations)s::text[], %(descriptions)s::text[],"
        " %(statuses)s::text[], %(keys)s::text[]) as v(k, t, l, d, c, key)"
        " on conflict (shipment_id, dedupe_key) do nothing returning id",
        {
            "shipment": shipment_id,
            "source": source,
            "kinds": [e.kind.value for e in events],
            "times": [e.at for e in events],
            "locations": [e.location for e in events],
            "descriptions": [e.description for e in events],
            "statuses": [e.carrier_status for e in events],
            "keys": [e.dedupe_key for e in events],
        },
    )
    new_ids = {r["id"] for r in await cur.fetchall()}
    if not new_ids:
        return 0
    cur = await conn.execute(
        "update agent_orders.shipments s set updated_at = now(),"
        " status = latest.kind, status_at = latest.occurred_at,"
        " first_scan_at = (select min(occurred_at) from agent_orders.carrier_events"
        "   where shipment_id = s.id and kind <> 'label_created'),"
        " delivered_at = coalesce(s.delivered_at, (select min(occurred_at)"
        "   from agent_orders.carrier_events where shipment_id = s.id and kind = 'delivered'))"
        " from (select id, kind, occurred_at, location, description"
        "   from agent_orders.carrier_events where shipment_id = %(id)s"
        "   order by occurred_at desc, id desc limit 1) latest"
        " where s.id = %(id)s"
        " returning s.carrier, s.tracking_number, latest.id as event_id, latest.kind,"
        " latest.occurred_at, latest.location, latest.description",
        {"id": shipment_id},
    )
    latest = await cur.fetchone()
    assert latest is not None
    if latest["event_id"] in new_ids:
        # One order event per change of the parcel's latest state: webhooks, and the
        # customer's mail for "out for delivery" and a failed attempt. Older scans that
        # arrive late are kept and shown, without telling anyone twice.
        await orders.add_event(
            conn,
            order_id,
            f"shipment_{latest['kind']}",
            SYSTEM,
            data={
                "shipment_id": str(shipment_id),
                "carrier": latest["carrier"],
                "tracking_number": latest["tracking_number"],
                "at": latest["occurred_at"].isoformat(),
                "location": latest["location"],
                "description": latest["description"],
            },
        )
    await _advance(conn, order_id)
    return len(new_ids)


@dataclass(frozen=True)
class _State:
    first_scan_at: datetime | None
    delivered_at: datetime | None


def target_status(
    lines: list[int], allocated: dict[int, int], shipments: list[_State]
) -> tuple[OrderStatus, datetime] | None:
    """Where the shipments say the order is: `delivered` when every line is in a shipment and
    every shipment is delivered, `shipped` when they all have been scanned; else nowhere."""
    covered = all(allocated.get(i, 0) >= q for i, q in enumerate(lines))
    if not covered or not shipments:
        return None
    delivered = [s.delivered_at for s in shipments]
    if all(delivered):
        return OrderStatus.delivered, max(t for t in delivered if t)
    scanned = [s.first_scan_at for s in shipments]
    if all(scanned):
        return OrderStatus.shipped, max(t for t in scanned if t)
    return None


async def _advance(conn: Conn, order_id: UUID) -> None:
    order = await orders.get_order(conn, order_id)
    cur = await conn.execute(
        "select first_scan_at, delivered_at from agent_orders.shipments where order_id = %(id)s",
        {"id": order_id},
    )
    states = [_State(r["first_scan_at"], r["delivered_at"]) for r in await cur.fetchall()]
    found = target_status(
        [ln.quantity for ln in order.line_items], await _allocated(conn, order_id), states
    )
    if found is None or order.status in FINAL:
        return
    status, at = found
    # Forward only, and only along the machine's own edges.
    if FLOW.index(status) <= FLOW.index(order.status) or status not in allowed_next(order.status):
        return
    floor = max(t for t in (order.created_at, order.shipped_at) if t is not None)
    at = min(max(at, floor), datetime.now(UTC))
    await orders.update_status(conn, order_id, {"status": status, "at": at}, by=SYSTEM)


async def sync_from_order(conn: Conn, order: Order) -> None:
    """Keep the first shipment in step with the order's own carrier and tracking number, which
    the owner sets when moving the order (`PATCH .../status`): an order without shipments gets
    one holding every line."""
    if order.tracking_number is None:
        return
    number = normalize_tracking_number(order.tracking_number)[:64] or order.tracking_number
    carrier = carrier_name(order.carrier, number)
    cur = await conn.execute(
        "select id from agent_orders.shipments where order_id = %(id)s"
        " order by created_at, id limit 1",
        {"id": order.id},
    )
    first = await cur.fetchone()
    if first is None:
        lines = {i: ln.quantity for i, ln in enumerate(order.line_items) if ln.quantity > 0}
        await _insert(conn, order, number, carrier, lines, order.estimated_delivery)
        return
    await conn.execute(
        "update agent_orders.shipments set tracking_number = %(tn)s, carrier = %(carrier)s,"
        " estimated_delivery = coalesce(%(eta)s, estimated_delivery), updated_at = now()"
        " where id = %(id)s and (tracking_number, carrier, estimated_delivery)"
        "   is distinct from (%(tn)s, %(carrier)s, coalesce(%(eta)s, estimated_delivery))",
        {"id": first["id"], "tn": number, "carrier": carrier, "eta": order.estimated_delivery},
    )


# ---- updates no shipment has (yet) ------------------------------------------------------


def _event_json(e: TrackingEvent) -> dict[str, Any]:
    return {
        "kind": e.kind.value,
        "at": e.at.isoformat(),
        "location": e.location,
        "description": e.description,
        "carrier_status": e.carrier_status,
        "key": e.dedupe_key,
    }


async def _keep_unmatched(
    conn: Conn, agent_id: UUID, source: str, number: str, update: TrackingUpdate
) -> None:
    cur = await conn.execute(
        "select events from agent_orders.carrier_unmatched"
        " where agent_id = %(agent)s and tracking_number = %(tn)s for update",
        {"agent": agent_id, "tn": number},
    )
    row = await cur.fetchone()
    merged = {e["key"]: e for e in (row["events"] if row else [])}
    merged.update({e.dedupe_key: _event_json(e) for e in update.events})
    kept = sorted(merged.values(), key=lambda e: e["at"])[-MAX_KEPT_EVENTS:]
    await conn.execute(
        "insert into agent_orders.carrier_unmatched (agent_id, provider, tracking_number,"
        " carrier, events) values (%(agent)s, %(source)s, %(tn)s, %(carrier)s, %(events)s)"
        " on conflict (agent_id, tracking_number) do update set provider = excluded.provider,"
        " carrier = coalesce(excluded.carrier, carrier_unmatched.carrier),"
        " events = excluded.events, updates = carrier_unmatched.updates + 1,"
        " last_seen_at = now()",
        {
            "agent": agent_id,
            "source": source,
            "tn": number,
            "carrier": update.carrier,
            "events": Jsonb(kept),
        },
    )


async def _take_unmatched(
    conn: Conn, agent_id: UUID, number: str
) -> tuple[str, list[TrackingEvent]] | None:
    cur = await conn.execute(
        "delete from agent_orders.carrier_unmatched"
        " where agent_id = %(agent)s and tracking_number = %(tn)s returning provider, events",
        {"agent": agent_id, "tn": number},
    )
    row = await cur.fetchone()
    if row is None:
        return None
    events = [
        TrackingEvent(
            kind=CarrierEventKind(e["kind"]),
            at=datetime.fromisoformat(e["at"]),
            location=e["location"],
            description=e["description"],
            carrier_status=e["carrier_status"],
            dedupe_key=e["key"],
        )
        for e in row["events"]
    ]
    return row["provider"], events


async def list_unmatched(conn: Conn, owner_id: UUID, *, limit: int = 50) -> list[UnmatchedUpdate]:
    """Carrier updates no shipment of the owner's stores has, latest first."""
    if not 1 <= limit <= 100:
        raise ValidationFailed("limit must be between 1 and 100", field="limit")
    cur = await conn.execute(
        "select u.id, u.agent_id, u.provider, u.tracking_number, u.carrier, u.updates,"
        " u.first_seen_at, u.last_seen_at, jsonb_array_length(u.events) as events,"
        " u.events -> -1 ->> 'kind' as latest_kind, (u.events -> -1 ->> 'at') as latest_at"
        " from agent_orders.carrier_unmatched u join agent_orders.agents a on a.id = u.agent_id"
        " where a.owner_id = %(owner)s order by u.last_seen_at desc, u.id desc limit %(limit)s",
        {"owner": owner_id, "limit": limit},
    )
    return [UnmatchedUpdate.model_validate(r) for r in await cur.fetchall()]
