"""Delivery under crashes: kill -9 of the server and of a worker in the middle of deliveries.

Runs on a PostgreSQL of its own (`PrivatePostgres`), like the other reliability tests.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.api_support import bearer
from tests.conftest import OWNER
from tests.reliability_support import PrivatePostgres, private_postgres, serve
from tests.test_reliability import open_store, order_body
from tests.webhook_support import receiver

pytestmark = pytest.mark.slow

DELIVERY = {
    "AGENT_ORDERS_WEBHOOK_ALLOW_PRIVATE": "1",
    "AGENT_ORDERS_DELIVERY_LEASE": "2",
    "AGENT_ORDERS_DELIVERY_POLL": "0.2",
    "AGENT_ORDERS_RETRY_SCALE": "0.01",
    "SMTP_URL": "",
}
"""Short leases so the killed processes' claims come back within the test."""


class Worker:
    """`agent-orders worker` as a child process that a test may kill -9."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.env = {**os.environ, "DATABASE_URL": database_url, **DELIVERY}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until it says it is delivering."""
        before = self._banners()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent_tools.cli", "worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while self._banners() == before:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)

    def _banners(self) -> int:
        return self.log.read_text().count(": delivering") if self.log.exists() else 0

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> int | None:
        """SIGTERM; the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.proc = None


@pytest.fixture
def pg() -> Any:
    with private_postgres() as server:
        yield server


def delivery_states(url: str) -> Counter[str]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "select state, count(*) as n from agent_orders.webhook_deliveries group by state"
        ).fetchall()
    return Counter({r["state"]: r["n"] for r in rows})


async def test_kill_9_of_server_and_worker_mid_delivery_loses_nothing(
    pg: PrivatePostgres, tmp_path: Path
) -> None:
    """Orders are placed by 8 clients while the server's deliverer and a worker send their
    webhooks to a slow receiver; both are killed with SIGKILL mid-stream, then restarted.
    Afterwards every stored order's `order.created` has reached the receiver (at least once),
    every delivery is recorded as succeeded exactly once per webhook-id, nothing arrived for
    an order that does not exist, and duplicates are bounded by what was in flight."""
    server = serve(pg.url, tmp_path / "api.log", **DELIVERY)
    worker = Worker(pg.url, tmp_path / "worker.log")
    with receiver(delay=0.05) as hook:
        try:
            server.start()
            worker.start()
            async with httpx.AsyncClient(base_url=server.base, headers=bearer(OWNER)) as api:
                agent = await open_store(api)
                r = await api.post("/api/webhooks/", json={"url": hook.url})
                assert r.status_code == 201, r.text
                numbers = itertools.count()
                sent: dict[int, dict[str, Any]] = {}
                unknown: set[int] = set()
                acked = 0
                crashed = asyncio.Event()

                async def shopper() -> None:
                    nonlocal acked
                    while not crashed.is_set():
                        n = next(numbers)
                        sent[n] = order_body(agent, n, 1)
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
                            acked += 1
                        else:
                            unknown.add(n)

                clients = [asyncio.create_task(shopper()) for _ in range(8)]
                try:
                    deadline = time.monotonic() + 30
                    while (acked < 60 or len(hook.received) < 20) and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    assert acked >= 60 and hook.received, (acked, len(hook.received))
                    # Mid-stream: orders in flight, deliveries claimed and being sent.
                    server.crash()
                    worker.crash()
                    crashed.set()
                finally:
                    crashed.set()
                    await asyncio.gather(*clients)
                at_crash = delivery_states(pg.url)
                arrived_before = len(hook.received)

                server.start()
                worker.start()
                for n in sorted(unknown):  # the clients retry what got no answer
                    r = await api.post(
                        "/api/orders/", json=sent[n], headers={"Idempotency-Key": f"load-{n}"}
                    )
                    assert r.status_code == 201, r.text

                deadline = time.monotonic() + 60
                while True:
                    states = delivery_states(pg.url)
                    if states["succeeded"] == sum(states.values()):
                        break
                    assert time.monotonic() < deadline, f"deliveries stuck: {states}"
                    await asyncio.sleep(0.2)
                assert worker.stop() == 0  # a graceful stop releases and exits cleanly
        finally:
            server.stop()
            worker.stop()

        with psycopg.connect(pg.url, row_factory=dict_row) as conn:
            stored = {
                str(r["id"]) for r in conn.execute("select id from agent_orders.orders").fetchall()
            }
            recorded = conn.execute(
                "select d.msg_id, x.order_id::text as order_id, d.state"
                " from agent_orders.webhook_deliveries d"
                " join agent_orders.outbox x on x.event_id = d.event_id"
            ).fetchall()
    assert len(stored) == len(sent)  # every order placed once, after the retries
    by_id = {r["msg_id"]: r["order_id"] for r in recorded}
    assert set(by_id.values()) == stored  # one delivery per order's created event
    assert len(by_id) == len(recorded) == len(stored)
    received = Counter(hook.ids())
    # Every delivery reached the receiver at least once; nothing else did.
    assert set(received) == set(by_id)
    for got in hook.received:
        assert got.json["data"]["order"]["id"] == by_id[got.webhook_id]
        assert got.json["type"] == "order.created"
    duplicates = sum(n - 1 for n in received.values())
    # Only what the two killed processes had in flight may arrive twice.
    assert duplicates <= 2 * 32, duplicates
    print(
        f"\n{len(stored)} orders, {arrived_before} webhooks before the crash"
        f" (deliveries then: {dict(at_crash)}), {duplicates} delivered twice after it"
    )
