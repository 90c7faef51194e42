"""Carrier updates coming in: the providers' webhooks, the store's accounts with them, and the
updates no shipment matched. A webhook is verified before anything in it is read."""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from agent_tools.carriers import PayloadInvalid, SignatureInvalid, provider
from agent_tools.errors import ValidationFailed
from agent_tools.models.shipments import (
    CarrierAccount,
    CarrierAccountIn,
    CarrierAccountWithSecret,
    IngestResult,
    Provider,
    UnmatchedUpdate,
)
from agent_tools.service import carrier_accounts, shipments
from api.deps import ConnDep, DbDep, IdempotencyKey, OwnerDep
from api.idempotency import idempotent
from api.problems import ApiError, errors

router = APIRouter(prefix="/api/carriers", tags=["carriers"], responses=errors(422, 503))


class BadSignature(ApiError):
    code = "invalid_signature"
    status = 401


@router.post(
    "/{provider_name}/webhook",
    response_model=IngestResult,
    responses={401: {"description": "Unsigned, forged, or for no such account"}},
)
async def receive_carrier_webhook(
    provider_name: Annotated[Provider, Path(description="easypost, aftership or generic")],
    account: Annotated[UUID, Query(description="The carrier account's id (its webhook_path)")],
    request: Request,
    db: DbDep,
) -> IngestResult:
    """A tracking provider's update. EasyPost: `X-Hmac-Signature` (HMAC-SHA256 hex of the
    body with the webhook secret); AfterShip: `aftership-hmac-sha256` (base64 HMAC-SHA256);
    generic: Standard Webhooks headers (see the README for its body). Anything unsigned or
    wrongly signed is a 401 and changes nothing; a replay changes nothing either."""
    body = await request.body()
    async with db.connection() as conn:
        found = await carrier_accounts.webhook_secret(conn, account, provider_name)
        verify, parse = provider(provider_name)
        try:
            if found is None:
                raise SignatureInvalid("no such account")
            verify(found[1], body, request.headers)
        except SignatureInvalid:
            # One answer for a wrong account and a wrong signature: neither can be probed.
            raise BadSignature(
                "the webhook's signature does not match this account's secret",
                hint="check the webhook secret set for this account",
            ) from None
        try:
            updates = parse(json.loads(body))
        except (ValueError, PayloadInvalid) as exc:
            raise ValidationFailed(f"not a {provider_name.value} tracking webhook: {exc}") from None
        return await shipments.ingest(conn, found[0], provider_name.value, updates)


@router.put(
    "/",
    response_model=CarrierAccountWithSecret,
    responses=errors(401, 404),
)
async def put_carrier_account(
    body: CarrierAccountIn,
    owner: OwnerDep,
    conn: ConnDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Connect one of your stores to a tracking provider, or replace its webhook secret.

    Give the provider the URL `<this server><webhook_path>` and the `secret` (made for you
    when left out, except for AfterShip, which makes its own). The secret is shown once."""

    async def run() -> CarrierAccountWithSecret:
        return await carrier_accounts.put_account(conn, owner, body)

    return await idempotent(
        conn, owner, idempotency_key, request, body, run, status_code=200, secret_fields=("secret",)
    )


@router.get("/", response_model=list[CarrierAccount], responses=errors(401))
async def list_carrier_accounts(owner: OwnerDep, conn: ConnDep) -> list[CarrierAccount]:
    """Your stores' carrier accounts, without their secrets."""
    return await carrier_accounts.list_accounts(conn, owner)


@router.delete("/{account_id}", status_code=204, responses=errors(401, 404))
async def delete_carrier_account(
    account_id: Annotated[UUID, Path(description="The account's id")],
    owner: OwnerDep,
    conn: ConnDep,
) -> Response:
    """Disconnect: webhooks for this account are refused (401) from now on."""
    await carrier_accounts.delete_account(conn, owner, account_id)
    return Response(status_code=204)


@router.get("/unmatched", response_model=list[UnmatchedUpdate], responses=errors(401))
async def list_unmatched_updates(
    owner: OwnerDep, conn: ConnDep, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> list[UnmatchedUpdate]:
    """Carrier updates for tracking numbers none of your shipments has, latest first. Adding a
    shipment with that number to an order applies them to it."""
    return await shipments.list_unmatched(conn, owner, limit=limit)
