"""The eval report: pass^k per scenario and overall, the safety counts, as JSON, a short text
table and a one-page HTML file."""

from __future__ import annotations

import html
from dataclasses import asdict
from math import comb
from typing import Any

from agent_tools.eval.runner import Trial
from agent_tools.eval.scenario import Scenario


def pass_hat(successes: int, trials: int, k: int) -> float:
    """tau-bench's pass^k: the chance that k trials drawn from these all succeed, estimated
    without bias as C(successes, k) / C(trials, k)."""
    if not 1 <= k <= trials:
        raise ValueError("k must be between 1 and the number of trials")
    return comb(successes, k) / comb(trials, k)


def build(
    scenarios: list[Scenario], trials: list[Trial], *, k: int, meta: dict[str, Any]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for s in scenarios:
        mine = [t for t in trials if t.scenario == s.name]
        n, c = len(mine), sum(t.passed for t in mine)
        rows.append(
            {
                "name": s.name,
                "category": s.category,
                "trials": n,
                "successes": c,
                "pass_hat": {str(i): round(pass_hat(c, n, i), 4) for i in range(1, k + 1)},
                "tool_calls_per_trial": round(sum(t.tool_calls for t in mine) / n, 2),
                "refusals_per_trial": round(sum(t.refusals for t in mine) / n, 2),
                "unconfirmed_writes": sum(t.unconfirmed_writes for t in mine),
                "private_data_shown": sum(t.private_shown for t in mine),
                "tokens": sum(t.prompt_tokens + t.completion_tokens for t in mine),
                "errors": sum(t.error is not None for t in mine),
                "runs": [
                    {
                        key: value
                        for key, value in asdict(t).items()
                        if key not in ("scenario",) and value not in (None, [])
                    }
                    for t in mine
                ],
            }
        )
    overall = {
        str(i): round(sum(r["pass_hat"][str(i)] for r in rows) / len(rows), 4)
        for i in range(1, k + 1)
    }
    return {
        **meta,
        "k": k,
        "scenarios_run": len(rows),
        "pass_hat": overall,
        "totals": {
            "trials": len(trials),
            "passed": sum(t.passed for t in trials),
            "tool_calls": sum(t.tool_calls for t in trials),
            "refusals": sum(t.refusals for t in trials),
            "unconfirmed_writes": sum(t.unconfirmed_writes for t in trials),
            "private_data_shown": sum(t.private_shown for t in trials),
            "prompt_tokens": sum(t.prompt_tokens for t in trials),
            "completion_tokens": sum(t.completion_tokens for t in trials),
            "errors": sum(t.error is not None for t in trials),
        },
        "scenarios": rows,
    }


def table(report: dict[str, Any]) -> str:
    """A short fixed-width table: one line per scenario, then the totals."""
    k = report["k"]
    head = [
        "scenario",
        "category",
        "passed",
        "pass^1",
        f"pass^{k}",
        "calls",
        "refused",
        "unconf",
        "pii",
    ]
    lines = [head]
    for r in report["scenarios"]:
        lines.append(
            [
                r["name"],
                r["category"],
                f"{r['successes']}/{r['trials']}",
                f"{r['pass_hat']['1']:.2f}",
                f"{r['pass_hat'][str(k)]:.2f}",
                f"{r['tool_calls_per_trial']:g}",
                f"{r['refusals_per_trial']:g}",
                str(r["unconfirmed_writes"]),
                str(r["private_data_shown"]),
            ]
        )
    t = report["totals"]
    lines.append(
        [
            "all",
            "",
            f"{t['passed']}/{t['trials']}",
            f"{report['pass_hat']['1']:.2f}",
            f"{report['pass_hat'][str(k)]:.2f}",
            "",
            "",
            str(t["unconfirmed_writes"]),
            str(t["private_data_shown"]),
        ]
    )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.insert(len(out) - 1, out[1])
    curve = "  ".join(f"pass^{i} {v:.2f}" for i, v in report["pass_hat"].items())
    out.append(
        f"\n{curve}\ntokens {t['prompt_tokens']:,} in, {t['completion_tokens']:,} out;"
        f" {t['errors']} run(s) failed to complete"
    )
    return "\n".join(out)


def _e(value: Any) -> str:
    return html.escape(str(value))


def page(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    k = report["k"]
    t = report["totals"]
    rows = []
    details = []
    for r in report["scenarios"]:
        bad = r["unconfirmed_writes"] or r["private_data_shown"]
        rows.append(
            f"<tr class='{'bad' if bad else 'ok' if r['successes'] == r['trials'] else 'mid'}'>"
            f"<td><a href='#{_e(r['name'])}'>{_e(r['name'])}</a></td><td>{_e(r['category'])}</td>"
            f"<td>{r['successes']}/{r['trials']}</td>"
            + "".join(f"<td>{r['pass_hat'][str(i)]:.2f}</td>" for i in range(1, k + 1))
            + f"<td>{r['tool_calls_per_trial']:g}</td><td>{r['refusals_per_trial']:g}</td>"
            f"<td>{r['unconfirmed_writes']}</td><td>{r['private_data_shown']}</td></tr>"
        )
        runs = []
        for run in r["runs"]:
            verdict = "passed" if run.get("passed") else "failed"
            reasons = "".join(f"<li>{_e(x)}</li>" for x in run.get("reasons", []))
            talk = "".join(
                f"<p class='{_e(who)}'><b>{_e(who)}</b> {_e(text)}</p>"
                for m in run.get("transcript", [])
                for who, text in m.items()
                if who != "tool_calls"
            )
            runs.append(
                f"<details><summary>trial {run['number']}: {verdict}</summary>"
                f"<ul>{reasons}</ul>{talk}</details>"
            )
        details.append(f"<h3 id='{_e(r['name'])}'>{_e(r['name'])}</h3>{''.join(runs)}")
    curve = " &middot; ".join(f"pass^{i} <b>{v:.2f}</b>" for i, v in report["pass_hat"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>agent-orders eval: {_e(report.get("model"))}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 980px; margin: 2rem auto;
       padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ padding: .3rem .5rem; border-bottom: 1px solid #ddd; text-align: left; }}
tr.ok td:first-child {{ border-left: 4px solid #2a7; }}
tr.mid td:first-child {{ border-left: 4px solid #d90; }}
tr.bad td:first-child {{ border-left: 4px solid #c22; }}
.customer b {{ color: #246; }} .agent b {{ color: #462; }}
details {{ margin: .3rem 0; }} p {{ margin: .2rem 0 .2rem 1rem; }}
</style></head><body>
<h1>agent-orders eval</h1>
<p>Model <b>{_e(report.get("model"))}</b> at {_e(report.get("base_url") or "the default endpoint")},
{report["scenarios_run"]} scenarios &times; {_e(report.get("trials"))} trials,
{_e(report.get("started"))}.</p>
<p>{curve}</p>
<p>Writes attempted without the customer's yes: <b>{t["unconfirmed_writes"]}</b>.
Someone else's personal data shown: <b>{t["private_data_shown"]}</b>.
Tool calls {t["tool_calls"]}, refused {t["refusals"]}; tokens {t["prompt_tokens"]:,} in,
{t["completion_tokens"]:,} out; runs that failed to complete: {t["errors"]}.</p>
<table><thead><tr><th>scenario</th><th>category</th><th>passed</th>
{"".join(f"<th>pass^{i}</th>" for i in range(1, k + 1))}
<th>calls/trial</th><th>refused/trial</th><th>unconfirmed writes</th><th>data shown</th>
</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>Runs</h2>
{"".join(details)}
</body></html>
"""
