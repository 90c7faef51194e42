"""What the page tests share: the demo store with an owner API key, and the CHROMIUM rule."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER, load_demo
from agent_tools.models import Order
from agent_tools.service import api_keys, orders, tracking

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"


@dataclass
class Demo:
    api_key: str
    orders: dict[str, Order]
    """The demo orders by the customer's first name: Ann (pending), Bob (confirmed),
    Chloé (processing), Dev (shipped with UPS), Eva (delivered), Finn (cancelled)."""
    links: dict[str, str]
    """The tracking link the tools would give each customer, by first name."""


async def seed_demo(db: Database) -> Demo:
    async with db.connection() as conn:
        await load_demo(conn)
        _, key = await api_keys.create_key(conn, DEMO_OWNER, {"name": "page tests"})
        page = await orders.list_orders(conn, owner_id=DEMO_OWNER, limit=100)
        signing = await tracking.signing_key(conn)
    by_name = {o.customer_name.split()[0]: o for o in page.orders}
    links = {name: tracking.tracking_url(signing, o) for name, o in by_name.items()}
    return Demo(api_key=key, orders=by_name, links=links)


def require_chromium() -> None:
    """Browser tests never skip in CI; elsewhere a missing browser is a clear skip."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)
