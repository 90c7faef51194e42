"""`create`: orders placed through the toolkit against raw psycopg doing the same rows' work.

The toolkit path is what an agent does: `place_order` (catalog pricing, a draft) in one
customer turn, `confirm_order` in the next (stock reserved, order and event written). The
baseline is one hand-written transaction per order on a plain psycopg pool: lock the
products, take the stock, insert the order and its event.

Between them, the floor of the toolkit's own design: its statements (the same SQL, the
same two transactions and round trips) sent by hand, with no models, validation or
results around them. `toolkit / raw` is the target; `statements / raw` is how far a
two-transaction order can get at all, and `toolkit / statements` what the Python around
the statements costs. All use pools of the default size, on the same server, in
alternating rounds at 1, 8 and 32 concurrent clients.
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
    """One chat per order, as each customer has their own: place_order in one customer turn,
    confirm_order in the next."""

    def __init__(self, toolkit: Any, stores: list[Store], seed: int) -> None:
        self.toolkit = toolkit
        self.rnd = random.Random(seed)
        self.stores = stores
        self.seed = seed

    async def order(self) -> None:
        from agent_tools.tools import ToolContext

        store = self.rnd.choice(self.stores)
        ctx = ToolContext(
            agent_id=store.agent.id,
            conversation_id=f"bench-{secrets.token_hex(8)}",
            customer_email=f"client{self.seed}@example.com",
            customer_verified=True,
        )
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


class StatementsClient:
    """The toolkit's statements by hand: two transactions, the same SQL, nothing around it."""

    def __init__(self, pool: AsyncConnectionPool[Any], stores: list[Store], seed: int) -> None:
        self.pool = pool
        self.rnd = random.Random(seed)
        self.stores = stores

    async def order(self) -> None:
        from psycopg.rows import dict_row
        from psycopg.types.json import Jsonb

        from agent_tools.service import catalog, drafts, orders, stock

        store = self.rnd.choice(self.stores)
        agent = store.agent
        basket = dict(_basket(store, self.rnd))
        conv = f"hand-{secrets.token_hex(8)}"
        address = {
            "line1": "1 Main St",
            "city": "Portland",
            "postal_code": "97201",
            "country": "US",
        }
        draft_id = drafts.DRAFT_PREFIX + secrets.token_hex(8)
        # The customer's turn: price from the catalog (with the chat's lock), keep a draft.
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                catalog._OFFER, {"agent": agent.id, "skus": list(basket), "lock": conv}
            )
            rows = await cur.fetchall()
            lines = [
                {
                    "sku": r["sku"],
                    "name": r["name"],
                    "quantity": basket[r["sku"]],
                    "unit_price": str(r["unit_price"]),
                    "line_total": str(r["unit_price"] * basket[r["sku"]]),
                }
                for r in rows
            ]
            subtotal = sum((r["unit_price"] * basket[r["sku"]] for r in rows), Decimal("0.00"))
            order = {
                "agent_id": str(agent.id),
                "items": [{"sku": s, "quantity": q} for s, q in basket.items()],
                "customer": {"name": "Bench Client", "email": "hand@example.com"},
                "shipping_address": address,
            }
            await cur.execute(
                drafts._DRAFT_ORDER,
                {
                    "id": draft_id,
                    "digest": secrets.token_bytes(32),
                    "agent": agent.id,
                    "conv": conv,
                    "turn": 1,
                    "order": Jsonb(order),
                    "quote": Jsonb({"lines": lines, "subtotal": str(subtotal)}),
                    "ttl": drafts.DUPLICATE_WINDOW,
                    "window": drafts.DUPLICATE_WINDOW,
                    "address": Jsonb(address),
                    "items": Jsonb(basket),
                },
            )
            await cur.fetchone()
        # The next turn: lock the draft and the products, write the order, mark the draft.
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                drafts._LOCKED.format(
                    where="id = %(id)s and agent_id = %(agent)s and conversation_id = %(conv)s"
                ),
                {"id": draft_id, "agent": agent.id, "conv": conv},
            )
            await cur.fetchone()
            await cur.execute(
                stock._CATALOG.format(lock="for update"),
                {"agent": agent.id, "owner": None, "skus": sorted(basket)},
            )
            rows = await cur.fetchall()
            tracked = sorted((r["id"], basket[r["sku"]]) for r in rows)
            placed = None
            while placed is None:
                await cur.execute(
                    orders._INSERT,
                    {
                        "number": orders.new_order_number(datetime.now(UTC).year),
                        "agent": agent.id,
                        "owner": agent.owner_id,
                        "conv": conv,
                        "name": "Bench Client",
                        "email": "hand@example.com",
                        "phone": None,
                        "address": Jsonb(address),
                        "lines": Jsonb(lines),
                        "subtotal": subtotal,
                        "fee": agent.shipping_fee,
                        "total": subtotal + agent.shipping_fee,
                        "currency": agent.currency,
                        "cnotes": None,
                        "inotes": None,
                        "pstatus": "pending",
                        "paid": Decimal(0),
                        "pmethod": "card",
                        "metadata": Jsonb({}),
                        "verified": True,
                        "actor": "agent",
                        "by_conv": conv,
                        "call": None,
                        "ids": [t[0] for t in tracked],
                        "qs": [t[1] for t in tracked],
                    },
                )
                placed = await cur.fetchone()
            await cur.execute(
                drafts._CONFIRMED, {"order": placed["id"], "id": draft_id, "mail": "confirmation"}
            )
            await cur.fetchone()


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
                groups: dict[str, list[Any]] = {
                    "raw": [RawClient(pool, stores, 1000 + i) for i in range(clients)],
                    "statements": [
                        StatementsClient(pool, stores, 2000 + i) for i in range(clients)
                    ],
                    "toolkit": [ToolkitClient(toolkit, stores, i) for i in range(clients)],
                }
                # Warm every path (connections, prepared statements, the signing key).
                for group in groups.values():
                    await concurrent(lambda i, c=group: c[i].order(), clients, 2)
                totals: dict[str, tuple[list[float], float]] = {k: ([], 0.0) for k in groups}
                for _ in range(ROUNDS):
                    for label, group in groups.items():
                        lat, wall = await concurrent(
                            lambda i, c=group: c[i].order(),
                            clients,
                            per_client,
                        )
                        totals[label] = (totals[label][0] + lat, totals[label][1] + wall)
                rate: dict[str, float] = {}
                for label, name, note in (
                    ("raw", "raw psycopg", "baseline"),
                    ("statements", "toolkit's statements by hand", "two transactions, no models"),
                    ("toolkit", "toolkit", "place_order + confirm_order"),
                ):
                    figure = result.add(
                        Figure.from_latencies(
                            f"{name}, {clients} clients",
                            totals[label][0],
                            wall=totals[label][1],
                            note=note,
                        )
                    )
                    assert figure.per_s
                    rate[label] = figure.per_s
                result.ratios[f"toolkit / raw at {clients}"] = rate["toolkit"] / rate["raw"]
                result.ratios[f"statements / raw at {clients}"] = rate["statements"] / rate["raw"]
                result.ratios[f"toolkit / statements at {clients}"] = (
                    rate["toolkit"] / rate["statements"]
                )
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
