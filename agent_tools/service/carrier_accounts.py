"""A store's accounts with tracking providers: the secret each one's webhooks are signed with.

One account per store and provider. Its id is part of the webhook URL the owner gives the
provider (`/api/carriers/<provider>/webhook?account=<id>`), which is how an inbound webhook
finds the secret to check before it reads anything else.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agent_tools.carriers import generic, new_secret
from agent_tools.db import Conn
from agent_tools.errors import NotFound, ValidationFailed, parse
from agent_tools.models.shipments import (
    CarrierAccount,
    CarrierAccountIn,
    CarrierAccountWithSecret,
    Provider,
)
from agent_tools.service import agents

_COLUMNS = "id, agent_id, provider, created_at, updated_at"


def _account(row: dict[str, Any]) -> dict[str, Any]:
    path = f"/api/carriers/{row['provider']}/webhook?account={row['id']}"
    return {**row, "webhook_path": path}


async def put_account(
    conn: Conn, owner_id: UUID, data: CarrierAccountIn | dict[str, Any]
) -> CarrierAccountWithSecret:
    """Create the store's account with a provider, or replace its secret."""
    new = parse(CarrierAccountIn, data)
    await agents.get_agent(conn, new.agent_id, owner_id=owner_id)
    secret = new.secret
    if secret is None:
        if new.provider == Provider.aftership:
            raise ValidationFailed(
                "AfterShip makes the webhook secret itself",
                field="secret",
                hint="copy it from AfterShip's Settings > Notifications",
            )
        secret = new_secret(new.provider)
    elif new.provider == Provider.generic:
        try:
            generic.check_secret(secret)
        except ValueError as exc:
            raise ValidationFailed(
                str(exc), field="secret", hint="leave it out to get one"
            ) from None
    cur = await conn.execute(
        "insert into agent_orders.carrier_accounts (agent_id, provider, secret)"
        " values (%(agent)s, %(provider)s, %(secret)s)"
        " on conflict (agent_id, provider) do update set secret = excluded.secret,"
        " updated_at = now() returning " + _COLUMNS,
        {"agent": new.agent_id, "provider": new.provider.value, "secret": secret},
    )
    row = await cur.fetchone()
    assert row is not None
    return CarrierAccountWithSecret.model_validate({**_account(row), "secret": secret})


async def list_accounts(conn: Conn, owner_id: UUID) -> list[CarrierAccount]:
    cur = await conn.execute(
        "select c.id, c.agent_id, c.provider, c.created_at, c.updated_at"
        " from agent_orders.carrier_accounts c join agent_orders.agents a on a.id = c.agent_id"
        " where a.owner_id = %(owner)s order by c.created_at, c.id",
        {"owner": owner_id},
    )
    return [CarrierAccount.model_validate(_account(r)) for r in await cur.fetchall()]


async def delete_account(conn: Conn, owner_id: UUID, account_id: UUID) -> None:
    cur = await conn.execute(
        "delete from agent_orders.carrier_accounts c using agent_orders.agents a"
        " where c.id = %(id)s and a.id = c.agent_id and a.owner_id = %(owner)s returning c.id",
        {"id": account_id, "owner": owner_id},
    )
    if await cur.fetchone() is None:
        raise NotFound(f"no carrier account {account_id}", hint="list them at /api/carriers/")


async def webhook_secret(
    conn: Conn, account_id: UUID, provider: Provider
) -> tuple[UUID, str] | None:
    """The store and the secret of an account with this provider; None if there is none."""
    cur = await conn.execute(
        "select agent_id, secret from agent_orders.carrier_accounts"
        " where id = %(id)s and provider = %(provider)s",
        {"id": account_id, "provider": provider.value},
    )
    row = await cur.fetchone()
    return (row["agent_id"], row["secret"]) if row else None
