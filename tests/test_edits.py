"""Editing an order before it ships: the owner's `PATCH /api/orders/{id}` over HTTP and the
service under concurrency, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.errors import OrderError
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import agents, catalog, edits, orders
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OWNER, census, order_data

OWNER_BY = Provenance(actor=Actor.owner)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


async def place(db: Database, store: Agent, **extra: Any) -> Any:
    async with db.connection() as conn:
        return await orders.create_order(conn, order_data(store, **extra), by=OWNER_BY)


async def stock_of(db: Database, sku: str) -> int | None:
    async with db.connection() as conn:
        cur = await conn.execute(
            "select stock from agent_orders.products where sku = %(sku)s", {"sku": sku}
        )
        row = await cur.fetchone()
    assert row is not None
    return row["stock"]  # type: ignore[no-any-return]


async def outbox_types(db: Database, order_id: Any) -> list[str]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "select type from agent_orders.outbox where order_id = %(o)s order by event_id",
            {"o": order_id},
        )
        return [r["type"] for r in await cur.fetchall()]


class TestEditOrder:
    async def test_kept_units_keep_their_price_and_stock_moves_by_the_difference(
        self, db: Database, api: httpx.AsyncClient, store: Agent
    ) -> None:
        order = await place(db, store, items=[{"sku": "MUG-BLUE", "quantity": 2}])
        async with db.connection() as conn:  # the catalog price rises after the sale
            await catalog.upsert_products(
                conn,
                store.id,
                [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "15.00", "stock": 18}],
            )
        change = {
            "items": [{"sku": "MUG-BLUE", "quantity": 3}, {"sku": "MUG-RED", "quantity": 1}],
            "shipping_address": {"line1": "9 Elm St", "city": "Salem", "country": "US"},
        }
        preview = await api.patch(
            f"/api/orders/{order.order_number}?dry_run=true",
            json=change,
            headers={"If-Match": '"1"'},
        )
        assert preview.status_code == 200, preview.text
        plan = preview.json()
        assert plan["changed"] == ["items", "shipping_address"]
        assert plan["difference"] == "27.50" and plan["stock"] == {"MUG-BLUE": 1, "MUG-RED": 1}
        assert await stock_of(db, "MUG-BLUE") == 18  # a dry run writes nothing

        r = await api.patch(
            f"/api/orders/{order.order_number}", json=change, headers={"If-Match": '"1"'}
        )
        assert r.status_code == 200, r.text
        edited = r.json()
        assert r.headers["ETag"] == '"2"' and edited["version"] == 2
        assert [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in edited["line_items"]] == [
            ("MUG-BLUE", 2, "12.50"),  # sold at 12.50: stays 12.50
            ("MUG-BLUE", 1, "15.00"),  # the added unit: today's price
            ("MUG-RED", 1, "12.50"),
        ]
        assert (edited["subtotal"], edited["total"]) == ("52.50", "57.50")
        assert edited["shipping_address"]["city"] == "Salem"
        assert await stock_of(db, "MUG-BLUE") == 17 and await stock_of(db, "MUG-RED") == 4
        event = edited["status_history"][-1]
        assert event["kind"] == "edited" and event["customer_visible"]
        diff = event["data"]["diff"]
        assert diff["items"]["before"]["total"] == "30.00"
        assert diff["items"]["after"]["total"] == "57.50"
        assert diff["shipping_address"]["before"]["shipping_address"]["city"] == "Portland"
        assert event["data"]["difference"] == "27.50"
        # The edit reaches the outbox (webhooks, feed) like every event.
        assert await outbox_types(db, order.id) == ["order.created", "order.edited"]

        # Fewer units: they go back to stock; the remaining ones keep the lowest lines' prices.
        r = await api.patch(
            f"/api/orders/{order.id}", json={"items": [{"sku": "MUG-BLUE", "quantity": 1}]}
        )
        assert r.status_code == 200, r.text
        assert [(ln["quantity"], ln["unit_price"]) for ln in r.json()["line_items"]] == [
            (1, "12.50")
        ]
        assert await stock_of(db, "MUG-BLUE") == 19 and await stock_of(db, "MUG-RED") == 5

    async def test_refused_edits_write_nothing(
        self, db: Database, api: httpx.AsyncClient, store: Agent
    ) -> None:
        pending = await place(db, store)
        shipped = await place(db, store)
        processing = await place(db, store)
        async with db.connection() as conn:
            await orders.update_status(conn, shipped.id, {"status": "shipped"}, by=OWNER_BY)
            await orders.update_status(conn, processing.id, {"status": "processing"}, by=OWNER_BY)
        before = await census(db)
        cases: list[tuple[Any, dict[str, Any], int, str]] = [
            (
                shipped,
                {"shipping_address": {"line1": "x", "city": "y", "country": "US"}},
                409,
                "not_editable",
            ),
            (processing, {"customer_notes": "leave at the door"}, 409, "not_editable"),
            (pending, {"items": [{"sku": "NOPE-1", "quantity": 1}]}, 422, "unknown_sku"),
            (pending, {"items": [{"sku": "OLD-HAT", "quantity": 1}]}, 422, "unknown_sku"),
            (pending, {"items": [{"sku": "MUG-RED", "quantity": 6}]}, 409, "out_of_stock"),
            (pending, {"items": []}, 422, "validation"),
            (pending, {}, 422, "validation"),
            (pending, {"items": [{"sku": "MUG-BLUE", "quantity": 1}]}, 422, "validation"),
        ]
        for order, body, status, code in cases:
            r = await api.patch(f"/api/orders/{order.id}", json=body)
            problem = assert_problem(r, status, code)
            assert problem.get("hint") or code == "validation", problem
        assert await census(db) == before
        # The store may allow edits while processing.
        async with db.connection() as conn:
            await agents.update_agent(conn, store.id, {"editable_while_processing": True})
        r = await api.patch(f"/api/orders/{processing.id}", json={"customer_notes": "door"})
        assert r.status_code == 200, r.text

    async def test_a_paid_order_owes_or_is_refunded_the_difference(
        self, db: Database, api: httpx.AsyncClient, store: Agent
    ) -> None:
        order = await place(db, store, items=[{"sku": "MUG-BLUE", "quantity": 2}])  # 30.00
        r = await api.post(
            f"/api/orders/{order.id}/payments", json={"method": "bank transfer", "amount": "30.00"}
        )
        assert r.status_code in (200, 201), r.text
        three = {"items": [{"sku": "MUG-BLUE", "quantity": 3}]}
        plan = (await api.patch(f"/api/orders/{order.id}?dry_run=true", json=three)).json()
        assert (plan["owed"], plan["refund"]) == ("12.50", "0.00")
        dearer = (await api.patch(f"/api/orders/{order.id}", json=three)).json()
        # This store takes payment outside Stripe: the difference is owed, no link is made.
        assert (dearer["total"], dearer["amount_paid"]) == ("42.50", "30.00")
        assert dearer["payment_status"] == "pending"  # paid, but not all of it any more
        one = {"items": [{"sku": "MUG-BLUE", "quantity": 1}]}
        cheaper = (await api.patch(f"/api/orders/{order.id}", json=one)).json()
        assert (cheaper["total"], cheaper["amount_refunded"]) == ("17.50", "12.50")
        assert cheaper["payment_status"] == "partially_refunded"
        edited = [e for e in cheaper["status_history"] if e["kind"] == "edited"][-1]
        assert edited["data"]["refund"] == "12.50"
        assert "payment_refunded" in [e["kind"] for e in cheaper["status_history"]]

    async def test_two_owners_editing_one_order_one_wins(
        self, db: Database, api: httpx.AsyncClient, store: Agent
    ) -> None:
        order = await place(db, store)
        bodies = [
            {"shipping_address": {"line1": "1 First St", "city": "Salem", "country": "US"}},
            {"items": [{"sku": "MUG-BLUE", "quantity": 4}]},
        ]
        answers = await asyncio.gather(
            *(
                api.patch(f"/api/orders/{order.id}", json=b, headers={"If-Match": '"1"'})
                for b in bodies
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409], [r.text for r in answers]
        lost = next(r for r in answers if r.status_code == 409)
        assert assert_problem(lost, 409, "version_conflict")["current_version"] == 2
        async with db.connection() as conn:
            now = await orders.get_order(conn, order.id)
            events = await orders.list_events(conn, order.id)
        assert now.version == 2 and [e.kind for e in events] == ["created", "edited"]


async def test_parallel_edits_never_oversell_the_last_units(db: Database, store: Agent) -> None:
    """50 orders edited at once, each adding one unit of a product with 7 left: exactly 7
    edits win, the rest are refused whole, and stock ends at zero, never below."""
    async with db.connection() as conn:
        await catalog.upsert_products(
            conn, store.id, [{"sku": "LAST", "name": "Last few", "unit_price": "3.00", "stock": 7}]
        )
    placed = [await place(db, store, items=[{"sku": "TEE-M", "quantity": 1}]) for _ in range(50)]

    async def add_one(order_id: Any) -> str:
        async with db.connection() as conn:
            try:
                await edits.apply(
                    conn,
                    order_id,
                    {"items": [{"sku": "TEE-M", "quantity": 1}, {"sku": "LAST", "quantity": 1}]},
                    by=OWNER_BY,
                )
            except OrderError as exc:
                return exc.code
        return "ok"

    outcomes = await asyncio.gather(*(add_one(o.id) for o in placed))
    assert outcomes.count("ok") == 7
    assert set(outcomes) == {"ok", "out_of_stock"}
    assert await stock_of(db, "LAST") == 0
    async with db.connection() as conn:
        cur = await conn.execute(
            "select coalesce(sum((l->>'quantity')::int), 0) as n from agent_orders.orders o,"
            " jsonb_array_elements(o.line_items) l where l->>'sku' = 'LAST'"
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 7
    # Totals followed each winning edit.
    async with db.connection() as conn:
        page = await orders.list_orders(conn, owner_id=OWNER, limit=100)
    for o in page.orders:
        assert o.total == sum((ln.line_total for ln in o.line_items), Decimal(0)) + o.shipping_fee
