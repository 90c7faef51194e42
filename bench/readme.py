"""Regenerates the README's benchmark tables from `bench/results/*.json`.

    python -m bench.readme            # rewrite README.md in place
    python -m bench.readme --check    # exit 1 if README.md differs from the results

Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; everything between
the two markers is replaced, the prose around them is left alone. A figure that is in a table
is therefore the one in the JSON, with the commit, the machine and the load it was taken on.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from bench.harness import RESULTS, ROOT

README = ROOT / "README.md"
Record = dict[str, Any]
TIMES = "\u00d7"  # the multiplication sign the README's ratios use


def _load(name: str) -> Record | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _num(v: float | None, digits: int = 2) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def _fig(record: Record, name: str) -> Record:
    return next(f for f in record["figures"] if f["name"] == name)


def _met(met: bool) -> str:
    return "✅" if met else "❌"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _source(record: Record) -> str:
    state = "dirty tree" if record.get("dirty") else "clean"
    load = record.get("load_average_1m")
    at = f", load average {load:.1f}" if load is not None else ""
    return f"commit `{str(record.get('commit'))[:7]}` ({state}{at})"


def header() -> list[str]:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not records:
        return ["No results yet: run `make bench`."]
    m = max(records, key=lambda r: str(r["started_at"]))["machine"]
    machine = (
        f"{m['cores']}-core {m['cpu']} ({m['memory_gb']} GB, Python {m['python']},"
        f" PostgreSQL {m['postgres']})"
    )
    rows = [
        [
            r["scenario"]
            if r["scenario"] != "scale" or r["parameters"]["orders"] == 100_000
            else f"scale ({r['parameters']['orders']:,} orders)",
            str(r.get("commit"))[:7],
            "yes" if r.get("dirty") else "no",
            r["started_at"][:16].replace("T", " "),
            _num(r.get("load_average_1m"), 1),
            r["machine"]["cpu"],
        ]
        for r in records
    ]
    head = ["scenario", "commit", "dirty", "started (UTC)", "load average", "cpu"]
    return [f"Latest run on a {machine}:", "", *_table(head, rows)]


def scale() -> list[str]:
    small, full = _load("scale"), _load("scale_1000k")
    if small is None:
        return ["No scale results yet."]
    targets = {t["name"]: t for t in small["targets"]}
    rows = []
    for f in small["figures"]:
        if f["p99_ms"] is None or f["name"].startswith("create"):
            continue
        big = _fig(full, f["name"]) if full else None
        t = targets.get(f"{f['name']} p99")
        rows.append(
            [
                f["name"],
                f"{_num(f['p50_ms'])} / {_num(f['p99_ms'])}",
                f"{_num(big['p50_ms'])} / {_num(big['p99_ms'])}" if big else "",
                f"p99 < {t['limit']:g} ms {_met(t['met'])}" if t else "",
            ]
        )
    ratio = small["ratios"].get("create rate, full / empty")
    big_ratio = full["ratios"].get("create rate, full / empty") if full else None
    rows.append(
        [
            "create rate with the rows ÷ empty table (4 clients)",
            f"{_num(ratio)}{TIMES}",
            f"{_num(big_ratio)}{TIMES}" if big_ratio else "",
            f"≥ 0.8 {_met(bool(ratio and ratio >= 0.8))}",
        ]
    )
    head = ["operation", "100k orders p50 / p99 ms", "1M orders p50 / p99 ms", "target (100k)"]
    return _table(head, rows)


def create() -> list[str]:
    r = _load("create")
    if r is None:
        return ["No create results yet."]
    rows = []
    for clients in r["parameters"]["clients"]:
        raw = _fig(r, f"raw psycopg, {clients} clients")
        tk = _fig(r, f"toolkit, {clients} clients")
        ratio = r["ratios"][f"toolkit / raw at {clients}"]
        mark = f" (target ≥ 0.5 {_met(ratio >= 0.5)})" if clients == 8 else ""
        row = [str(clients), _num(raw["per_s"], 0), _num(tk["per_s"], 0), f"{ratio:.2f}{mark}"]
        floor = r["ratios"].get(f"statements / raw at {clients}")
        if floor is not None:  # results from before the floor was measured have none
            hand = _fig(r, f"toolkit's statements by hand, {clients} clients")
            row[2:2] = [_num(hand["per_s"], 0)]
            row.append(f"{floor:.2f}")
        rows.append(row)
    if len(rows[0]) == 4:
        return _table(["clients", "raw orders/s", "toolkit orders/s", "ratio"], rows)
    head = [
        "clients",
        "raw orders/s",
        "its statements by hand, orders/s",
        "toolkit orders/s",
        "toolkit ÷ raw",
        "statements ÷ raw (the floor)",
    ]
    return _table(head, rows)


def http() -> list[str]:
    r = _load("http")
    if r is None:
        return ["No http results yet."]
    rows = [
        [
            f["name"],
            _num(f["per_s"], 0),
            f"{_num(f['p50_ms'], 1)} / {_num(f['p99_ms'], 1)}",
            f["note"].split("CPU ms/req: ", 1)[-1].split(";")[0],
        ]
        for f in r["figures"]
    ]
    table = _table(["endpoint", "req/s", "p50 / p99 ms", "CPU ms per request"], rows)
    targets = [
        [
            t["name"],
            f"{_num(t['value'])} {t['unit']}",
            f"{'≤' if t['at_most'] else '≥'} {t['limit']:g} {t['unit']}",
            _met(t["met"]),
        ]
        for t in r["targets"]
    ]
    values = [[k, f"{v:g}"] for k, v in r["values"].items()]
    return [
        *table,
        "",
        *_table(["target", "measured", "limit", "met"], targets),
        "",
        *_table(["measure", "value"], values),
    ]


def _generic(name: str) -> Callable[[], list[str]]:
    def render() -> list[str]:
        r = _load(name)
        if r is None:
            return [f"No {name} results yet."]
        rows = [
            [
                f["name"],
                _num(f["per_s"], 0),
                f"{_num(f['p50_ms'])} / {_num(f['p99_ms'])}" if f["p50_ms"] is not None else "",
                f["note"],
            ]
            for f in r["figures"]
        ]
        targets = [
            [t["name"], f"{_num(t['value'])} {t['unit']}", _met(t["met"])] for t in r["targets"]
        ]
        return [
            *_table(["operation", "per s", "p50 / p99 ms", "note"], rows),
            "",
            *_table(["target", "measured", "met"], targets),
        ]

    return render


BLOCKS: dict[str, Callable[[], list[str]]] = {
    "header": header,
    "scale": scale,
    "create": create,
    "http": http,
    "mcp": _generic("mcp"),
    "webhooks": _generic("webhooks"),
}


def render(text: str) -> str:
    """`text` with every marked block regenerated."""
    for name, make in BLOCKS.items():
        pattern = re.compile(
            rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", flags=re.DOTALL
        )
        body = "\n".join(make()) + "\n"
        text = pattern.sub(lambda m, b=body: m.group(1) + b + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    old = README.read_text()
    new = render(old)
    if "--check" in args:
        if new != old:
            print("README.md's benchmark tables differ from bench/results/*.json")
            return 1
        return 0
    README.write_text(new)
    print("README.md tables regenerated from bench/results/*.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
