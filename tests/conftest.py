"""Test databases: one real PostgreSQL server per run, a migrated template, a clone per test.

`TEST_DATABASE_URL` points at any PostgreSQL 15+ (CI uses the machine's own server);
without it the embedded server is started under `.agent-orders/test`. A server that
cannot be reached fails the run; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from agent_tools.db import Database, embedded_url
from agent_tools.migrate import migrate
from agent_tools.models import Agent
from agent_tools.service import agents, catalog

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def _admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return embedded_url(
        Path(os.environ.get("AGENT_ORDERS_TEST_DATA_DIR", ROOT / ".agent-orders" / "test"))
    )


def _drop_stale(admin: psycopg.Connection) -> None:
    """Drop test databases left behind by runs that were killed."""
    for (name,) in admin.execute(
        "select datname from pg_database where datname like 'ao\\_%'"
    ).fetchall():
        match = re.match(r"ao_(?:tpl|t)_(\d+)_", name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            admin.execute(f'drop database if exists "{name}" with (force)')
        except PermissionError:
            pass


@pytest.fixture(scope="session")
def server_url() -> str:
    return _admin_url()


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A database with every migration applied, cloned by each test."""
    name = f"ao_tpl_{os.getpid()}_{uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        _drop_stale(admin)
        admin.execute(f'create database "{name}"')
    # In a thread of its own: a test may already run an event loop (Playwright's sync API does).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate(make_conninfo(server_url, dbname=name))).result()
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


def new_database(server_url: str, template: str) -> tuple[str, str]:
    # Unique even if this module is imported twice (as `conftest` and as `tests.conftest`).
    name = f"ao_t_{os.getpid()}_{next(_counter)}_{uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.execute(f'create database "{name}" template "{template}"')
    return name, make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name, url = new_database(server_url, template_db)
    yield url
    drop_database(server_url, name)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url, migrate=False, min_size=1, max_size=20)
    yield database
    await database.close()


OWNER = UUID("11111111-1111-4111-8111-111111111111")
OTHER_OWNER = UUID("22222222-2222-4222-8222-222222222222")

CATALOG = [
    {"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "12.50", "stock": 20},
    {"sku": "MUG-RED", "name": "Red mug", "unit_price": "12.50", "stock": 5},
    {"sku": "TEE-M", "name": "Tee, M", "unit_price": "19.99", "stock": None},
    {"sku": "DIME", "name": "Sticker", "unit_price": "0.10", "stock": None},
    {
        "sku": "OLD-HAT",
        "name": "Discontinued hat",
        "unit_price": "9.00",
        "stock": 4,
        "active": False,
    },
]


async def make_store(db: Database, owner: UUID = OWNER, name: str = "Test Store") -> Agent:
    async with db.connection() as conn:
        agent = await agents.create_agent(
            conn, owner, {"name": name, "currency": "USD", "shipping_fee": Decimal("5.00")}
        )
        await catalog.upsert_products(conn, agent.id, CATALOG)
    return agent


@pytest.fixture
async def store(db: Database) -> Agent:
    """An agent of OWNER with the CATALOG above, shipping 5.00 USD."""
    return await make_store(db)


def order_data(
    agent: Agent, items: list[dict[str, object]] | None = None, **extra: object
) -> dict[str, object]:
    data: dict[str, object] = {
        "agent_id": agent.id,
        "customer": {"name": "Ann Lee", "email": "ann@example.com"},
        "shipping_address": {"line1": "1 Main St", "city": "Portland", "country": "US"},
        "items": items if items is not None else [{"sku": "MUG-BLUE", "quantity": 1}],
    }
    data.update(extra)
    return data


async def census(db: Database) -> dict[str, Any]:
    """Everything the service or a tool could write: orders (and their versions), events,
    drafts (and their state), returns, stock; compared before and after a refused call to
    show nothing was written."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "select (select count(*) from agent_orders.orders) as orders,"
            " (select count(*) from agent_orders.order_events) as events,"
            " (select count(*) from agent_orders.drafts) as drafts,"
            " (select count(*) from agent_orders.drafts where confirmed_at is not null)"
            "   as confirmed,"
            " (select count(*) from agent_orders.orders where status = 'cancelled') as cancelled,"
            " (select count(*) from agent_orders.problem_reports) as problems,"
            " (select count(*) from agent_orders.returns) as returns,"
            " (select coalesce(sum(version), 0) from agent_orders.orders) as versions,"
            " (select json_object_agg(sku, stock) from agent_orders.products) as stock"
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)
