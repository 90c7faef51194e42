"""Reliability: crash safety, pool exhaustion and a vanishing database, tenancy and redaction.

The first two run on a PostgreSQL of their own (`PrivatePostgres`), never on the suite's
server: they kill it. The third runs on the suite's database like every other test.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from agent_tools.db import Database
from agent_tools.service import api_keys, catalog, orders
from agent_tools.tools import ToolContext, Toolkit
from tests.api_support import PROBLEM_JSON, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER, drop_database, make_store, new_database
from tests.reliability_support import PrivatePostgres, api_process, private_postgres, serve
from tests.tools_support import place_and_confirm, place_args

pytestmark = pytest.mark.slow

STOCK = {"BOLT": 1_000_000, "NUT": 1_000_000}
OUTAGE = 8.0
"""Seconds the database stays down in the outage test."""


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


async def open_store(api: httpx.AsyncClient) -> str:
    """An agent of OWNER selling BOLT and NUT, both with tracked stock. Returns its id."""
    r = await api.post("/api/agents/", json={"name": "Hardware", "shipping_fee": "2.00"})
    assert r.status_code == 201, r.text
    agent: str = r.json()["id"]
    products = [
        {"sku": sku, "name": sku.title(), "unit_price": "0.25", "stock": stock}
        for sku, stock in STOCK.items()
    ]
    r = await api.post(f"/api/agents/{agent}/products", json={"products": products})
    assert r.status_code == 200, r.text
    return agent


def order_body(agent: str, n: int, bolts: int) -> dict[str, Any]:
    return {
        "agent_id": agent,
        "customer": {"name": f"Load {n}", "email": f"load{n}@example.com"},
        "shipping_address": {"line1": f"{n} Main St", "city": "Portland", "country": "US"},
        "items": [{"sku": "BOLT", "quantity": bolts}, {"sku": "NUT", "quantity": 1}],
        "metadata": {"load": n},
    }


def read_back(url: str) -> tuple[dict[int, dict[str, Any]], dict[str, int], Counter[int]]:
    """Straight from the database: the load's orders by their `load` number (each must be
    there once), the stock left, and the `created` events per load number."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select id, order_number, (metadata->>'load')::int as load, line_items"
            " from agent_orders.orders"
        ).fetchall()
        stock = {
            r["sku"]: r["stock"]
            for r in conn.execute("select sku, stock from agent_orders.products").fetchall()
        }
        events = conn.execute(
            "select (o.metadata->>'load')::int as load, e.kind from agent_orders.order_events e"
            " join agent_orders.orders o on o.id = e.order_id"
        ).fetchall()
    per_load = Counter(r["load"] for r in rows)
    doubled = {n: c for n, c in per_load.items() if c > 1}
    assert not doubled, f"orders stored more than once: {doubled}"
    assert {e["kind"] for e in events} <= {"created"}
    return {r["load"]: r for r in rows}, stock, Counter(e["load"] for e in events)


def quantities(lines: list[dict[str, Any]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in lines:
        out[line["sku"]] += line["quantity"]
    return out


async def test_crash_of_server_and_database_loses_and_doubles_nothing(
    pg: PrivatePostgres, tmp_path: Path
) -> None:
    """Orders are placed over HTTP by 8 clients; the API server and the PostgreSQL postmaster
    (and its backends) are killed with SIGKILL mid-stream, then both restarted on the same
    data. Every order acknowledged with a 201 is there exactly once, nothing unsent appeared,
    stock matches the stored orders; clients retrying with their Idempotency-Key then get
    each unacknowledged order exactly once (replayed if it had committed before the crash)."""
    server = serve(pg.url, tmp_path / "api.log")
    try:
        server.start()
        async with httpx.AsyncClient(base_url=server.base, headers=bearer(OWNER)) as api:
            agent = await open_store(api)
            rng = random.Random(6)
            sent: dict[int, dict[str, Any]] = {}
            acked: dict[int, dict[str, Any]] = {}
            unknown: set[int] = set()
            numbers = itertools.count()
            crashed = asyncio.Event()
            refused: list[str] = []

            async def shopper() -> None:
                while not crashed.is_set():
                    n = next(numbers)
                    sent[n] = order_body(agent, n, rng.randint(1, 3))
                    try:
                        r = await api.post(
                            "/api/orders/",
                            json=sent[n],
                            headers={"Idempotency-Key": f"load-{n}"},
                            timeout=10,
                        )
                    except httpx.TransportError:
                        unknown.add(n)
                        continue
                    if r.status_code == 201:
                        acked[n] = r.json()
                    elif r.status_code == 503:
                        unknown.add(n)
                    else:
                        refused.append(f"{r.status_code} {r.text}")
                        unknown.add(n)

            clients = [asyncio.create_task(shopper()) for _ in range(8)]
            try:
                deadline = time.monotonic() + 20
                while len(acked) < 60 and time.monotonic() < deadline and not refused:
                    await asyncio.sleep(0.01)
                assert len(acked) >= 60, f"only {len(acked)} orders acknowledged: {refused}"
                # Mid-stream: requests are in flight, some transactions half done.
                server.crash()
                pg.crash()
                crashed.set()
            finally:
                crashed.set()
                await asyncio.gather(*clients)
            assert not refused, refused
            in_flight = sorted(unknown)

            pg.start()
            server.start()
            stored, stock, events = read_back(pg.url)

            # Acknowledged means stored, once, as acknowledged; nothing appeared unasked.
            lost = sorted(set(acked) - set(stored))
            assert not lost, f"acknowledged but lost: {lost}"
            assert all(str(stored[n]["id"]) == acked[n]["id"] for n in acked)
            assert set(stored) <= set(sent)
            assert all(events[n] == 1 for n in stored)
            used = sum((quantities(r["line_items"]) for r in stored.values()), Counter())
            assert stock == {sku: STOCK[sku] - used[sku] for sku in STOCK}

            # The clients retry what got no answer, with the same Idempotency-Key and body.
            replayed = 0
            for n in in_flight:
                r = await api.post(
                    "/api/orders/", json=sent[n], headers={"Idempotency-Key": f"load-{n}"}
                )
                assert r.status_code == 201, r.text
                acked[n] = r.json()
                if n in stored:
                    assert r.headers.get("Idempotent-Replayed") == "true"
                    assert acked[n]["id"] == str(stored[n]["id"])
                    replayed += 1

            stored, stock, events = read_back(pg.url)
            assert set(stored) == set(sent) == set(acked)
            assert all(str(stored[n]["id"]) == acked[n]["id"] for n in acked)
            assert all(events[n] == 1 for n in stored)
            ordered = sum((quantities(body["items"]) for body in sent.values()), Counter[str]())
            assert stock == {sku: STOCK[sku] - ordered[sku] for sku in STOCK}
            print(
                f"\n{len(sent)} orders sent, {len(in_flight)} unanswered at the crash,"
                f" {replayed} of those had committed (replayed on retry)"
            )
    finally:
        server.stop()


def problem_503(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith(PROBLEM_JSON)
    assert r.json()["code"] == "unavailable"
    assert r.headers["Retry-After"] == "1"


@pytest.fixture
async def small_pool(pg: PrivatePostgres, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the private database with 2 connections, waiting 1 s for a free one."""
    env = {
        "AGENT_ORDERS_POOL_MIN": "1",
        "AGENT_ORDERS_POOL_MAX": "2",
        "AGENT_ORDERS_POOL_TIMEOUT": "1",
    }
    with api_process(pg.url, tmp_path / "api.log", **env) as server:
        async with httpx.AsyncClient(
            base_url=server.base, headers=bearer(OWNER), timeout=15
        ) as api:
            yield api


def lock_stock(url: str) -> psycopg.Connection[Any]:
    """A transaction that holds the BOLT row, as a long stock count by a warehouse tool
    would: every order for BOLT waits for it, holding its pooled connection."""
    conn = psycopg.connect(url)
    conn.execute("select stock from agent_orders.products where sku = 'BOLT' for update")
    return conn


async def wait_for_lock_waiters(url: str, count: int, limit: float = 15.0) -> None:
    """Until `count` backends wait on a lock: the pool's connections are then all taken."""
    deadline = time.monotonic() + limit
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "select count(*) from pg_stat_activity"
                " where datname = current_database() and wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            assert time.monotonic() < deadline, "the blocked requests never reached the lock"
            await asyncio.sleep(0.05)


async def timed(request: Any) -> tuple[float, httpx.Response]:
    t0 = time.monotonic()
    r = await request
    return time.monotonic() - t0, r


async def test_pool_exhaustion_and_database_outage_answer_503_and_recover(
    pg: PrivatePostgres, small_pool: httpx.AsyncClient
) -> None:
    """A pool of 2 with a 1 s acquire timeout: when it is exhausted, when the database is
    killed under a running request and while it stays down, every request that needs it gets
    a 503 problem (never a 500, never a wait past the timeout); when the database is started
    again on the same data, the same server process serves again within seconds."""
    api = small_pool
    agent = await open_store(api)
    bolts = iter(range(1000))

    def create() -> Any:
        return api.post("/api/orders/", json=order_body(agent, next(bolts), 1))

    # 1. Pool exhaustion: two creates hold both connections (waiting on the locked row);
    # the rest get a 503 after the 1 s acquire timeout instead of queueing forever.
    holder = lock_stock(pg.url)
    try:
        blocked = [asyncio.create_task(timed(create())) for _ in range(2)]
        await wait_for_lock_waiters(pg.url, 2)
        waiting = [create() for _ in range(4)] + [api.get("/api/orders/"), api.get("/ready")]
        for elapsed, r in await asyncio.gather(*(timed(w) for w in waiting)):
            problem_503(r)
            assert 0.9 < elapsed < 4.0, elapsed
        assert (await api.get("/health")).status_code == 200  # no database needed
        assert not any(t.done() for t in blocked)
    finally:
        holder.rollback()
        holder.close()
    for _, r in await asyncio.gather(*blocked):
        assert r.status_code == 201, r.text
    assert (await api.get("/ready")).status_code == 200
    assert (await create()).status_code == 201

    # 2. The database dies mid-request: the request in flight gets a 503, not a 500 or a hang.
    holder = lock_stock(pg.url)
    in_flight = asyncio.create_task(timed(create()))
    await asyncio.sleep(0.3)
    assert not in_flight.done()
    pg.crash()
    holder.close()
    elapsed, r = await in_flight
    problem_503(r)
    assert elapsed < 4.0, elapsed

    # 3. While it is down, every request that needs it fails fast with a 503.
    t0 = time.monotonic()
    while time.monotonic() - t0 < OUTAGE:
        down = [create(), api.get("/api/orders/"), api.get("/ready"), api.get("/api/agents/")]
        down.append(api.get("/api/orders/track/ORD-2026-123456"))
        for elapsed, r in await asyncio.gather(*(timed(d) for d in down)):
            problem_503(r)
            assert elapsed < 4.0, elapsed
    assert (await api.get("/health")).status_code == 200

    # 4. It comes back on the same data: the same server process serves again, soon (the
    # pool's reconnection backoff would otherwise keep it down for about as long again).
    pg.start()
    t0 = time.monotonic()
    while (await api.get("/ready")).status_code != 200:
        assert time.monotonic() - t0 < 20, "the server did not recover"
        await asyncio.sleep(0.1)
    recovered = time.monotonic() - t0
    assert recovered < 5, f"the server took {recovered:.1f} s to notice the database is back"
    r = await create()
    assert r.status_code == 201, r.text
    listed = await api.get("/api/orders/", params={"agent_id": agent})
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["orders"]) == 4  # 2 released + 1 after + 1 now; none of the 503s
    print(f"\nrecovered {recovered:.2f} s after the database came back")


# Tenancy and redaction: owners A and B, each with one agent (store A, store B); customers X
# and Y ordered at both stores. Every row below is one reader and one thing it reaches for;
# whatever it may not see must not show up anywhere in the answer, byte for byte.

STORES = {"A": OWNER, "B": OTHER_OWNER}
CUSTOMERS = {
    "X": {"name": "Xena Quillfeather", "email": "xena@example.com", "phone": "+1 555 0101"},
    "Y": {"name": "Yuri Vantablack", "email": "yuri@example.com", "phone": "+1 555 0202"},
}
ORDER_KEYS = ("AX", "AY", "BX", "BY")
PRODUCTS = {"A": ("ONLY-A", "Alder widget"), "B": ("ONLY-B", "Birch widget")}


@dataclass
class Placed:
    """An order placed through the tools, with the personal data it holds."""

    id: str
    number: str
    token: str
    """From the tracking link `confirm_order` handed the customer."""
    markers: frozenset[str]


@dataclass
class World:
    url: str
    agents: dict[str, UUID]
    orders: dict[str, Placed]
    api_keys: dict[str, str]

    def forbidden(self, *visible: str) -> set[str]:
        """Personal data of every order except `visible` (minus what those show anyway)."""
        allowed = set().union(*(self.orders[k].markers for k in visible))
        hidden = set().union(*(p.markers for k, p in self.orders.items() if k not in visible))
        return hidden - allowed

    def context(self, store: str, reader: str, turn: int = 0) -> ToolContext:
        """Store's agent chatting with customer X or Y (verified), with someone who merely
        claims X's email without the host having verified it ("anon"), or with a stranger."""
        email, verified = None, False
        if reader in CUSTOMERS:
            email, verified = CUSTOMERS[reader]["email"], True
        elif reader == "anon":
            email = CUSTOMERS["X"]["email"]
        return ToolContext(
            agent_id=self.agents[store],
            conversation_id=f"chat-{store}{reader}",
            customer_email=email,
            customer_verified=verified,
            turn=turn,
        )


async def _build_world(url: str) -> World:
    db = await Database.open(url, migrate=False, min_size=1, max_size=2)
    try:
        toolkit = Toolkit(db)
        agents: dict[str, UUID] = {}
        keys: dict[str, str] = {}
        async with db.connection() as conn:
            for store, owner in STORES.items():
                agent = await make_store(db, owner, f"Store {store}")
                sku, name = PRODUCTS[store]
                await catalog.upsert_products(
                    conn, agent.id, [{"sku": sku, "name": name, "unit_price": "3.00"}]
                )
                agents[store] = agent.id
                keys[store] = (await api_keys.create_key(conn, owner, {"name": "matrix"}))[1]
        world = World(url, agents, {}, keys)
        for key in ORDER_KEYS:
            store, who = key
            ctx = world.context(store, who)
            args = place_args(
                [{"sku": PRODUCTS[store][0], "quantity": 1}],
                customer={**CUSTOMERS[who]},
                customer_notes=f"{key} note: leave it with the neighbour",
            )
            args["shipping_address"]["line1"] = f"{key} Hidden Lane 7"
            done = await place_and_confirm(toolkit, ctx, args)
            token = parse_qs(urlsplit(done["tracking_url"]).query)["token"][0]
            async with db.connection() as conn:
                order = await orders.get_order(conn, done["order_number"])
            assert order.customer_phone and order.customer_notes
            markers = frozenset(
                {
                    order.customer_name,
                    str(order.customer_email),
                    order.customer_phone,
                    order.shipping_address["line1"],
                    order.customer_notes,
                    token,
                }
            )
            world.orders[key] = Placed(str(order.id), order.order_number, token, markers)
        return world
    finally:
        await db.close()


@pytest.fixture(scope="module")
def world(server_url: str, template_db: str) -> Iterator[World]:
    """Built once for the module's matrix: the rows only read (a refused write writes
    nothing, and a cancellation is only drafted, never confirmed)."""
    name, url = new_database(server_url, template_db)
    try:
        with ThreadPoolExecutor(1) as pool:
            yield pool.submit(asyncio.run, _build_world(url)).result()
    finally:
        drop_database(server_url, name)


@pytest.fixture
async def matrix_db(world: World) -> AsyncIterator[Database]:
    database = await Database.open(world.url, migrate=False, min_size=1, max_size=4)
    yield database
    await database.close()


@pytest.fixture
async def http(matrix_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(matrix_db)) as c:
        yield c


def no_leak(text: str, forbidden: set[str]) -> None:
    leaked = sorted(m for m in forbidden if m in text)
    assert not leaked, f"leaked {leaked} in {text[:500]}"


def owner_headers(world: World, store: str, credential: str) -> dict[str, str]:
    if credential == "api_key":
        return {"Authorization": f"Bearer {world.api_keys[store]}"}
    return bearer(STORES[store])


CREDENTIALS = ("jwt", "api_key")


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(
    ("owner", "target", "visible"),
    [
        ("A", "AX", True),
        ("A", "AY", True),
        ("A", "BX", False),
        ("A", "BY", False),
        ("B", "AX", False),
        ("B", "AY", False),
        ("B", "BX", True),
        ("B", "BY", True),
    ],
)
async def test_owner_reads_and_writes_only_their_orders(
    world: World, http: httpx.AsyncClient, owner: str, target: str, visible: bool, credential: str
) -> None:
    order = world.orders[target]
    headers = owner_headers(world, owner, credential)
    forbidden = world.forbidden(*(k for k in ORDER_KEYS if k[0] == owner))
    for ref in (order.id, order.number):
        r = await http.get(f"/api/orders/{ref}", headers=headers)
        assert r.status_code == (200 if visible else 404), r.text
        no_leak(r.text, forbidden)
    if visible:
        assert target[1] in {"X", "Y"} and CUSTOMERS[target[1]]["email"] in r.text
        return
    # Writes are refused the same way, and change nothing.
    before = (
        await http.get(f"/api/orders/{order.id}", headers=owner_headers(world, target[0], "jwt"))
    ).json()
    for body in ({"status": "cancelled"}, {"status": "confirmed", "note": "mine now"}):
        r = await http.patch(f"/api/orders/{order.id}/status", json=body, headers=headers)
        assert r.status_code == 404, r.text
        no_leak(r.text, forbidden)
    after = (
        await http.get(f"/api/orders/{order.id}", headers=owner_headers(world, target[0], "jwt"))
    ).json()
    assert after == before


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(("owner", "other"), [("A", "B"), ("B", "A")])
async def test_owner_lists_stats_agents_and_catalog_stop_at_their_line(
    world: World,
    http: httpx.AsyncClient,
    matrix_db: Database,
    owner: str,
    other: str,
    credential: str,
) -> None:
    headers = owner_headers(world, owner, credential)
    mine = {world.orders[k].number for k in ORDER_KEYS if k[0] == owner}
    forbidden = world.forbidden(*(k for k in ORDER_KEYS if k[0] == owner))
    theirs, their_agent = world.orders[other + "X"], world.agents[other]

    async def get(path: str, **params: Any) -> httpx.Response:
        r = await http.get(path, params=params, headers=headers)
        no_leak(r.text, forbidden)
        return r

    async def numbers(**params: Any) -> set[str]:
        r = await get("/api/orders/", **params)
        assert r.status_code == 200, r.text
        return {o["order_number"] for o in r.json()["orders"]}

    assert await numbers() == mine
    for who in CUSTOMERS.values():  # the same customers ordered from both owners
        assert await numbers(search=who["email"]) == {
            world.orders[owner + c].number for c, v in CUSTOMERS.items() if v is who
        }
    assert await numbers(search=theirs.number) == set()
    assert await numbers(agent_id=str(their_agent)) == set()

    stats = await get("/api/orders/stats/summary")
    assert stats.status_code == 200 and stats.json()["total_orders"] == 2
    stats = await get("/api/orders/stats/summary", agent_id=str(their_agent))
    assert stats.status_code == 200 and stats.json()["total_orders"] == 0

    agents_seen = await get("/api/agents/")
    assert [a["id"] for a in agents_seen.json()] == [str(world.agents[owner])]
    assert (await get(f"/api/agents/{their_agent}")).status_code == 404
    products = await get(f"/api/agents/{their_agent}/products")
    assert products.status_code == 404
    assert PRODUCTS[other][1] not in products.text
    keys = await get("/api/api-keys/")
    assert keys.status_code == 200 and len(keys.json()) == 1

    # Writes across the line are refused and write nothing.
    async with matrix_db.connection() as conn:
        before = await census(conn)
    refused = [
        await http.patch(f"/api/agents/{their_agent}", json={"name": "Mine"}, headers=headers),
        await http.post(
            f"/api/agents/{their_agent}/products",
            json={"products": [{"sku": "NEW", "name": "Planted", "unit_price": "1.00"}]},
            headers=headers,
        ),
        await http.post(
            "/api/orders/",
            json={
                "agent_id": str(their_agent),
                "customer": {"name": "Mallory"},
                "shipping_address": {"line1": "1 Way", "city": "Oslo", "country": "NO"},
                "items": [{"sku": PRODUCTS[other][0], "quantity": 1}],
            },
            headers=headers,
        ),
    ]
    for r in refused:
        assert r.status_code == 404, r.text
        no_leak(r.text, forbidden)
    async with matrix_db.connection() as conn:
        assert await census(conn) == before


async def census(conn: Any) -> dict[str, Any]:
    cur = await conn.execute(
        "select (select count(*) from agent_orders.orders) as orders,"
        " (select json_object_agg(agent_id::text || sku, stock) from agent_orders.products)"
        "   as stock, (select json_agg(name order by id) from agent_orders.agents) as agents"
    )
    return dict(await cur.fetchone())


# Tools: store A's or B's agent talking with X or Y (verified) or with "anon", who claims X's
# email unverified, asks for each order by number. Expected: the order's own customer at its
# own store gets the full view; anyone else at that store a redacted one; the other store's
# agent does not find it at all.
TOOL_MATRIX = [
    ("A", "X", "AX", "full"),
    ("A", "X", "AY", "redacted"),
    ("A", "X", "BX", "not_found"),
    ("A", "X", "BY", "not_found"),
    ("A", "Y", "AX", "redacted"),
    ("A", "Y", "AY", "full"),
    ("A", "Y", "BX", "not_found"),
    ("A", "Y", "BY", "not_found"),
    ("A", "anon", "AX", "redacted"),
    ("A", "anon", "AY", "redacted"),
    ("A", "anon", "BX", "not_found"),
    ("A", "anon", "BY", "not_found"),
    ("B", "X", "AX", "not_found"),
    ("B", "X", "AY", "not_found"),
    ("B", "X", "BX", "full"),
    ("B", "X", "BY", "redacted"),
    ("B", "Y", "AX", "not_found"),
    ("B", "Y", "AY", "not_found"),
    ("B", "Y", "BX", "redacted"),
    ("B", "Y", "BY", "full"),
    ("B", "anon", "AX", "not_found"),
    ("B", "anon", "AY", "not_found"),
    ("B", "anon", "BX", "redacted"),
    ("B", "anon", "BY", "redacted"),
]


@pytest.mark.parametrize(("store", "reader", "target", "expected"), TOOL_MATRIX)
async def test_tools_show_an_order_only_to_its_customer_at_its_store(
    world: World, matrix_db: Database, store: str, reader: str, target: str, expected: str
) -> None:
    toolkit = Toolkit(matrix_db)
    ctx = world.context(store, reader, turn=5)
    order = world.orders[target]
    # By number alone, then with the email the reader goes by. For "anon" that is X's email:
    # like the public tracking page, the number with the order's own email shows it in full.
    for email in (None, ctx.customer_email):
        want = expected
        if want == "redacted" and email == CUSTOMERS[target[1]]["email"]:
            want = "full"
        forbidden = world.forbidden(target) if want == "full" else world.forbidden()
        args = {"order_number": order.number, "email": email}
        result = await toolkit.call(ctx, "get_order_status", args)
        no_leak(json.dumps(result), forbidden)
        if want == "not_found":
            assert result["ok"] is False and result["error"]["code"] == "not_found", result
        else:
            assert result["ok"] is True, result
            assert result["details"] == want
            assert ("customer" in result) is (want == "full")

    # Cancelling: only the order's own (verified) customer gets as far as a draft; knowing
    # the email is not enough.
    forbidden = world.forbidden(target) if expected == "full" else world.forbidden()
    result = await toolkit.call(
        ctx, "cancel_order", {"order_number": order.number, "reason": "changed my mind"}
    )
    no_leak(json.dumps(result), forbidden)
    if expected == "full":
        assert result["ok"] is True and result["status"] == "awaiting_confirmation", result
    else:
        assert result["ok"] is False and result["error"]["code"] == "not_found", result


@pytest.mark.parametrize("reader", ["X", "Y", "anon"])
@pytest.mark.parametrize("store", ["A", "B"])
async def test_tools_list_search_and_drafts_stay_in_their_conversation(
    world: World, matrix_db: Database, store: str, reader: str
) -> None:
    toolkit = Toolkit(matrix_db)
    ctx = world.context(store, reader, turn=5)
    other = "B" if store == "A" else "A"
    mine = [store + reader] if reader in CUSTOMERS else []
    forbidden = world.forbidden(*mine)

    listed = await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": 20})
    no_leak(json.dumps(listed), forbidden)
    if mine:
        assert [o["order_number"] for o in listed["orders"]] == [world.orders[mine[0]].number]
    else:
        assert listed["ok"] is False and listed["error"]["code"] == "identity_required"

    # The catalog is the store's own: the other store's product is neither found nor sold.
    found = await toolkit.call(ctx, "search_products", {"query": "widget", "limit": 20})
    assert [p["sku"] for p in found["products"]] == [PRODUCTS[store][0]]
    found = await toolkit.call(ctx, "search_products", {"query": None, "limit": 20})
    assert PRODUCTS[other][0] not in json.dumps(found)
    sold = await toolkit.call(
        ctx, "place_order", place_args([{"sku": PRODUCTS[other][0], "quantity": 1}])
    )
    assert sold["ok"] is False and sold["error"]["code"] == "unknown_sku"
    assert PRODUCTS[other][1] not in json.dumps(sold)

    # A draft made in another conversation (same store or not) cannot be confirmed here.
    for elsewhere in (world.context(store, "Z"), world.context(other, reader)):
        draft = await toolkit.call(elsewhere, "place_order", place_args())
        assert draft["ok"] is True, draft
        done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert done["ok"] is False and done["error"]["code"] == "not_found", done


# Public tracking (JSON and the HTML page), no login: the number alone is redacted; the
# order's own email or its own tracking token unlock it; another order's email is the same
# 404 as an unknown number; another order's token unlocks nothing.
CREDS = ("none", "own_email", "own_token", "other_email", "other_token")
EXPECTED = {
    "none": "redacted",
    "own_email": "full",
    "own_token": "full",
    "other_email": "not_found",
    "other_token": "redacted",
}


@pytest.mark.parametrize("cred", CREDS)
@pytest.mark.parametrize("target", ORDER_KEYS)
async def test_public_tracking_unlocks_only_with_the_orders_own_secret(
    world: World, http: httpx.AsyncClient, target: str, cred: str
) -> None:
    order = world.orders[target]
    # The other customer's order at the same store: same agent, different person.
    other_key = target[0] + ("Y" if target[1] == "X" else "X")
    other = world.orders[other_key]
    params = {
        "none": {},
        "own_email": {"email": CUSTOMERS[target[1]]["email"].upper()},
        "own_token": {"token": order.token},
        "other_email": {"email": CUSTOMERS[other_key[1]]["email"]},
        "other_token": {"token": other.token},
    }[cred]
    expected = EXPECTED[cred]
    forbidden = world.forbidden(target) if expected == "full" else world.forbidden()
    for sent in params.values():  # what the caller sent may come back (the form keeps it)
        forbidden.discard(sent)

    # Secrets go in a body (JSON, or the page's form); the link's token through its redirect.
    json_path = f"/api/orders/track/{order.number}"
    r = await (http.post(json_path, json=params) if params else http.get(json_path))
    no_leak(r.text, forbidden)
    if "email" in params:
        page = await http.post(f"/track/{order.number}", data=params)
    else:
        page = await http.get(f"/track/{order.number}", params=params, follow_redirects=True)
    no_leak(page.text, forbidden)
    if expected == "not_found":
        assert r.status_code == page.status_code == 404, r.text
        return
    assert r.status_code == page.status_code == 200, r.text
    assert r.json()["full"] is (expected == "full")
    assert (CUSTOMERS[target[1]]["name"] in page.text) is (expected == "full")
