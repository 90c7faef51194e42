"""Owner endpoints for webhooks: register endpoints, rotate secrets, see and redo deliveries."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from agent_tools.service import webhooks
from agent_tools.service.webhooks import (
    Delivery,
    Endpoint,
    EndpointIn,
    EndpointPatch,
    EndpointWithSecret,
)
from api.deps import ConnDep, IdempotencyKey, OwnerDep, StateDep
from api.idempotency import idempotent
from api.problems import errors

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"], responses=errors(401, 422, 503))

EndpointID = Annotated[UUID, Path(description="The endpoint's id")]


@router.post("/", status_code=201, response_model=EndpointWithSecret, responses=errors(404, 409))
async def create_webhook(
    body: EndpointIn,
    owner: OwnerDep,
    conn: ConnDep,
    state: StateDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Register an endpoint. Deliveries follow Standard Webhooks: verify them with the
    `secret` in this response (shown once: store it) and dedupe on `webhook-id`."""

    async def run() -> EndpointWithSecret:
        return await webhooks.create_endpoint(
            conn, owner, body, allow_private=state.settings.webhook_allow_private
        )

    # The signing secret is never kept with the idempotency record: a replay shows it as null.
    return await idempotent(
        conn, owner, idempotency_key, request, body, run, secret_fields=("secret",)
    )


@router.get("/", response_model=list[Endpoint])
async def list_webhooks(owner: OwnerDep, conn: ConnDep) -> list[Endpoint]:
    """Your endpoints, without their secrets."""
    return await webhooks.list_endpoints(conn, owner)


@router.get("/{endpoint_id}", response_model=Endpoint, responses=errors(404))
async def read_webhook(endpoint_id: EndpointID, owner: OwnerDep, conn: ConnDep) -> Endpoint:
    return await webhooks.get_endpoint(conn, owner, endpoint_id)


@router.patch("/{endpoint_id}", response_model=Endpoint, responses=errors(404))
async def update_webhook(
    endpoint_id: EndpointID, body: EndpointPatch, owner: OwnerDep, conn: ConnDep, state: StateDep
) -> Endpoint:
    """Change the URL, types or description, or disable / enable the endpoint."""
    return await webhooks.update_endpoint(
        conn, owner, endpoint_id, body, allow_private=state.settings.webhook_allow_private
    )


@router.delete("/{endpoint_id}", status_code=204, responses=errors(404))
async def delete_webhook(endpoint_id: EndpointID, owner: OwnerDep, conn: ConnDep) -> Response:
    """Delete the endpoint and its delivery history."""
    await webhooks.delete_endpoint(conn, owner, endpoint_id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret, responses=errors(404)
)
async def rotate_webhook_secret(
    endpoint_id: EndpointID, owner: OwnerDep, conn: ConnDep
) -> EndpointWithSecret:
    """A new signing secret (shown once). For 24 hours deliveries carry a signature with
    the previous secret too, so the receiver can switch without missing one."""
    return await webhooks.rotate_secret(conn, owner, endpoint_id)


@router.get("/{endpoint_id}/deliveries", response_model=list[Delivery], responses=errors(404))
async def list_webhook_deliveries(
    endpoint_id: EndpointID,
    owner: OwnerDep,
    conn: ConnDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[Delivery]:
    """The endpoint's recent deliveries, newest first: state, attempts, next attempt and
    the last response."""
    return await webhooks.list_deliveries(conn, owner, endpoint_id, limit=limit)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response_model=Delivery,
    responses=errors(404),
)
async def redeliver_webhook(
    endpoint_id: EndpointID,
    delivery_id: Annotated[int, Path(ge=1, le=2**62)],
    owner: OwnerDep,
    conn: ConnDep,
) -> Delivery:
    """Send a delivery again now, with its original `webhook-id`."""
    return await webhooks.redeliver(conn, owner, endpoint_id, delivery_id)


@router.post("/{endpoint_id}/test", status_code=202, response_model=Delivery, responses=errors(404))
async def test_webhook(endpoint_id: EndpointID, owner: OwnerDep, conn: ConnDep) -> Delivery:
    """Queue a `ping` delivery to the endpoint; follow it in the deliveries list."""
    return await webhooks.send_test(conn, owner, endpoint_id)
