"""The order service on a real PostgreSQL: pricing, stock, numbers, states, no half-writes."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import pytest

from agent_tools.db import Database
from agent_tools.errors import (
    CurrencyMismatch,
    InvalidTransition,
    NotFound,
    OrderError,
    OutOfStock,
    UnknownSku,
    ValidationFailed,
    VersionConflict,
)
from agent_tools.models import Agent, OrderStatus
from agent_tools.service import catalog, orders
from tests.conftest import OTHER_OWNER, OWNER, census, make_store, order_data


class TestCreateOrder:
    async def test_prices_come_from_the_catalog(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn,
                order_data(
                    store, [{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "TEE-M", "quantity": 1}]
                ),
            )
        assert order.status == OrderStatus.pending
        assert [(ln.sku, ln.unit_price, ln.line_total) for ln in order.line_items] == [
            ("MUG-BLUE", Decimal("12.50"), Decimal("25.00")),
            ("TEE-M", Decimal("19.99"), Decimal("19.99")),
        ]
        assert order.subtotal == Decimal("44.99")
        assert order.shipping_fee == Decimal("5.00")
        assert order.total == Decimal("49.99")
        assert order.currency == "USD"
        assert (await census(db))["stock"]["MUG-BLUE"] == 18

    async def test_money_is_exact_over_many_lines(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn,
                order_data(
                    store,
                    [{"sku": "DIME", "quantity": 7}] * 50 + [{"sku": "TEE-M", "quantity": 3}] * 50,
                ),
            )
        # 350 x 0.10 + 150 x 19.99 = 35.00 + 2998.50, exactly; floats would drift.
        assert order.subtotal == Decimal("3033.50")
        assert order.total == Decimal("3038.50")
        assert sum(ln.line_total for ln in order.line_items) == order.subtotal

    async def test_order_number_format(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            fetched = await orders.get_order(conn, order.order_number.lower())
        assert re.fullmatch(r"ORD-\d{4}-\d{6,}", order.order_number)
        assert fetched.id == order.id

    async def test_created_event_is_recorded(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            events = await orders.list_events(conn, order.id)
        assert [(e.kind, e.to_status) for e in events] == [("created", OrderStatus.pending)]

    async def test_custom_lines_keep_owner_prices_and_touch_no_stock(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn,
                order_data(
                    store,
                    [],
                    custom_lines=[
                        {"name": "Engraving", "quantity": 2, "unit_price": "3.33"},
                        {
                            "name": "Blue mug",
                            "sku": "MUG-BLUE",
                            "quantity": 1,
                            "unit_price": "1.00",
                        },
                    ],
                ),
            )
        assert order.subtotal == Decimal("7.66")
        assert (await census(db))["stock"]["MUG-BLUE"] == 20

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            ({"items": []}, ValidationFailed),
            ({"items": [{"sku": "MUG-BLUE", "quantity": 0}]}, ValidationFailed),
            ({"items": [{"sku": "MUG-BLUE", "quantity": -3}]}, ValidationFailed),
            ({"items": [{"sku": "MUG-BLUE", "quantity": 10**9}]}, ValidationFailed),
            ({"items": [{"sku": "MUG-BLUE", "quantity": 600}] * 2}, ValidationFailed),
            ({"items": [{"sku": "MUG-BLUE", "quantity": 1.5}]}, ValidationFailed),
            ({"items": [{"sku": "NOPE", "quantity": 1}]}, UnknownSku),
            (
                {"items": [{"sku": "MUG-BLUE", "quantity": 1}, {"sku": "OLD-HAT", "quantity": 1}]},
                UnknownSku,
            ),
            ({"items": [{"sku": "DIME", "quantity": 1}] * 101}, ValidationFailed),
            (
                {"items": [{"sku": "MUG-BLUE", "quantity": 1}, {"sku": "MUG-RED", "quantity": 6}]},
                OutOfStock,
            ),
            ({"customer": {"name": "Ann", "email": "not-an-email"}}, ValidationFailed),
            ({"customer": {"name": "", "email": "ann@example.com"}}, ValidationFailed),
            ({"currency": "EUR"}, CurrencyMismatch),
            ({"currency": "usd"}, ValidationFailed),
            ({"shipping_address": {"line1": "x", "city": "y", "country": "USA"}}, ValidationFailed),
            (
                {"items": [{"sku": "MUG-BLUE", "quantity": 1, "unit_price": "0.01"}]},
                ValidationFailed,
            ),
            ({"total": "0.01"}, ValidationFailed),
            ({"customer": {"name": "Ann\x00", "email": "ann@example.com"}}, ValidationFailed),
            (
                {
                    "items": [],
                    "custom_lines": [
                        {"name": "Yacht", "quantity": 1000, "unit_price": "9999999999.99"}
                    ],
                },
                ValidationFailed,
            ),
        ],
    )
    async def test_bad_input_is_refused_and_writes_nothing(
        self, db: Database, store: Agent, change: dict[str, Any], error: type[OrderError]
    ) -> None:
        before = await census(db)
        data = order_data(store)
        data.update(change)
        async with db.connection() as conn:
            with pytest.raises(error) as info:
                await orders.create_order(conn, data)
        assert info.value.code == error.code
        assert info.value.message
        assert await census(db) == before

    async def test_unknown_agent_and_foreign_owner_are_not_found(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            with pytest.raises(NotFound):
                await orders.create_order(conn, order_data(store), owner_id=OTHER_OWNER)
            order = await orders.create_order(conn, order_data(store), owner_id=OWNER)
            with pytest.raises(NotFound):
                await orders.get_order(conn, order.id, owner_id=OTHER_OWNER)

    async def test_out_of_stock_names_what_is_available(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            with pytest.raises(OutOfStock) as info:
                await orders.create_order(
                    conn, order_data(store, [{"sku": "MUG-RED", "quantity": 9}])
                )
        assert info.value.details["items"] == [{"sku": "MUG-RED", "requested": 9, "available": 5}]


@pytest.mark.slow
class TestConcurrency:
    async def test_stock_never_oversold(self, db: Database, store: Agent) -> None:
        async def one() -> str:
            try:
                async with db.connection() as conn:
                    await orders.create_order(
                        conn, order_data(store, [{"sku": "MUG-BLUE", "quantity": 1}])
                    )
                return "ok"
            except OutOfStock:
                return "out_of_stock"

        results = await asyncio.gather(*(one() for _ in range(100)))
        assert results.count("ok") == 20
        assert results.count("out_of_stock") == 80
        after = await census(db)
        assert after["stock"]["MUG-BLUE"] == 0
        assert after["orders"] == 20

    async def test_a_thousand_orders_get_distinct_numbers(self, db: Database, store: Agent) -> None:
        sem = asyncio.Semaphore(16)

        async def one() -> str:
            async with sem, db.connection() as conn:
                order = await orders.create_order(
                    conn, order_data(store, [{"sku": "DIME", "quantity": 1}])
                )
            return order.order_number

        numbers = await asyncio.gather(*(one() for _ in range(1000)))
        assert len(set(numbers)) == 1000
        assert all(re.fullmatch(r"ORD-\d{4}-\d{6,}", n) for n in numbers)

    async def test_number_collisions_retry_and_grow(
        self, db: Database, store: Agent, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Force the first candidates to collide with an existing order.
        async with db.connection() as conn:
            first = await orders.create_order(conn, order_data(store))
        calls: list[int] = []
        real = orders.new_order_number

        def crowded(year: int, attempt: int = 0) -> str:
            calls.append(attempt)
            return first.order_number if attempt < 4 else real(year, attempt)

        monkeypatch.setattr(orders, "new_order_number", crowded)
        async with db.connection() as conn:
            second = await orders.create_order(conn, order_data(store))
        assert calls == [0, 1, 2, 3, 4]
        assert second.order_number != first.order_number
        assert len(second.order_number.rsplit("-", 1)[1]) == 7  # attempt 4 -> one more digit

    async def test_same_version_updates_one_wins(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))

        async def move(to: str) -> str:
            try:
                async with db.connection() as conn:
                    await orders.update_status(
                        conn, order.id, {"status": to, "expected_version": order.version}
                    )
                return "ok"
            except VersionConflict:
                return "conflict"

        results = await asyncio.gather(move("confirmed"), move("processing"))
        assert sorted(results) == ["conflict", "ok"]
        async with db.connection() as conn:
            events = await orders.list_events(conn, order.id)
            now = await orders.get_order(conn, order.id)
        assert [e.kind for e in events] == ["created", "status_changed"]
        assert now.version == order.version + 1


class TestStatusMachine:
    async def _order(self, db: Database, store: Agent, *path: str) -> Any:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn, order_data(store, [{"sku": "MUG-BLUE", "quantity": 3}])
            )
            for status in path:
                order = await orders.update_status(conn, order.id, {"status": status})
        return order

    async def test_forward_steps_may_skip(self, db: Database, store: Agent) -> None:
        order = await self._order(db, store, "processing", "shipped", "delivered")
        assert order.status == OrderStatus.delivered
        assert order.delivered_at is not None and order.shipped_at is not None
        assert order.version == 4

    @pytest.mark.parametrize(
        ("path", "target"),
        [
            (["shipped"], "pending"),
            (["shipped"], "cancelled"),
            (["delivered"], "cancelled"),
            (["delivered"], "shipped"),
            (["cancelled"], "pending"),
            (["cancelled"], "confirmed"),
            (["cancelled"], "delivered"),
            (["processing"], "confirmed"),
        ],
    )
    async def test_invalid_transitions_change_nothing(
        self, db: Database, store: Agent, path: list[str], target: str
    ) -> None:
        order = await self._order(db, store, *path)
        before = await census(db)
        async with db.connection() as conn:
            with pytest.raises(InvalidTransition) as info:
                await orders.update_status(conn, order.id, {"status": target})
            again = await orders.get_order(conn, order.id)
        assert again == order
        assert await census(db) == before
        assert target not in info.value.details["allowed"]

    async def test_unknown_status_is_a_validation_error(self, db: Database, store: Agent) -> None:
        order = await self._order(db, store)
        async with db.connection() as conn:
            with pytest.raises(ValidationFailed):
                await orders.update_status(conn, order.id, {"status": "teleported"})

    async def test_cancel_returns_stock_and_records_reason(
        self, db: Database, store: Agent
    ) -> None:
        order = await self._order(db, store, "confirmed")
        assert (await census(db))["stock"]["MUG-BLUE"] == 17
        async with db.connection() as conn:
            cancelled = await orders.cancel_order(conn, order.id, reason="changed my mind")
            events = await orders.list_events(conn, order.id)
        assert cancelled.status == OrderStatus.cancelled and cancelled.cancelled_at is not None
        assert (await census(db))["stock"]["MUG-BLUE"] == 20
        assert (events[-1].kind, events[-1].note) == ("cancelled", "changed my mind")

    async def test_tracking_update_without_status_change(self, db: Database, store: Agent) -> None:
        order = await self._order(db, store, "shipped")
        async with db.connection() as conn:
            order = await orders.update_status(
                conn, order.id, {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z1"}
            )
            events = await orders.list_events(conn, order.id)
        assert (order.carrier, order.tracking_number) == ("UPS", "1Z1")
        assert events[-1].kind == "tracking_updated"

    async def test_stale_version_is_a_conflict(self, db: Database, store: Agent) -> None:
        order = await self._order(db, store, "confirmed")
        async with db.connection() as conn:
            with pytest.raises(VersionConflict) as info:
                await orders.update_status(
                    conn, order.id, {"status": "processing", "expected_version": 1}
                )
        assert info.value.details["current_version"] == 2


class TestListing:
    async def test_filters_search_and_keyset_pages(self, db: Database, store: Agent) -> None:
        other = await make_store(db, OTHER_OWNER, "Other")
        async with db.connection() as conn:
            made = []
            for i in range(7):
                made.append(
                    await orders.create_order(
                        conn,
                        order_data(
                            store, customer={"name": f"Cust {i}", "email": f"c{i}@example.com"}
                        ),
                    )
                )
            await orders.create_order(conn, order_data(other))
            await orders.update_status(conn, made[0].id, {"status": "shipped"})
            seen = []
            cursor = None
            while True:
                page = await orders.list_orders(conn, owner_id=OWNER, cursor=cursor, limit=3)
                seen += [o.id for o in page.orders]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert seen == [o.id for o in reversed(made)]
            shipped = await orders.list_orders(
                conn, owner_id=OWNER, filters={"statuses": ["shipped"]}
            )
            assert [o.id for o in shipped.orders] == [made[0].id]
            by_mail = await orders.list_orders(
                conn, owner_id=OWNER, filters={"search": "C3@example.com"}
            )
            assert [o.id for o in by_mail.orders] == [made[3].id]
            by_number = await orders.list_orders(
                conn, owner_id=OWNER, filters={"search": made[5].order_number.lower()}
            )
            assert [o.id for o in by_number.orders] == [made[5].id]
            by_name = await orders.list_orders(conn, owner_id=OWNER, filters={"search": "cust 4"})
            assert [o.id for o in by_name.orders] == [made[4].id]
            theirs = await orders.list_orders(conn, owner_id=OTHER_OWNER)
            assert len(theirs.orders) == 1
            with pytest.raises(ValidationFailed):
                await orders.list_orders(conn, owner_id=OWNER, cursor="garbage!")
            with pytest.raises(ValidationFailed):
                await orders.list_orders(conn, owner_id=OWNER, limit=1000)


class TestCatalog:
    async def test_upsert_is_idempotent_and_search_finds_by_word(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            again = await catalog.upsert_products(
                conn,
                store.id,
                [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "13.00", "stock": 2}],
            )
            assert again[0].unit_price == Decimal("13.00")
            found = (await catalog.search_products(conn, store.id, "mug")).products
            assert {p.sku for p in found} == {"MUG-BLUE", "MUG-RED"}
            exact = await catalog.search_products(conn, store.id, "mug-red")
            assert [p.sku for p in exact.products] == ["MUG-RED"]
            hat = await catalog.search_products(conn, store.id, "hat")  # inactive
            assert hat.products == [] and not hat.closest
            assert len(await catalog.list_products(conn, store.id)) == 5

    async def test_bad_batch_writes_nothing(self, db: Database, store: Agent) -> None:
        before = await census(db)
        async with db.connection() as conn:
            with pytest.raises(ValidationFailed):
                await catalog.upsert_products(
                    conn,
                    store.id,
                    [
                        {"sku": "NEW-1", "name": "ok", "unit_price": "1.00"},
                        {"sku": "NEW-2", "name": "bad", "unit_price": "-1"},
                    ],
                )
            with pytest.raises(ValidationFailed):
                await catalog.upsert_products(
                    conn, store.id, [{"sku": "X", "name": "x", "unit_price": "1.001"}]
                )
        assert await census(db) == before
