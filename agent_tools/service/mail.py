"""Customer emails as the owner sees them: what was sent, or kept while no SMTP is set up."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.errors import NotFound


class Mail(BaseModel):
    id: int
    order_id: UUID
    order_number: str
    kind: str
    """`confirmation`, `shipped`, `delivered` or `cancelled`."""
    to_address: str
    subject: str | None
    """None until the deliverer has rendered it (a moment after the event)."""
    message_id: str | None
    state: str
    """`pending`, `sent`, `kept` (rendered, no `SMTP_URL` configured) or `failed`."""
    attempts: int
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class MailDetail(Mail):
    text_body: str | None
    html_body: str | None


_COLUMNS = (
    "m.id, m.order_id, o.order_number, m.kind, m.to_address, m.subject, m.message_id, m.state,"
    " m.attempts, m.last_error, m.created_at, m.sent_at"
)


async def list_mail(
    conn: Conn, owner_id: UUID, *, order_id: UUID | None = None, limit: int = 50
) -> list[Mail]:
    """The owner's customer emails, newest first."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.mail_messages m"
        " join agent_orders.orders o on o.id = m.order_id"
        " where m.owner_id = %(owner)s and (%(order)s::uuid is null or m.order_id = %(order)s)"
        " order by m.id desc limit %(limit)s",
        {"owner": owner_id, "order": order_id, "limit": limit},
    )
    return [Mail.model_validate(r) for r in await cur.fetchall()]


async def get_mail(conn: Conn, owner_id: UUID, mail_id: int) -> MailDetail:
    cur = await conn.execute(
        "select " + _COLUMNS + ", m.text_body, m.html_body from agent_orders.mail_messages m"
        " join agent_orders.orders o on o.id = m.order_id"
        " where m.id = %(id)s and m.owner_id = %(owner)s",
        {"id": mail_id, "owner": owner_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no mail {mail_id}")
    return MailDetail.model_validate(row)


def mask(address: str) -> str:
    """`ann@example.com` -> `a***@example.com`: enough for the customer to recognise it."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


QUEUED_TO = (
    "(select to_address from agent_orders.mail_messages"
    " where order_id = %(order)s and kind = %(mail)s order by id desc limit 1)"
)
"""The address the latest `mail` email about `order` was queued for (null: none), as an
expression, for a statement that reads it beside other things."""


async def queued_to(conn: Conn, order_id: UUID, kind: str) -> str | None:
    cur = await conn.execute(
        "select " + QUEUED_TO + " as to_address", {"order": order_id, "mail": kind}
    )
    row = await cur.fetchone()
    return row["to_address"] if row else None


def notice(to_address: str | None, *, smtp: bool) -> dict[str, Any]:
    """Whether the customer gets an email queued (by the outbox, in the transaction that made
    the change) for `to_address`, None if none was, for the agent to say truthfully."""
    if to_address is None:
        return {"will_be_sent": False, "reason": "the order has no email address"}
    if not smtp:
        return {"will_be_sent": False, "reason": "this store has no mail server set up yet"}
    return {"will_be_sent": True, "to": mask(to_address)}
