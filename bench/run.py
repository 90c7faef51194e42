"""Runs benchmark scenarios: each prints a table and writes `bench/results/<scenario>.json`.

    python -m bench                    # every scenario, scale at 100,000 orders
    python -m bench scale --full       # scale at 1,000,000 orders
    python -m bench create dispatch    # just these

Each scenario creates its own database (on `BENCH_DATABASE_URL`, or on an embedded server
under `<data dir>/bench`) and drops it afterwards; the user's data is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # `python bench/run.py`: import from the checkout, and let
    # `bench/http.py` not shadow the standard library's `http`.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.harness import machine_info, now, postgres_version, server_url, source_state

SCENARIOS = ("scale", "search", "create", "dispatch", "tokens", "http", "mcp", "webhooks")


@dataclass(frozen=True)
class Options:
    full: bool = False
    rows: int | None = None
    keep: bool = False
    """Keep the scenario's database for inspection instead of dropping it."""


def _missing(module: ModuleType) -> list[str]:
    """The project modules a scenario needs that do not import yet."""
    missing = []
    for name in getattr(module, "REQUIRES", ()):
        try:
            importlib.import_module(name)
        except Exception:  # a half-written module counts as missing
            missing.append(name)
    return missing


async def _run(names: list[str], opts: Options) -> int:
    source = source_state()  # before any result file is rewritten
    if source["dirty"]:
        print("note: the working tree differs from its commit; results are marked dirty")
    machine = machine_info(await postgres_version(server_url()))
    failed = skipped = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        missing = _missing(module)
        print(f"\n== {name}", flush=True)
        if missing:
            print(f"skipped: needs {', '.join(missing)}")
            skipped += 1
            continue
        started, t0 = now(), time.perf_counter()
        try:
            result = await module.run(opts)
        except Exception:
            traceback.print_exc()
            failed += 1
            continue
        print(result.table())
        path = result.write(machine, started, time.perf_counter() - t0, source)
        print(
            f"-> {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path.name}"
            f" ({time.perf_counter() - t0:.0f} s)"
        )
    if skipped:
        print(f"\n{skipped} scenario(s) skipped")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"{', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--full", action="store_true", help="scale at 1,000,000 orders")
    parser.add_argument("--rows", type=int, help="scale at this many orders")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases")
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    logging.basicConfig(level=logging.WARNING)
    opts = Options(full=args.full, rows=args.rows, keep=args.keep)
    return asyncio.run(_run(list(args.scenarios) or list(SCENARIOS), opts))


if __name__ == "__main__":
    raise SystemExit(main())
