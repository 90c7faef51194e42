"""`http`: a real uvicorn server under 50 connections from a separate load-generating process.

One worker: public tracking lookups, the owner's first list page and order creation, each
against the same app's trivial `/health` endpoint; tracking again paced at half its
saturation rate (latency proper) and the server's peak RSS. Then one worker per CPU:
`/health` and tracking again, for the scaling ratio. Every run records the CPU time the
server, the load generator and PostgreSQL spent per request, so a ratio that the machine
cannot give is visible as such. The tracking rate limit is lifted for the run (every request
comes from one address); access logging is off; the server does not deliver webhooks or mail
(the COPY-loaded orders would otherwise queue 20,000 mails for it to render meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from agent_tools.db import Database
from bench.dataset import Sample, Store, load_orders, make_stores
from bench.harness import ROOT, Figure, Result, Target, fresh_database

REQUIRES = ("api.app",)
CONNECTIONS = 50
SECONDS = 8.0
WARMUP = 1.5
ORDERS = 20_000
TRACK_RATIO = 0.5
TRACK_P99_MS = 20.0
RSS_MB = 150.0
PACED = "GET tracking lookup, paced"
SCALE_RATIO = 1.6
HEALTH, TRACK = "GET /health (trivial)", "GET tracking lookup"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


async def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}")
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not become ready in 30 s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (uvicorn's workers, the postmaster's backends)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    out.append(int(entry.name))
    return out


def _group_cpu(pid: int | None) -> float:
    """CPU seconds of a process and its children so far (the server and its workers, or
    PostgreSQL and its backends)."""
    if pid is None:
        return 0.0
    return sum(_cpu_seconds(p) for p in [pid, *_children(pid)])


def _postmaster(url: str) -> int | None:
    """The local PostgreSQL serving `url`, if its data directory is on this machine."""
    from psycopg.conninfo import conninfo_to_dict

    host = str(conninfo_to_dict(url).get("host") or "")
    pidfile = Path(host) / "postmaster.pid" if host.startswith("/") else None
    if pidfile is None or not pidfile.exists():
        return None
    return int(pidfile.read_text().split()[0])


async def _load(
    port: int,
    requests: list[dict[str, Any]],
    pid: int,
    rate: float | None = None,
    postgres: int | None = None,
) -> dict[str, Any]:
    """One run of the load generator; adds the CPU milliseconds per request of the server
    (with its workers), the load generator and PostgreSQL, and the machine's load average."""
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "connections": CONNECTIONS,
        "seconds": SECONDS,
        "warmup": WARMUP,
        "requests": requests,
        "rate": rate,
    }
    cpu, pg = _group_cpu(pid), _group_cpu(postgres)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        json.dumps(spec),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the load generator failed ({proc.returncode})")
    run = dict(json.loads(out))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Warm-up requests are not counted in `requests`; scale the CPU to the measured window.
    window = 1000 * SECONDS / (SECONDS + WARMUP)
    run["cpu_ms"] = (_group_cpu(pid) - cpu) * window
    run["postgres_cpu_ms"] = (_group_cpu(postgres) - pg) * window if postgres else None
    run["loadgen_cpu_ms"] = (
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    ) * window
    run["load_average"] = os.getloadavg()[0]
    return run


def _per_request(run: dict[str, Any], key: str) -> float | None:
    value = run.get(key)
    # A process group's CPU can shrink by what a backend that exited meanwhile had used:
    # a request cannot cost less than nothing.
    return None if value is None else max(0.0, float(value)) / max(1, run["requests"])


def _figure(name: str, run: dict[str, Any], expect: str) -> Figure:
    bad = {k: v for k, v in run["statuses"].items() if k != expect}
    if bad:
        raise RuntimeError(f"{name}: unexpected statuses {bad} (wanted {expect})")
    mode = f"paced {run['rate']:.0f}/s" if run.get("rate") else "flat out"
    cpu = [
        f"{who} {v:.3f}"
        for who, key in (("server", "cpu_ms"), ("postgres", "postgres_cpu_ms"))
        if (v := _per_request(run, key)) is not None
    ]
    cpu.append(f"loadgen {_per_request(run, 'loadgen_cpu_ms') or 0:.3f}")
    return Figure(
        name,
        run["requests"],
        run["per_s"],
        run["p50_ms"],
        run["p99_ms"],
        f"{CONNECTIONS} conns, {mode}, CPU ms/req: {', '.join(cpu)};"
        f" load average {run['load_average']:.1f}",
    )


def _requests(
    store: Store, samples: list[Sample], token: str
) -> dict[str, tuple[list[dict[str, Any]], str]]:
    auth = {"Authorization": f"Bearer {token}"}
    owned = [s for s in samples if s.owner_id == store.agent.owner_id]
    body = {
        "agent_id": str(store.agent.id),
        "customer": {"name": "Bench Customer", "email": "bench@example.com"},
        "shipping_address": {
            "line1": "1 Main St",
            "city": "Portland",
            "postal_code": "97201",
            "country": "US",
        },
        "items": [{"sku": store.products[0][0], "quantity": 1}],
    }
    return {
        "GET /health (trivial)": ([{"path": "/health"}], "200"),
        "GET tracking lookup": (
            [{"path": f"/api/orders/track/{s.order_number}"} for s in samples[:500]],
            "200",
        ),
        "GET owner list page": (
            [{"path": "/api/orders/?limit=50", "headers": auth}]
            + [
                {"path": f"/api/orders/?limit=50&agent_id={s.agent_id}", "headers": auth}
                for s in owned[:20]
            ],
            "200",
        ),
        "POST create order": (
            [{"method": "POST", "path": "/api/orders/", "headers": auth, "body": body}],
            "201",
        ),
    }


def _start(url: str, port: int, secret: str, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "AUTH_JWT_SECRET": secret,
        "AGENT_ORDERS_TRACK_BURST": str(10**9),
        "AGENT_ORDERS_TRACK_PER_MINUTE": str(10**12),
        "AGENT_ORDERS_DELIVER": "0",
        # As `agent-orders serve` tells its workers: several share the limits.
        "AGENT_ORDERS_WORKERS": str(workers),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def _alternate(
    port: int,
    runs: dict[str, tuple[list[dict[str, Any]], str]],
    order: list[str],
    pid: int,
    postgres: int | None,
) -> dict[str, dict[str, Any]]:
    """Run each in `order`; of a name run more than once, the faster run is kept."""
    measured: dict[str, list[dict[str, Any]]] = {}
    for name in order:
        requests, expect = runs[name]
        run_ = await _load(port, requests, pid, postgres=postgres)
        _figure(name, run_, expect)  # refuses any unexpected status
        measured.setdefault(name, []).append(run_)
    return {name: max(parts, key=lambda r: r["per_s"]) for name, parts in measured.items()}


async def run(opts: Any) -> Result:
    from agent_tools.cli import default_workers

    workers = default_workers()
    result = Result(
        "http",
        {
            "connections": CONNECTIONS,
            "seconds_per_run": SECONDS,
            "orders_present": ORDERS,
            "workers": [1, workers],
            "server": "uvicorn (httptools), access log off, no background delivery",
            "load_generator": "bench.loadgen (own process, HTTP/1.1 keep-alive)",
        },
    )
    async with fresh_database("http", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=1, max_size=2)
        try:
            stores = await make_stores(db, owners=2, agents_per_owner=5)
        finally:
            await db.close()
        samples = load_orders(url, stores, ORDERS, samples=1000)
        secret = secrets.token_urlsafe(32)
        store = stores[0]
        token = jwt.encode(
            {
                "sub": str(store.agent.owner_id),
                "aud": "authenticated",
                "role": "authenticated",  # as Supabase signs a user's token
                "exp": time.time() + 3600,
            },
            secret,
            algorithm="HS256",
        )
        postgres = _postmaster(url)
        runs = _requests(store, samples, token)
        port = _free_port()
        server = _start(url, port, secret, 1)
        try:
            await _wait_ready(f"http://127.0.0.1:{port}", server)
            # The two compared for the target alternate twice; the others run once.
            order = [HEALTH, TRACK, "GET owner list page", "POST create order", HEALTH, TRACK]
            best = await _alternate(port, runs, order, server.pid, postgres)
            for name, run_ in best.items():
                result.add(_figure(name, run_, runs[name][1]))
            # Flat out, 50 connections queue for the pool, and latency is 50 / throughput
            # (Little's law). Latency proper is measured at half the saturation rate.
            rate = result.figure(TRACK).per_s or 1.0
            paced = await _load(port, runs[TRACK][0], server.pid, rate / 2, postgres)
            result.add(_figure(PACED, paced, "200"))
            rss = _peak_rss_mb(server.pid)
        finally:
            _stop(server)
        port = _free_port()
        server = _start(url, port, secret, workers)
        try:
            await _wait_ready(f"http://127.0.0.1:{port}", server)
            many = await _alternate(
                port, runs, [HEALTH, TRACK, HEALTH, TRACK], server.pid, postgres
            )
            for name in (HEALTH, TRACK):
                result.add(_figure(f"{name}, {workers} workers", many[name], "200"))
            worker_rss = [_peak_rss_mb(p) for p in _children(server.pid) if _is_worker(p)]
        finally:
            _stop(server)
    h, t, p = result.figure(HEALTH), result.figure(TRACK), result.figure(PACED)
    hn, tn = (
        result.figure(f"{HEALTH}, {workers} workers"),
        result.figure(f"{TRACK}, {workers} workers"),
    )
    assert h.per_s and t.per_s and p.p99_ms is not None and t.p99_ms is not None
    assert hn.per_s and tn.per_s
    result.ratios["tracking / health requests/s"] = t.per_s / h.per_s
    for name in ("GET owner list page", "POST create order"):
        per_s = result.figure(name).per_s
        assert per_s
        result.ratios[f"{name.split(' ', 1)[1]} / health requests/s"] = per_s / h.per_s
    result.ratios[f"tracking, {workers} workers / 1 worker"] = tn.per_s / t.per_s
    result.ratios[f"health, {workers} workers / 1 worker"] = hn.per_s / h.per_s
    # What the machine can give: flat out, N workers can at best turn every core into
    # requests at the CPU cost of all three processes together, while one worker is held to
    # one core at the server's own cost.
    cpu = {
        k: _per_request(best[TRACK], k) or 0.0
        for k in ("cpu_ms", "postgres_cpu_ms", "loadgen_cpu_ms")
    }
    ceiling = workers * cpu["cpu_ms"] / sum(cpu.values()) if sum(cpu.values()) else 0.0
    result.values["tracking CPU ms/req at 1 worker: server"] = round(cpu["cpu_ms"], 3)
    result.values["tracking CPU ms/req at 1 worker: postgres"] = round(cpu["postgres_cpu_ms"], 3)
    result.values["tracking CPU ms/req at 1 worker: load generator"] = round(
        cpu["loadgen_cpu_ms"], 3
    )
    result.values[f"tracking, {workers} workers / 1 worker, CPU ceiling on this machine"] = round(
        min(float(workers), ceiling), 2
    )
    result.values["tracking p99 at saturation, ms"] = round(t.p99_ms, 1)
    result.values["server peak RSS, MB (1 worker)"] = round(rss, 1)
    if worker_rss:
        result.values[f"server peak RSS, MB (largest of {workers} workers)"] = round(
            max(worker_rss), 1
        )
    result.values["load average at the end"] = round(os.getloadavg()[0], 2)
    result.targets += [
        Target("tracking / health requests/s", t.per_s / h.per_s, TRACK_RATIO, "x", at_most=False),
        Target("tracking p99 at half its saturation rate", p.p99_ms, TRACK_P99_MS, "ms"),
        Target(
            f"tracking, {workers} workers / 1 worker requests/s",
            tn.per_s / t.per_s,
            SCALE_RATIO,
            "x",
            at_most=False,
        ),
        Target("server peak RSS per worker", max([rss, *worker_rss]), RSS_MB, "MB"),
    ]
    result.notes.append(
        "of two alternating runs of /health and tracking, the faster of each is reported"
    )
    result.notes.append("flat out, 50 connections share each worker's 10 pooled connections")
    result.notes.append(
        "the load generator and PostgreSQL share the machine's cores with the server"
    )
    return result


def _is_worker(pid: int) -> bool:
    """uvicorn's worker processes (not multiprocessing's resource tracker)."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
