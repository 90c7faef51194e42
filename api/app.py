"""The FastAPI app factory: `uvicorn --factory api.app:create_app`.

Routers live one per module; the HTML pages add theirs (`api.pages.router`) to `ROUTERS`
and reuse the dependencies of `api.deps` and the service functions the JSON routes call.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, FastAPI
from starlette.routing import Route

from agent_tools.db import Database
from agent_tools.delivery.worker import Deliverer
from agent_tools.integrations import mcp
from agent_tools.service import drafts, idempotency, ratelimits
from agent_tools.tools import Toolkit
from api import accesslog, docs, pages, problems
from api.auth import JwtVerifier
from api.bodylimit import BodyLimit
from api.deps import AppState, app_db
from api.ratelimit import make_limiter
from api.routes import (
    agents,
    bulk,
    carriers,
    confirm,
    events,
    health,
    keys,
    mail,
    order_edits,
    orders,
    payments,
    problem_reports,
    returns,
    sessions,
    shipments,
    tracking,
    webhooks,
)
from api.routes.tracking import public_views
from api.settings import ApiSettings, get_api_settings

log = logging.getLogger(__name__)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    tracking.router,
    bulk.router,
    orders.router,
    order_edits.router,
    returns.router,
    shipments.router,
    carriers.router,
    payments.router,
    problem_reports.router,
    agents.router,
    keys.router,
    sessions.router,
    webhooks.router,
    events.router,
    mail.router,
    pages.router,
    docs.router,
    confirm.router,
)

DESCRIPTION = """\
Order capture and tracking for conversational sales agents.

Owner endpoints take `Authorization: Bearer <token>`: an API key (`ao_...`) or a
Supabase Auth access token. Errors are RFC 9457 `application/problem+json` with a stable
`code`. Money is a decimal string ("19.99"). Every `POST` honours `Idempotency-Key`.
"""


async def _housekeeping(db: Database, every: float) -> None:
    """At start and then every `every` seconds: purge expired idempotency keys, drafts
    that expired unconfirmed and ended rate-limit windows. Each worker runs it; the purges
    skip rows another one holds."""
    while True:
        try:
            async with db.connection() as conn:
                await idempotency.purge_expired(conn)
                await drafts.purge_expired(conn)
                await ratelimits.purge(conn)
        except Exception:
            # The database may be away for a moment; the next round tries again.
            log.warning("housekeeping failed", exc_info=True)
        await asyncio.sleep(every)


SUPERVISOR_PID = "AGENT_ORDERS_SUPERVISOR_PID"
"""Set by `agent-orders serve` for its workers: the process that started them."""


def _end_with_supervisor() -> None:
    """In a worker of `agent-orders serve`: end when the supervisor ends, even by SIGKILL
    (which leaves it no chance to stop its workers), so no orphan keeps the port. A graceful
    stop is over by then (the supervisor waits for its workers); what is left was killed
    hard, and is ended hard too: a graceful shutdown could wait forever on a dead database."""
    supervisor = int(os.environ.get(SUPERVISOR_PID) or 0)
    if not supervisor or supervisor == os.getpid() or not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != supervisor:  # it ended before the request was made
        os.kill(os.getpid(), signal.SIGKILL)


def create_app(*, database: Database | None = None, settings: ApiSettings | None = None) -> FastAPI:
    """Build the app. With `database` the caller owns the pool; otherwise the lifespan opens
    one from the settings (migrating first) and closes it on shutdown."""
    _end_with_supervisor()
    settings = settings or get_api_settings()

    def pool() -> Database:
        """The pool as the app holds it (opened by the lifespan, below)."""
        return app_db(app)

    state = AppState(
        settings=settings,
        verifier=JwtVerifier(settings),
        track_limiter=make_limiter(settings, pool),
        public_views=public_views(pool),
    )
    accesslog.install()

    mcp_route = mcp.Deferred()

    @asynccontextmanager
    async def serve_mcp(db: Database) -> AsyncIterator[None]:
        """The MCP endpoint on this app's pool, its session manager running meanwhile."""
        endpoint = await mcp.HttpEndpoint.open(Toolkit(db, settings=settings))
        async with endpoint.session_manager.run():
            mcp_route.endpoint = endpoint
            try:
                yield
            finally:
                mcp_route.endpoint = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if database is not None:
            async with serve_mcp(database):
                yield
            return
        db = await Database.open(settings.database_url, settings=settings)
        chores = asyncio.create_task(_housekeeping(db, settings.housekeeping_seconds))
        # Webhooks and customer emails go out from here unless dedicated workers do it.
        deliverer = Deliverer(db, settings) if settings.deliver else None
        delivering = asyncio.create_task(deliverer.run()) if deliverer else None
        try:
            app.state.db = db
            async with serve_mcp(db):
                # What is alive now lives as long as the server: out of the collector's sight,
                # a full collection no longer walks the whole heap (60-100 ms pauses every
                # second or so under load, the tracking tail's p99; about 1 ms now).
                gc.freeze()
                yield
        finally:
            gc.unfreeze()
            app.state.db = None
            if deliverer is not None and delivering is not None:
                deliverer.stop()
                await delivering
            chores.cancel()
            with suppress(asyncio.CancelledError):
                await chores
            await db.close()

    app = FastAPI(
        title="agent-orders",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
        # Served by `api.docs` from this package, under the pages' CSP, instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.state.api = state
    app.state.db = database
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    # The MCP server (streamable HTTP, stateless): authenticated by session tokens.
    # First in the table: matching walks the routes in order, and every router before it
    # would cost each MCP request time.
    app.router.routes.insert(0, Route("/mcp", mcp_route))
    return app
