"""API keys for an owner's scripts and servers: a public prefix plus a random secret.

Only a SHA-256 of the secret is stored (the secret has 256 bits of entropy, so a slow hash
would add nothing); the full key is shown once, when it is created.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from agent_tools.db import Conn
from agent_tools.errors import NotFound, parse
from agent_tools.models import Name

KEY_PATTERN = re.compile(r"^(ao_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_COLUMNS = "id, name, prefix, created_at, last_used_at, revoked_at"


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    """What the key is for, e.g. "shop backend"."""


class ApiKey(BaseModel):
    id: UUID
    name: str
    prefix: str
    """The public start of the key, enough to recognise it in a list."""
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    """`ao_<12 hex>_<43 url-safe characters>`: 48 bits of prefix, 256 bits of secret."""
    return f"ao_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def derive_token(seed: bytes, label: str) -> str:
    """A key that is the same on every run for the same `seed` (the demo owner's key)."""
    mac = hmac.new(seed, f"api-key:{label}".encode(), hashlib.sha256).digest()
    secret = hmac.new(seed, f"api-key-secret:{label}".encode(), hashlib.sha256).digest()
    return f"ao_{mac[:6].hex()}_{base64.urlsafe_b64encode(secret).decode().rstrip('=')}"


def looks_like_key(token: str) -> bool:
    return token.startswith("ao_")


async def _insert(conn: Conn, owner_id: UUID, name: str, token: str) -> ApiKey | None:
    """Store `token`; None if a key with its prefix exists already (never touched here)."""
    match = KEY_PATTERN.match(token)
    assert match is not None
    cur = await conn.execute(
        "insert into agent_orders.api_keys (owner_id, name, prefix, secret_hash)"
        " values (%(owner)s, %(name)s, %(prefix)s, %(hash)s)"
        " on conflict (prefix) do nothing returning " + _COLUMNS,
        {"owner": owner_id, "name": name, "prefix": match[1], "hash": _hash(match[2])},
    )
    row = await cur.fetchone()
    return ApiKey.model_validate(row) if row else None


async def create_key(
    conn: Conn, owner_id: UUID, data: ApiKeyIn | dict[str, object]
) -> tuple[ApiKey, str]:
    """A new key; returns it and the full secret token, which is never readable again."""
    new = parse(ApiKeyIn, data)
    token = new_token()
    key = await _insert(conn, owner_id, new.name, token)
    if key is None:  # pragma: no cover - a 48-bit prefix collision
        raise RuntimeError("API key prefix collision, try again")
    return key, token


async def ensure_key(conn: Conn, owner_id: UUID, name: str, token: str) -> tuple[ApiKey, bool]:
    """Store a known token (e.g. from `derive_token`) unless a key with its prefix exists.

    Returns the key and whether it was created now. A revoked key stays revoked: revoking
    the demo key is how an owner turns it off for good.
    """
    created = await _insert(conn, owner_id, name, token)
    if created is not None:
        return created, True
    match = KEY_PATTERN.match(token)
    assert match is not None
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.api_keys where prefix = %(prefix)s",
        {"prefix": match[1]},
    )
    row = await cur.fetchone()
    assert row is not None
    return ApiKey.model_validate(row), False


async def list_keys(conn: Conn, owner_id: UUID) -> list[ApiKey]:
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.api_keys where owner_id = %(owner)s"
        " order by created_at, id",
        {"owner": owner_id},
    )
    return [ApiKey.model_validate(r) for r in await cur.fetchall()]


async def revoke_key(conn: Conn, owner_id: UUID, key_id: UUID) -> ApiKey:
    """Revoke one of the owner's keys; revoking twice keeps the first time."""
    cur = await conn.execute(
        "update agent_orders.api_keys set revoked_at = coalesce(revoked_at, now())"
        " where id = %(id)s and owner_id = %(owner)s returning " + _COLUMNS,
        {"id": key_id, "owner": owner_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no API key {key_id}")
    return ApiKey.model_validate(row)


async def authenticate(conn: Conn, token: str) -> UUID | None:
    """The owner of a live key, or None. The secret is compared in constant time."""
    match = KEY_PATTERN.match(token)
    if match is None:
        return None
    cur = await conn.execute(
        "select id, owner_id, secret_hash from agent_orders.api_keys"
        " where prefix = %(prefix)s and revoked_at is null",
        {"prefix": match[1]},
    )
    row = await cur.fetchone()
    if row is None or not hmac.compare_digest(_hash(match[2]), row["secret_hash"]):
        return None
    # At most one write a minute per key, so busy keys do not queue on their row.
    await conn.execute(
        "update agent_orders.api_keys set last_used_at = now() where id = %(id)s"
        " and (last_used_at is null or last_used_at < now() - interval '1 minute')",
        {"id": row["id"]},
    )
    owner: UUID = row["owner_id"]
    return owner
