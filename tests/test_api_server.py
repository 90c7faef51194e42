"""The real thing: `agent-orders run` and `serve` as uvicorn processes on a free port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from api.app import create_app
from tests.api_support import JWT_SECRET, bearer, server, settings
from tests.conftest import OWNER


def test_run_serves_the_demo_store_with_a_working_key(db_url: str, tmp_path: Path) -> None:
    with server(["run"], {"DATABASE_URL": db_url}, tmp_path) as live:
        out = live.output()
        key = re.search(r"export KEY=(\S+)", out)
        link = re.search(r"tracking link\s+(\S+)", out)
        assert key and link, out
        for path in ("/docs", "/dashboard", "/track"):
            assert f"{live.base}{path}" in out
            assert httpx.get(f"{live.base}{path}").status_code == 200

        api = httpx.Client(base_url=live.base, headers={"Authorization": f"Bearer {key[1]}"})
        listed = api.get("/api/orders/")
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["orders"]) == 6
        assert api.get("/docs").status_code == 200

        # The printed link is the customer's, on this server: its token unlocks the full view.
        assert link[1].startswith(f"{live.base}/track/ORD-")
        parts = urlsplit(link[1])
        number = parts.path.rsplit("/", 1)[-1]
        token = parts.query.removeprefix("token=")
        tracked = httpx.post(f"{live.base}/api/orders/track/{number}", json={"token": token})
        assert tracked.status_code == 200, tracked.text
        assert tracked.json()["full"] is True
        assert tracked.json()["status"] == "shipped"


def test_serve_with_two_workers(db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "AUTH_JWT_SECRET": JWT_SECRET, "SUPABASE_URL": ""}
    with server(["serve", "--workers", "2"], env, tmp_path) as live:
        api = httpx.Client(base_url=live.base, headers=bearer(OWNER))
        for _ in range(6):  # spread over both workers
            r = api.post("/api/agents/", json={"name": "Live", "shipping_fee": "1.50"})
            assert r.status_code == 201, r.text
        assert [a["shipping_fee"] for a in api.get("/api/agents/").json()] == ["1.50"] * 6
        r = httpx.get(f"{live.base}/api/orders/", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"


def test_serve_starts_one_worker_per_cpu_unless_told(db_url: str, tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    with server(["serve"], {"DATABASE_URL": db_url}, tmp_path) as live:
        deadline = time.monotonic() + 30
        while live.output().count("Started server process") < cpus:
            assert time.monotonic() < deadline, live.output()
            time.sleep(0.1)
        assert httpx.get(f"{live.base}/health").status_code == 200
    assert live.output().count("Started server process") == cpus
    (tmp_path / "one").mkdir()
    with server(["serve", "--workers", "1"], {"DATABASE_URL": db_url}, tmp_path / "one") as one:
        assert httpx.get(f"{one.base}/health").status_code == 200
    assert one.output().count("Started server process") == 1


def test_workers_end_when_serve_is_killed(db_url: str, tmp_path: Path) -> None:
    """`kill -9` of `serve` leaves its workers no chance to be told; they end on their own
    rather than keep the port and the database's connections as orphans."""
    with server(["serve", "--workers", "2"], {"DATABASE_URL": db_url}, tmp_path) as live:
        assert live.proc is not None
        parent = live.proc.pid
        deadline = time.monotonic() + 60
        while len(workers := _spawned_children(parent)) < 2:
            assert time.monotonic() < deadline, live.output()
            time.sleep(0.2)
        live.crash()
        deadline = time.monotonic() + 30
        while alive := [p for p in workers if _running(p)]:
            assert time.monotonic() < deadline, f"orphaned workers {alive}:\n{live.output()}"
            time.sleep(0.2)


def _spawned_children(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_run_stops_the_embedded_server(tmp_path: Path) -> None:
    """`make run` on the embedded server, then a SIGTERM (a service manager, `kill`): the
    server shuts down gracefully and takes its embedded PostgreSQL with it."""
    env = {"DATABASE_URL": "", "AGENT_ORDERS_DATA_DIR": str(tmp_path / "data")}
    with server(["run"], env, tmp_path) as live:
        pidfile = tmp_path / "data" / "pgdata" / "postmaster.pid"
        postgres = int(pidfile.read_text().split()[0])
        assert httpx.get(f"{live.base}/ready").status_code == 200
    # `server` sent SIGTERM and waited for the process to exit.
    for _ in range(100):
        try:
            os.kill(postgres, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(postgres, signal.SIGKILL)
    raise AssertionError(f"the embedded server outlived `agent-orders run`:\n{live.output()}")


async def test_the_server_purges_expired_keys_and_drafts_while_it_runs(db_url: str) -> None:
    app = create_app(settings=settings(database_url=db_url, housekeeping_seconds=0.2))
    async with (
        app.router.lifespan_context(app),
        await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn,
    ):
        agent = await conn.execute(
            "insert into agent_orders.agents (owner_id, name, currency)"
            " values (%s, 'Chores', 'USD') returning id",
            (OWNER,),
        )
        agent_id = (await agent.fetchone())[0]  # type: ignore[index]
        await conn.execute(
            "insert into agent_orders.idempotency_keys (owner_id, key, request_hash,"
            " expires_at) values (%s, 'old', 'h', now() - interval '1 hour')",
            (OWNER,),
        )
        await conn.execute(
            "insert into agent_orders.drafts (id, kind, agent_id, conversation_id, turn,"
            " payload, expires_at) values ('stale', 'order', %s, 'c', 0, '{}',"
            " now() - interval '30 days')",
            (agent_id,),
        )
        for _ in range(600):
            cur = await conn.execute(
                "select (select count(*) from agent_orders.idempotency_keys)"
                " + (select count(*) from agent_orders.drafts)"
            )
            if (await cur.fetchone()) == (0,):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("expired idempotency keys and drafts were not purged")
