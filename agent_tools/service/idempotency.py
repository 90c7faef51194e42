"""Idempotency keys, the way Stripe has them: the same key and body replay the first response.

The key row is inserted in the caller's transaction, before the work it guards. A second
request with the same key waits on that row until the first commits (then replays its
response) or rolls back (then does the work itself), so concurrent retries cannot run the
work twice. Only successful responses are kept: a failed request leaves the key free.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.errors import Conflict, ValidationFailed

TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class StoredResponse(BaseModel):
    status_code: int
    body: Any


def request_hash(method: str, path: str, body: Any) -> str:
    """A fingerprint of what was asked: the same JSON in any key order hashes the same."""
    raw = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


async def claim(conn: Conn, owner_id: UUID, key: str, fingerprint: str) -> StoredResponse | None:
    """Claim `key` for this request (None: go ahead) or return the response it already got.

    Raises `IdempotencyKeyReused` when the key was used for a different request.
    """
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", field="Idempotency-Key"
        )
    params = {"owner": owner_id, "key": key, "hash": fingerprint, "ttl": TTL}
    for _ in range(3):
        cur = await conn.execute(
            "insert into agent_orders.idempotency_keys (owner_id, key, request_hash, expires_at)"
            " values (%(owner)s, %(key)s, %(hash)s, now() + %(ttl)s)"
            " on conflict (owner_id, key) do nothing returning true as claimed",
            params,
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "select request_hash, status_code, response, expires_at <= now() as expired"
            " from agent_orders.idempotency_keys where owner_id = %(owner)s and key = %(key)s",
            params,
        )
        row = await cur.fetchone()
        if row is not None and not row["expired"]:
            if row["request_hash"] != fingerprint:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used for a different request",
                    hint="use a new key for a new request",
                )
            return StoredResponse(status_code=row["status_code"], body=row["response"])
        await conn.execute(
            "delete from agent_orders.idempotency_keys where owner_id = %(owner)s"
            " and key = %(key)s and expires_at <= now()",
            params,
        )
    raise Conflict("this Idempotency-Key is busy", hint="retry in a moment")  # pragma: no cover


async def save(conn: Conn, owner_id: UUID, key: str, status_code: int, body: Any) -> None:
    """Record the response of a claimed key (same transaction as the work it guarded)."""
    await conn.execute(
        "update agent_orders.idempotency_keys set status_code = %(status)s, response = %(body)s"
        " where owner_id = %(owner)s and key = %(key)s",
        {"owner": owner_id, "key": key, "status": status_code, "body": Jsonb(body)},
    )


async def purge_expired(conn: Conn, *, limit: int = 1000) -> int:
    """Delete up to `limit` expired keys, skipping rows another request holds."""
    cur = await conn.execute(
        "delete from agent_orders.idempotency_keys where (owner_id, key) in ("
        " select owner_id, key from agent_orders.idempotency_keys where expires_at <= now()"
        " limit %(limit)s for update skip locked)",
        {"limit": limit},
    )
    return cur.rowcount
