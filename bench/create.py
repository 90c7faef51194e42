"""`create`: orders placed through the toolkit against raw psycopg doing the same rows' work.

The toolkit path is what an agent does: `place_order` (catalog pricing, a draft) in one
customer turn, `confirm_order` in the next (stock reserved, order and event written). The
baseline is one hand-written transaction per order on a plain psycopg pool: lock the
products, take the stock, insert the order and its event. Both use pools of the default
size, on the same server, in alternating rounds at 1, 8 and 32 concurrent clients.
"""

from __future__ import annotations

import json
import random
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg_pool import AsyncConnectionPool

from agent_tools.config import get_settings
from agent_tools.db import Database
from bench.dataset import Store, make_stores
from bench.harness import Figure, Result, Target, concurrent, fresh_database

REQUIRES = ("agent_tools.tools",)
LEVELS = (1, 8, 32)
ORDERS_PER_ROUND = {1: 150, 8: 400, 32: 640}
ROUNDS = 2
TARGET_RATIO_AT_8 = 0.5


def _basket(store: Store, rnd: random.Random) -> list[tuple[str, int]]:
    return [
        (sku, rnd.choice((1, 2)))
        for sku, _, _ in rnd.sample(store.products, rnd.choice((1, 1, 2, 3)))
    ]


class ToolkitClient:
    """One chat per client: place_order in one customer turn, confirm_order in the next."""

    def __init__(self, toolkit: Any, stores: list[Store], seed: int) -> None:
        from agent_tools.tools import ToolContext

        self.toolkit = toolkit
        self.rnd = random.Random(seed)
        self.stores = stores
        self.contexts = {
            s.agent.id: ToolContext(
                agent_id=s.agent.id,
                conversation_id=f"bench-{seed}-{s.agent.id.hex[:8]}",
                customer_email=f"client{seed}@example.com",
                customer_verified=True,
            )
            for s in stores
        }

    async def order(self) -> None:
        store = self.rnd.choice(self.stores)
        ctx = self.contexts[store.agent.id]
        ctx.turn += 1
        args = {
            "items": [{"sku": s, "quantity": q} for s, q in _basket(store, self.rnd)],
            "customer": {"name": "Bench Client", "email": None, "phone": None},
            "shipping_address": {
                "line1": "1 Main St",
                "line2": None,
                "city": "Portland",
                "region": None,
                "postal_code": "97201",
                "country": "US",
                "recipient_name": None,
                "recipient_phone": None,
            },
            "payment_method": "card",
            "customer_notes": None,
        }
        draft = await self.toolkit.call(ctx, "place_order", json.dumps(args))
        if not draft["ok"]:
            raise RuntimeError(f"place_order failed: {draft['error']}")
        ctx.turn += 1
        done = await self.toolkit.call(
            ctx, "confirm_order", json.dumps({"draft_id": draft["draft_id"]})
        )
        if not done["ok"]:
            raise RuntimeError(f"confirm_order failed: {done['error']}")


_INSERT = (
    "insert into agent_orders.orders (order_number, agent_id, owner_id, conversation_id,"
    " customer_name, customer_email, shipping_address, line_items, subtotal, shipping_fee,"
    " total, currency, payment_method) values (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb,"
    " %s, %s, %s, %s, %s) on conflict (order_number) do nothing returning id"
)


class RawClient:
    """The floor: the same rows written by one hand-written transaction, no models at all."""

    def __init__(self, pool: AsyncConnectionPool[Any], stores: list[Store], seed: int) -> None:
        self.pool = pool
        self.rnd = random.Random(seed)
        self.stores = stores
        self.seed = seed

    async def order(self) -> None:
        store = self.rnd.choice(self.stores)
        agent = store.agent
        basket = dict(_basket(store, self.rnd))
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select id, sku, name, unit_price from agent_orders.products"
                " where agent_id = %s and sku = any(%s) order by id for update",
                (agent.id, list(basket)),
            )
            rows = await cur.fetchall()
            await conn.execute(
                "update agent_orders.products p set stock = p.stock - v.q"
                " from unnest(%s::uuid[], %s::int[]) as v(id, q) where p.id = v.id",
                ([r[0] for r in rows], [basket[r[1]] for r in rows]),
            )
            lines = [
                {
                    "sku": r[1],
                    "name": r[2],
                    "quantity": basket[r[1]],
                    "unit_price": str(r[3]),
                    "line_total": str(r[3] * basket[r[1]]),
                }
                for r in rows
            ]
            subtotal = sum((r[3] * basket[r[1]] for r in rows), Decimal("0.00"))
            order_id = None
            while order_id is None:
                number = f"ORD-{datetime.now(UTC).year}-{secrets.randbelow(10**6):06d}"
                cur = await conn.execute(
                    _INSERT,
                    (
                        number,
                        agent.id,
                        agent.owner_id,
                        f"raw-{self.seed}",
                        "Bench Client",
                        f"client{self.seed}@example.com",
                        json.dumps(
                            {
                                "line1": "1 Main St",
                                "city": "Portland",
                                "postal_code": "97201",
                                "country": "US",
                            }
                        ),
                        json.dumps(lines),
                        subtotal,
                        agent.shipping_fee,
                        subtotal + agent.shipping_fee,
                        agent.currency,
                        "card",
                    ),
                )
                row = await cur.fetchone()
                order_id = row[0] if row else None
            await conn.execute(
                "insert into agent_orders.order_events (order_id, kind, to_status, actor,"
                " conversation_id) values (%s, 'created', 'pending', 'agent', %s)",
                (order_id, f"raw-{self.seed}"),
            )


async def run(opts: Any) -> Result:
    from agent_tools.tools import Toolkit

    pool_size = get_settings().pool_max_size
    result = Result(
        "create",
        {
            "clients": list(LEVELS),
            "orders_per_round": ORDERS_PER_ROUND,
            "rounds": ROUNDS,
            "pool_size": pool_size,
            "agents": 4,
            "products_per_agent": 20,
            "stock_tracked": True,
        },
    )
    async with fresh_database("create", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=pool_size, max_size=pool_size)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=pool_size, max_size=pool_size, open=False
        )
        await pool.open(wait=True)
        try:
            stores = await make_stores(db, owners=1, agents_per_owner=4)
            toolkit = Toolkit(db)
            for clients in LEVELS:
                per_client = ORDERS_PER_ROUND[clients] // clients
                raw_clients = [RawClient(pool, stores, 1000 + i) for i in range(clients)]
                tool_clients = [ToolkitClient(toolkit, stores, i) for i in range(clients)]
                # Warm both paths (connections, prepared statements, the signing key).
                await concurrent(lambda i, c=raw_clients: c[i].order(), clients, 2)
                await concurrent(lambda i, c=tool_clients: c[i].order(), clients, 2)
                totals: dict[str, tuple[list[float], float]] = {"raw": ([], 0.0), "tk": ([], 0.0)}
                for _ in range(ROUNDS):
                    for label, group in (("raw", raw_clients), ("tk", tool_clients)):
                        lat, wall = await concurrent(
                            lambda i, c=group: c[i].order(),
                            clients,
                            per_client,
                        )
                        totals[label] = (totals[label][0] + lat, totals[label][1] + wall)
                raw = result.add(
                    Figure.from_latencies(
                        f"raw psycopg, {clients} clients",
                        totals["raw"][0],
                        wall=totals["raw"][1],
                        note="baseline",
                    )
                )
                tk = result.add(
                    Figure.from_latencies(
                        f"toolkit, {clients} clients",
                        totals["tk"][0],
                        wall=totals["tk"][1],
                        note="place_order + confirm_order",
                    )
                )
                assert raw.per_s and tk.per_s
                result.ratios[f"toolkit / raw at {clients}"] = tk.per_s / raw.per_s
            result.targets.append(
                Target(
                    "toolkit / raw orders/s at 8 clients",
                    result.ratios["toolkit / raw at 8"],
                    TARGET_RATIO_AT_8,
                    "x",
                    at_most=False,
                )
            )
        finally:
            await pool.close()
            await db.close()
    return result
