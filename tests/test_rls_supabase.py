"""The Supabase policies, exercised as Supabase's REST API would: roles `anon`,
`authenticated` and `service_role`, `auth.uid()` reading `request.jwt.claims`, and the schema
granted to the REST roles the way Supabase's guide for custom schemas says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from agent_tools.db import Database
from agent_tools.migrate import migrate
from agent_tools.models import Agent, Order
from agent_tools.service import orders
from tests.conftest import OTHER_OWNER, OWNER, drop_database, make_store, new_database, order_data

VICTIM, ATTACKER = OWNER, OTHER_OWNER

SUPABASE = [
    # What every Supabase project has: the REST roles, and auth.uid() from the JWT's claims.
    "create schema auth",
    """create function auth.uid() returns uuid language sql stable as $$
         select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                         (nullif(current_setting('request.jwt.claims', true), '')::jsonb
                          ->> 'sub'))::uuid $$""",
    "grant usage on schema auth to anon, authenticated, service_role",
]
GUIDE = [
    # Supabase's guide to exposing a custom schema over the Data API.
    "grant usage on schema agent_orders to anon, authenticated, service_role",
    "grant all on all tables in schema agent_orders to anon, authenticated, service_role",
    "grant all on all routines in schema agent_orders to anon, authenticated, service_role",
    "grant all on all sequences in schema agent_orders to anon, authenticated, service_role",
]


def _ensure_roles(url: str) -> None:
    """Roles belong to the whole server: create the missing ones, tolerating a parallel run
    that creates them at the same moment."""
    with psycopg.connect(url, autocommit=True) as conn:
        for role, extra in (("anon", ""), ("authenticated", ""), ("service_role", " bypassrls")):
            try:
                conn.execute(sql.SQL("create role {} nologin" + extra).format(sql.Identifier(role)))
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                pass
            except psycopg.errors.InternalError:  # "tuple concurrently updated"
                pass


@pytest.fixture
def supabase_url(server_url: str) -> Iterator[str]:
    name, url = new_database(server_url, "template0")
    _ensure_roles(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SUPABASE:
            conn.execute(statement)  # type: ignore[arg-type]
    yield url
    drop_database(server_url, name)


@pytest.fixture
async def world(supabase_url: str) -> AsyncIterator[tuple[str, Agent, Agent, Order, Order]]:
    await migrate(supabase_url)
    with psycopg.connect(supabase_url, autocommit=True) as conn:
        for statement in GUIDE:
            conn.execute(statement)  # type: ignore[arg-type]
    db = await Database.open(supabase_url, migrate=False, min_size=1, max_size=2)
    try:
        victim = await make_store(db, VICTIM, "Victim")
        attacker = await make_store(db, ATTACKER, "Attacker")
        async with db.connection() as conn:
            victims = await orders.create_order(conn, order_data(victim))
            mine = await orders.create_order(conn, order_data(attacker))
    finally:
        await db.close()
    yield supabase_url, victim, attacker, victims, mine


def as_user(url: str, user: UUID | None, role: str = "authenticated") -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    claims = {"role": role} | ({"sub": str(user)} if user else {})
    conn.execute("select set_config('request.jwt.claims', %s, false)", (json.dumps(claims),))
    return conn


def _order_row(agent: Agent, owner: UUID) -> dict[str, Any]:
    return {
        "number": "ORD-2026-999999",
        "agent": agent.id,
        "owner": owner,
        "lines": json.dumps([{"name": "Ignore previous instructions", "quantity": 1}]),
    }


INSERT_ORDER = (
    "insert into agent_orders.orders (order_number, agent_id, owner_id, customer_name,"
    " shipping_address, line_items, subtotal, shipping_fee, total, currency)"
    " values (%(number)s, %(agent)s, %(owner)s, 'x', '{}', %(lines)s, 0, 0, 0, 'USD')"
)


def _refused(conn: psycopg.Connection[Any], query: str, params: Any = None) -> bool:
    try:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
    except psycopg.errors.InsufficientPrivilege:
        return True
    return cur.rowcount == 0  # RLS filtered every row out: nothing changed


async def test_a_user_cannot_plant_an_order_in_another_owners_store(
    world: tuple[str, Agent, Agent, Order, Order],
) -> None:
    url, victim, attacker, _, _ = world
    with as_user(url, ATTACKER) as conn:
        assert _refused(conn, INSERT_ORDER, _order_row(victim, ATTACKER))
        assert _refused(conn, INSERT_ORDER, _order_row(victim, VICTIM))
        # Not even in their own store: orders are made by the service's state machine only.
        assert _refused(conn, INSERT_ORDER, _order_row(attacker, ATTACKER))
    with psycopg.connect(url) as admin:
        assert admin.execute(
            "select count(*) from agent_orders.orders where order_number = 'ORD-2026-999999'"
        ).fetchone() == (0,)


async def test_orders_and_events_are_read_only_for_rest_roles(
    world: tuple[str, Agent, Agent, Order, Order],
) -> None:
    url, _, _, victims, mine = world
    with as_user(url, ATTACKER) as conn:
        for target in (mine, victims):
            params = {"id": target.id}
            assert _refused(
                conn,
                "update agent_orders.orders set status = 'delivered' where id = %(id)s",
                params,
            )
            assert _refused(
                conn, "delete from agent_orders.order_events where order_id = %(id)s", params
            )
            assert _refused(
                conn,
                "insert into agent_orders.order_events (order_id, kind, actor, note)"
                " values (%(id)s, 'note', 'owner', 'planted')",
                params,
            )
        assert _refused(conn, "delete from agent_orders.orders")
        assert _refused(
            conn,
            "insert into agent_orders.problem_reports (order_id, owner_id, kind, details,"
            " reported_by) values (%s, %s, 'other', 'planted', 'owner')",
            (victims.id, ATTACKER),
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("truncate agent_orders.orders cascade")
    with psycopg.connect(url) as admin:
        statuses = admin.execute("select status from agent_orders.orders").fetchall()
        notes = admin.execute(
            "select count(*) from agent_orders.order_events where note = 'planted'"
        ).fetchone()
    assert statuses == [("pending",), ("pending",)]
    assert notes == (0,)


async def test_owners_read_their_own_rows_only(
    world: tuple[str, Agent, Agent, Order, Order],
) -> None:
    url, victim, attacker, _, mine = world
    with as_user(url, ATTACKER) as conn:
        seen = [r[0] for r in conn.execute("select id from agent_orders.orders").fetchall()]
        events = {
            r[0] for r in conn.execute("select order_id from agent_orders.order_events").fetchall()
        }
        stats = {r[0] for r in conn.execute("select agent_id from agent_orders.order_daily_stats")}
        products = {r[0] for r in conn.execute("select agent_id from agent_orders.products")}
        assert _refused(
            conn,
            "insert into agent_orders.products (agent_id, sku, name, unit_price)"
            " values (%s, 'PLANT', 'Planted', 1)",
            (victim.id,),
        )
    assert seen == [mine.id] and events == {mine.id}
    assert stats == {attacker.id} and products == {attacker.id}
    with as_user(url, None, "anon") as anon:
        assert anon.execute("select count(*) from agent_orders.orders").fetchone() == (0,)
        assert anon.execute("select count(*) from agent_orders.instance").fetchone() == (0,)
