"""Session tokens: a host's short-lived credential for one conversation of one agent.

A host that reaches the tools over the network (the MCP server at `/mcp`) cannot hand over a
`ToolContext` object, so the owner API mints one as a JWT signed with the instance secret. It
binds what a context binds — agent, conversation, customer email/phone and whether the host
verified them — and an expiry. The model never sees or supplies any of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import jwt
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from agent_tools.config import Settings
from agent_tools.db import Conn
from agent_tools.errors import OrderError
from agent_tools.service import agents, tracking

ISSUER = "agent-orders"
AUDIENCE = "agent-orders:session"
DEFAULT_TTL = 3600
MAX_TTL = 86_400
_LEEWAY = 5
"""Seconds of clock skew tolerated between the worker that minted and the one verifying."""


class InvalidSession(OrderError):
    """A missing, tampered, foreign or expired session token."""

    code = "invalid_session"
    status = 401


class SessionIn(BaseModel):
    """What a host asks a session token for (the agent comes from the path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation_id: Annotated[str, Field(min_length=1, max_length=200)]
    customer_email: EmailStr | None = None
    customer_phone: Annotated[str, Field(max_length=32)] | None = None
    customer_verified: bool = False
    """Whether the host checked the email/phone (a signed-in customer, a verified channel)."""
    ttl_seconds: Annotated[int, Field(ge=60, le=MAX_TTL)] = DEFAULT_TTL


class Session(BaseModel):
    """The identity a valid token carries."""

    agent_id: UUID
    conversation_id: str
    customer_email: str | None
    customer_phone: str | None
    customer_verified: bool
    expires_at: datetime


class MintedSession(Session):
    token: str


def session_key(signing_key: bytes) -> bytes:
    """A key of its own for session tokens, derived from the instance secret, so a token of
    one kind can never pass for another."""
    return hmac.new(signing_key, b"agent-orders:session-token", hashlib.sha256).digest()


def encode(key: bytes, agent_id: UUID, data: SessionIn, *, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": data.conversation_id,
        "agent": str(agent_id),
        "email": data.customer_email.lower() if data.customer_email else None,
        "phone": data.customer_phone,
        "verified": data.customer_verified,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=data.ttl_seconds)).timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def decode(key: bytes, token: str) -> Session:
    """The session a token carries; `InvalidSession` for anything else."""
    if not token or len(token) > 4096:
        raise InvalidSession("missing session token", hint=_HINT)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=_LEEWAY,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidSession("the session token expired", hint=_HINT) from None
    except jwt.InvalidTokenError:
        raise InvalidSession("the session token is not valid here", hint=_HINT) from None
    try:
        return Session(
            agent_id=UUID(str(claims["agent"])),
            conversation_id=str(claims["sub"]),
            customer_email=claims.get("email"),
            customer_phone=claims.get("phone"),
            customer_verified=bool(claims.get("verified")),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (KeyError, ValueError, TypeError):
        raise InvalidSession("the session token is not valid here", hint=_HINT) from None


_HINT = "mint a new one with POST /api/agents/{agent_id}/sessions"


async def mint(
    conn: Conn, owner_id: UUID, agent_id: UUID, data: SessionIn, settings: Settings
) -> MintedSession:
    """A token for a conversation with the owner's own agent (`NotFound` for anyone else's)."""
    await agents.get_agent(conn, agent_id, owner_id=owner_id)
    key = session_key(await tracking.signing_key(conn, settings))
    token = encode(key, agent_id, data)
    return MintedSession(token=token, **decode(key, token).model_dump())


async def verify(conn: Conn, token: str, settings: Settings) -> Session:
    return decode(session_key(await tracking.signing_key(conn, settings)), token)
