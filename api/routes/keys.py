"""Owner endpoints for API keys: create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from agent_tools.service import api_keys
from agent_tools.service.api_keys import ApiKey, ApiKeyIn
from api.deps import ConnDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import errors
from api.schemas import ApiKeyCreated

router = APIRouter(prefix="/api/api-keys", tags=["api keys"], responses=errors(401, 422, 503))


@router.post("/", status_code=201, response_model=ApiKeyCreated, responses=errors(409))
async def create_api_key(
    body: ApiKeyIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a key for scripts and servers. `key` is in this response only: store it.

    A retry with the same `Idempotency-Key` returns the same key's record with `key` null:
    the secret is never stored, not even for replays.
    """

    async def run() -> ApiKeyCreated:
        key, secret = await api_keys.create_key(conn, owner, body)
        return ApiKeyCreated(**key.model_dump(), key=secret)

    return await idempotent(
        conn, owner, idempotency_key, request, body, run, secret_fields=("key",)
    )


@router.get("/", response_model=list[ApiKey])
async def list_api_keys(owner: OwnerDep, conn: ConnDep) -> list[ApiKey]:
    """Your keys, without their secrets."""
    return await api_keys.list_keys(conn, owner)


@router.delete("/{key_id}", response_model=ApiKey, responses=errors(404))
async def revoke_api_key(key_id: Annotated[UUID, Path()], owner: OwnerDep, conn: ConnDep) -> ApiKey:
    """Revoke a key: it stops working at once."""
    return await api_keys.revoke_key(conn, owner, key_id)
