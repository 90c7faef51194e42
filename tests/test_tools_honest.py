"""What the tools say when things are not as the model hoped: stock words, a failed
confirmation, a delivered order, an optional reason, and a hint for every error that the
model can act on. All through `Toolkit.call` on a real PostgreSQL."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from agent_tools.db import Database
from agent_tools.errors import ValidationFailed
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import catalog, orders
from agent_tools.tools import TOOLS, Toolkit
from tests.conftest import census
from tests.tools_support import context, place_and_confirm, place_args


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


def error(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"] is False, result
    return dict(result["error"])


async def set_stock(db: Database, store: Agent, sku: str, name: str, stock: int) -> None:
    async with db.connection() as conn:
        await catalog.upsert_products(
            conn, store.id, [{"sku": sku, "name": name, "unit_price": "12.50", "stock": stock}]
        )


class TestStockWords:
    async def test_search_says_what_is_available(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        await set_stock(db, store, "MUG-RED", "Red mug", 0)
        found = await toolkit.call(context(store), "search_products", {"query": None, "limit": 20})
        available = {p["sku"]: p["available"] for p in found["products"]}
        assert available == {
            "MUG-BLUE": 20,
            "MUG-RED": 0,
            "TEE-M": "any quantity",
            "DIME": "any quantity",
        }
        assert all("in_stock" not in p for p in found["products"])

    async def test_place_order_names_each_short_line(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        await set_stock(db, store, "MUG-RED", "Red mug", 0)
        before = await census(db)
        items = [
            {"sku": "TEE-M", "quantity": 3},
            {"sku": "MUG-BLUE", "quantity": 25},
            {"sku": "MUG-RED", "quantity": 1},
        ]
        err = error(await toolkit.call(context(store), "place_order", place_args(items)))
        assert err["code"] == "out_of_stock"
        assert err["message"].startswith("no draft was saved")
        assert "items[1] MUG-BLUE: asked 25, only 20 available" in err["message"]
        assert "items[2] MUG-RED: asked 1, none available" in err["message"]
        assert err["items"] == [
            {"line": 1, "sku": "MUG-BLUE", "name": "Blue mug", "requested": 25, "available": 20},
            {"line": 2, "sku": "MUG-RED", "name": "Red mug", "requested": 1, "available": 0},
        ]
        assert "search_products" in err["hint"]
        assert await census(db) == before

    async def test_a_sku_on_two_lines_is_counted_once(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        items = [{"sku": "MUG-BLUE", "quantity": 15}, {"sku": "MUG-BLUE", "quantity": 10}]
        err = error(await toolkit.call(context(store), "place_order", place_args(items)))
        assert "items[0], items[1] MUG-BLUE: asked 25, only 20 available" in err["message"]
        assert [ln["line"] for ln in err["items"]] == [0, 1]

    async def test_only_short_of_some_units_offers_the_quantity(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        args = place_args([{"sku": "MUG-RED", "quantity": 7}])
        err = error(await toolkit.call(context(store), "place_order", args))
        assert "offer the available quantity" in err["hint"]
        assert "search_products" not in err["hint"]


class TestFailedConfirmation:
    async def test_sold_out_between_summary_and_yes(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store, "slow")
        items = [{"sku": "MUG-RED", "quantity": 2}, {"sku": "TEE-M", "quantity": 1}]
        draft = await toolkit.call(ctx, "place_order", place_args(items))
        assert draft["ok"]
        await set_stock(db, store, "MUG-RED", "Red mug", 0)  # the last units sold elsewhere
        before = await census(db)
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["code"] == "out_of_stock"
        assert err["message"].startswith("no order was created")
        assert "MUG-RED: asked 2, none available" in err["message"]
        assert err["draft_usable"] is False
        assert err["items"] == [
            {"line": 0, "sku": "MUG-RED", "name": "Red mug", "requested": 2, "available": 0},
            {
                "line": 1,
                "sku": "TEE-M",
                "name": "Tee, M",
                "requested": 1,
                "available": "any quantity",
            },
        ]
        assert "search_products" in err["hint"] and "place_order" in err["hint"]
        assert "lower" not in err["hint"]
        assert await census(db) == before

    async def test_a_product_withdrawn_before_the_yes(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn,
                store.id,
                [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "12.50", "active": False}],
            )
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["message"] == "no order was created: no longer sold: MUG-BLUE"
        assert err["items"][0]["available"] == 0 and err["draft_usable"] is False
        assert "search_products" in err["hint"]
        assert (await census(db))["orders"] == 0

    async def test_every_refusal_says_whether_the_draft_is_usable(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        early = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert (early["code"], early["draft_usable"]) == ("confirmation_required", True)
        newer = await toolkit.call(ctx, "place_order", place_args(customer_notes="gift wrap"))
        ctx.turn += 1
        stale = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert (stale["code"], stale["draft_usable"]) == ("draft_replaced", False)
        assert stale["use_draft_id"] == newer["draft_id"]
        unknown = error(await toolkit.call(ctx, "confirm_order", {"draft_id": "drf_nope"}))
        assert (unknown["code"], unknown["draft_usable"]) == ("not_found", False)
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn, store.id, [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "13.00"}]
            )
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": newer["draft_id"]}))
        assert err["code"] == "price_changed" and err["draft_usable"] is False
        assert err["message"].startswith("no order was created: prices changed")
        assert (await census(db))["orders"] == 0

    async def test_a_cancellation_overtaken_by_shipping(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        ask = {"order_number": placed["order_number"], "reason": None}
        draft = await toolkit.call(ctx, "cancel_order", ask)
        async with db.connection() as conn:
            await orders.update_status(conn, placed["order_number"], {"status": "shipped"})
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["message"].startswith("the order was not cancelled")
        assert err["draft_usable"] is False and "report_problem" in err["hint"]

    async def test_a_cancellation_the_store_made_first(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        ask = {"order_number": placed["order_number"], "reason": None}
        draft = await toolkit.call(ctx, "cancel_order", ask)
        async with db.connection() as conn:
            await orders.cancel_order(conn, placed["order_number"])
        ctx.turn += 1
        err = error(await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))
        assert err["message"] == "the order is already cancelled"
        assert "already cancelled" in err["hint"]


class TestDelivered:
    async def test_a_delivered_order_shows_when_not_an_estimate(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        number = placed["order_number"]
        owner = Provenance(actor=Actor.owner)
        eta = date.today() + timedelta(days=5)
        async with db.connection() as conn:
            await orders.update_status(
                conn,
                number,
                {
                    "status": "shipped",
                    "carrier": "UPS",
                    "tracking_number": "1Z1",
                    "estimated_delivery": eta,
                },
                by=owner,
            )
        shipped = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert shipped["estimated_delivery"] == eta.isoformat() and "delivered_at" not in shipped
        async with db.connection() as conn:
            delivered = await orders.update_status(conn, number, {"status": "delivered"}, by=owner)
            events = await orders.list_events(conn, delivered.id)
        result = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert result["status"] == "delivered"
        assert "estimated_delivery" not in result
        assert delivered.delivered_at is not None
        assert result["delivered_at"] == delivered.delivered_at.isoformat(timespec="minutes")
        # Each step at the time it happened, oldest first.
        assert [(e["at"], e.get("status")) for e in result["timeline"]] == [
            (e.created_at.isoformat(timespec="minutes"), e.to_status and e.to_status.value)
            for e in events
        ]
        assert result["timeline"][-1]["at"] == result["delivered_at"]
        assert all(datetime.fromisoformat(e["at"]) for e in result["timeline"])

    async def test_steps_show_when_they_happened_not_when_they_were_recorded(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        number = placed["order_number"]
        owner = Provenance(actor=Actor.owner)
        now = datetime.now(UTC)
        async with db.connection() as conn:
            # Placed four days ago (as if), shipped two days ago, delivered yesterday 14:02
            # (the carrier's scan), each recorded only now.
            await conn.execute(
                "update agent_orders.orders set created_at = %(t)s, updated_at = %(t)s"
                " where order_number = %(n)s",
                {"t": now - timedelta(days=4), "n": number},
            )
            shipped_at = now - timedelta(days=2)
            delivered_at = (now - timedelta(days=1)).replace(hour=14, minute=2, microsecond=0)
            await orders.update_status(
                conn, number, {"status": "shipped", "at": shipped_at}, by=owner
            )
            too_early = {"status": "delivered", "at": now - timedelta(days=3)}
            with pytest.raises(ValidationFailed, match="before the order's previous step"):
                await orders.update_status(conn, number, too_early, by=owner)
            future = {"status": "delivered", "at": now + timedelta(hours=2)}
            with pytest.raises(ValidationFailed, match="in the future"):
                await orders.update_status(conn, number, future, by=owner)
            order = await orders.update_status(
                conn, number, {"status": "delivered", "at": delivered_at}, by=owner
            )
        assert (order.shipped_at, order.delivered_at) == (shipped_at, delivered_at)
        args = {"order_number": number, "email": None}
        result = await toolkit.call(ctx, "get_order_status", args)
        assert result["delivered_at"] == delivered_at.isoformat(timespec="minutes")
        assert [(e.get("status"), e["at"]) for e in result["timeline"][1:]] == [
            ("shipped", shipped_at.isoformat(timespec="minutes")),
            ("delivered", delivered_at.isoformat(timespec="minutes")),
        ]

    async def test_a_cancelled_order_has_no_estimate(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        async with db.connection() as conn:
            await orders.update_status(
                conn,
                placed["order_number"],
                {"status": "processing", "estimated_delivery": date.today() + timedelta(days=2)},
            )
            await orders.cancel_order(conn, placed["order_number"])
        args = {"order_number": placed["order_number"], "email": None}
        result = await toolkit.call(ctx, "get_order_status", args)
        assert result["status"] == "cancelled" and "estimated_delivery" not in result


class TestOptionalReason:
    def test_the_reason_is_described_as_null_unless_given(self) -> None:
        cancel = next(t for t in TOOLS if t.name == "cancel_order")
        reason = cancel.schema["properties"]["reason"]
        assert reason["type"] == ["string", "null"]
        assert "null unless" in reason["description"]

    async def test_no_reason_stays_no_reason(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        draft = await toolkit.call(
            ctx, "cancel_order", {"order_number": placed["order_number"], "reason": None}
        )
        assert "reason" not in draft["summary"]  # no null fields in what the model reads
        ctx.turn += 1
        assert (await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]}))["ok"]
        async with db.connection() as conn:
            saved = await orders.get_order(conn, placed["order_number"])
            events = await orders.list_events(conn, saved.id)
        assert events[-1].kind == "cancelled" and events[-1].note is None


ACTIONS = re.compile(
    r"^(ask|tell|call|send|use|remove|fix|check|offer|confirm|read|apologise|try|split|draft"
    r"|search|give|retry|pick)\b"
)
TOOL_NAMES = {t.name for t in TOOLS}


def _fields(node: Any) -> set[str]:
    if isinstance(node, dict):
        here = set(node.get("properties", {}))
        return here | {f for v in node.values() for f in _fields(v)}
    return set()


FIELD_NAMES = {f for t in TOOLS for f in _fields(t.schema)}


def assert_actionable(err: dict[str, Any]) -> None:
    """Some clause of the hint starts with something the model can do, every tool it names
    exists, and it never asks to lower a quantity to nothing."""
    hint = err["hint"]
    clauses = [c.strip().lower() for c in re.split(r"[;:,]| and | or |\(", hint)]
    assert any(ACTIONS.match(c) for c in clauses), (err["code"], hint)
    for name in re.findall(r"\b[a-z]+_[a-z_]+\b", hint):
        assert name in TOOL_NAMES | FIELD_NAMES, (err["code"], name)
    if any(i.get("available") == 0 for i in err.get("items", [])):
        assert "lower" not in hint, hint


async def test_every_error_a_tool_returns_has_a_hint_the_model_can_follow(
    db: Database, toolkit: Toolkit, store: Agent
) -> None:
    ctx = context(store, "audit")
    placed = await place_and_confirm(toolkit, ctx)
    number = placed["order_number"]
    async with db.connection() as conn:
        shipped = await orders.create_order(
            conn,
            {
                "agent_id": store.id,
                "conversation_id": "audit",
                "customer": {"name": "Ann Lee"},
                "shipping_address": {"line1": "1 Main St", "city": "Portland", "country": "US"},
                "items": [{"sku": "TEE-M", "quantity": 1}],
            },
        )
        await orders.update_status(conn, shipped.id, {"status": "shipped"})
    await set_stock(db, store, "MUG-RED", "Red mug", 0)
    nowhere = context(Agent.model_construct(id=uuid.uuid4()))
    calls: list[tuple[Any, str, Any]] = [
        (ctx, "no_such_tool", {}),
        (ctx, "place_order", "{not json"),
        (ctx, "place_order", "x" * 40_000),
        (ctx, "place_order", {"items": []}),
        (ctx, "place_order", place_args([{"sku": "MUG-BLU", "quantity": 1}])),
        (ctx, "place_order", place_args([{"sku": "MUG-RED", "quantity": 1}])),
        (ctx, "place_order", place_args([{"sku": "MUG-BLUE", "quantity": 21}])),
        (ctx, "place_order", place_args(customer={"name": "A", "email": "nope", "phone": None})),
        (ctx, "place_order", {**place_args(), "total": "1.00"}),
        (ctx, "confirm_order", {"draft_id": "drf_unknown"}),
        (ctx, "get_order_status", {"order_number": "12", "email": None}),
        (ctx, "get_order_status", {"order_number": "ORD-2026-000000", "email": None}),
        (context(store, "stranger"), "list_my_orders", {"status": None, "limit": None}),
        (context(store, "stranger"), "cancel_order", {"order_number": number, "reason": None}),
        (ctx, "cancel_order", {"order_number": shipped.order_number, "reason": None}),
        (ctx, "report_problem", {"order_number": number, "kind": "damaged", "details": "x"}),
        (
            context(store, "stranger"),
            "report_problem",
            {"order_number": number, "kind": "other", "details": "x"},
        ),
        (nowhere, "search_products", {"query": None, "limit": None}),
    ]
    codes = set()
    for call_ctx, name, args in calls:
        err = error(await toolkit.call(call_ctx, name, args))
        assert_actionable(err)
        codes.add(err["code"])
    # The drafts' refusals, each in its own conversation.
    first = context(store, "audit-2")
    draft = await toolkit.call(first, "place_order", place_args())
    err = error(await toolkit.call(first, "confirm_order", {"draft_id": draft["draft_id"]}))
    assert_actionable(err)
    codes.add(err["code"])
    await toolkit.call(first, "place_order", place_args(customer_notes="newer"))
    first.turn += 1
    err = error(await toolkit.call(first, "confirm_order", {"draft_id": draft["draft_id"]}))
    assert_actionable(err)
    codes.add(err["code"])
    assert codes >= {
        "unknown_tool",
        "invalid_json",
        "too_large",
        "validation",
        "unknown_sku",
        "out_of_stock",
        "not_found",
        "identity_required",
        "invalid_transition",
        "not_shipped",
        "confirmation_required",
        "draft_replaced",
    }
