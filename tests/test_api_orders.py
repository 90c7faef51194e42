"""The owner's order endpoints over HTTP: create, list, read, status changes, stats,
idempotency and pagination, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import orders
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OWNER, order_data


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


def new_order(store: Agent, **extra: Any) -> dict[str, Any]:
    extra.setdefault("items", [{"sku": "MUG-BLUE", "quantity": 2}])
    extra.setdefault("agent_id", str(store.id))
    return order_data(store, **extra)


async def count_orders(db: Database) -> int:
    async with db.connection() as conn:
        cur = await conn.execute("select count(*) as n from agent_orders.orders")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


class TestCreateOrder:
    async def test_catalog_and_custom_lines(self, api: httpx.AsyncClient, store: Agent) -> None:
        body = new_order(
            store, custom_lines=[{"name": "Gift wrap", "quantity": 1, "unit_price": "3.10"}]
        )
        r = await api.post("/api/orders/", json=body)
        assert r.status_code == 201, r.text
        order = r.json()
        assert order["order_number"].startswith("ORD-")
        assert [(ln["sku"], ln["unit_price"], ln["line_total"]) for ln in order["line_items"]] == [
            ("MUG-BLUE", "12.50", "25.00"),
            (None, "3.10", "3.10"),
        ]
        # Money is an exact decimal string, never a float.
        assert (order["subtotal"], order["shipping_fee"], order["total"]) == (
            "28.10",
            "5.00",
            "33.10",
        )
        assert order["status"] == "pending"
        assert [e["kind"] for e in order["status_history"]] == ["created"]
        assert order["status_history"][0]["actor"] == "owner"
        assert order["allowed_next"][0] == "confirmed"
        assert "/track/" + order["order_number"] + "?token=" in order["tracking_url"]

    async def test_invalid_body_names_the_field(self, api: httpx.AsyncClient, store: Agent) -> None:
        body = new_order(store)
        body["customer"]["email"] = "not-an-email"
        problem = assert_problem(await api.post("/api/orders/", json=body), 422, "validation")
        assert problem["field"] == "body.customer.email"
        assert problem["invalid_params"][0]["field"] == "body.customer.email"

    async def test_business_errors_are_problems(self, api: httpx.AsyncClient, store: Agent) -> None:
        r = await api.post(
            "/api/orders/", json=new_order(store, items=[{"sku": "NOPE", "quantity": 1}])
        )
        assert assert_problem(r, 422, "unknown_sku")["skus"] == ["NOPE"]
        r = await api.post(
            "/api/orders/", json=new_order(store, items=[{"sku": "MUG-RED", "quantity": 6}])
        )
        assert_problem(r, 409, "out_of_stock")
        assert_problem(await api.post("/api/orders/", content=b"{"), 422, "validation")

    async def test_unknown_agent_is_404(self, api: httpx.AsyncClient, store: Agent) -> None:
        body = new_order(store, agent_id="00000000-0000-4000-8000-00000000dead")
        assert_problem(await api.post("/api/orders/", json=body), 404, "not_found")


class TestIdempotency:
    async def test_same_key_same_body_replays(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        headers = {"Idempotency-Key": "order-1"}
        first = await api.post("/api/orders/", json=new_order(store), headers=headers)
        again = await api.post("/api/orders/", json=new_order(store), headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await count_orders(db) == 1

    async def test_same_key_other_body_is_409(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        headers = {"Idempotency-Key": "order-1"}
        await api.post("/api/orders/", json=new_order(store), headers=headers)
        other = new_order(store, customer_notes="leave at the door")
        r = await api.post("/api/orders/", json=other, headers=headers)
        assert_problem(r, 409, "idempotency_key_reused")
        assert await count_orders(db) == 1

    async def test_keys_are_per_owner_and_failures_are_not_kept(
        self, db: Database, store: Agent
    ) -> None:
        from tests.conftest import OTHER_OWNER, make_store

        other_store = await make_store(db, OTHER_OWNER, "Other")
        headers = {"Idempotency-Key": "shared-name"}
        async with client(make_app(db)) as c:
            bad = new_order(store, items=[{"sku": "MUG-RED", "quantity": 99}])
            r = await c.post("/api/orders/", json=bad, headers={**headers, **bearer(OWNER)})
            assert r.status_code == 409
            # The failed attempt left the key free: the corrected retry goes through.
            r = await c.post(
                "/api/orders/", json=new_order(store), headers={**headers, **bearer(OWNER)}
            )
            assert r.status_code == 201
            r = await c.post(
                "/api/orders/",
                json=new_order(other_store),
                headers={**headers, **bearer(OTHER_OWNER)},
            )
            assert r.status_code == 201
            assert "Idempotent-Replayed" not in r.headers
        assert await count_orders(db) == 2

    async def test_keys_expire_after_24_hours(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        headers = {"Idempotency-Key": "old"}
        await api.post("/api/orders/", json=new_order(store), headers=headers)
        async with db.connection() as conn:
            await conn.execute(
                "update agent_orders.idempotency_keys set"
                " created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour'"
            )
        other = new_order(store, customer_notes="a new request")
        r = await api.post("/api/orders/", json=other, headers=headers)
        assert r.status_code == 201
        assert "Idempotent-Replayed" not in r.headers
        assert await count_orders(db) == 2

    async def test_100_parallel_posts_make_one_order(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        headers = {"Idempotency-Key": "burst"}
        body = new_order(store)
        responses = await asyncio.gather(
            *(api.post("/api/orders/", json=body, headers=headers) for _ in range(100))
        )
        assert {r.status_code for r in responses} == {201}, {r.text for r in responses}
        assert len({r.json()["id"] for r in responses}) == 1
        assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
        assert await count_orders(db) == 1


class TestListOrders:
    async def test_filters(self, api: httpx.AsyncClient, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            ann = await orders.create_order(conn, order_data(store))
            bob = await orders.create_order(
                conn,
                order_data(store, customer={"name": "Bob Stone", "email": "bob@example.com"}),
            )
            await orders.update_status(conn, bob.id, {"status": "shipped"})
        r = await api.get("/api/orders/")
        assert [o["order_number"] for o in r.json()["orders"]] == [
            bob.order_number,
            ann.order_number,
        ]
        assert r.json()["next_cursor"] is None

        async def numbers(**params: Any) -> list[str]:
            r = await api.get("/api/orders/", params=params)
            assert r.status_code == 200, r.text
            return [o["order_number"] for o in r.json()["orders"]]

        assert await numbers(status="shipped") == [bob.order_number]
        assert await numbers(status=["shipped", "pending"]) == [
            bob.order_number,
            ann.order_number,
        ]
        assert await numbers(search="bob@example.com") == [bob.order_number]
        assert await numbers(search="stone") == [bob.order_number]
        assert await numbers(search=ann.order_number.lower()) == [ann.order_number]
        assert await numbers(agent_id=str(store.id), created_from="2000-01-01") != []
        assert await numbers(created_to="2000-01-01T00:00:00Z") == []
        assert_problem(await api.get("/api/orders/", params={"status": "lost"}), 422, "validation")
        assert_problem(await api.get("/api/orders/", params={"limit": 101}), 422, "validation")
        r = await api.get("/api/orders/", params={"cursor": "garbage"})
        assert assert_problem(r, 422, "validation")["field"] == "cursor"

    async def test_pages_neither_skip_nor_repeat_while_inserting(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            before = [
                (
                    await orders.create_order(
                        conn, order_data(store, [{"sku": "DIME", "quantity": 1}])
                    )
                ).id
                for _ in range(23)
            ]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 5}
            if cursor:
                params["cursor"] = cursor
            page = (await api.get("/api/orders/", params=params)).json()
            seen += [o["id"] for o in page["orders"]]
            # New orders arrive between pages; they sort before the cursor, so never show up.
            async with db.connection() as conn:
                for _ in range(3):
                    await orders.create_order(
                        conn, order_data(store, [{"sku": "DIME", "quantity": 1}])
                    )
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        assert seen == [str(i) for i in reversed(before)]


class TestReadOrder:
    async def test_by_uuid_and_by_number(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
        by_id = await api.get(f"/api/orders/{order.id}")
        by_number = await api.get(f"/api/orders/{order.order_number}")
        assert by_id.status_code == by_number.status_code == 200
        assert by_id.json() == by_number.json()
        assert by_id.headers["ETag"] == '"1"'
        assert by_id.json()["customer_email"] == "ann@example.com"
        assert_problem(await api.get("/api/orders/ORD-1999-000000"), 404, "not_found")
        assert_problem(await api.get("/api/orders/whatever"), 404, "not_found")


class TestUpdateStatus:
    async def test_ship_with_tracking_and_if_match(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
        r = await api.patch(
            f"/api/orders/{order.order_number}/status",
            json={
                "status": "shipped",
                "carrier": "UPS",
                "tracking_number": "1Z999",
                "estimated_delivery": "2030-01-02",
                "note": "on its way",
            },
            headers={"If-Match": '"1"'},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["carrier"], body["tracking_number"]) == (
            "shipped",
            "UPS",
            "1Z999",
        )
        assert body["version"] == 2 and r.headers["ETag"] == '"2"'
        assert body["status_history"][-1]["to_status"] == "shipped"
        assert body["allowed_next"] == ["delivered"]

    async def test_stale_version_is_409_with_allowed(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            await orders.update_status(conn, order.id, {"status": "confirmed"})
        r = await api.patch(
            f"/api/orders/{order.id}/status",
            json={"status": "processing"},
            headers={"If-Match": '"1"'},
        )
        problem = assert_problem(r, 409, "version_conflict")
        assert problem["current_version"] == 2
        assert "processing" in problem["allowed"]
        r = await api.patch(
            f"/api/orders/{order.id}/status",
            json={"status": "processing"},
            headers={"If-Match": "x"},
        )
        assert_problem(r, 422, "validation")

    async def test_invalid_transition_is_409_with_allowed(
        self, api: httpx.AsyncClient, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            await orders.update_status(conn, order.id, {"status": "shipped"})
        r = await api.patch(f"/api/orders/{order.id}/status", json={"status": "cancelled"})
        problem = assert_problem(r, 409, "invalid_transition")
        assert problem["allowed"] == ["delivered"]
        assert problem["current"] == "shipped"


class TestStats:
    async def test_summary(self, api: httpx.AsyncClient, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            await orders.create_order(conn, order_data(store))
            gone = await orders.create_order(conn, order_data(store))
            await orders.cancel_order(conn, gone.id)
        r = await api.get("/api/orders/stats/summary", params={"agent_id": str(store.id)})
        assert r.status_code == 200, r.text
        stats = r.json()
        assert stats["total_orders"] == 2
        assert stats["revenue"] == {"USD": "17.50"}
        assert stats["by_status"]["cancelled"] == 1
        assert sum(d["orders"] for d in stats["per_day"]) == 2
        r = await api.get(
            "/api/orders/stats/summary",
            params={"created_from": "2030-01-01", "created_to": "2020-01-01"},
        )
        assert_problem(r, 422, "validation")
