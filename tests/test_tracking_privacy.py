"""Who sees what of an order: notes only in the full view, contact details typed into a chat
never becoming an identity, tracking links an owner can revoke, and rows from before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from agent_tools.db import Database
from agent_tools.migrate import load_migrations, migrate
from agent_tools.models import Agent
from agent_tools.service import orders, tracking
from agent_tools.tools import Toolkit
from tests.api_support import bearer, client, make_app
from tests.conftest import OWNER, drop_database, new_database, order_data
from tests.tools_support import context, place_and_confirm, place_args


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        yield c


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


async def _views(api: httpx.AsyncClient, number: str, email: str) -> tuple[str, str]:
    public = await api.get(f"/api/orders/track/{number}")
    full = await api.post(f"/api/orders/track/{number}", json={"email": email})
    assert public.status_code == full.status_code == 200, (public.text, full.text)
    assert full.json()["full"] is True
    return public.text, full.text


class TestNotes:
    async def test_owner_notes_are_internal_unless_marked_for_the_customer(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
        path = f"/api/orders/{order.order_number}/status"
        r = await api.patch(
            path,
            json={"status": "confirmed", "note": "gate code 4711, call +1 555 0100"},
            headers=bearer(OWNER),
        )
        assert r.status_code == 200, r.text
        r = await api.patch(
            path,
            json={"status": "processing", "note": "Packed with care", "note_for_customer": True},
            headers=bearer(OWNER),
        )
        assert r.status_code == 200, r.text
        # The owner still sees every note in the order's history.
        history = [e["note"] for e in r.json()["status_history"]]
        assert "gate code 4711, call +1 555 0100" in history
        public, full = await _views(api, order.order_number, "ann@example.com")
        assert "4711" not in public + full
        assert "Packed with care" in full and "Packed with care" not in public
        page = await api.get(f"/track/{order.order_number}")
        unlocked = await api.post(f"/track/{order.order_number}", data={"email": "ann@example.com"})
        assert "4711" not in page.text + unlocked.text
        assert "Packed with care" in unlocked.text and "Packed with care" not in page.text

    async def test_a_customers_cancellation_reason_is_shown_to_them_only(
        self, api: httpx.AsyncClient, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        number = placed["order_number"]
        ask = {"order_number": number, "reason": "moving to 12 Elm Road, gate code 9"}
        draft = await toolkit.call(ctx, "cancel_order", ask)
        ctx.turn += 1
        assert (await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))["ok"]
        public, full = await _views(api, number, "ann@example.com")
        assert "Elm Road" in full and "Elm Road" not in public
        assert '"status":"cancelled"' in public
        stranger = await toolkit.call(
            context(store, "other-chat"),
            "get_order_status",
            {"order_number": number, "email": None},
        )
        assert "Elm Road" not in str(stranger)


class TestTypedContactIsNoIdentity:
    async def test_an_email_typed_in_an_unverified_chat_is_not_anns_later(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        typed = context(store, "anonymous-chat")  # nobody verified; the model typed the email
        placed = await place_and_confirm(
            toolkit,
            typed,
            place_args(
                customer={"name": "Ann", "email": "ann@example.com", "phone": "+1 555 0100"}
            ),
        )
        number = placed["order_number"]
        # The conversation that placed it still has it.
        here = await toolkit.call(typed, "list_my_orders", {"status": None, "limit": None})
        assert [o["order_number"] for o in here["orders"]] == [number]
        # Ann, signed in later, does not get it by email or by phone.
        for ann in (
            context(store, "ann-chat", customer_email="ann@example.com", customer_verified=True),
            context(store, "ann-phone", customer_phone="+1 555 0100", customer_verified=True),
        ):
            listed = await toolkit.call(ann, "list_my_orders", {"status": None, "limit": None})
            assert listed["ok"] and listed["orders"] == []
            status = await toolkit.call(
                ann, "get_order_status", {"order_number": number, "email": None}
            )
            assert status["details"] == "redacted"
            cancel = await toolkit.call(
                ann, "cancel_order", {"order_number": number, "reason": None}
            )
            assert cancel["error"]["code"] == "not_found"

    async def test_an_order_placed_verified_follows_the_customer(
        self, toolkit: Toolkit, store: Agent, db: Database
    ) -> None:
        first = context(store, "chat-1", customer_email="ann@example.com", customer_verified=True)
        placed = await place_and_confirm(
            toolkit, first, place_args(customer={"name": "Ann", "email": None, "phone": None})
        )
        # A verified email, but the model added a phone the host never checked: not verified.
        mixed = await place_and_confirm(
            toolkit,
            context(store, "chat-2", customer_email="ann@example.com", customer_verified=True),
            place_args(customer={"name": "Ann", "email": None, "phone": "+1 555 0199"}),
        )
        later = context(store, "chat-3", customer_email="ann@example.com", customer_verified=True)
        listed = await toolkit.call(later, "list_my_orders", {"status": None, "limit": None})
        assert [o["order_number"] for o in listed["orders"]] == [placed["order_number"]]
        async with db.connection() as conn:
            saved = await orders.get_order(conn, placed["order_number"])
            other = await orders.get_order(conn, mixed["order_number"])
        assert saved.contact_verified and not other.contact_verified


class TestRevokingLinks:
    async def test_an_owner_revokes_one_orders_links(
        self, api: httpx.AsyncClient, store: Agent, db: Database
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            other = await orders.create_order(conn, order_data(store))
            key = await tracking.signing_key(conn)
        old = tracking.order_token(key, order)
        other_token = tracking.order_token(key, other)
        r = await api.post(
            f"/api/orders/{order.order_number}/tracking-links/revoke", headers=bearer(OWNER)
        )
        assert r.status_code == 200, r.text
        new = r.json()["tracking_url"].split("token=")[1]
        assert new != old

        async def full(number: str, token: str) -> bool:
            view = await api.post(f"/api/orders/track/{number}", json={"token": token})
            return bool(view.json()["full"])

        assert not await full(order.order_number, old)
        assert await full(order.order_number, new)
        assert await full(other.order_number, other_token)  # other orders keep their links
        page = await api.get(f"/track/{order.order_number}", params={"token": old})
        assert "Ann Lee" not in (await api.get(page.headers["location"])).text
        stranger = await api.post(
            f"/api/orders/{order.order_number}/tracking-links/revoke",
            headers=bearer("33333333-3333-4333-8333-333333333333"),
        )
        assert stranger.status_code == 404


async def test_rows_from_before_are_unverified_and_owner_notes_internal(server_url: str) -> None:
    """Migration 0006 on a database that has orders: the conservative defaults."""
    name, url = new_database(server_url, "template0")
    try:
        earlier = [m for m in load_migrations() if m.version < "0006"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "create schema agent_orders; create table agent_orders.schema_migrations ("
                " version text primary key, name text not null, checksum text not null,"
                " applied_at timestamptz not null default now())"
            )
            for m in earlier:
                conn.execute(m.sql.encode())
                conn.execute(
                    "insert into agent_orders.schema_migrations values (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            agent = conn.execute(
                "insert into agent_orders.agents (owner_id, name, currency)"
                " values (%s, 'Old', 'USD') returning id",
                (OWNER,),
            ).fetchone()
            assert agent is not None
            order = conn.execute(
                "insert into agent_orders.orders (order_number, agent_id, owner_id,"
                " customer_name, customer_email, shipping_address, line_items, subtotal,"
                " shipping_fee, total, currency) values ('ORD-2025-000001', %s, %s, 'Ann',"
                " 'ann@example.com', '{}', '[]', 0, 0, 0, 'USD') returning id",
                (agent[0], OWNER),
            ).fetchone()
            assert order is not None
            for actor, kind, visible, note in [
                ("owner", "status_changed", True, "gate code 4711"),
                ("agent", "cancelled", True, "changed my mind"),
                ("owner", "note", True, "shared with the customer"),
                ("owner", "note", False, "fraud check"),
            ]:
                conn.execute(
                    "insert into agent_orders.order_events (order_id, kind, actor,"
                    " customer_visible, note) values (%s, %s, %s, %s, %s)",
                    (order[0], kind, actor, visible, note),
                )
        assert (await migrate(url))[0] == "0006_hardening.sql"
        with psycopg.connect(url) as conn:
            row: Any = conn.execute(
                "select contact_verified, tracking_token_version from agent_orders.orders"
            ).fetchone()
            notes = dict(
                conn.execute("select note, note_visible from agent_orders.order_events").fetchall()
            )
        assert row == (False, 1)
        assert notes == {
            "gate code 4711": False,
            "changed my mind": True,
            "shared with the customer": True,
            "fraud check": False,
        }
    finally:
        drop_database(server_url, name)
