"""Changes through the tools (`modify_order`, `request_return`, each a draft confirmed in a
later turn) and the owner's side of a return over HTTP, on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import agents, orders, payments
from agent_tools.tools import ToolContext, Toolkit
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OWNER, census
from tests.tools_support import context, place_and_confirm, place_args

OWNER_BY = Provenance(actor=Actor.owner)


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


async def move(db: Database, number: str, *statuses: str) -> None:
    async with db.connection() as conn:
        for status in statuses:
            await orders.update_status(conn, number, {"status": status}, by=OWNER_BY)


async def confirm(toolkit: Toolkit, ctx: ToolContext, draft: dict[str, Any]) -> dict[str, Any]:
    assert draft["ok"], draft
    ctx.turn += 1
    done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
    assert done["ok"], done
    return done


async def stock_of(db: Database, sku: str) -> int:
    async with db.connection() as conn:
        cur = await conn.execute(
            "select stock from agent_orders.products where sku = %(s)s", {"s": sku}
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row["stock"])


ADDRESS = {
    "line1": "5 Calle Mayor",
    "line2": None,
    "city": "Madrid",
    "region": None,
    "postal_code": "28013",
    "country": "España",
    "recipient_name": None,
    "recipient_phone": None,
}


class TestModifyOrder:
    async def test_draft_shows_both_sides_then_the_yes_changes_the_order(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, "chat", customer_email="ann@example.com", customer_verified=True)
        placed = await place_and_confirm(toolkit, ctx)  # 2 x MUG-BLUE
        number = placed["order_number"]
        async with db.connection() as conn:  # paid by bank transfer
            paid = await orders.get_order(conn, number)
            await payments.record_payment(
                conn, paid.id, {"method": "transfer", "amount": "30.00"}, by=OWNER_BY
            )
        ask = {
            "order_number": number,
            "items": [{"sku": "MUG-BLUE", "quantity": 1}, {"sku": "MUG-RED", "quantity": 2}],
            "shipping_address": ADDRESS,
        }
        draft = await toolkit.call(ctx, "modify_order", ask)
        assert draft["ok"], draft
        summary = draft["summary"]
        assert summary["items_before"] == ["2 x Blue mug (12.50 USD each)"]
        assert summary["items_after"] == [
            "1 x Blue mug (12.50 USD each)",
            "2 x Red mug (12.50 USD each)",
        ]
        assert summary["ship_to_after"].endswith("Madrid, 28013, ES")
        assert (summary["total_before"], summary["total_after"]) == ("30.00 USD", "42.50 USD")
        assert summary["difference"].startswith("12.50 USD more to pay")
        # The draft's confirmation page shows the change to the customer.
        async with client(make_app(db)) as web:
            page = await web.get(urlsplit(draft["confirm_url"]).path)
        assert page.status_code == 200, page.text
        assert "Change order" in page.text and "42.50 USD" in page.text
        # Asking again is the same draft; confirming in the same turn is refused.
        assert (await toolkit.call(ctx, "modify_order", ask))["draft_id"] == draft["draft_id"]
        early = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert early["error"]["code"] == "confirmation_required"

        done = await confirm(toolkit, ctx, draft)
        assert done["order"]["total"] == "42.50 USD"
        assert done["order"]["items"] == ["1 x Blue mug", "2 x Red mug"]
        assert done["payment"]["status"] == "pending"  # 30.00 of 42.50 paid
        assert "pays on delivery" in done["payment"]["how"]  # this store takes no card
        assert await stock_of(db, "MUG-BLUE") == 19 and await stock_of(db, "MUG-RED") == 3
        again = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert again["ok"] and again["already_confirmed"]
        async with db.connection() as conn:
            events = await orders.list_events(conn, (await orders.get_order(conn, number)).id)
        edited = events[-1]
        assert (edited.kind, edited.actor, edited.conversation_id) == ("edited", "agent", "chat")

    async def test_refusals_say_what_to_offer_and_write_nothing(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, "chat")
        number = (await place_and_confirm(toolkit, ctx))["order_number"]
        shipped = (await place_and_confirm(toolkit, ctx))["order_number"]
        await move(db, shipped, "shipped")
        before = await census(db)
        one = [{"sku": "MUG-BLUE", "quantity": 1}]
        calls = [
            (
                ctx,
                {"order_number": shipped, "items": one, "shipping_address": None},
                "not_editable",
            ),
            (
                ctx,
                {
                    "order_number": number,
                    "items": [{"sku": "MUG-BLU", "quantity": 1}],
                    "shipping_address": None,
                },
                "unknown_sku",
            ),
            (ctx, {"order_number": number, "items": None, "shipping_address": None}, "validation"),
            (
                context(store, "stranger"),
                {"order_number": number, "items": one, "shipping_address": None},
                "not_found",
            ),
        ]
        for who, args, code in calls:
            result = await toolkit.call(who, "modify_order", args)
            assert result["error"]["code"] == code, result
        shipped_error = (await toolkit.call(ctx, *_modify(shipped)))["error"]
        assert "request_return" in shipped_error["hint"]
        assert (
            "MUG-BLUE" in (await toolkit.call(ctx, "modify_order", calls[1][1]))["error"]["message"]
        )
        cancel = await toolkit.call(ctx, "cancel_order", {"order_number": shipped, "reason": None})
        assert "request_return" in cancel["error"]["hint"]
        assert await census(db) == before

        # The owner changes the order between the draft and the yes: nothing is changed.
        draft = await toolkit.call(ctx, *_modify(number))
        async with db.connection() as conn:
            await orders.update_status(conn, number, {"status": "confirmed"}, by=OWNER_BY)
        ctx.turn += 1
        late = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert late["error"]["code"] == "version_conflict", late
        assert late["error"]["message"].startswith("nothing was changed")
        assert late["error"]["draft_usable"] is False


def _modify(number: str) -> tuple[str, dict[str, Any]]:
    return "modify_order", {
        "order_number": number,
        "items": [{"sku": "MUG-BLUE", "quantity": 1}],
        "shipping_address": None,
    }


class TestReturns:
    async def test_request_through_the_agent_then_the_owner_runs_it(
        self, db: Database, toolkit: Toolkit, store: Agent, api: httpx.AsyncClient
    ) -> None:
        ctx = context(store, "chat", customer_email="ann@example.com", customer_verified=True)
        args = place_args([{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "MUG-RED", "quantity": 1}])
        number = (await place_and_confirm(toolkit, ctx, args))["order_number"]
        await move(db, number, "shipped", "delivered")
        draft = await toolkit.call(
            ctx,
            "request_return",
            {
                "order_number": number,
                "items": [{"sku": "MUG-BLUE", "quantity": 1}],
                "reason": "too small",
            },
        )
        assert draft["ok"], draft
        assert draft["summary"]["items"] == ["1 x Blue mug"]
        assert draft["summary"]["refund_up_to"] == "12.50 USD"
        done = await confirm(toolkit, ctx, draft)
        assert done["return"]["state"] == "requested"
        assert done["return_email"]["will_be_sent"] is False  # kept: no SMTP here

        status = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert status["returns"] == [
            {
                "state": "requested",
                "items": ["1 x Blue mug"],
                "requested": status["returns"][0]["requested"],
            }
        ]
        assert status["timeline"][-1]["event"] == "return_requested"

        queue = (await api.get("/api/returns/")).json()
        assert [(r["order_number"], r["state"], r["amount"]) for r in queue] == [
            (number, "requested", "12.50")
        ]
        rid = queue[0]["id"]
        assert_problem(await api.post(f"/api/returns/{rid}/receive"), 409, "invalid_transition")
        r = await api.post(f"/api/returns/{rid}/approve", json={"note": "Send it to 1 Depot Rd"})
        assert r.json()["state"] == "approved", r.text
        stock = await stock_of(db, "MUG-BLUE")
        assert (await api.post(f"/api/returns/{rid}/receive")).json()["state"] == "received"
        assert await stock_of(db, "MUG-BLUE") == stock + 1  # back on the shelf
        # Nothing was paid yet: nothing to refund. Paid, the refund goes through payments.
        assert_problem(await api.post(f"/api/returns/{rid}/refund"), 409, "nothing_to_refund")
        paid = await api.post(
            f"/api/orders/{number}/payments", json={"method": "card", "amount": "42.50"}
        )
        assert paid.status_code in (200, 201), paid.text
        refunded = (await api.post(f"/api/returns/{rid}/refund")).json()
        assert (refunded["state"], refunded["refunded"]) == ("refunded", "12.50")
        order = (await api.get(f"/api/orders/{number}")).json()
        assert (order["amount_refunded"], order["payment_status"]) == (
            "12.50",
            "partially_refunded",
        )
        assert (await api.get("/api/returns/")).json() == []  # nothing open
        detail = (await api.get(f"/api/orders/{number}")).json()
        kinds = [e["kind"] for e in detail["status_history"]]
        assert [k for k in kinds if k.startswith("return_")] == [
            "return_requested",
            "return_approved",
            "return_received",
            "return_refunded",
        ]
        assert "payment_refunded" in kinds
        assert detail["returns"][0]["state"] == "refunded"
        # Each step reaches the outbox (webhooks, feed) and the customer's mail.
        async with db.connection() as conn:
            cur = await conn.execute(
                "select type from agent_orders.outbox where type like 'order.return%%'"
                " order by event_id"
            )
            types = [r["type"] for r in await cur.fetchall()]
            cur = await conn.execute(
                "select kind from agent_orders.mail_messages where kind like 'return%%' order by id"
            )
            mails = [r["kind"] for r in await cur.fetchall()]
        assert types == [
            "order.return_requested",
            "order.return_approved",
            "order.return_received",
            "order.return_refunded",
        ]
        assert mails == ["return_requested", "return_approved", "return_refunded"]
        # The rest of the order can still come back: one more blue, the red one.
        rest = await toolkit.call(
            ctx, "request_return", {"order_number": number, "items": None, "reason": None}
        )
        assert rest["summary"]["items"] == ["1 x Blue mug", "1 x Red mug"]

    async def test_refused_returns_write_nothing(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, "chat")
        shipped = (await place_and_confirm(toolkit, ctx))["order_number"]  # 2 x MUG-BLUE
        delivered = (await place_and_confirm(toolkit, ctx))["order_number"]
        old = (await place_and_confirm(toolkit, ctx))["order_number"]
        await move(db, shipped, "shipped")
        await move(db, delivered, "shipped", "delivered")
        await move(db, old, "shipped", "delivered")
        async with db.connection() as conn:
            await conn.execute(
                "update agent_orders.orders set delivered_at = now() - interval '31 days'"
                " where order_number = %(n)s",
                {"n": old},
            )
        before = await census(db)

        def ask(number: str, items: Any) -> dict[str, Any]:
            return {"order_number": number, "items": items, "reason": None}

        blue = [{"sku": "MUG-BLUE", "quantity": 1}]
        for args, code in [
            (ask(shipped, blue), "not_delivered"),
            (ask(delivered, [{"sku": "MUG-BLUE", "quantity": 3}]), "exceeds_returnable"),
            (ask(delivered, [{"sku": "MUG-RED", "quantity": 1}]), "validation"),
            (ask(delivered, []), "validation"),
            (ask(old, blue), "return_window_closed"),
        ]:
            result = await toolkit.call(ctx, "request_return", args)
            assert result["error"]["code"] == code, result
            assert result["error"]["hint"]
        assert await census(db) == before
        # A store without returns says so; the window is its setting.
        async with db.connection() as conn:
            await agents.update_agent(conn, store.id, {"return_window_days": 0})
        result = await toolkit.call(ctx, "request_return", ask(delivered, blue))
        assert result["error"]["code"] == "return_window_closed"
        async with db.connection() as conn:
            await agents.update_agent(conn, store.id, {"return_window_days": 60})
        assert (await toolkit.call(ctx, "request_return", ask(old, blue)))["ok"]
