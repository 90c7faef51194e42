"""Migrations: idempotent, concurrent-safe, checksummed, RLS everywhere, Supabase policies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from agent_tools import migrate as migrate_module
from agent_tools.errors import MigrationError
from agent_tools.migrate import Migration, load_migrations, migrate
from tests.conftest import drop_database, new_database


@pytest.fixture
def empty_url(server_url: str) -> Iterator[str]:
    name, url = new_database(server_url, "template0")
    yield url
    drop_database(server_url, name)


def snapshot(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return (
            conn.execute(
                "select table_name, column_name, data_type from information_schema.columns"
                " where table_schema = 'agent_orders' order by 1, 2"
            ).fetchall()
            + conn.execute(
                "select version, checksum, applied_at::text"
                " from agent_orders.schema_migrations order by 1"
            ).fetchall()
        )


async def test_applying_twice_changes_nothing(empty_url: str) -> None:
    first = await migrate(empty_url)
    assert first == [m.name for m in load_migrations()]
    before = snapshot(empty_url)
    assert await migrate(empty_url) == []
    assert snapshot(empty_url) == before


def test_two_processes_migrating_at_once_both_succeed(empty_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "agent_tools.cli", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    said = sorted(out for out, _ in outputs)
    assert said[0].startswith("applied:") and said[1].strip() == "database is up to date"
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute("select count(*) from agent_orders.schema_migrations").fetchone()
    assert rows == (len(load_migrations()),)


async def test_an_edited_applied_migration_is_an_error(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate(empty_url)
    real = load_migrations()
    edited = [Migration(real[0].version, real[0].name, real[0].sql + "\n-- edited\n"), *real[1:]]
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(empty_url)


async def test_a_failing_migration_leaves_no_trace(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = [
        *load_migrations(),
        Migration("9999", "9999_broken.sql", "create table agent_orders.x (a int); select 1/0;"),
    ]
    monkeypatch.setattr(migrate_module, "load_migrations", lambda: broken)
    with pytest.raises(psycopg.errors.DivisionByZero):
        await migrate(empty_url)
    with psycopg.connect(empty_url) as conn:
        assert conn.execute("select to_regclass('agent_orders.x')").fetchone() == (None,)
        versions = conn.execute("select version from agent_orders.schema_migrations").fetchall()
    assert ("9999",) not in versions


async def test_every_table_has_row_level_security(empty_url: str) -> None:
    await migrate(empty_url)
    with psycopg.connect(empty_url) as conn:
        rows = conn.execute(
            "select c.relname, c.relrowsecurity from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'agent_orders' and c.relkind = 'r'"
        ).fetchall()
        public = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert len(rows) >= 8
    assert all(rls for _, rls in rows), rows
    assert public == (0,)


async def test_supabase_owner_policies_only_where_auth_uid_exists(empty_url: str) -> None:
    with psycopg.connect(empty_url, autocommit=True) as conn:
        # What a Supabase project provides.
        conn.execute("create schema auth")
        conn.execute(
            "create function auth.uid() returns uuid language sql stable"
            " as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$"
        )
    await migrate(empty_url)
    with psycopg.connect(empty_url) as conn:
        policies = {
            r[0]
            for r in conn.execute(
                "select tablename from pg_policies where schemaname = 'agent_orders'"
            ).fetchall()
        }
    assert {"agents", "products", "orders", "order_events"} <= policies


async def test_no_policies_without_supabase(empty_url: str) -> None:
    await migrate(empty_url)
    with psycopg.connect(empty_url) as conn:
        count = conn.execute(
            "select count(*) from pg_policies where schemaname = 'agent_orders'"
        ).fetchone()
    assert count == (0,)


def test_migration_numbers_are_unique_and_ordered() -> None:
    found = load_migrations()
    assert [m.version for m in found] == sorted({m.version for m in found})
    assert found[0].name == "0001_init.sql"


async def test_concurrent_migrations_in_one_process(empty_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_url) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(load_migrations())]
