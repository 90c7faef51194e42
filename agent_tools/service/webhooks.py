"""Webhook endpoints of an owner: register, change, rotate the signing secret, deliveries.

The signing secret (`whsec_...`, Standard Webhooks) is kept as is, since it signs, and
shown once, at creation or rotation. After a rotation the previous secret keeps signing
beside the new one for 24 hours, so receivers can switch over without losing a delivery.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from agent_tools import netguard
from agent_tools.db import Conn
from agent_tools.errors import NotFound, ValidationFailed, parse
from agent_tools.service.events import EventType, timestamp

ROTATION_OVERLAP = "24 hours"
MAX_ENDPOINTS = 50
"""Per owner: every event is fanned out to each matching endpoint inside its transaction."""

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
EventTypes = Annotated[list[EventType], Field(max_length=50)]


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url
    """Where deliveries are POSTed: a public http(s) URL."""
    event_types: EventTypes = []
    """Types to send, e.g. `["order.shipped"]`; empty: every type."""
    description: Description = ""
    agent_id: UUID | None = None
    """Only this agent's orders; null: all of yours."""
    enabled: bool = True


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None
    """Enabling again clears `disabled_reason` and the failure streak."""


class Endpoint(BaseModel):
    id: UUID
    url: str
    event_types: list[str]
    description: str
    agent_id: UUID | None
    enabled: bool
    disabled_reason: str | None
    """Why deliveries stopped: the endpoint answered 410, or failed for 5 days."""
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(Endpoint):
    secret: str | None
    """The signing secret (`whsec_...`). Shown in this response only: store it. Null when
    the response is an `Idempotency-Key` replay (the secret is never kept for replays)."""


class Delivery(BaseModel):
    id: int
    webhook_id: str
    """The `webhook-id` header: the same on every retry; the receiver's dedupe key."""
    type: str
    event_id: int | None
    state: str
    """`pending` (waiting for its next attempt), `succeeded` or `failed` (gave up)."""
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_response: str | None
    """The first kilobyte of the last response's body."""
    last_error: str | None
    created_at: datetime
    succeeded_at: datetime | None


_COLUMNS = (
    "id, url, event_types, description, agent_id, enabled, disabled_reason, failing_since,"
    " created_at, updated_at"
)
_DELIVERY = (
    "id, msg_id as webhook_id, type, event_id, state, attempts,"
    " case when state = 'pending' then next_attempt_at end as next_attempt_at,"
    " last_attempt_at, last_status, last_response, last_error, created_at, succeeded_at"
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def _check_agent(conn: Conn, owner_id: UUID, agent_id: UUID | None) -> None:
    if agent_id is None:
        return
    cur = await conn.execute(
        "select 1 from agent_orders.agents where id = %(id)s and owner_id = %(owner)s",
        {"id": agent_id, "owner": owner_id},
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no agent {agent_id}")


async def create_endpoint(
    conn: Conn, owner_id: UUID, data: EndpointIn | dict[str, Any], *, allow_private: bool
) -> EndpointWithSecret:
    new = parse(EndpointIn, data)
    await netguard.resolve(new.url, allow_private=allow_private)
    await _check_agent(conn, owner_id, new.agent_id)
    cur = await conn.execute(
        "select count(*) as n from agent_orders.webhook_endpoints where owner_id = %(owner)s",
        {"owner": owner_id},
    )
    row = await cur.fetchone()
    if row is not None and row["n"] >= MAX_ENDPOINTS:
        raise ValidationFailed(f"at most {MAX_ENDPOINTS} webhook endpoints per owner")
    cur = await conn.execute(
        "insert into agent_orders.webhook_endpoints"
        " (owner_id, agent_id, url, description, event_types, enabled, secret)"
        " values (%(owner)s, %(agent)s, %(url)s, %(description)s, %(types)s, %(enabled)s,"
        " %(secret)s) returning " + _COLUMNS + ", secret",
        {
            "owner": owner_id,
            "agent": new.agent_id,
            "url": new.url,
            "description": new.description,
            "types": sorted(set(new.event_types)),
            "enabled": new.enabled,
            "secret": new_secret(),
        },
    )
    return EndpointWithSecret.model_validate(await cur.fetchone())


async def list_endpoints(conn: Conn, owner_id: UUID) -> list[Endpoint]:
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.webhook_endpoints where owner_id = %(owner)s"
        " order by created_at, id",
        {"owner": owner_id},
    )
    return [Endpoint.model_validate(r) for r in await cur.fetchall()]


async def get_endpoint(conn: Conn, owner_id: UUID, endpoint_id: UUID) -> Endpoint:
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.webhook_endpoints"
        " where id = %(id)s and owner_id = %(owner)s",
        {"id": endpoint_id, "owner": owner_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return Endpoint.model_validate(row)


async def update_endpoint(
    conn: Conn,
    owner_id: UUID,
    endpoint_id: UUID,
    data: EndpointPatch | dict[str, Any],
    *,
    allow_private: bool,
) -> Endpoint:
    patch = parse(EndpointPatch, data)
    if patch.url is not None:
        await netguard.resolve(patch.url, allow_private=allow_private)
    cur = await conn.execute(
        "update agent_orders.webhook_endpoints set"
        " url = coalesce(%(url)s, url),"
        " description = coalesce(%(description)s, description),"
        " event_types = coalesce(%(types)s, event_types),"
        " enabled = coalesce(%(enabled)s, enabled),"
        " disabled_reason = case when %(enabled)s then null else disabled_reason end,"
        " failing_since = case when %(enabled)s then null else failing_since end,"
        " updated_at = now()"
        " where id = %(id)s and owner_id = %(owner)s returning " + _COLUMNS,
        {
            "id": endpoint_id,
            "owner": owner_id,
            "url": patch.url,
            "description": patch.description,
            "types": sorted(set(patch.event_types)) if patch.event_types is not None else None,
            "enabled": patch.enabled,
        },
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return Endpoint.model_validate(row)


async def delete_endpoint(conn: Conn, owner_id: UUID, endpoint_id: UUID) -> None:
    """Delete it with its deliveries: nothing more is sent to it."""
    cur = await conn.execute(
        "delete from agent_orders.webhook_endpoints where id = %(id)s and owner_id = %(owner)s",
        {"id": endpoint_id, "owner": owner_id},
    )
    if cur.rowcount == 0:
        raise NotFound(f"no webhook endpoint {endpoint_id}")


async def rotate_secret(conn: Conn, owner_id: UUID, endpoint_id: UUID) -> EndpointWithSecret:
    """A new secret; the current one keeps signing too for 24 hours."""
    cur = await conn.execute(
        "update agent_orders.webhook_endpoints set previous_secret = secret,"
        " previous_secret_expires_at = now() + interval '" + ROTATION_OVERLAP + "',"
        " secret = %(secret)s, updated_at = now()"
        " where id = %(id)s and owner_id = %(owner)s returning " + _COLUMNS + ", secret",
        {"id": endpoint_id, "owner": owner_id, "secret": new_secret()},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return EndpointWithSecret.model_validate(row)


async def list_deliveries(
    conn: Conn, owner_id: UUID, endpoint_id: UUID, *, limit: int = 50
) -> list[Delivery]:
    """The endpoint's most recent deliveries, newest first."""
    await get_endpoint(conn, owner_id, endpoint_id)
    cur = await conn.execute(
        "select " + _DELIVERY + " from agent_orders.webhook_deliveries"
        " where endpoint_id = %(id)s order by id desc limit %(limit)s",
        {"id": endpoint_id, "limit": limit},
    )
    return [Delivery.model_validate(r) for r in await cur.fetchall()]


async def redeliver(conn: Conn, owner_id: UUID, endpoint_id: UUID, delivery_id: int) -> Delivery:
    """Send a delivery again now, with the same `webhook-id` (receivers dedupe on it)."""
    await get_endpoint(conn, owner_id, endpoint_id)
    cur = await conn.execute(
        "update agent_orders.webhook_deliveries set state = 'pending', next_attempt_at = now(),"
        " locked_until = null, locked_by = null"
        " where id = %(id)s and endpoint_id = %(endpoint)s returning " + _DELIVERY,
        {"id": delivery_id, "endpoint": endpoint_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no delivery {delivery_id} for this endpoint")
    await conn.execute("select pg_notify('agent_orders_outbox', '')")
    return Delivery.model_validate(row)


async def send_test(conn: Conn, owner_id: UUID, endpoint_id: UUID) -> Delivery:
    """Queue a `ping` to the endpoint, enabled or not."""
    endpoint = await get_endpoint(conn, owner_id, endpoint_id)
    now = datetime.now().astimezone()
    body = {
        "type": "ping",
        "timestamp": timestamp(now),
        "data": {"endpoint_id": str(endpoint.id), "message": "agent-orders test delivery"},
    }
    cur = await conn.execute(
        "insert into agent_orders.webhook_deliveries (endpoint_id, msg_id, type, payload)"
        " values (%(endpoint)s, %(msg)s, 'ping', %(payload)s::jsonb) returning " + _DELIVERY,
        {
            "endpoint": endpoint.id,
            "msg": f"msg_{secrets.token_hex(16)}",
            "payload": json.dumps(body),
        },
    )
    await conn.execute("select pg_notify('agent_orders_outbox', '')")
    return Delivery.model_validate(await cur.fetchone())
