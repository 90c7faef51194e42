"""`scale`: reads and creates through the service with a store's worth of orders present.

Loads N orders (default 100,000; `--full` 1,000,000) over 50 agents of 5 owners with COPY,
then times, one call at a time, the dashboard's reads, the stats summary and the public
tracking lookup. The create rate is measured against a second, empty database on the same
server, in alternating rounds so that noise from the machine hits both alike.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from agent_tools.db import Conn, Database
from agent_tools.service import orders, stats, tracking
from bench.dataset import Sample, Store, load_orders, make_stores
from bench.harness import (
    Figure,
    Result,
    Target,
    concurrent,
    fresh_database,
    percentile,
    timed,
)

REQUIRES: tuple[str, ...] = ()
READ_P99_MS = 10.0
STATS_P99_MS = 25.0
CREATE_RATIO = 0.8
PAGE = 50
BLOCKS = 5
Read = Callable[[Conn], Awaitable[object]]


def _reads(
    stores: list[Store], samples: list[Sample], deep: list[tuple[UUID, str]], rnd: random.Random
) -> dict[str, tuple[Read, float]]:
    """Each read as a call on a connection, with fresh random arguments, and its p99 limit."""
    owners = sorted({s.agent.owner_id for s in stores})

    async def first_page(conn: Conn) -> object:
        return await orders.list_orders(conn, owner_id=rnd.choice(owners), limit=PAGE)

    async def by_status(conn: Conn) -> object:
        status = rnd.choice(("pending", "shipped", "cancelled"))
        return await orders.list_orders(
            conn, owner_id=rnd.choice(owners), filters={"statuses": [status]}, limit=PAGE
        )

    async def by_agent(conn: Conn) -> object:
        agent = rnd.choice(stores).agent
        return await orders.list_orders(
            conn, owner_id=agent.owner_id, filters={"agent_id": agent.id}, limit=PAGE
        )

    async def by_agent_status(conn: Conn) -> object:
        agent = rnd.choice(stores).agent
        status = rnd.choice(("processing", "delivered", "cancelled"))
        return await orders.list_orders(
            conn,
            owner_id=agent.owner_id,
            filters={"agent_id": agent.id, "statuses": [status]},
            limit=PAGE,
        )

    async def deep_page(conn: Conn) -> object:
        owner, cursor = rnd.choice(deep)
        return await orders.list_orders(conn, owner_id=owner, cursor=cursor, limit=PAGE)

    async def by_email(conn: Conn) -> object:
        s = rnd.choice(samples)
        return await orders.list_orders(conn, owner_id=s.owner_id, filters={"search": s.email})

    async def by_number(conn: Conn) -> object:
        s = rnd.choice(samples)
        return await orders.list_orders(
            conn, owner_id=s.owner_id, filters={"search": s.order_number}
        )

    async def owner_stats(conn: Conn) -> object:
        return await stats.summary(conn, owner_id=rnd.choice(owners))

    async def agent_month_stats(conn: Conn) -> object:
        agent = rnd.choice(stores).agent
        since = datetime.now(UTC) - timedelta(days=30, seconds=rnd.randrange(86400))
        return await stats.summary(
            conn, owner_id=agent.owner_id, agent_id=agent.id, created_from=since
        )

    async def track(conn: Conn) -> object:
        return await tracking.track(conn, rnd.choice(samples).order_number)

    async def track_email(conn: Conn) -> object:
        s = rnd.choice(samples)
        return await tracking.track(conn, s.order_number, email=s.email)

    return {
        "list: first page": (first_page, READ_P99_MS),
        "list: by status": (by_status, READ_P99_MS),
        "list: by agent": (by_agent, READ_P99_MS),
        "list: by agent + status": (by_agent_status, READ_P99_MS),
        "list: deep keyset page": (deep_page, READ_P99_MS),
        "search: exact email": (by_email, READ_P99_MS),
        "search: order number": (by_number, READ_P99_MS),
        "stats: owner summary": (owner_stats, STATS_P99_MS),
        "stats: agent, last 30 days": (agent_month_stats, STATS_P99_MS),
        "track: public lookup": (track, READ_P99_MS),
        "track: with email": (track_email, READ_P99_MS),
    }


def _new_order(store: Store, rnd: random.Random) -> dict[str, Any]:
    c = rnd.randrange(10**6)
    return {
        "agent_id": store.agent.id,
        "customer": {"name": "Bench Customer", "email": f"new{c}@example.com"},
        "shipping_address": {
            "line1": "1 Main St",
            "city": "Portland",
            "postal_code": "97201",
            "country": "US",
        },
        "items": [
            {"sku": sku, "quantity": rnd.choice((1, 2))}
            for sku, _, _ in rnd.sample(store.products, rnd.choice((1, 2)))
        ],
        "payment_method": "card",
    }


async def _create_rounds(
    dbs: dict[str, tuple[Database, list[Store]]], rounds: int, per_round: int, clients: int
) -> dict[str, tuple[list[float], float]]:
    """Alternate rounds of `clients` concurrent service creates between the databases."""
    rnd = random.Random(11)
    out: dict[str, tuple[list[float], float]] = {k: ([], 0.0) for k in dbs}
    for _ in range(rounds):
        for label, (db, stores) in dbs.items():

            async def create(_: int, db: Database = db, stores: list[Store] = stores) -> None:
                async with db.connection() as conn:
                    await orders.create_order(conn, _new_order(rnd.choice(stores), rnd))

            lat, wall = await concurrent(create, clients, per_round // clients)
            out[label] = (out[label][0] + lat, out[label][1] + wall)
    return out


async def run(opts: Any) -> Result:
    n = opts.rows or (1_000_000 if opts.full else 100_000)
    iterations = 500
    clients = 4
    rounds, per_round = 5, 200
    # `make bench` writes scale.json; other sizes (`--full`) get their own file beside it.
    result = Result(
        "scale" if n == 100_000 else f"scale_{n // 1000}k",
        {
            "orders": n,
            "owners": 5,
            "agents": 50,
            "products_per_agent": 20,
            "read_iterations": iterations,
            "create_clients": clients,
            "create_orders_per_database": rounds * per_round,
            "page_size": 50,
        },
    )
    async with (
        fresh_database("scale", keep=opts.keep) as url,
        fresh_database("empty", keep=opts.keep) as empty_url,
    ):
        db = await Database.open(url, migrate=False, min_size=clients, max_size=clients + 2)
        empty = await Database.open(
            empty_url, migrate=False, min_size=clients, max_size=clients + 2
        )
        try:
            stores = await make_stores(db)
            empty_stores = await make_stores(empty)
            t0 = time.perf_counter()
            samples = load_orders(url, stores, n)
            load_s = time.perf_counter() - t0
            result.add(Figure("load: COPY + analyze", n, per_s=n / load_s, note="orders, once"))

            rnd = random.Random(5)
            deep: list[tuple[UUID, str]] = []
            async with db.connection() as conn:
                for s in sorted(samples, key=lambda s: s.created_at)[len(samples) // 3 :][:50]:
                    order = await orders.get_order(conn, s.id)
                    deep.append((s.owner_id, orders.encode_cursor(order)))
            # Every read runs in BLOCKS interleaved blocks, so a burst of load from another
            # process on a shared machine lands in one block of one read, not all of them.
            reads = _reads(stores, samples, deep, rnd)
            latencies: dict[str, list[list[float]]] = {name: [] for name in reads}
            for _ in range(BLOCKS):
                for name, (call, _limit) in reads.items():

                    async def once(call: Read = call) -> None:
                        async with db.connection() as conn:
                            await call(conn)

                    warmup = 10 if not latencies[name] else 2
                    latencies[name].append(await timed(once, iterations // BLOCKS, warmup=warmup))
            for name, (_call, limit) in reads.items():
                result.add(Figure.from_latencies(name, [x for b in latencies[name] for x in b]))
                block_p99 = statistics.median(percentile(b, 0.99) * 1000 for b in latencies[name])
                result.targets.append(Target(f"{name} p99", block_p99, limit, "ms"))
            result.notes.append(
                f"targets use the median of the p99s of {BLOCKS} interleaved blocks of"
                f" {iterations // BLOCKS} calls; the table's p99 is over all calls"
            )

            created = await _create_rounds(
                {"full": (db, stores), "empty": (empty, empty_stores)},
                rounds,
                per_round,
                clients,
            )
            full_fig = result.add(
                Figure.from_latencies(
                    f"create: {n:,} orders present",
                    created["full"][0],
                    wall=created["full"][1],
                    note=f"{clients} clients",
                )
            )
            empty_fig = result.add(
                Figure.from_latencies(
                    "create: empty table",
                    created["empty"][0],
                    wall=created["empty"][1],
                    note=f"{clients} clients",
                )
            )
            assert full_fig.per_s and empty_fig.per_s
            ratio = full_fig.per_s / empty_fig.per_s
            result.ratios["create rate, full / empty"] = ratio
            result.targets.append(
                Target("create rate full / empty", ratio, CREATE_RATIO, "x", at_most=False)
            )
        finally:
            await db.close()
            await empty.close()
    return result
