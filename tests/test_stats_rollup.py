"""The daily roll-up behind the stats summary stays equal to counting the orders themselves."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agent_tools.db import Conn, Database
from agent_tools.models import Agent, OrderStatus
from agent_tools.service import orders, stats
from tests.conftest import OWNER, order_data

_LIVE = (
    "select owner_id, agent_id, (created_at at time zone 'UTC')::date as day, status,"
    " currency, count(*) as orders, sum(total) as revenue from agent_orders.orders"
    " group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5"
)
_ROLLUP = (
    "select owner_id, agent_id, day, status, currency, orders, revenue"
    " from agent_orders.order_daily_stats where orders <> 0 order by 1, 2, 3, 4, 5"
)


async def _same_as_live(conn: Conn) -> None:
    live = await (await conn.execute(_LIVE)).fetchall()
    rollup = await (await conn.execute(_ROLLUP)).fetchall()
    assert rollup == live


async def _expected(
    conn: Conn, start: datetime | None, end: datetime | None
) -> tuple[int, Counter[str], Decimal]:
    cur = await conn.execute("select status, total, created_at from agent_orders.orders")
    rows = [
        r
        for r in await cur.fetchall()
        if (start is None or r["created_at"] >= start) and (end is None or r["created_at"] < end)
    ]
    revenue = sum((r["total"] for r in rows if r["status"] != "cancelled"), Decimal("0.00"))
    return len(rows), Counter(r["status"] for r in rows), revenue


class TestDailyRollup:
    async def test_follows_every_kind_of_write(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            made = [await orders.create_order(conn, order_data(store)) for _ in range(6)]
            await orders.update_status(conn, made[0].id, {"status": "confirmed"})
            await orders.update_status(conn, made[0].id, {"status": "shipped"})
            await orders.update_status(
                conn, made[0].id, {"status": "shipped", "tracking_number": "1Z1"}
            )
            await orders.cancel_order(conn, made[1].id)
            await _same_as_live(conn)
            # What an owner might do by hand in the Supabase table editor.
            await conn.execute(
                "update agent_orders.orders set created_at = created_at - interval '3 days 5 hours'"
                " where id = any(%(ids)s)",
                {"ids": [made[2].id, made[3].id]},
            )
            await conn.execute(
                "update agent_orders.orders set total = total + 1, subtotal = subtotal + 1"
                " where id = %(id)s",
                {"id": made[4].id},
            )
            await conn.execute(
                "delete from agent_orders.orders where id = %(id)s", {"id": made[5].id}
            )
            await _same_as_live(conn)
            summary = await stats.summary(conn, owner_id=OWNER)
        assert summary.total_orders == 5
        assert summary.by_status[OrderStatus.cancelled] == 1
        assert summary.revenue == {"USD": Decimal("17.50") * 4 + 1}
        assert len(summary.per_day) == 2

    async def test_ranges_with_partial_days_match_the_orders(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            made = [await orders.create_order(conn, order_data(store)) for _ in range(8)]
            await orders.cancel_order(conn, made[0].id)
            for i, o in enumerate(made):
                await conn.execute(
                    "update agent_orders.orders set created_at = %(t)s where id = %(id)s",
                    {"t": datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=17 * i), "id": o.id},
                )
            day = datetime(2026, 3, 2, tzinfo=UTC)
            ranges = [
                (None, None),
                (day, None),
                (day + timedelta(hours=3), None),
                (None, day + timedelta(hours=20)),
                (day + timedelta(hours=1), day + timedelta(hours=23)),
                (day - timedelta(hours=5), day + timedelta(days=2, hours=4)),
                (day, day + timedelta(days=2)),
                (datetime(2026, 3, 2, 9), datetime(2026, 3, 4)),  # naive means UTC
            ]
            for start, end in ranges:
                got = await stats.summary(conn, owner_id=OWNER, created_from=start, created_to=end)
                utc = [t.replace(tzinfo=UTC) if t and t.tzinfo is None else t for t in (start, end)]
                n, by_status, revenue = await _expected(conn, utc[0], utc[1])
                assert got.total_orders == n, (start, end)
                assert {k: v for k, v in got.by_status.items() if v} == dict(by_status)
                assert got.revenue == ({"USD": revenue} if revenue else {})
                assert sum(d.orders for d in got.per_day) == n

    async def test_concurrent_orders_count_once_each(self, db: Database, store: Agent) -> None:
        async def place() -> None:
            async with db.connection() as conn:
                await orders.create_order(
                    conn, order_data(store, [{"sku": "TEE-M", "quantity": 1}])
                )

        await asyncio.gather(*(place() for _ in range(30)))
        async with db.connection() as conn:
            await _same_as_live(conn)
            summary = await stats.summary(conn, owner_id=OWNER)
        assert summary.total_orders == 30 and summary.by_status["pending"] == 30
