"""`Toolkit.call` on a real PostgreSQL: argument errors, drafts and confirmation, identity."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agent_tools.config import get_settings
from agent_tools.db import Database
from agent_tools.models import Actor, Agent, Order, OrderStatus, Provenance
from agent_tools.service import catalog, orders
from agent_tools.tools import Toolkit
from tests.conftest import OTHER_OWNER, census, make_store, order_data
from tests.tools_support import context, place_and_confirm, place_args


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


async def service_order(db: Database, store: Agent, name: str, email: str, **kw: Any) -> Order:
    """An order placed outside the tools (another customer, another channel), whose email
    was verified there (a signed-in shop account)."""
    kw.setdefault("contact_verified", True)
    async with db.connection() as conn:
        return await orders.create_order(
            conn,
            order_data(store, customer={"name": name, "email": email}, **kw),
            by=Provenance(actor=Actor.system),
        )


def error(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"] is False, result
    assert set(result["error"]) >= {"code", "message", "hint"}
    return dict(result["error"])


class TestArguments:
    async def test_unknown_tool(self, toolkit: Toolkit, store: Agent) -> None:
        err = error(await toolkit.call(context(store), "delete_everything", "{}"))
        assert err["code"] == "unknown_tool"
        assert "place_order" in err["hint"]

    @pytest.mark.parametrize("raw", ['{"items": [', "[1, 2]", "null", '"x"', "[" * 5000])
    async def test_malformed_arguments(self, toolkit: Toolkit, store: Agent, raw: str) -> None:
        err = error(await toolkit.call(context(store), "place_order", raw))
        assert err["code"] in ("invalid_json", "validation")

    async def test_quantity_below_one_names_the_field(self, toolkit: Toolkit, store: Agent) -> None:
        args = place_args([{"sku": "MUG-BLUE", "quantity": 0}])
        err = error(await toolkit.call(context(store), "place_order", json.dumps(args)))
        assert err["message"] == "items[0].quantity must be at least 1"
        assert err["field"] == "items[0].quantity"

    async def test_wrong_type_and_missing_field(self, toolkit: Toolkit, store: Agent) -> None:
        ctx = context(store)
        wrong = place_args([{"sku": "MUG-BLUE", "quantity": "two"}])
        assert error(await toolkit.call(ctx, "place_order", wrong))["message"] == (
            "items[0].quantity must be an integer"
        )
        missing = place_args()
        del missing["shipping_address"]["city"]
        err = error(await toolkit.call(ctx, "place_order", missing))
        assert err["message"] == "shipping_address.city is missing"
        assert "null" in err["hint"]

    async def test_a_price_from_the_model_is_refused(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        before = await census(db)
        args = place_args([{"sku": "MUG-BLUE", "quantity": 1, "unit_price": "0.01"}])
        err = error(await toolkit.call(context(store), "place_order", args))
        assert "'unit_price'" in err["message"]
        assert "catalog" in err["hint"]
        err = error(await toolkit.call(context(store), "place_order", {**place_args(), "total": 1}))
        assert "catalog" in err["hint"]
        assert await census(db) == before

    async def test_huge_and_hostile_strings(self, toolkit: Toolkit, store: Agent) -> None:
        ctx = context(store)
        huge = place_args(customer_notes="x" * 100_000)
        assert error(await toolkit.call(ctx, "place_order", json.dumps(huge)))["code"] == (
            "too_large"
        )
        long_name = place_args(customer={"name": "A" * 5000, "email": None, "phone": None})
        err = error(await toolkit.call(ctx, "place_order", long_name))
        assert err["field"] == "customer.name"
        assert "A" * 100 not in json.dumps(err)
        nul = place_args(customer_notes="hi\u0000there")
        assert error(await toolkit.call(ctx, "place_order", nul))["field"] == "customer_notes"
        surrogate = '{"query": "\\ud800", "limit": null}'
        assert error(await toolkit.call(ctx, "search_products", surrogate))["code"] == (
            "validation"
        )

    async def test_unknown_sku_suggests_the_nearest(self, toolkit: Toolkit, store: Agent) -> None:
        args = place_args([{"sku": "TEE-M", "quantity": 1}, {"sku": "MUG-BLU", "quantity": 1}])
        err = error(await toolkit.call(context(store), "place_order", args))
        assert err["code"] == "unknown_sku"
        assert err["message"].startswith("unknown sku 'MUG-BLU'; did you mean 'MUG-BLUE'")
        assert err["field"] == "items[1].sku"
        assert "search_products" in err["hint"]

    async def test_inactive_sku_is_refused(self, toolkit: Toolkit, store: Agent) -> None:
        args = place_args([{"sku": "OLD-HAT", "quantity": 1}])
        assert error(await toolkit.call(context(store), "place_order", args))["code"] == (
            "unknown_sku"
        )

    async def test_invalid_email(self, toolkit: Toolkit, store: Agent) -> None:
        args = place_args(customer={"name": "Ann", "email": "not-an-email", "phone": None})
        assert error(await toolkit.call(context(store), "place_order", args))["field"] == (
            "customer.email"
        )


class TestPlaceAndConfirm:
    async def test_place_order_is_a_priced_draft(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        before = await census(db)
        result = await toolkit.call(context(store), "place_order", json.dumps(place_args()))
        assert result["ok"] and result["status"] == "awaiting_confirmation"
        summary = result["summary"]
        assert summary["items"][0]["unit_price"] == "12.50 USD"
        assert (summary["subtotal"], summary["shipping"], summary["total"]) == (
            "25.00 USD",
            "5.00 USD",
            "30.00 USD",
        )
        after = await census(db)
        assert (after["orders"], after["drafts"], after["stock"]) == (
            0,
            before["drafts"] + 1,
            before["stock"],
        )

    async def test_confirm_in_the_same_turn_is_refused(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, turn=1)
        draft = await toolkit.call(ctx, "place_order", place_args())
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "confirmation_required"
        assert "yes" in err["hint"]
        assert (await census(db))["orders"] == 0

    async def test_confirm_in_a_later_turn_places_the_order(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, turn=1)
        draft = await toolkit.call(ctx, "place_order", place_args())
        ctx.turn = 2
        done = await toolkit.call(
            ctx, "confirm_order", {"draft_id": draft["draft_id"]}, tool_call_id="call_yes"
        )
        assert done["ok"] and done["already_confirmed"] is False
        order = done["order"]
        assert order["total"] == "30.00 USD" and order["status"] == "pending"
        assert f"/track/{order['order_number']}?token=" in order["tracking_url"]
        async with db.connection() as conn:
            saved = await orders.get_order(conn, order["order_number"])
            events = await orders.list_events(conn, saved.id)
        assert saved.conversation_id == "conv-1"
        assert [(e.kind, e.actor, e.conversation_id, e.tool_call_id) for e in events] == [
            ("created", Actor.agent, "conv-1", "call_yes")
        ]
        assert (await census(db))["stock"]["MUG-BLUE"] == 18

    async def test_confirm_is_idempotent(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        ctx.turn += 1
        results = [
            await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
            for _ in range(3)
        ]
        assert [r["already_confirmed"] for r in results] == [False, True, True]
        assert len({r["order"]["order_number"] for r in results}) == 1
        # Also when the calls race each other.
        draft = await toolkit.call(ctx, "place_order", place_args(customer_notes="second"))
        ctx.turn += 1
        raced = await asyncio.gather(
            *(toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}) for _ in range(6))
        )
        assert len({r["order"]["order_number"] for r in raced}) == 1
        assert sorted(r["already_confirmed"] for r in raced) == [False] + [True] * 5
        counts = await census(db)
        assert counts["orders"] == 2 and counts["stock"]["MUG-BLUE"] == 16

    async def test_same_draft_twice_and_a_newer_draft_replaces_older(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        first = await toolkit.call(ctx, "place_order", place_args())
        again = await toolkit.call(ctx, "place_order", place_args())
        assert first["draft_id"] == again["draft_id"] and "replaces_draft_id" not in again
        other = await toolkit.call(ctx, "place_order", place_args(customer_notes="gift wrap"))
        assert other["draft_id"] != first["draft_id"]
        assert other["replaces_draft_id"] == first["draft_id"]
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": first["draft_id"]}))
        assert err["code"] == "draft_replaced" and err["use_draft_id"] == other["draft_id"]
        assert other["draft_id"] in err["message"] and other["draft_id"] in err["hint"]
        assert (await toolkit.call(ctx, "confirm_order", {"draft_id": other["draft_id"]}))["ok"]

    async def test_the_same_order_drafted_in_parallel_is_one_draft(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        # A host running a model's duplicate calls at once: the conversation's lock (taken
        # with the catalog read) makes each call see the draft the one before it committed.
        ctx = context(store)
        drafts = await asyncio.gather(
            *(toolkit.call(ctx, "place_order", place_args()) for _ in range(8))
        )
        assert all(d["ok"] for d in drafts), drafts
        assert len({d["draft_id"] for d in drafts}) == 1
        assert not any("replaces_draft_id" in d for d in drafts)
        assert (await census(db))["drafts"] == 1

    async def test_drafts_expire(self, db: Database, store: Agent) -> None:
        toolkit = Toolkit(db, settings=get_settings().model_copy(update={"draft_ttl_seconds": 0}))
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "draft_expired"
        assert (await census(db))["orders"] == 0

    async def test_a_draft_of_another_conversation_or_agent_is_not_found(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        draft = await toolkit.call(context(store, "conv-a"), "place_order", place_args())
        other_store = await make_store(db, OTHER_OWNER, "Other")
        for ctx in (context(store, "conv-b", turn=5), context(other_store, "conv-a", turn=5)):
            err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
            assert err["code"] == "not_found"
        assert (await census(db))["orders"] == 0

    async def test_stock_is_reserved_at_confirmation(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, "slow")
        draft = await toolkit.call(
            ctx, "place_order", place_args([{"sku": "MUG-RED", "quantity": 5}])
        )
        assert draft["ok"]
        await place_and_confirm(
            toolkit, context(store, "fast"), place_args([{"sku": "MUG-RED", "quantity": 3}])
        )
        before = await census(db)
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "out_of_stock"
        assert err["items"] == [
            {"line": 0, "sku": "MUG-RED", "name": "Red mug", "requested": 5, "available": 2}
        ]
        assert err["draft_usable"] is False
        assert await census(db) == before

    async def test_a_price_change_after_the_draft_is_not_charged(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn, store.id, [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "14.00"}]
            )
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "price_changed"
        assert (await census(db))["orders"] == 0

    async def test_the_bound_email_wins_over_the_model(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, customer_email="Ann@Example.com", customer_verified=True)
        args = place_args(customer={"name": "Ann", "email": "mallory@example.com", "phone": None})
        draft = await toolkit.call(ctx, "place_order", args)
        assert draft["summary"]["customer"]["email"] == "ann@example.com"


class TestIdentity:
    async def test_an_agent_sees_only_its_own_catalog_and_orders(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        other = await make_store(db, OTHER_OWNER, "Other")
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn, other.id, [{"sku": "SECRET-B", "name": "Secret", "unit_price": "1.00"}]
            )
        theirs = await service_order(db, other, "Bob Stone", "bob@example.com")
        ctx = context(store, customer_email="bob@example.com", customer_verified=True)
        found = await toolkit.call(ctx, "search_products", {"query": "secret", "limit": None})
        assert found["ok"] and found["products"] == []
        args = place_args([{"sku": "SECRET-B", "quantity": 1}])
        assert error(await toolkit.call(ctx, "place_order", args))["code"] == "unknown_sku"
        status = {"order_number": theirs.order_number, "email": "bob@example.com"}
        assert error(await toolkit.call(ctx, "get_order_status", status))["code"] == "not_found"
        listed = await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": None})
        assert listed == {"ok": True, "orders": []}

    async def test_list_my_orders_needs_an_identity(self, toolkit: Toolkit, store: Agent) -> None:
        for ctx in (context(store), context(store, customer_email="ann@example.com")):
            err = error(await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": 5}))
            assert err["code"] == "identity_required"
            assert "order number" in err["hint"]

    async def test_list_my_orders_shows_only_the_bound_customers(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        await service_order(db, store, "Bob Stone", "bob@example.com")
        anns = await service_order(db, store, "Ann Lee", "ann@example.com")
        ctx = context(store, customer_email="ann@example.com", customer_verified=True)
        placed = await place_and_confirm(
            toolkit, ctx, place_args(customer={"name": "Ann", "email": None, "phone": None})
        )
        listed = await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": None})
        numbers = [o["order_number"] for o in listed["orders"]]
        assert sorted(numbers) == sorted([anns.order_number, placed["order_number"]])
        assert "bob" not in json.dumps(listed).lower()
        # Without a verified identity, only what was ordered in this very conversation.
        guest = context(store, "guest")
        mine = await place_and_confirm(toolkit, guest)
        listed = await toolkit.call(guest, "list_my_orders", {"status": "pending", "limit": 5})
        assert [o["order_number"] for o in listed["orders"]] == [mine["order_number"]]
        listed = await toolkit.call(guest, "list_my_orders", {"status": "shipped", "limit": 5})
        assert listed["orders"] == []

    async def test_a_phone_verified_customer_lists_orders_by_phone(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        async with db.connection() as conn:
            theirs = await orders.create_order(
                conn,
                order_data(
                    store,
                    customer={"name": "Cy", "phone": "+1 (555) 010-0100"},
                    contact_verified=True,
                ),
            )
            await orders.create_order(
                conn, order_data(store, customer={"name": "Di", "phone": "+1 555 010 0199"})
            )
        ctx = context(store, "phone-chat", customer_phone="15550100100", customer_verified=True)
        listed = await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": None})
        assert [o["order_number"] for o in listed["orders"]] == [theirs.order_number]
        # The same phone, not verified by the host, lists nothing.
        unverified = context(store, "phone-chat-2", customer_phone="15550100100")
        err = error(await toolkit.call(unverified, "list_my_orders", {"status": None, "limit": 5}))
        assert err["code"] == "identity_required"

    async def test_order_status_is_redacted_unless_it_is_the_customers(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        bobs = await service_order(db, store, "Bob Stone", "bob@example.com")
        ann = context(store, customer_email="ann@example.com", customer_verified=True)
        args: dict[str, Any] = {"order_number": bobs.order_number.lower(), "email": None}
        redacted = await toolkit.call(ann, "get_order_status", args)
        assert redacted["ok"] and redacted["details"] == "redacted"
        # It says why, and what would show the rest.
        assert "only the order number" in redacted["redacted_reason"]
        assert "email used for this order" in redacted["hint"]
        assert None not in redacted.values()
        text = json.dumps(redacted).lower()
        for secret in ("bob", "1 main st", "token="):
            assert secret not in text
        wrong = await toolkit.call(ann, "get_order_status", {**args, "email": "ann@example.com"})
        assert wrong["details"] == "redacted" and "does not match" in wrong["redacted_reason"]
        full = await toolkit.call(ann, "get_order_status", {**args, "email": " Bob@example.com"})
        assert full["details"] == "full"
        assert full["customer"]["name"] == "Bob Stone" and full["total"] == "17.50 USD"
        assert "token=" in full["tracking_url"]
        bob = context(store, customer_email="bob@example.com", customer_verified=True)
        assert (await toolkit.call(bob, "get_order_status", args))["details"] == "full"
        unverified = context(store, customer_email="bob@example.com")
        assert (await toolkit.call(unverified, "get_order_status", args))["details"] == "redacted"

    async def test_order_status_timeline(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        order = await service_order(db, store, "Ann Lee", "ann@example.com")
        async with db.connection() as conn:
            await orders.update_status(
                conn,
                order.id,
                {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"},
                by=Provenance(actor=Actor.owner),
            )
        result = await toolkit.call(
            context(store), "get_order_status", {"order_number": order.order_number, "email": None}
        )
        assert result["status"] == "shipped"
        assert [e.get("status") for e in result["timeline"]] == ["pending", "shipped"]
        assert "carrier" not in result and "items" not in result  # not the customer's
        full = await toolkit.call(
            context(store),
            "get_order_status",
            {"order_number": order.order_number, "email": "ann@example.com"},
        )
        assert full["carrier"] == "UPS" and "1Z999" in full["carrier_url"]
        bad = {"order_number": "12345", "email": None}
        assert error(await toolkit.call(context(store), "get_order_status", bad))["field"] == (
            "order_number"
        )


class TestCancel:
    async def test_cancel_takes_two_steps(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        ask = {"order_number": placed["order_number"], "reason": "changed my mind"}
        draft = await toolkit.call(ctx, "cancel_order", ask)
        assert draft["ok"] and draft["status"] == "awaiting_confirmation"
        assert (await toolkit.call(ctx, "cancel_order", ask))["draft_id"] == draft["draft_id"]
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "confirmation_required"
        assert (await census(db))["cancelled"] == 0
        ctx.turn += 1
        done = await toolkit.call(
            ctx, "confirm_order", {"draft_id": draft["draft_id"]}, tool_call_id="call_c"
        )
        assert done["order"]["status"] == "cancelled"
        # Its email was queued (the order has an address); without SMTP it is only kept.
        kept = {"will_be_sent": False, "reason": "this store has no mail server set up yet"}
        assert done["cancellation_email"] == kept
        again = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert again["already_confirmed"] is True
        assert again["cancellation_email"] == kept
        counts = await census(db)
        assert counts["cancelled"] == 1 and counts["stock"]["MUG-BLUE"] == 20
        async with db.connection() as conn:
            saved = await orders.get_order(conn, placed["order_number"])
            events = await orders.list_events(conn, saved.id)
        assert (events[-1].kind, events[-1].tool_call_id, events[-1].note) == (
            "cancelled",
            "call_c",
            "changed my mind",
        )

    async def test_only_the_customers_own_unshipped_orders(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        bobs = await service_order(db, store, "Bob Stone", "bob@example.com")
        ann = context(store, customer_email="ann@example.com", customer_verified=True)
        before = await census(db)
        ask = {"order_number": bobs.order_number, "reason": None}
        assert error(await toolkit.call(ann, "cancel_order", ask))["code"] == "not_found"
        assert await census(db) == before
        anns = await service_order(db, store, "Ann Lee", "ann@example.com")
        async with db.connection() as conn:
            await orders.update_status(conn, anns.id, {"status": OrderStatus.shipped})
        ask = {"order_number": anns.order_number, "reason": None}
        err = error(await toolkit.call(ann, "cancel_order", ask))
        assert err["code"] == "invalid_transition" and "ship" in err["hint"]


async def test_stale_unconfirmed_drafts_are_purged_confirmed_ones_kept(db: Database) -> None:
    from agent_tools.service import drafts

    async with db.connection() as conn:
        agent = await make_store(db)
        for i, (age_days, confirmed) in enumerate([(10, False), (10, True), (1, False)]):
            await conn.execute(
                "insert into agent_orders.drafts (id, kind, agent_id, conversation_id, turn,"
                " payload, expires_at, confirmed_at) values (%(id)s, 'order', %(agent)s, 'c', 0,"
                " '{}', now() - make_interval(days => %(age)s),"
                " case when %(confirmed)s then now() end)",
                {"id": f"d{i}", "agent": agent.id, "age": age_days, "confirmed": confirmed},
            )
        assert await drafts.purge_expired(conn) == 1
        cur = await conn.execute("select id from agent_orders.drafts order by id")
        assert [r["id"] for r in await cur.fetchall()] == ["d1", "d2"]
