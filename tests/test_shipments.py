"""Shipments: split parcels, the owner's own tracking fields, what the customer and the agent
see, today's orders becoming shipments, and no interleaving ever moving an order backwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_tools.db import Database
from agent_tools.errors import OrderError
from agent_tools.migrate import load_migrations, migrate
from agent_tools.models import FLOW, Agent, OrderStatus, Provenance, allowed_next
from agent_tools.models.shipments import CarrierEventKind, TrackingEvent, TrackingUpdate
from agent_tools.service import edits, orders, shipments
from agent_tools.tools import Toolkit
from tests.api_support import assert_problem, bearer, client, make_app
from tests.carrier_support import at, stamp
from tests.conftest import OWNER, drop_database, make_store, new_database, order_data
from tests.tools_support import context


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        yield c


async def placed_a_week_ago(db: Database, store: Agent, items: list[dict[str, Any]]) -> str:
    """A confirmed order, placed (and its events written) a week ago; its number."""
    async with db.connection() as conn:
        order = await orders.create_order(conn, order_data(store, items))
        await orders.update_status(conn, order.id, {"status": "confirmed"})
        for table, column in (("orders", "id"), ("order_events", "order_id")):
            await conn.execute(
                f"update agent_orders.{table} set created_at = created_at - interval '7 days'"
                f" where {column} = %(id)s",
                {"id": order.id},
            )
    return order.order_number


async def scan(
    api: httpx.AsyncClient, number: str, shipment: str, kind: str, hours: float
) -> dict[str, Any]:
    r = await api.post(
        f"/api/orders/{number}/shipments/{shipment}/events",
        json={"kind": kind, "at": at(hours).isoformat(), "location": f"Hub {hours}"},
        headers=bearer(OWNER),
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def ship_all(api: httpx.AsyncClient, number: str) -> str:
    """One UPS parcel holding the whole order; its id."""
    r = await api.post(
        f"/api/orders/{number}/shipments",
        json={"tracking_number": "1Z999AA10123456784"},
        headers=bearer(OWNER),
    )
    assert r.status_code == 201, r.text
    shipment: str = r.json()["id"]
    return shipment


async def status(api: httpx.AsyncClient, number: str) -> dict[str, Any]:
    r = await api.get(f"/api/orders/{number}", headers=bearer(OWNER))
    body: dict[str, Any] = r.json()
    return body


class TestSplitShipments:
    async def test_delivered_only_when_both_parcels_are(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(
            db, store, [{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "TEE-M", "quantity": 1}]
        )
        path = f"/api/orders/{number}/shipments"
        r = await api.post(
            path,
            json={"tracking_number": "1Z999AA10123456784", "lines": [{"line": 1, "quantity": 2}]},
            headers=bearer(OWNER),
        )
        assert r.status_code == 201, r.text
        mugs = r.json()
        assert mugs["carrier"] == "UPS" and mugs["lines"][0]["name"] == "Blue mug"
        await scan(api, number, mugs["id"], "in_transit", 1)
        # One parcel is moving, but the tee is in no shipment yet: not shipped.
        assert (await status(api, number))["status"] == "confirmed"

        r = await api.post(path, json={"tracking_number": "3318810025"}, headers=bearer(OWNER))
        tee = r.json()
        assert (tee["carrier"], tee["lines"][0]["name"]) == ("DHL", "Tee, M")
        assert (await status(api, number))["status"] == "confirmed"  # no scan of the tee yet
        await scan(api, number, tee["id"], "in_transit", 3)
        shipped = await status(api, number)
        assert shipped["status"] == "shipped"
        assert shipped["shipped_at"].startswith(stamp(3))  # when the last parcel left

        await scan(api, number, mugs["id"], "delivered", 20)
        assert (await status(api, number))["status"] == "shipped"
        public = (await api.get(f"/api/orders/track/{number}")).json()
        assert [(s["number"], s["status"]) for s in public["shipments"]] == [
            (1, "delivered"),
            (2, "in_transit"),
        ]

        await scan(api, number, tee["id"], "delivered", 30)
        done = await status(api, number)
        assert done["status"] == "delivered"
        assert done["delivered_at"].startswith(stamp(30))  # when the last parcel arrived
        # The same scan recorded twice is kept once.
        again = await scan(api, number, tee["id"], "delivered", 30)
        assert [e["kind"] for e in again["events"]] == ["in_transit", "delivered"]

    async def test_lines_are_shipped_once(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 2}])
        path = f"/api/orders/{number}/shipments"
        tn = "1Z999AA10123456784"
        r = await api.post(
            path,
            json={"tracking_number": tn, "lines": [{"line": 1, "quantity": 3}]},
            headers=bearer(OWNER),
        )
        assert_problem(r, 422, "validation")
        r = await api.post(
            path,
            json={"tracking_number": tn, "lines": [{"line": 2, "quantity": 1}]},
            headers=bearer(OWNER),
        )
        assert_problem(r, 422, "validation")
        r = await api.post(
            path,
            json={"tracking_number": tn, "lines": [{"line": 1, "quantity": 1}]},
            headers=bearer(OWNER),
        )
        assert r.status_code == 201
        r = await api.post(path, json={"tracking_number": "ABC123"}, headers=bearer(OWNER))
        assert r.json()["carrier"] == "other"  # unknown formats are not guessed
        assert r.json()["lines"][0]["quantity"] == 1  # the rest
        r = await api.post(path, json={"tracking_number": "ABC124"}, headers=bearer(OWNER))
        assert_problem(r, 409, "conflict")
        r = await api.post(
            f"/api/orders/{number}/shipments/00000000-0000-4000-8000-000000000000/events",
            json={"kind": "delivered"},
            headers=bearer(OWNER),
        )
        assert_problem(r, 404, "not_found")

    async def test_items_in_a_shipment_cannot_be_edited_away(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 2}])
        await ship_all(api, number)
        async with db.connection() as conn:
            with pytest.raises(OrderError) as refused:
                await edits.apply(
                    conn, number, {"items": [{"sku": "TEE-M", "quantity": 1}]}, by=Provenance()
                )
            assert refused.value.code == "not_editable"
            order, _ = await edits.apply(
                conn, number, {"internal_notes": "gift wrap"}, by=Provenance()
            )
        assert order.internal_notes == "gift wrap" and order.line_items[0].sku == "MUG-BLUE"


class TestOwnerTrackingFields:
    async def test_marking_shipped_with_a_number_makes_the_first_shipment(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 2}])
        r = await api.patch(
            f"/api/orders/{number}/status",
            json={"status": "shipped", "tracking_number": "1z 999 aa1 01 2345 6784"},
            headers=bearer(OWNER),
        )
        assert r.status_code == 200, r.text
        (first,) = (await api.get(f"/api/orders/{number}/shipments", headers=bearer(OWNER))).json()
        assert (first["tracking_number"], first["carrier"]) == ("1Z999AA10123456784", "UPS")
        assert first["lines"] == [{"line": 1, "sku": "MUG-BLUE", "name": "Blue mug", "quantity": 2}]
        # A corrected number corrects the shipment rather than adding one.
        r = await api.patch(
            f"/api/orders/{number}/status",
            json={"status": "shipped", "carrier": "FedEx", "tracking_number": "123456789012"},
            headers=bearer(OWNER),
        )
        (first,) = (await api.get(f"/api/orders/{number}/shipments", headers=bearer(OWNER))).json()
        assert (first["tracking_number"], first["carrier"]) == ("123456789012", "FedEx")
        await scan(api, number, first["id"], "delivered", 10)
        assert (await status(api, number))["status"] == "delivered"

    async def test_a_cancelled_order_stays_cancelled(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 1}])
        shipment = await ship_all(api, number)
        r = await api.patch(
            f"/api/orders/{number}/status", json={"status": "cancelled"}, headers=bearer(OWNER)
        )
        assert r.status_code == 200
        await scan(api, number, shipment, "delivered", 5)  # a parcel sent anyway is recorded
        assert (await status(api, number))["status"] == "cancelled"
        r = await api.post(
            f"/api/orders/{number}/shipments",
            json={"tracking_number": "X1234"},
            headers=bearer(OWNER),
        )
        assert_problem(r, 409, "invalid_transition")


class TestWhatCustomersSee:
    async def test_public_view_has_kinds_and_dates_full_view_has_places(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 1}])
        shipment = await ship_all(api, number)
        await api.post(
            f"/api/orders/{number}/shipments/{shipment}/events",
            json={
                "kind": "out_for_delivery",
                "at": at(4).isoformat(),
                "location": "Springfield depot",
                "description": "Van 12, driver Sam",
            },
            headers=bearer(OWNER),
        )
        public = await api.get(f"/api/orders/track/{number}")
        full = await api.post(f"/api/orders/track/{number}", json={"email": "ann@example.com"})
        for secret in ("Springfield", "Sam", "1Z999", "UPS"):
            assert secret not in public.text
            assert secret in full.text
        event = next(e for e in public.json()["timeline"] if e["shipment"] == 1)
        assert (event["kind"], event["location"], event["note"]) == ("out_for_delivery", None, None)
        assert event["at"].startswith(stamp(4))
        page = await api.get(f"/track/{number}")
        unlocked = await api.post(f"/track/{number}", data={"email": "ann@example.com"})
        assert "Springfield" not in page.text and "Springfield depot" in unlocked.text
        assert "Out for delivery" in page.text

    async def test_the_agent_hears_each_parcels_latest_scan(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        number = await placed_a_week_ago(db, store, [{"sku": "MUG-BLUE", "quantity": 1}])
        shipment = await ship_all(api, number)
        for kind, hours in (("in_transit", 1), ("in_transit", 2), ("out_for_delivery", 9)):
            await scan(api, number, shipment, kind, hours)
        toolkit = Toolkit(db)
        ctx = context(store)
        full = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": "ann@example.com"}
        )
        assert full["ok"], full
        (parcel,) = full["shipments"]
        assert parcel["latest"] == "out_for_delivery" and parcel["where"] == "Hub 9"
        assert parcel["carrier"] == "UPS" and parcel["at"].startswith(stamp(9)[:16])
        # Carrier scans are summarised per parcel, not poured into the timeline.
        assert all(e["event"] not in ("in_transit", "out_for_delivery") for e in full["timeline"])
        redacted = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        (parcel,) = redacted["shipments"]
        assert parcel == {"parcel": 1, "latest": "out_for_delivery", "at": parcel["at"]}


async def test_todays_tracking_numbers_become_first_shipments(server_url: str) -> None:
    """Migration 0015 on a database with orders: each tracking number becomes a shipment of
    every line, and a delivered order's shipment is delivered."""
    name, url = new_database(server_url, "template0")
    try:
        earlier = [m for m in load_migrations() if m.version < "0015"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "create schema agent_orders; create table agent_orders.schema_migrations ("
                " version text primary key, name text not null, checksum text not null,"
                " applied_at timestamptz not null default now())"
            )
            for m in earlier:
                conn.execute(m.sql.encode())
                conn.execute(
                    "insert into agent_orders.schema_migrations values (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            agent: Any = conn.execute(
                "insert into agent_orders.agents (owner_id, name, currency)"
                " values (%s, 'Old', 'USD') returning id",
                (OWNER,),
            ).fetchone()
            lines = (
                '[{"sku": "A", "name": "A", "quantity": 2, "unit_price": "1.00",'
                ' "line_total": "2.00"}, {"sku": null, "name": "Wrap", "quantity": 1,'
                ' "unit_price": "0.00", "line_total": "0.00"}]'
            )
            for n, (st_, tn, carrier) in enumerate(
                [
                    ("shipped", "1Z999AA10123456784", "UPS"),
                    ("delivered", "3318810025", None),
                    ("processing", None, None),
                ]
            ):
                conn.execute(
                    "insert into agent_orders.orders (order_number, agent_id, owner_id,"
                    " customer_name, shipping_address, line_items, subtotal, shipping_fee,"
                    " total, currency, status, tracking_number, carrier, shipped_at,"
                    " delivered_at) values (%s, %s, %s, 'Ann', '{}', %s, 2, 0, 2, 'USD', %s,"
                    " %s, %s, now() - interval '3 days',"
                    " case when %s = 'delivered' then now() - interval '1 day' end)",
                    (f"ORD-2025-00000{n}", agent[0], OWNER, lines, st_, tn, carrier, st_),
                )
        applied = await migrate(url)
        assert applied[0] == "0015_shipments.sql"
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "select o.status, s.carrier, s.tracking_number, s.status as parcel,"
                " s.delivered_at = o.delivered_at as same_time,"
                " (select json_agg(json_build_array(l.line_index, l.quantity)"
                "   order by l.line_index) from agent_orders.shipment_lines l"
                "   where l.shipment_id = s.id) as lines"
                " from agent_orders.shipments s join agent_orders.orders o on o.id = s.order_id"
                " order by o.order_number"
            ).fetchall()
        assert rows == [
            ("shipped", "UPS", "1Z999AA10123456784", None, None, [[0, 2], [1, 1]]),
            ("delivered", "other", "3318810025", "delivered", True, [[0, 2], [1, 1]]),
        ]
    finally:
        drop_database(server_url, name)


# ---- any interleaving ---------------------------------------------------------------------

OWNER_STEP = st.tuples(st.just("owner"), st.sampled_from(list(OrderStatus)))
CARRIER_STEP = st.tuples(
    st.just("carrier"),
    st.tuples(
        st.integers(0, 1),  # which parcel
        st.sampled_from(list(CarrierEventKind)),
        st.integers(0, 48),  # hours after T0: any order of arrival
    ),
)


class World:
    def __init__(self, db_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.db_url = db_url

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture
def world(db_url: str) -> Iterator[tuple[World, Database, Agent]]:
    w = World(db_url)
    db = w.run(Database.open(db_url, migrate=False, min_size=1, max_size=2))
    store = w.run(make_store(db))
    yield w, db, store
    w.run(db.close())
    w.loop.close()


async def _interleave(db: Database, store: Agent, steps: list[tuple[str, Any]]) -> None:
    async with db.connection() as conn:
        order = await orders.create_order(
            conn,
            order_data(store, [{"sku": "TEE-M", "quantity": 1}, {"sku": "DIME", "quantity": 1}]),
        )
        await conn.execute(
            "update agent_orders.orders set created_at = now() - interval '7 days'"
            " where id = %(id)s",
            {"id": order.id},
        )
        numbers = [f"PARCEL{order.order_number[-6:]}{i}" for i in range(2)]
        for i, number in enumerate(numbers):
            await shipments.create_shipment(
                conn,
                order.id,
                {"tracking_number": number, "lines": [{"line": i + 1, "quantity": 1}]},
            )
        seen = [(await orders.get_order(conn, order.id)).status]
        for who, what in steps:
            if who == "owner":
                with suppress(OrderError):  # a refused move is the machine doing its job
                    await orders.update_status(conn, order.id, {"status": what})
            else:
                parcel, kind, hours = what
                event = TrackingEvent(
                    kind=kind,
                    at=datetime.now(UTC) - timedelta(days=5) + timedelta(hours=hours),
                    location=None,
                    description=None,
                    carrier_status=None,
                    dedupe_key=f"{kind}-{hours}",
                )
                await shipments.ingest(
                    conn, store.id, "generic", [TrackingUpdate(numbers[parcel], None, (event,))]
                )
            now = (await orders.get_order(conn, order.id)).status
            before = seen[-1]
            assert now == before or now in allowed_next(before), (before, now)
            if now != OrderStatus.cancelled and before != OrderStatus.cancelled:
                assert FLOW.index(now) >= FLOW.index(before)
            seen.append(now)
        # The recorded history agrees: every change is an edge of the machine.
        for e in await orders.list_events(conn, order.id):
            if e.from_status is not None and e.to_status != e.from_status:
                assert e.to_status in allowed_next(e.from_status), e


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.one_of(OWNER_STEP, CARRIER_STEP), min_size=1, max_size=12))
def test_no_interleaving_moves_an_order_backwards(
    world: tuple[World, Database, Agent], steps: list[tuple[str, Any]]
) -> None:
    w, db, store = world
    w.run(_interleave(db, store, steps))
