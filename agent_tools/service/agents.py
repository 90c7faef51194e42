"""Agents: one store's sales agent, its currency and flat shipping fee."""

from __future__ import annotations

from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import UnknownAgent, parse
from agent_tools.models import Agent, AgentIn, AgentSettings

_COLUMNS = (
    "id, owner_id, name, currency, shipping_fee, confirmation, language, return_window_days,"
    " editable_while_processing, payment_mode, stripe_account, checkout_expiry_hours,"
    " created_at, updated_at"
)


async def create_agent(conn: Conn, owner_id: UUID, data: AgentIn | dict[str, object]) -> Agent:
    new = parse(AgentIn, data)
    cur = await conn.execute(
        "insert into agent_orders.agents"
        " (owner_id, name, currency, shipping_fee, confirmation, language, return_window_days,"
        " editable_while_processing, payment_mode, stripe_account, checkout_expiry_hours)"
        " values (%(owner)s, %(name)s, %(currency)s, %(fee)s, %(confirmation)s, %(language)s,"
        " %(window)s, %(processing)s, %(payment_mode)s, %(stripe_account)s, %(expiry)s)"
        " returning " + _COLUMNS,
        {
            "owner": owner_id,
            "name": new.name,
            "currency": new.currency,
            "fee": new.shipping_fee,
            "confirmation": new.confirmation,
            "language": new.language,
            "window": new.return_window_days,
            "processing": new.editable_while_processing,
            "payment_mode": new.payment_mode,
            "stripe_account": new.stripe_account,
            "expiry": new.checkout_expiry_hours,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Agent.model_validate(row)


async def get_agent(conn: Conn, agent_id: UUID, *, owner_id: UUID | None = None) -> Agent:
    """The agent, if it exists and (when `owner_id` is given) belongs to that owner."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.agents"
        " where id = %(id)s and (%(owner)s::uuid is null or owner_id = %(owner)s)",
        {"id": agent_id, "owner": owner_id},
    )
    row = await cur.fetchone()
    if row is None:
        raise UnknownAgent(agent_id)
    return Agent.model_validate(row)


async def list_agents(conn: Conn, owner_id: UUID) -> list[Agent]:
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.agents where owner_id = %(owner)s"
        " order by created_at, id",
        {"owner": owner_id},
    )
    return [Agent.model_validate(r) for r in await cur.fetchall()]


async def update_agent(
    conn: Conn,
    agent_id: UUID,
    data: AgentSettings | dict[str, object],
    *,
    owner_id: UUID | None = None,
) -> Agent:
    change = parse(AgentSettings, data)
    cur = await conn.execute(
        "update agent_orders.agents set"
        " name = coalesce(%(name)s, name),"
        " currency = coalesce(%(currency)s, currency),"
        " shipping_fee = coalesce(%(fee)s, shipping_fee),"
        " confirmation = coalesce(%(confirmation)s, confirmation),"
        " language = coalesce(%(language)s, language),"
        " return_window_days = coalesce(%(window)s, return_window_days),"
        " editable_while_processing = coalesce(%(processing)s, editable_while_processing),"
        " payment_mode = coalesce(%(payment_mode)s, payment_mode),"
        " stripe_account = coalesce(%(stripe_account)s, stripe_account),"
        " checkout_expiry_hours = coalesce(%(expiry)s, checkout_expiry_hours),"
        " updated_at = now()"
        " where id = %(id)s and (%(owner)s::uuid is null or owner_id = %(owner)s)"
        " returning " + _COLUMNS,
        {
            "id": agent_id,
            "owner": owner_id,
            "name": change.name,
            "currency": change.currency,
            "fee": change.shipping_fee,
            "confirmation": change.confirmation,
            "language": change.language,
            "window": change.return_window_days,
            "processing": change.editable_while_processing,
            "payment_mode": change.payment_mode,
            "stripe_account": change.stripe_account,
            "expiry": change.checkout_expiry_hours,
        },
    )
    row = await cur.fetchone()
    if row is None:
        raise UnknownAgent(agent_id)
    return Agent.model_validate(row)
