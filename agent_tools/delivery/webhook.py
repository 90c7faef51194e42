"""Webhook deliveries: claim due ones, sign them (Standard Webhooks), POST, record the answer.

2xx is success. `410 Gone` disables the endpoint. Anything else (another status, a timeout,
a refused connection, an address that is no longer public) is retried on `retry.SCHEDULE`,
and an endpoint that has failed everything for `webhook_disable_after` is disabled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from agent_tools import netguard
from agent_tools.config import Settings
from agent_tools.db import Conn, Database
from agent_tools.delivery import retry
from agent_tools.errors import ValidationFailed
from agent_tools.service import events

log = logging.getLogger(__name__)

RESPONSE_BYTES = 1024
"""How much of a receiver's answer is kept."""
USER_AGENT = "agent-orders-webhooks/0.1"


@dataclass
class Job:
    id: int
    endpoint_id: str
    msg_id: str
    type: str
    attempts: int
    url: str
    secrets: list[str]
    body: str | None
    """None when the event's body could not be built: the attempt fails without a request."""


_CLAIM = (
    "with due as ("
    " select d.id from agent_orders.webhook_deliveries d"
    " join agent_orders.webhook_endpoints e on e.id = d.endpoint_id"
    " where d.state = 'pending' and d.next_attempt_at <= now()"
    " and (d.locked_until is null or d.locked_until < now())"
    " and (e.enabled or d.type = 'ping')"
    " order by d.next_attempt_at, d.id limit %(n)s for update of d skip locked"
    ") update agent_orders.webhook_deliveries d"
    " set locked_until = now() + make_interval(secs => %(lease)s), locked_by = %(me)s"
    " from due, agent_orders.webhook_endpoints e"
    " where d.id = due.id and e.id = d.endpoint_id"
    " returning d.id, d.endpoint_id::text, d.event_id, d.msg_id, d.type, d.attempts,"
    " d.payload::text as payload, e.url, e.secret,"
    " case when e.previous_secret_expires_at > now() then e.previous_secret end as previous"
)
"""Due deliveries of enabled endpoints, taken for `lease` seconds. Rows another deliverer
is claiming are skipped, not waited for; a killed deliverer's rows come back when its lease
runs out."""


UNREADABLE = "the event's order snapshot could not be read (see the deliverer's log)"


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


async def claim(conn: Conn, n: int, me: str, settings: Settings) -> list[Job]:
    cur = await conn.execute(_CLAIM, {"n": n, "lease": settings.delivery_lease, "me": me})
    rows = await cur.fetchall()
    if not rows:
        return []
    ids = [r["event_id"] for r in rows if r["event_id"] is not None]
    bodies = await events.bodies(conn, ids, settings)
    jobs = []
    for r in rows:
        if r["event_id"] is not None:
            body = dumps(bodies[r["event_id"]]) if r["event_id"] in bodies else None
        else:
            body = dumps(json.loads(r["payload"]))
        keys = [r["secret"]] + ([r["previous"]] if r["previous"] else [])
        jobs.append(
            Job(
                id=r["id"],
                endpoint_id=r["endpoint_id"],
                msg_id=r["msg_id"],
                type=r["type"],
                attempts=r["attempts"],
                url=r["url"],
                secrets=keys,
                body=body,
            )
        )
    return jobs


def sign(job: Job, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; one signature per live secret (rotation), space-separated."""
    signatures = " ".join(Webhook(s).sign(job.msg_id, at, body) for s in job.secrets)
    return {
        "webhook-id": job.msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def _post(
    client: httpx.AsyncClient, job: Job, body: str, settings: Settings
) -> tuple[int | None, str | None, str | None]:
    """POST the job once: (status, first kilobyte of the body, error)."""
    try:
        target = await netguard.resolve(job.url, allow_private=settings.webhook_allow_private)
    except ValidationFailed as exc:
        return None, None, exc.message
    headers = sign(job, body, datetime.now(UTC))
    extensions: dict[str, Any] = {}
    if target.address is not None:
        # Connect to the address that was checked, still naming the host for HTTP and TLS.
        headers["host"] = httpx.URL(job.url).netloc.decode("ascii")
        if job.url.startswith("https:"):
            extensions["sni_hostname"] = target.host
    try:
        async with client.stream(
            "POST",
            target.pinned_url(),
            content=body.encode(),
            headers=headers,
            extensions=extensions,
        ) as response:
            kept = b""
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) >= RESPONSE_BYTES:
                    break
            return response.status_code, kept[:RESPONSE_BYTES].decode("utf-8", "replace"), None
    except httpx.HTTPError as exc:
        return None, None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__


_SUCCEEDED = (
    "with d as ("
    " update agent_orders.webhook_deliveries set state = 'succeeded', attempts = attempts + 1,"
    " last_attempt_at = now(), last_status = %(status)s, last_response = %(response)s,"
    " last_error = null, succeeded_at = now(), locked_until = null, locked_by = null"
    " where id = %(id)s and locked_by = %(me)s returning endpoint_id, type"
    ") update agent_orders.webhook_endpoints e set failing_since = null from d"
    " where e.id = d.endpoint_id and d.type <> 'ping' and e.failing_since is not null"
)
"""The attempt and the end of the endpoint's failure streak, in one statement. Nothing when
the claim is no longer this deliverer's (another one took it over after the lease)."""

_FAILED = (
    "with d as ("
    " update agent_orders.webhook_deliveries set attempts = attempts + 1,"
    " state = case when %(final)s then 'failed' else 'pending' end,"
    " next_attempt_at = now() + make_interval(secs => %(delay)s),"
    " last_attempt_at = now(), last_status = %(status)s, last_response = %(response)s,"
    " last_error = %(error)s, locked_until = null, locked_by = null"
    " where id = %(id)s and locked_by = %(me)s returning endpoint_id, type"
    ") update agent_orders.webhook_endpoints e set"
    " failing_since = coalesce(e.failing_since, now()),"
    " enabled = e.enabled and not (%(gone)s"
    "   or coalesce(e.failing_since, now()) < now() - make_interval(secs => %(max)s)),"
    " disabled_reason = case"
    "   when not e.enabled then e.disabled_reason"
    "   when %(gone)s then 'the endpoint answered 410 Gone'"
    "   when coalesce(e.failing_since, now()) < now() - make_interval(secs => %(max)s)"
    "     then 'every delivery failed since ' || to_char(e.failing_since at time zone 'UTC',"
    "       'YYYY-MM-DD HH24:MI') || ' UTC'"
    "   else e.disabled_reason end,"
    " updated_at = now()"
    " from d where e.id = d.endpoint_id and d.type <> 'ping'"
)
"""The failed attempt, its next try (or giving up), and the endpoint's failure streak:
`410 Gone`, or failures for longer than `max` seconds, disable it."""


async def deliver(db: Database, client: httpx.AsyncClient, job: Job, me: str, s: Settings) -> None:
    """One attempt, recorded in one statement."""
    status: int | None
    response: str | None
    error: str | None
    if job.body is None:
        status, response, error = None, None, UNREADABLE
    else:
        status, response, error = await _post(client, job, job.body, s)
    params: dict[str, Any] = {"id": job.id, "me": me, "status": status, "response": response}
    if status is not None and 200 <= status < 300:
        query = _SUCCEEDED
    else:
        gone = status == 410
        delay = None if job.type == "ping" else retry.next_delay(job.attempts + 1, s.retry_scale)
        if error is None:
            error = f"the endpoint answered {status}"
        query = _FAILED
        params.update(
            final=gone or delay is None,
            delay=delay or 0.0,
            error=error,
            gone=gone,
            max=s.webhook_disable_after,
        )
    async with db.reader() as conn:  # one statement: no transaction around it
        await conn.execute(query, params)
