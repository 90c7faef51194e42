"""Applies `migrations/NNNN_name.sql` in order, once each, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import psycopg

from agent_tools.config import Settings
from agent_tools.db import connect_kwargs
from agent_tools.errors import MigrationError

# Any fixed 64-bit number; it only has to be the same in every process.
LOCK_KEY = 0x6167_6F72_6465_7273  # "agorders"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def resource_dir(name: str) -> Traversable:
    """`migrations/` or `prompts/`: inside the wheel, or at the top of a source checkout."""
    packaged = resources.files("agent_tools") / "_resources" / name
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / name


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resource_dir("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(match.group(1), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def migrate(url: str, *, settings: Settings | None = None) -> list[str]:
    """Apply every pending migration; return the names applied. Safe to run concurrently."""
    kwargs = connect_kwargs(settings)
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, **kwargs) as conn:
        # A schema change may wait for the app's row locks as long as it takes.
        await conn.execute("set lock_timeout = 0")
        # A session lock: a second process waits here, then finds nothing left to do.
        await conn.execute("select pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            await conn.execute("create schema if not exists agent_orders")
            await conn.execute(
                """create table if not exists agent_orders.schema_migrations (
                       version text primary key,
                       name text not null,
                       checksum text not null,
                       applied_at timestamptz not null default now())"""
            )
            await conn.execute(
                "alter table agent_orders.schema_migrations enable row level security"
            )
            cur = await conn.execute(
                "select version, name, checksum from agent_orders.schema_migrations"
            )
            done = {row["version"]: row for row in await cur.fetchall()}
            for migration in load_migrations():
                row = done.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was edited after it was applied "
                            f"(checksum {row['checksum'][:12]} in the database, "
                            f"{migration.checksum[:12]} on disk); add a new migration instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "insert into agent_orders.schema_migrations (version, name, checksum)"
                        " values (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied.append(migration.name)
        finally:
            await conn.execute("select pg_advisory_unlock(%s)", (LOCK_KEY,))
    return applied
