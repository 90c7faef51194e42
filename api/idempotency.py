"""Runs a POST under an `Idempotency-Key`: the first response is stored and replayed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.service import idempotency


async def idempotent(
    conn: Conn,
    owner: UUID,
    key: str | None,
    request: Request,
    payload: BaseModel,
    run: Callable[[], Awaitable[BaseModel]],
    *,
    status_code: int = 201,
    secret_fields: tuple[str, ...] = (),
    restore: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
) -> JSONResponse:
    """`run()` once per key: later calls with the same key and body get the same response.

    `secret_fields` of the response (an API key's secret, a tracking link's token) are never
    stored, so the stored record holds nothing that would let anyone sign in or read an
    order. A replay gets them as null, or as `restore` derives them again from the stored body.
    """
    if key is None:
        return JSONResponse((await run()).model_dump(mode="json"), status_code=status_code)
    fingerprint = idempotency.request_hash(
        request.method, request.url.path, payload.model_dump(mode="json")
    )
    stored = await idempotency.claim(conn, owner, key, fingerprint)
    if stored is not None:
        replayed = stored.body if restore is None else await restore(stored.body)
        return JSONResponse(
            replayed, status_code=stored.status_code, headers={"Idempotent-Replayed": "true"}
        )
    body = (await run()).model_dump(mode="json")
    kept = {**body, **dict.fromkeys(secret_fields)} if secret_fields else body
    await idempotency.save(conn, owner, key, status_code, kept)
    return JSONResponse(body, status_code=status_code)
