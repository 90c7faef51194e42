"""The `agent-orders eval` command: options in, the suite run, the reports out."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import openai

from agent_tools.config import get_settings
from agent_tools.eval import report
from agent_tools.eval.runner import Endpoint, Trial, run_suite
from agent_tools.eval.scenario import ScenarioError, load_scenarios


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="the agent's model (default: AGENT_ORDERS_MODEL)")
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint (default: OPENAI_BASE_URL)")
    parser.add_argument("-k", type=int, default=4, help="report pass^1 .. pass^k (default 4)")
    parser.add_argument("--trials", type=int, help="trials per scenario (default: k)")
    parser.add_argument("--scenarios", type=Path, help="a directory of YAML/JSON scenarios")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this scenario")
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once (default 4)")
    parser.add_argument("--customer-model", help="model of the simulated customers")
    parser.add_argument("--customer-base-url", help="endpoint of the simulated customers")
    parser.add_argument(
        "--json", type=Path, default=Path("eval-report.json"), help="JSON report path"
    )
    parser.add_argument("--html", type=Path, help="also write a one-page HTML report")


def _client(base_url: str | None) -> openai.AsyncOpenAI:
    settings = get_settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and not base_url:
        raise ScenarioError(
            "set OPENAI_API_KEY, or --base-url / OPENAI_BASE_URL for a local server"
        )
    return openai.AsyncOpenAI(
        api_key=key or "unused", base_url=base_url, max_retries=2, timeout=120
    )


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    trials = args.trials or args.k
    if args.k < 1 or trials < args.k:
        print("agent-orders: -k must be at least 1 and at most --trials", file=sys.stderr)
        return 2
    try:
        scenarios = load_scenarios(args.scenarios)
        if args.only:
            unknown = set(args.only) - {s.name for s in scenarios}
            if unknown:
                raise ScenarioError(f"no scenario named {', '.join(sorted(unknown))}")
            scenarios = [s for s in scenarios if s.name in args.only]
        base_url = args.base_url or settings.openai_base_url
        model = args.model or settings.model
        agent_end = Endpoint(_client(base_url), model)
        customer_end = Endpoint(
            _client(args.customer_base_url or base_url), args.customer_model or model
        )
    except ScenarioError as exc:
        print(f"agent-orders: {exc}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    total = len(scenarios) * trials
    done = 0

    def progress(trial: Trial) -> None:
        nonlocal done
        done += 1
        mark = "pass" if trial.passed else "FAIL"
        print(f"[{done}/{total}] {mark} {trial.scenario} #{trial.number}", file=sys.stderr)

    results = await run_suite(
        scenarios,
        agent_end=agent_end,
        customer_end=customer_end,
        trials=trials,
        concurrency=args.concurrency,
        settings=settings,
        progress=progress,
    )
    data = report.build(
        scenarios,
        results,
        k=args.k,
        meta={
            "model": model,
            "base_url": base_url,
            "customer_model": customer_end.model,
            "trials": trials,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    args.json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
    if args.html:
        args.html.write_text(report.page(data), "utf-8")
    print(report.table(data))
    print(f"report: {args.json}" + (f", {args.html}" if args.html else ""))
    return 0
