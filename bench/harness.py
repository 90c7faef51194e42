"""What every scenario shares: a throwaway database, timing, figures, the table and the JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from psycopg.conninfo import make_conninfo

from agent_tools.config import get_settings
from agent_tools.db import embedded_url
from agent_tools.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


# ---- the server and a fresh database per scenario ------------------------------------------


def server_url() -> str:
    """`BENCH_DATABASE_URL`, or an embedded server of its own (never the user's data)."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    return embedded_url(get_settings().data_dir / "bench")


@contextlib.asynccontextmanager
async def fresh_database(label: str, *, keep: bool = False) -> AsyncIterator[str]:
    """A newly created, migrated database, dropped afterwards (unless `keep`)."""
    admin_url = server_url()
    name = f"ao_bench_{label}_{os.getpid()}_{uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    url = make_conninfo(admin_url, dbname=name)
    try:
        await migrate(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'drop database if exists "{name}" with (force)')


# ---- timing ---------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty list."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Figure:
    """One measured operation: latencies in milliseconds, throughput per second."""

    name: str
    samples: int
    per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""

    @classmethod
    def from_latencies(
        cls, name: str, latencies: list[float], *, wall: float | None = None, note: str = ""
    ) -> Figure:
        """`latencies` in seconds; `wall` the elapsed time for throughput (default: their sum)."""
        elapsed = wall if wall is not None else sum(latencies)
        return cls(
            name=name,
            samples=len(latencies),
            per_s=len(latencies) / elapsed if elapsed > 0 else None,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            note=note,
        )


@dataclass
class Target:
    """A goal from the issue: `value` compared with `limit` (`at_most` or at least)."""

    name: str
    value: float
    limit: float
    unit: str
    at_most: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit


async def timed(fn: Callable[[], Awaitable[Any]], n: int, *, warmup: int = 10) -> list[float]:
    """Run `fn` `warmup` times untimed, then `n` times one after another; seconds each."""
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


async def concurrent(
    fn: Callable[[int], Awaitable[Any]], clients: int, per_client: int
) -> tuple[list[float], float]:
    """`clients` tasks each calling `fn(client)` `per_client` times: latencies and wall time."""
    latencies: list[float] = []

    async def client(i: int) -> None:
        for _ in range(per_client):
            start = time.perf_counter()
            await fn(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, time.perf_counter() - start


# ---- the record -----------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def source_state() -> dict[str, Any]:
    """The commit the figures come from and whether the tree differed from it. Taken once,
    before any result file is rewritten: the results are tracked files, so asking after the
    first one is written would call every later run dirty (and a dirty run clean, if it
    only changed results)."""
    return {
        "commit": _git("rev-parse", "--short=12", "HEAD") or None,
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def machine_info(postgres_version: str) -> dict[str, Any]:
    """What the figures came from; no host names or paths."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgres": postgres_version,
    }


async def postgres_version(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("show server_version")
        row = await cur.fetchone()
    return str(row[0]).split()[0] if row else "unknown"


@dataclass
class Result:
    scenario: str
    parameters: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    """Other figures (token counts, memory), the unit in the name."""
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def table(self) -> str:
        def num(v: float | None, digits: int = 2) -> str:
            return "" if v is None else f"{v:,.{digits}f}"

        rows = [("operation", "n", "per s", "p50 ms", "p99 ms", "note")]
        rows += [
            (f.name, str(f.samples), num(f.per_s, 0), num(f.p50_ms), num(f.p99_ms), f.note)
            for f in self.figures
        ]
        lines = _columns(rows) if self.figures else []
        if self.values:
            lines += _columns(
                [("measure", "value")] + [(k, f"{v:,.6g}") for k, v in self.values.items()]
            )
        if self.ratios:
            lines.append("")
            lines += _columns(
                [("ratio", "value")] + [(k, f"{v:.3f}") for k, v in self.ratios.items()]
            )
        if self.targets:
            lines.append("")
            lines += _columns(
                [("target", "measured", "limit", "met")]
                + [
                    (
                        t.name,
                        f"{t.value:,.3f} {t.unit}",
                        f"{'<=' if t.at_most else '>='} {t.limit:g} {t.unit}",
                        "yes" if t.met else "NO",
                    )
                    for t in self.targets
                ]
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def write(
        self,
        machine: dict[str, Any],
        started: datetime,
        duration: float,
        source: dict[str, Any],
    ) -> Path:
        """`source`: `source_state()` as it was before the run started."""
        RESULTS.mkdir(parents=True, exist_ok=True)
        record = {
            "scenario": self.scenario,
            "started_at": started.isoformat(timespec="seconds"),
            "duration_s": round(duration, 1),
            "commit": source["commit"],
            "dirty": source["dirty"],
            "load_average_1m": round(os.getloadavg()[0], 2),
            "machine": machine,
            "parameters": self.parameters,
            "figures": [_rounded(asdict(f)) for f in self.figures],
            "ratios": {k: round(v, 4) for k, v in self.ratios.items()},
            "values": self.values,
            "targets": [{**_rounded(asdict(t)), "met": t.met} for t in self.targets],
            "notes": self.notes,
        }
        path = RESULTS / f"{self.scenario}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)
        return path


def _rounded(d: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for j, r in enumerate(rows):
        cells = [
            c.ljust(w) if i == 0 or i == len(r) - 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def now() -> datetime:
    return datetime.now(UTC)
