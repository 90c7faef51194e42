"""Typed dependencies the routes declare: the database, a transaction, the calling owner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator

from agent_tools.batching import Batcher
from agent_tools.db import Conn, Database
from agent_tools.errors import Unavailable, ValidationFailed
from agent_tools.service import api_keys
from agent_tools.service.idempotency import MAX_KEY_LENGTH
from api.auth import JwtVerifier, Unauthorized
from api.ratelimit import Limiter
from api.settings import ApiSettings


@dataclass
class AppState:
    """What the app holds for its lifetime, at `app.state.api`. The pool itself is at
    `app.state.db` (None while the server starts or stops)."""

    settings: ApiSettings
    verifier: JwtVerifier
    track_limiter: Limiter
    public_views: Batcher[str, bytes]
    """The public tracking views, concurrent lookups read together (`tracking.public_views`)."""


# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` in its
# thread pool, a hop that costs more than the work of most of these.


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.api
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def app_db(app: Any) -> Database:
    """The app's pool: a 503 while the server starts or stops (the lifespan opens and closes
    it). For routes through `get_db`, and for what the app holds beside them."""
    db: Database | None = getattr(app.state, "db", None)
    if db is None:
        raise Unavailable("the server is starting or stopping", hint="retry in a moment")
    return db


async def get_db(request: Request) -> Database:
    return app_db(request.app)


DbDep = Annotated[Database, Depends(get_db)]


async def get_conn(db: DbDep) -> AsyncIterator[Conn]:
    """One transaction per request: committed when the route returns, rolled back if it raises."""
    async with db.connection() as conn:
        yield conn


# "function" scope: the transaction commits before the response is sent, so a client that
# got a 201 can read what it wrote.
ConnDep = Annotated[Conn, Depends(get_conn, scope="function")]


MAX_TOKEN_LENGTH = 4096
"""Longer bearer tokens are refused unread: Supabase access tokens are about 1 kB, API keys
63 characters, and parsing a megabyte of JWT takes the event loop for seconds."""

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key (`ao_...`) or a Supabase Auth access token (JWT).",
)


async def current_owner(
    state: StateDep,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UUID:
    """The owner the bearer token speaks for."""
    if credentials is None:
        raise Unauthorized("missing bearer token")
    token = credentials.credentials
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized(f"the bearer token is longer than {MAX_TOKEN_LENGTH} characters")
    if api_keys.looks_like_key(token):
        # Its own short transaction, so the key lookup never waits on the request's work.
        async with db.connection() as conn:
            owner = await api_keys.authenticate(conn, token)
        if owner is None:
            raise Unauthorized("unknown or revoked API key")
    else:
        owner = await state.verifier.owner(token)
    allowed = state.settings.owner_ids
    if allowed and owner not in allowed:
        raise Unauthorized("this account may not use this server", hint="ask its operator")
    return owner


OwnerDep = Annotated[UUID, Depends(current_owner)]


async def limit_tracking(request: Request, state: StateDep) -> None:
    """Public lookups are rate-limited per client address. Behind a reverse proxy, start the
    server with `--forwarded-allow-ips=<proxy>` so this is the real client, not the proxy."""
    await state.track_limiter.hit(request.client.host if request.client else None)


TrackingLimit = Depends(limit_tracking)


def _bounded(t: datetime) -> datetime:
    # Checked on the year as written, before any arithmetic: 9999-12-31T23:59 moved to UTC or
    # past midnight overflows Python's datetime.
    if not 1900 <= t.year <= 9000:
        raise ValueError("dates must be between the years 1900 and 9000")
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


Instant = Annotated[datetime, AfterValidator(_bounded)]
"""A date or time in a filter: naive means UTC; years 1900 to 9000."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Retry safely: the same key and body within 24 h replay the first response.",
    ),
]


IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=32, description="The version the change is based on"),
]


def if_match_version(if_match: str) -> int:
    """The order version in an `If-Match` header (`"3"`, `W/"3"` or `3`)."""
    value = if_match.strip().removeprefix("W/").strip('"')
    # ASCII only: superscripts and other scripts' digits pass str.isdigit() but not int().
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise ValidationFailed('If-Match must be the order\'s version, e.g. "3"', field="If-Match")
    return int(value)
