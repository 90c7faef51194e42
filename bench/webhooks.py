"""`webhooks`: deliveries per second against raw httpx, and event-to-delivery latency.

A receiver in a process of its own (a minimal asyncio HTTP/1.1 server answering 200) gets:

1. throughput: `EVENTS` order events queued first, then one deliverer (the one `serve`
   runs, `delivery_concurrency` in flight) sends them all; beside it, in the same run, raw
   httpx posts the very same signed payloads with the same concurrency and nothing else
   (no claim, no record). Alternating rounds; the ratio is the target (>= 0.5).
2. latency: orders placed at a steady `RATE` per second while the deliverer runs; from each
   order's commit to its webhook's arrival at the receiver: p50 / p99 (target p99 < 1 s).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any
from uuid import UUID

import httpx

from agent_tools.config import Settings
from agent_tools.db import Database
from agent_tools.delivery import webhook
from agent_tools.delivery.worker import delivering
from agent_tools.models import Actor, Provenance
from agent_tools.service import events, orders, webhooks
from bench.dataset import make_stores
from bench.harness import Figure, Result, Target, fresh_database, percentile

REQUIRES = ("agent_tools.delivery.worker", "agent_tools.service.webhooks")
EVENTS = 1000
ROUNDS = 2
RATE = 50.0
STEADY_SECONDS = 20.0
CONCURRENCY = 32


# ---- the receiver, in its own process ----------------------------------------------------------


def _receive(pipe: Connection) -> None:
    """Serve on a free port; report it; on "report", send [(webhook-id, arrival time)]."""

    arrivals: list[tuple[str, float]] = []

    class Http(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                length, ident = 0, ""
                for line in self.buf[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    key = name.strip().lower()
                    if key == b"content-length":
                        length = int(value)
                    elif key == b"webhook-id":
                        ident = value.strip().decode()
                if len(self.buf) < end + 4 + length:
                    return
                self.buf = self.buf[end + 4 + length :]
                arrivals.append((ident, time.time()))
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: 2\r\n\r\n{}"
                )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Http, "127.0.0.1", 0)
        pipe.send(server.sockets[0].getsockname()[1])
        while True:
            await loop.run_in_executor(None, pipe.poll, None)
            command = pipe.recv()
            if command == "stop":
                return
            pipe.send(list(arrivals))
            arrivals.clear()

    asyncio.run(main())


class Receiver:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_receive, args=(child,), daemon=True)
        self.proc.start()
        self.url = f"http://127.0.0.1:{self.pipe.recv()}/hooks"

    def take(self) -> list[tuple[str, float]]:
        """Arrivals since the last call."""
        self.pipe.send("report")
        got: list[tuple[str, float]] = self.pipe.recv()
        return got

    def close(self) -> None:
        self.pipe.send("stop")
        self.proc.join(5)


# ---- the scenario ------------------------------------------------------------------------------


async def _place(db: Database, agent_id: UUID, sku: str, n: int) -> dict[UUID, float]:
    """`n` orders, one transaction each; the wall-clock time each one committed."""
    committed: dict[UUID, float] = {}
    for _ in range(n):
        async with db.connection() as conn:
            order = await orders.create_order(conn, _order(agent_id, sku), by=_BY)
        committed[order.id] = time.time()
    return committed


_BY = Provenance(actor=Actor.owner)


def _order(agent_id: UUID, sku: str) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "customer": {"name": "Ann Lee", "email": "ann@example.com"},
        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
        "items": [{"sku": sku, "quantity": 1}],
    }


async def _wait_for(receiver: Receiver, n: int, got: list[tuple[str, float]]) -> None:
    deadline = time.monotonic() + 300
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} deliveries arrived"
        await asyncio.sleep(0.05)
        got += receiver.take()


async def _signed_payloads(db: Database, settings: Settings, secret: str) -> list[webhook.Job]:
    """The pending deliveries as the deliverer would send them (same bodies, same secret)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "select id, endpoint_id::text, event_id, msg_id, type, attempts"
            " from agent_orders.webhook_deliveries where state = 'pending' order by id"
        )
        rows = await cur.fetchall()
        bodies = await events.bodies(conn, [r["event_id"] for r in rows], settings)
    return [
        webhook.Job(
            id=r["id"],
            endpoint_id=r["endpoint_id"],
            msg_id=r["msg_id"],
            type=r["type"],
            attempts=0,
            url="",
            secrets=[secret],
            body=webhook.dumps(bodies[r["event_id"]]),
        )
        for r in rows
    ]


async def _raw(url: str, jobs: list[webhook.Job]) -> float:
    """Raw httpx: sign and POST each payload, `CONCURRENCY` at a time. Returns the seconds."""
    queue = list(jobs)
    async with httpx.AsyncClient(
        timeout=10, limits=httpx.Limits(max_connections=CONCURRENCY)
    ) as client:

        async def worker() -> None:
            while queue:
                job = queue.pop()
                assert job.body is not None
                headers = webhook.sign(job, job.body, datetime.now(UTC))
                r = await client.post(url, content=job.body.encode(), headers=headers)
                assert r.status_code == 200

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start


async def run(opts: Any) -> Result:
    from api.settings import ApiSettings

    result = Result(
        "webhooks",
        {
            "events": EVENTS,
            "rounds": ROUNDS,
            "concurrency": CONCURRENCY,
            "steady_rate_per_s": RATE,
            "steady_seconds": STEADY_SECONDS,
            "receiver": "asyncio HTTP/1.1 in its own process, 200 with a 2-byte body",
        },
    )
    settings = ApiSettings(
        _env_file=None,  # type: ignore[call-arg]
        webhook_allow_private=True,
        delivery_concurrency=CONCURRENCY,
    )
    receiver = Receiver()
    try:
        async with fresh_database("webhooks", keep=opts.keep) as url:
            db = await Database.open(url, migrate=False, min_size=4, max_size=12)
            try:
                store = (await make_stores(db, owners=1, agents_per_owner=1))[0]
                sku = store.products[0][0]
                async with db.connection() as conn:
                    endpoint = await webhooks.create_endpoint(
                        conn, store.agent.owner_id, {"url": receiver.url}, allow_private=True
                    )
                deliverer_s: list[float] = []
                raw_s: list[float] = []
                for _ in range(ROUNDS):
                    # Queue the events with no deliverer running: it then works through a
                    # backlog at full speed.
                    await _place(db, store.agent.id, sku, EVENTS)
                    jobs = await _signed_payloads(db, settings, endpoint.secret)
                    raw_s.append(await _raw(receiver.url, jobs))
                    receiver.take()
                    got: list[tuple[str, float]] = []
                    start = time.perf_counter()
                    async with delivering(db, settings):
                        await _wait_for(receiver, EVENTS, got)
                        deliverer_s.append(time.perf_counter() - start)
                    assert len({i for i, _ in got}) == EVENTS
                raw_rate = EVENTS * ROUNDS / sum(raw_s)
                ours_rate = EVENTS * ROUNDS / sum(deliverer_s)
                result.add(
                    Figure("raw httpx, same signed payloads", EVENTS * ROUNDS, per_s=raw_rate)
                )
                result.add(
                    Figure(
                        "deliverer (claim, sign, POST, record)",
                        EVENTS * ROUNDS,
                        per_s=ours_rate,
                        note=f"{CONCURRENCY} in flight",
                    )
                )
                ratio = ours_rate / raw_rate
                result.ratios["deliverer / raw httpx deliveries per s"] = ratio
                result.targets.append(
                    Target("deliveries per s vs raw httpx", ratio, 0.5, "x", at_most=False)
                )

                # Steady load: RATE orders a second, the deliverer running as in `serve`.
                latencies: list[float] = []
                async with delivering(db, settings):
                    got = []
                    committed: dict[UUID, float] = {}
                    n = int(RATE * STEADY_SECONDS)
                    t0 = time.monotonic()
                    for i in range(n):
                        await asyncio.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
                        committed.update(await _place(db, store.agent.id, sku, 1))
                    await _wait_for(receiver, n, got)
                async with db.connection() as conn:
                    cur = await conn.execute(
                        "select d.msg_id, x.order_id from agent_orders.webhook_deliveries d"
                        " join agent_orders.outbox x on x.event_id = d.event_id"
                        " where x.order_id = any(%(ids)s)",
                        {"ids": list(committed)},
                    )
                    order_of = {r["msg_id"]: r["order_id"] for r in await cur.fetchall()}
                latencies = [at - committed[order_of[i]] for i, at in got if i in order_of]
                steady = result.add(
                    Figure.from_latencies(
                        "event commit -> delivery arrival",
                        latencies,
                        wall=STEADY_SECONDS,
                        note=f"steady {RATE:g} events/s",
                    )
                )
                assert steady.p99_ms is not None
                result.values["steady p50 ms"] = round(percentile(latencies, 0.5) * 1000, 2)
                result.targets.append(
                    Target("event-to-delivery p99 at 50 events/s", steady.p99_ms, 1000, "ms")
                )
            finally:
                await db.close()
    finally:
        receiver.close()
    return result
