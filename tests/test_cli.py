"""The `agent-orders` command against a real database."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def run_cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_tools.cli", *args],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_then_walkthrough(db_url: str) -> None:
    first = run_cli(db_url, "demo")
    again = run_cli(db_url, "demo")
    assert first.returncode == 0, first.stderr
    assert "demo store created" in first.stdout
    assert "already present" in again.stdout
    walk = run_cli(db_url, "walkthrough")
    assert walk.returncode == 0, walk.stderr
    assert re.search(r"placed ORD-\d{4}-\d{6,} \(pending\)", walk.stdout)
    assert "30.45 USD" in walk.stdout  # 2 x 12.50 + 5 x 0.10 + 4.95 shipping
    assert re.search(r"/track/ORD-\d{4}-\d{6,}\?token=\S{32}", walk.stdout)


def test_unreachable_database_is_a_clear_error() -> None:
    done = run_cli("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "migrate")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "database" in done.stderr.lower()
