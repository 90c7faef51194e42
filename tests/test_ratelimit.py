"""The public tracking limits: keyed by address (IPv6 by /64), shared through Redis between
workers, bounded in memory, and a global cap on failed lookups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from agent_tools.db import Database
from agent_tools.models import Agent, Order
from agent_tools.service import orders, ratelimits
from api.ratelimit import BoundedMemoryStorage, RateLimited, SharedTrackingLimiter, client_key
from tests.api_support import assert_problem, client, make_app, settings
from tests.conftest import order_data

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def order(db: Database, store: Agent) -> Order:
    async with db.connection() as conn:
        return await orders.create_order(conn, order_data(store))


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone, so parallel runs never count each other's hits."""
    prefix = f"ao-test-{uuid4().hex}"
    yield prefix
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("spoofed, 10.0.0.1", "other"),
        ("unknown", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_clients_are_keyed_by_address_and_ipv6_by_64(host: str | None, key: str) -> None:
    assert client_key(host) == key


async def test_ipv6_neighbours_share_a_limit(db: Database, order: Order) -> None:
    app = make_app(db, track_burst=3)
    path = f"/api/orders/track/{order.order_number}"
    codes = []
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff", "2001:db8::3"):
        async with client(app, host) as api:
            codes.append((await api.get(path)).status_code)
    assert codes == [200, 200, 200, 429]
    async with client(app, "2001:db8:0:1::1") as other_line:
        assert (await other_line.get(path)).status_code == 200


async def test_memory_store_is_bounded_and_forgets_the_least_recent() -> None:
    now = [1000.0]
    store = BoundedMemoryStorage(max_keys=3, clock=lambda: now[0])
    for i in range(10):
        await store.incr(f"k{i}", 60)
    assert len(store) == 3
    assert await store.get("k9") == 1 and await store.get("k0") == 0
    await store.incr("k7", 60)  # used again: now the most recent
    await store.incr("k10", 60)
    assert await store.get("k7") == 2 and await store.get("k8") == 0
    now[0] += 61
    assert await store.get("k7") == 0  # its window is over


async def test_two_workers_share_one_limit_through_redis(
    db: Database, order: Order, redis_prefix: str
) -> None:
    """Two app instances stand for two worker processes: with REDIS_URL they count together."""
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": redis_prefix, "track_burst": 4}
    first, second = make_app(db, **shared), make_app(db, **shared)
    path = f"/api/orders/track/{order.order_number}"
    codes = []
    async with client(first, "198.51.100.9") as a, client(second, "198.51.100.9") as b:
        for api in (a, b, a, b, a, b):
            codes.append((await api.get(path)).status_code)
    assert codes == [200, 200, 200, 200, 429, 429]
    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert [k async for k in r.scan_iter(match=f"{redis_prefix}*")]
    finally:
        await r.aclose()


async def test_workers_without_redis_share_the_limits_through_postgresql(
    db: Database, order: Order
) -> None:
    """Two app instances of a several-worker server (no Redis): one client's lookups and
    everyone's failures are counted in the database they share."""
    shared = {"workers": 2, "track_burst": 4, "track_failed_per_minute": 2}
    first, second = make_app(db, **shared), make_app(db, **shared)
    path = f"/api/orders/track/{order.order_number}"
    codes = []
    async with client(first, "198.51.100.9") as a, client(second, "198.51.100.9") as b:
        for api in (a, b, a, b, a, b):
            codes.append((await api.get(path)).status_code)
        limited = await b.get(path)
    assert codes == [200, 200, 200, 200, 429, 429]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    async with client(first, "198.51.100.10") as a, client(second, "198.51.100.11") as b:
        assert (await a.get(path)).status_code == 200  # another address, its own count
        assert_problem(await a.get("/api/orders/track/ORD-2020-000001"), 404, "not_found")
        assert_problem(await b.get("/api/orders/track/ORD-2020-000002"), 404, "not_found")
        # Two misses, one on each worker: every lookup now waits, on either of them.
        refused = assert_problem(await a.get(path), 429, "rate_limited")
        assert "failed" in refused["detail"]
    async with db.connection() as conn:
        cur = await conn.execute("select count(*) as n from agent_orders.rate_limits")
        assert (await cur.fetchone() or {}).get("n", 0) >= 3


async def stored_hits(db: Database, key: str) -> int:
    async with db.connection() as conn:
        cur = await conn.execute(
            "select hits from agent_orders.rate_limits where key = %(k)s", {"k": key}
        )
        row = await cur.fetchone()
    return int(row["hits"]) if row else 0


async def test_workers_add_their_lookups_to_the_database_in_batches(db: Database) -> None:
    """Far below a limit a worker counts lookups in memory and adds them in one statement per
    look (every 50 ms); none is lost."""
    now = [time.time()]
    limiter = SharedTrackingLimiter(
        settings(workers=2, track_burst=1000), lambda: db, clock=lambda: now[0]
    )
    for _ in range(10):
        await limiter.hit("198.51.100.20")
    assert await stored_hits(db, "track:198.51.100.20:60") == 1  # the first one looked
    now[0] += 0.06
    await limiter.hit("198.51.100.20")
    assert await stored_hits(db, "track:198.51.100.20:60") == 11
    assert await stored_hits(db, "track:198.51.100.20:3600") == 11


async def test_workers_adding_the_same_keys_at_once_never_deadlock(db: Database) -> None:
    """Each worker adds its pending keys in whatever order it holds them. The counters are
    updated in key order, so looks running at once wait for each other; otherwise
    PostgreSQL aborts one as a deadlock, a 503 for every lookup it carried (the http
    benchmark's two workers met it)."""
    keys = [f"track:192.0.2.{i}:60" for i in range(6)]

    async def look(order: list[str]) -> None:
        async with db.reader() as conn:
            await ratelimits.hit(conn, [(k, 60.0, 1) for k in order])

    for _ in range(10):
        await asyncio.gather(*(look(keys if i % 2 else keys[::-1]) for i in range(8)))
    for key in keys:
        assert await stored_hits(db, key) == 80


async def test_workers_let_at_most_half_a_limit_through_unseen(db: Database) -> None:
    """Two workers that never look on their own schedule (their clocks stand still): near the
    limit every lookup is counted in the database, so one client through both gets at least
    the limit and at most one and a half times it."""
    now = time.time()
    workers = [
        SharedTrackingLimiter(settings(workers=2, track_burst=40), lambda: db, clock=lambda: now)
        for _ in range(2)
    ]
    passed = 0
    for i in range(100):
        try:
            await workers[i % 2].hit("198.51.100.21")
        except RateLimited as refused:
            assert 1 <= int(refused.headers["Retry-After"]) <= 60
        else:
            passed += 1
    assert 40 <= passed <= 60
    assert await stored_hits(db, "track:198.51.100.21:60") >= 100 - 60


async def test_an_unreachable_redis_is_a_503_not_a_500(db: Database, order: Order) -> None:
    app = make_app(db, redis_url="redis://127.0.0.1:1/0")
    async with client(app) as api:
        r = await api.get(f"/api/orders/track/{order.order_number}")
    assert_problem(r, 503, "unavailable")


async def test_failed_lookups_are_capped_for_everyone(db: Database, order: Order) -> None:
    """Guessing numbers from many addresses: after the global number of misses, every public
    lookup waits, from any address, even for a real number."""
    app = make_app(db, track_failed_per_minute=3)
    for n in range(3):
        async with client(app, f"192.0.2.{n + 1}") as api:
            miss = await api.get(f"/api/orders/track/ORD-2020-00000{n}")
            assert_problem(miss, 404, "not_found")
    async with client(app, "192.0.2.50") as api:
        limited = await api.get(f"/api/orders/track/{order.order_number}")
        page = await api.get(f"/track/{order.order_number}")
    body = assert_problem(limited, 429, "rate_limited")
    assert "failed" in body["detail"]
    assert int(limited.headers["Retry-After"]) >= 1
    assert page.status_code == 429


async def test_successful_lookups_do_not_count_as_failures(db: Database, order: Order) -> None:
    app = make_app(db, track_failed_per_minute=2)
    async with client(app) as api:
        for _ in range(5):
            r = await api.get(f"/api/orders/track/{order.order_number}")
            assert r.status_code == 200
