"""What a weaker model stumbled on: search that finds, addresses as people write them, a
duplicate guard, and results without nulls or long lists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent_tools.db import Database
from agent_tools.errors import ValidationFailed
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import addresses, agents, catalog, orders
from agent_tools.tools import Toolkit
from tests.conftest import census, order_data
from tests.tools_support import context, place_and_confirm, place_args


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


def nulls(value: Any) -> list[str]:
    """Paths of every null in a result."""
    if isinstance(value, dict):
        return [f"{k}.{p}" if p else k for k, v in value.items() for p in nulls(v) or []] + [
            k for k, v in value.items() if v is None
        ]
    if isinstance(value, list):
        return [p for v in value for p in nulls(v)]
    return []


async def search(
    toolkit: Toolkit, store: Agent, query: str | None, limit: int | None = None
) -> Any:
    result = await toolkit.call(context(store), "search_products", {"query": query, "limit": limit})
    assert result["ok"], result
    return result


class TestSearch:
    async def test_word_order_plural_and_typos_still_find(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        for query in ("mug blue", "blue mugs", "blu mug", "Blue  MUG!", "mug-blue"):
            found = await search(toolkit, store, query)
            assert found["products"][0]["sku"] == "MUG-BLUE", (query, found)

    async def test_exact_sku_first_and_money_has_the_currency(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        found = await search(toolkit, store, "mug-red")
        assert found["products"][0] == {
            "sku": "MUG-RED",
            "name": "Red mug",
            "price": "12.50 USD",
            "available": 5,
        }

    async def test_keywords_find_other_languages(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        assert (await search(toolkit, store, "taza azul"))["products"] == []
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn,
                store.id,
                [
                    {
                        "sku": "MUG-BLUE",
                        "name": "Blue mug",
                        "unit_price": "12.50",
                        "stock": 20,
                        "keywords": ["Taza azul", "cup"],
                    }
                ],
            )
            (mug,) = [p for p in await catalog.list_products(conn, store.id) if p.sku == "MUG-BLUE"]
        assert mug.keywords == ["taza azul", "cup"]
        assert (await search(toolkit, store, "taza azul"))["products"][0]["sku"] == "MUG-BLUE"

    async def test_nothing_matched_gives_the_closest_and_the_catalog_language(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        near = await search(toolkit, store, "green mug")
        assert near["products"] == []
        assert {p["sku"] for p in near["closest"]} <= {"MUG-BLUE", "MUG-RED"} and near["closest"]
        assert "closest" in near["hint"] and "English (en)" in near["hint"]
        async with db.connection() as conn:
            await agents.update_agent(conn, store.id, {"language": "es"})
        far = await search(toolkit, store, "zzzz qqqq")
        assert far["products"] == [] and "closest" not in far
        assert "Spanish (es)" in far["hint"] and "null" in far["hint"]

    async def test_lists_are_short_by_default(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        async with db.connection() as conn:
            pins = [{"sku": f"PIN-{i}", "name": f"Pin {i}", "unit_price": "1.00"} for i in range(8)]
            await catalog.upsert_products(conn, store.id, pins)
        assert len((await search(toolkit, store, "pin"))["products"]) == 5
        assert len((await search(toolkit, store, None))["products"]) == 5
        assert len((await search(toolkit, store, None, limit=2))["products"]) == 2

    async def test_inactive_products_never_show(self, toolkit: Toolkit, store: Agent) -> None:
        for query in ("hat", "discontinued hat", "OLD-HAT"):
            result = await search(toolkit, store, query)
            assert "OLD-HAT" not in json.dumps(result)


class TestLanguageSetting:
    async def test_default_english_and_told_to_the_model(self, db: Database, store: Agent) -> None:
        from agent_tools.agent import system_prompt

        toolkit = Toolkit(db)
        assert store.language == "en"
        assert "The catalog is in English (en)." in await system_prompt(toolkit, context(store))
        async with db.connection() as conn:
            await agents.update_agent(conn, store.id, {"language": "pt-BR"})
        assert "Portuguese (pt-BR)" in await system_prompt(toolkit, context(store))


class TestAddresses:
    @pytest.mark.parametrize(
        ("given", "want"),
        [
            (
                {"country": "USA", "city": "Springfield", "postal_code": "IL 62704"},
                ("US", "Springfield", "IL", "62704"),
            ),
            (
                {"country": "United States", "city": "Springfield, IL 62704", "postal_code": None},
                ("US", "Springfield", "IL", "62704"),
            ),
            (
                {
                    "country": "Estados Unidos",
                    "city": "Austin",
                    "region": "Texas",
                    "postal_code": "78701",
                },
                ("US", "Austin", "TX", "78701"),
            ),
            (
                {"country": "Canada", "city": "Ottawa", "postal_code": "on k1a0b1"},
                ("CA", "Ottawa", "ON", "K1A 0B1"),
            ),
            (
                {"country": "Germany", "city": "Berlin", "postal_code": "10115"},
                ("DE", "Berlin", None, "10115"),
            ),
            (
                {"country": "Deutschland", "city": "Köln", "postal_code": "50667"},
                ("DE", "Köln", None, "50667"),
            ),
            (
                {"country": "España", "city": "Madrid", "postal_code": "28001"},
                ("ES", "Madrid", None, "28001"),
            ),
            (
                {"country": "Royaume-Uni", "city": "London", "postal_code": "SW1A 1AA"},
                ("GB", "London", None, "SW1A 1AA"),
            ),
            (
                {"country": "fr", "city": "Lyon", "postal_code": "69002"},
                ("FR", "Lyon", None, "69002"),
            ),
            (
                {"country": "Ireland", "city": "Dublin", "postal_code": "D02 X285"},
                ("IE", "Dublin", None, "D02 X285"),
            ),
            (
                {"country": "Hong Kong", "city": "Central", "postal_code": None},
                ("HK", "Central", None, None),
            ),
        ],
    )
    def test_normalised(self, given: dict[str, Any], want: tuple[Any, ...]) -> None:
        out = addresses.normalise({"line1": "1 Main St", "line2": None, "region": None, **given})
        assert (out["country"], out["city"], out["region"], out["postal_code"]) == want

    @pytest.mark.parametrize(
        ("given", "field"),
        [
            ({"country": "Atlantis", "postal_code": "1"}, "shipping_address.country"),
            ({"country": "Germany", "postal_code": None}, "shipping_address.postal_code"),
            ({"country": "US", "postal_code": "6270"}, "shipping_address.postal_code"),
            (
                {"country": "US", "region": "Narnia", "postal_code": "62704"},
                "shipping_address.region",
            ),
        ],
    )
    def test_refused_naming_the_field(self, given: dict[str, Any], field: str) -> None:
        with pytest.raises(ValidationFailed) as caught:
            addresses.normalise({"line1": "1 Main St", "city": "Springfield", **given})
        assert caught.value.field == field and caught.value.hint

    async def test_place_order_normalises_and_refuses_with_a_hint(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        typed = {
            "line1": "1 Main St",
            "line2": None,
            "city": "Springfield",
            "region": None,
            "postal_code": "IL 62704",
            "country": "USA",
            "recipient_name": None,
            "recipient_phone": None,
        }
        draft = await toolkit.call(ctx, "place_order", place_args(shipping_address=typed))
        assert draft["ok"], draft
        assert draft["summary"]["ship_to"] == "1 Main St, Springfield, IL, 62704, US"
        before = await census(db)
        no_postal = {**typed, "country": "Deutschland", "postal_code": None}
        refused = await toolkit.call(ctx, "place_order", place_args(shipping_address=no_postal))
        assert refused["ok"] is False
        assert refused["error"]["field"] == "shipping_address.postal_code"
        assert "postal code" in refused["error"]["hint"]
        assert await census(db) == before


class TestDuplicateGuard:
    async def test_same_order_again_drafts_with_a_warning(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        again = await toolkit.call(ctx, "place_order", place_args())
        assert again["ok"] and again["draft_id"]
        assert again["warning"] == {
            "code": "possible_duplicate",
            "order_number": placed["order_number"],
        }
        assert placed["order_number"] in again["next"]

    async def test_other_items_another_chat_or_a_cancelled_order_do_not_warn(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        placed = await place_and_confirm(toolkit, ctx)
        more = place_args([{"sku": "MUG-BLUE", "quantity": 3}])
        assert "warning" not in await toolkit.call(ctx, "place_order", more)
        elsewhere = context(store, "conv-2")
        assert "warning" not in await toolkit.call(elsewhere, "place_order", place_args())
        async with db.connection() as conn:
            order = await orders.get_order(conn, placed["order_number"], agent_id=store.id)
            await orders.cancel_order(
                conn, order.id, reason=None, by=Provenance(actor=Actor.owner), agent_id=store.id
            )
        assert "warning" not in await toolkit.call(ctx, "place_order", place_args())


class TestReadable:
    async def test_no_nulls_and_the_cancel_draft_keeps_its_state_apart(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args(payment_method=None))
        assert draft["ok"] and nulls(draft) == [], nulls(draft)
        ctx.turn += 1
        done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        number = done["order"]["order_number"]
        status = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert status["ok"] and nulls(status) == [], nulls(status)
        cancel = await toolkit.call(ctx, "cancel_order", {"order_number": number, "reason": None})
        assert cancel["status"] == "awaiting_confirmation"
        assert cancel["summary"]["order_status"] == "pending" and "status" not in cancel["summary"]
        assert nulls(cancel) == []

    async def test_long_orders_read_as_a_short_list(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        async with db.connection() as conn:
            await catalog.upsert_products(
                conn,
                store.id,
                [{"sku": f"PIN-{i}", "name": f"Pin {i}", "unit_price": "1.00"} for i in range(8)],
            )
            order = await orders.create_order(
                conn,
                order_data(
                    store,
                    items=[{"sku": f"PIN-{i}", "quantity": 1} for i in range(8)],
                    conversation_id="conv-1",
                ),
                by=Provenance(actor=Actor.system),
            )
        ctx = context(store)
        status = await toolkit.call(
            ctx, "get_order_status", {"order_number": order.order_number, "email": None}
        )
        assert len(status["items"]) == 5 and status["more_items"] == 3
        mine = await toolkit.call(ctx, "list_my_orders", {"status": None, "limit": None})
        assert len(mine["orders"][0]["items"]) == 5 and mine["orders"][0]["more_items"] == 3
