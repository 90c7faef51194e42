"""Drafts: an order or cancellation the agent proposed, carried out only on the customer's yes.

A draft belongs to one agent and one conversation and remembers the customer turn in which it
was made. Confirming it is accepted only in a later turn and before it expires, and is
idempotent: the draft row is locked, and once it has an order that order is returned again.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.errors import NotFound, OrderError, parse
from agent_tools.models import LineItem, NewOrder, Order, Provenance
from agent_tools.service import catalog, orders

_COLUMNS = (
    "id, kind, agent_id, conversation_id, turn, payload, order_id, created_at, expires_at,"
    " confirmed_at"
)


class ConfirmationRequired(OrderError):
    """The customer has not spoken since the draft was made."""

    code = "confirmation_required"
    status = 409


class DraftExpired(OrderError):
    code = "draft_expired"
    status = 410


class PriceChanged(OrderError):
    """The catalog changed between the draft and the yes: the customer agreed to another total."""

    code = "price_changed"
    status = 409


class Draft(BaseModel):
    id: str
    kind: Literal["order", "cancel"]
    agent_id: UUID
    conversation_id: str
    turn: int
    payload: dict[str, Any]
    order_id: UUID | None
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None


class Quote(BaseModel):
    """The catalog price of a drafted order, as read back to the customer."""

    lines: list[LineItem]
    subtotal: Decimal
    shipping_fee: Decimal
    total: Decimal
    currency: str


class Confirmation(BaseModel):
    draft: Draft
    order: Order
    repeated: bool
    """True when the draft had already been confirmed: the same order, nothing new written."""


async def quote(conn: Conn, new: NewOrder) -> Quote:
    """Price catalog items without reserving anything; refuses unknown, inactive or short skus."""
    wanted: dict[str, int] = {}
    for item in new.items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    agent, products = await catalog.offer(conn, new.agent_id, list(wanted))
    catalog.check_available(wanted, {s: (p.active, p.stock) for s, p in products.items()})
    lines = [
        LineItem(
            sku=item.sku,
            name=products[item.sku].name,
            quantity=item.quantity,
            unit_price=products[item.sku].unit_price,
            line_total=products[item.sku].unit_price * item.quantity,
        )
        for item in new.items
    ]
    subtotal = sum((ln.line_total for ln in lines), Decimal("0.00"))
    return Quote(
        lines=lines,
        subtotal=subtotal,
        shipping_fee=agent.shipping_fee,
        total=subtotal + agent.shipping_fee,
        currency=agent.currency,
    )


async def _lock_conversation(conn: Conn, agent_id: UUID, conversation_id: str) -> None:
    # Two identical drafts made at once (parallel tool calls) must find each other.
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
        {"key": f"agent-orders:draft:{agent_id}:{conversation_id}"},
    )


async def _open_draft(
    conn: Conn, agent_id: UUID, conversation_id: str, kind: str, order_id: UUID | None = None
) -> Draft | None:
    """The conversation's open draft of this kind (and order); drafting keeps at most one."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.drafts"
        " where agent_id = %(agent)s and conversation_id = %(conv)s and kind = %(kind)s"
        " and (%(order)s::uuid is null or order_id = %(order)s)"
        " and confirmed_at is null and expires_at > now()"
        " order by created_at desc limit 1",
        {"agent": agent_id, "conv": conversation_id, "kind": kind, "order": order_id},
    )
    row = await cur.fetchone()
    return Draft.model_validate(row) if row else None


async def _insert(
    conn: Conn,
    *,
    kind: str,
    agent_id: UUID,
    conversation_id: str,
    turn: int,
    payload: dict[str, Any],
    order_id: UUID | None,
    ttl_seconds: int,
    replace_open: bool = False,
) -> Draft:
    """A new draft; with `replace_open`, the conversation's open drafts of this kind expire in
    the same statement (which does not see the new one)."""
    replace = (
        "with replaced as (update agent_orders.drafts set expires_at = now()"
        " where agent_id = %(agent)s and conversation_id = %(conv)s and kind = %(kind)s"
        " and confirmed_at is null and expires_at > now()) "
        if replace_open
        else ""
    )
    cur = await conn.execute(
        replace + "insert into agent_orders.drafts"
        " (id, kind, agent_id, conversation_id, turn, payload, order_id, expires_at)"
        " values (%(id)s, %(kind)s, %(agent)s, %(conv)s, %(turn)s, %(payload)s, %(order)s,"
        " now() + %(ttl)s) returning " + _COLUMNS,
        {
            "id": "drf_" + secrets.token_hex(8),
            "kind": kind,
            "agent": agent_id,
            "conv": conversation_id,
            "turn": turn,
            "payload": Jsonb(payload),
            "order": order_id,
            "ttl": timedelta(seconds=ttl_seconds),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Draft.model_validate(row)


async def draft_order(
    conn: Conn,
    data: NewOrder | dict[str, Any],
    *,
    conversation_id: str,
    turn: int,
    ttl_seconds: int,
) -> tuple[Draft, Quote]:
    """Price an order and keep it as a draft; no order, no stock taken.

    The same order drafted again while its draft is open returns that draft. A different one
    replaces the conversation's open order drafts: only the latest summary can be confirmed.
    """
    new = parse(NewOrder, data)
    order_json = new.model_dump(mode="json")
    async with conn.transaction():
        await _lock_conversation(conn, new.agent_id, conversation_id)
        priced = await quote(conn, new)
        existing = await _open_draft(conn, new.agent_id, conversation_id, "order")
        if existing is not None and existing.payload["order"] == order_json:
            return existing, Quote.model_validate(existing.payload["quote"])
        draft = await _insert(
            conn,
            kind="order",
            agent_id=new.agent_id,
            conversation_id=conversation_id,
            turn=turn,
            payload={"order": order_json, "quote": priced.model_dump(mode="json")},
            order_id=None,
            ttl_seconds=ttl_seconds,
            replace_open=True,
        )
    return draft, priced


async def draft_cancel(
    conn: Conn,
    order: Order,
    *,
    reason: str | None,
    conversation_id: str,
    turn: int,
    ttl_seconds: int,
) -> Draft:
    """Propose cancelling `order`; an open cancellation draft for it is returned again."""
    async with conn.transaction():
        await _lock_conversation(conn, order.agent_id, conversation_id)
        existing = await _open_draft(conn, order.agent_id, conversation_id, "cancel", order.id)
        if existing is not None:
            return existing
        return await _insert(
            conn,
            kind="cancel",
            agent_id=order.agent_id,
            conversation_id=conversation_id,
            turn=turn,
            payload={"reason": reason},
            order_id=order.id,
            ttl_seconds=ttl_seconds,
        )


async def find(conn: Conn, draft_id: str, *, agent_id: UUID, conversation_id: str) -> Draft | None:
    """A draft of this agent and conversation, confirmed or not, expired or not."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.drafts"
        " where id = %(id)s and agent_id = %(agent)s and conversation_id = %(conv)s",
        {"id": draft_id, "agent": agent_id, "conv": conversation_id},
    )
    row = await cur.fetchone()
    return Draft.model_validate(row) if row else None


async def confirm(
    conn: Conn,
    draft_id: str,
    *,
    agent_id: UUID,
    conversation_id: str,
    turn: int,
    by: Provenance,
) -> Confirmation:
    """Carry out a draft: create the order, or cancel it. Idempotent under concurrency."""
    async with conn.transaction():
        cur = await conn.execute(
            "select " + _COLUMNS + ", expires_at <= now() as expired from agent_orders.drafts"
            " where id = %(id)s and agent_id = %(agent)s and conversation_id = %(conv)s"
            " for update",
            {"id": draft_id, "agent": agent_id, "conv": conversation_id},
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(
                f"no draft {draft_id!r} in this conversation",
                hint="use the draft_id returned by place_order or cancel_order",
            )
        draft = Draft.model_validate(row)
        if draft.confirmed_at is not None and draft.order_id is not None:
            order = await orders.get_order(conn, draft.order_id, agent_id=agent_id)
            return Confirmation(draft=draft, order=order, repeated=True)
        if turn <= draft.turn:
            raise ConfirmationRequired(
                "the customer has not answered this draft yet",
                hint="read the summary to the customer, ask for an explicit yes,"
                " and call confirm_order only after they reply",
            )
        if row["expired"]:
            raise DraftExpired(
                f"draft {draft_id} expired or was replaced by a newer draft",
                hint="confirm the latest draft_id, or draft it again and read it back",
            )
        if draft.kind == "order":
            new = parse(NewOrder, draft.payload["order"])
            order = await orders.insert_order(conn, new, by=by)
            quoted = Decimal(draft.payload["quote"]["total"])
            if order.total != quoted:
                # Raising rolls the whole transaction back: no order, stock untouched.
                raise PriceChanged(
                    f"prices changed since the draft: total is now {order.total}"
                    f" {order.currency}, not {quoted}",
                    hint="call place_order again and read the new total to the customer",
                )
        else:
            assert draft.order_id is not None
            order = await orders.cancel_order(
                conn,
                draft.order_id,
                reason=draft.payload.get("reason"),
                by=by,
                agent_id=agent_id,
            )
        cur = await conn.execute(
            "update agent_orders.drafts set order_id = %(order)s, confirmed_at = now()"
            " where id = %(id)s returning " + _COLUMNS,
            {"order": order.id, "id": draft.id},
        )
        updated = await cur.fetchone()
        assert updated is not None
    return Confirmation(draft=Draft.model_validate(updated), order=order, repeated=False)


async def purge_expired(conn: Conn, *, keep_days: int = 7, limit: int = 1000) -> int:
    """Delete up to `limit` drafts that expired unconfirmed more than `keep_days` ago.

    Confirmed drafts stay: they are the record of what the customer said yes to.
    """
    cur = await conn.execute(
        "delete from agent_orders.drafts where id in ("
        " select id from agent_orders.drafts where confirmed_at is null"
        " and expires_at < now() - make_interval(days => %(days)s)"
        " limit %(limit)s for update skip locked)",
        {"days": keep_days, "limit": limit},
    )
    return cur.rowcount
