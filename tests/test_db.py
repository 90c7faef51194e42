"""The pool: connections the server dropped are replaced, and a lost one is a quick 503."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from agent_tools.config import Settings
from agent_tools.db import Database, connect_kwargs
from agent_tools.errors import Unavailable
from agent_tools.service import orders
from tests.conftest import make_store, order_data


async def drop_connections(url: str) -> int:
    """What a server restart or an operator does to every connection of this database."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cur = await admin.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
    await asyncio.sleep(0.1)  # the backends' goodbyes reach the pooled sockets
    assert row is not None
    return int(row[0])


async def answer(db: Database, *, reader: bool = False) -> int:
    async with db.reader() if reader else db.connection() as conn:
        cur = await conn.execute("select 42 as n")
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


@pytest.fixture
async def small_db(db_url: str) -> Database:
    return await Database.open(db_url, migrate=False, min_size=3, max_size=3)


class TestLostConnections:
    @pytest.mark.parametrize("reader", [False, True])
    async def test_dropped_idle_connections_are_replaced_unnoticed(
        self, small_db: Database, db_url: str, reader: bool
    ) -> None:
        try:
            assert await drop_connections(db_url) >= 3
            assert [await answer(small_db, reader=reader) for _ in range(6)] == [42] * 6
        finally:
            await small_db.close()

    @pytest.mark.parametrize("reader", [False, True])
    async def test_a_connection_lost_in_use_is_unavailable_then_recovered(
        self, small_db: Database, db_url: str, reader: bool
    ) -> None:
        try:
            with pytest.raises(Unavailable):
                async with small_db.reader() if reader else small_db.connection() as conn:
                    await drop_connections(db_url)
                    await conn.execute("select 1")
            assert [await answer(small_db, reader=reader) for _ in range(6)] == [42] * 6
        finally:
            await small_db.close()

    async def test_a_reader_leaves_no_autocommit_connection_behind(
        self, small_db: Database
    ) -> None:
        try:
            for _ in range(4):
                async with small_db.reader() as conn:
                    assert conn.autocommit
            for _ in range(4):
                async with small_db.connection() as conn:
                    assert not conn.autocommit
        finally:
            await small_db.close()


@pytest.mark.parametrize(
    ("url", "prepared"),
    [
        ("postgresql://u:p@db.example.supabase.co:5432/postgres", True),
        ("postgresql://u:p@aws-0-eu.pooler.supabase.com:6543/postgres", False),
        ("postgresql://u:p@aws-0-eu.pooler.supabase.com:5432/postgres", False),
        ("postgresql://u:p@pgbouncer.internal:6543/app", False),
    ],
)
def test_transaction_poolers_get_no_prepared_statements_or_options(
    url: str, prepared: bool
) -> None:
    kwargs = connect_kwargs(Settings(database_url=url))
    assert ("prepare_threshold" not in kwargs) is prepared
    assert ("options" in kwargs) is prepared


async def test_the_service_works_without_prepared_statements(db_url: str) -> None:
    # What a Supabase transaction pooler demands; the same queries, run often enough that
    # psycopg would otherwise prepare them.
    settings = Settings(database_url=db_url, AGENT_ORDERS_PREPARE=False)
    db = await Database.open(db_url, settings=settings, migrate=False)
    try:
        agent = await make_store(db)
        for _ in range(8):
            async with db.connection() as conn:
                await orders.create_order(conn, order_data(agent))
                cur = await conn.execute("select count(*) as n from pg_prepared_statements")
                row = await cur.fetchone()
                assert row is not None and row["n"] == 0
    finally:
        await db.close()


async def test_a_row_lock_held_too_long_is_a_quick_503(db_url: str) -> None:
    settings = Settings(database_url=db_url, AGENT_ORDERS_LOCK_TIMEOUT=0.5)
    db = await Database.open(db_url, settings=settings, migrate=False)
    try:
        agent = await make_store(db)
        # Someone (a warehouse script, an editor in the SQL console) holds the product row.
        with psycopg.connect(db_url) as holder:
            holder.execute("select 1 from agent_orders.products where sku = 'MUG-BLUE' for update")
            started = asyncio.get_running_loop().time()
            with pytest.raises(Unavailable, match="lock timeout"):
                async with db.connection() as conn:
                    await orders.create_order(conn, order_data(agent))
            waited = asyncio.get_running_loop().time() - started
        async with db.connection() as conn:  # released: the same pool serves again
            created = await orders.create_order(conn, order_data(agent))
    finally:
        await db.close()
    assert 0.4 < waited < 10
    assert created.status == "pending"


async def test_a_deadlock_is_a_503_that_says_to_retry(db: Database) -> None:
    # PostgreSQL undid the transaction (SQLSTATE 40P01): the server is reachable.
    with pytest.raises(Unavailable, match="collided") as raised:
        async with db.connection() as conn:
            await conn.execute(
                "do $$ begin raise exception 'deadlock' using errcode = '40P01'; end $$"
            )
    assert raised.value.hint == "retry in a moment"
    async with db.connection() as conn:  # the pool serves again
        cur = await conn.execute("select 1 as one")
        assert await cur.fetchone() == {"one": 1}


def _server_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def test_embedded_server_stops_after_a_user_that_was_killed(tmp_path: Path) -> None:
    """A process killed with -9 never unregisters from the embedded server; the next process
    must not count it, or the server would outlive every later run."""
    data = tmp_path / "data"
    start = (
        "import sys, time; from pathlib import Path; from agent_tools.db import embedded_url;"
        " embedded_url(Path(sys.argv[1])); print('up', flush=True); time.sleep(60)"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", start, str(data)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "up"
        server = _server_pid(data / "pgdata")
        assert server is not None
    finally:
        victim.kill()
        victim.wait()
    # A normal run: starts (or joins) the server, then exits cleanly.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from agent_tools.db import embedded_url,"
            " stop_embedded; embedded_url(Path(sys.argv[1])); stop_embedded()",
            str(data),
        ],
        timeout=120,
        check=True,
    )
    assert done.returncode == 0
    for _ in range(100):
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGKILL)
        raise AssertionError("the embedded server kept running after its last user left")
