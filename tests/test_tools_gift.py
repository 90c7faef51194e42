"""A gift order: the recipient on the label, through the tool, the owner API, the tracking
page (full view only) and the confirmation the tool echoes back."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import orders
from agent_tools.tools import Toolkit
from tests.api_support import bearer, client, make_app
from tests.conftest import OWNER, census, order_data
from tests.tools_support import context, place_args

GIFT_ADDRESS = {
    "line1": "5 Calle Mayor",
    "line2": None,
    "city": "Madrid",
    "region": None,
    "postal_code": "28013",
    "country": "ES",
    "recipient_name": "Maria Lopez",
    "recipient_phone": "+34 600 111 222",
}


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


@pytest.fixture
async def http(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        yield c


def visible(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


async def gift_order(toolkit: Toolkit, store: Agent) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ann buys a gift for Maria: the draft and the confirmation."""
    ctx = context(store, "gift-chat")
    draft = await toolkit.call(ctx, "place_order", place_args(shipping_address=GIFT_ADDRESS))
    assert draft["ok"], draft
    ctx.turn += 1
    done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
    assert done["ok"], done
    return draft, done


class TestGiftOrder:
    async def test_the_summary_and_the_confirmation_name_the_recipient(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        draft, done = await gift_order(toolkit, store)
        ship_to = "Maria Lopez, +34 600 111 222, 5 Calle Mayor, Madrid, 28013, ES"
        assert draft["summary"]["ship_to"] == ship_to
        # The buyer stays the customer.
        assert draft["summary"]["customer"] == {"name": "Ann Lee", "email": "ann@example.com"}
        order = done["order"]
        assert order["ship_to"] == ship_to
        assert order["items"] == [
            {"sku": "MUG-BLUE", "name": "Blue mug", "quantity": 2, "line_total": "25.00 USD"}
        ]
        assert (order["subtotal"], order["shipping"], order["total"]) == (
            "25.00 USD",
            "5.00 USD",
            "30.00 USD",
        )

    async def test_without_a_recipient_the_label_is_the_customers(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        draft = await toolkit.call(context(store), "place_order", place_args())
        assert draft["summary"]["ship_to"] == "1 Main St, Portland, OR, 97201, US"

    async def test_the_order_the_api_returns_carries_the_recipient(
        self, db: Database, toolkit: Toolkit, store: Agent, http: httpx.AsyncClient
    ) -> None:
        _, done = await gift_order(toolkit, store)
        number = done["order"]["order_number"]
        r = await http.get(f"/api/orders/{number}", headers=bearer(OWNER))
        assert r.status_code == 200
        body = r.json()
        assert body["customer_name"] == "Ann Lee"
        assert body["shipping_address"]["recipient_name"] == "Maria Lopez"
        assert body["shipping_address"]["recipient_phone"] == "+34 600 111 222"
        # What the tool stored is what the service reads (and what every payload reuses).
        async with db.connection() as conn:
            saved = await orders.get_order(conn, number)
        assert saved.shipping_address["recipient_name"] == "Maria Lopez"

    async def test_the_owner_api_takes_a_recipient_and_checks_it(
        self, db: Database, store: Agent, http: httpx.AsyncClient
    ) -> None:
        gift = {**GIFT_ADDRESS, "line2": None}
        data = order_data(store, shipping_address={k: v for k, v in gift.items() if v})
        data["agent_id"] = str(store.id)
        r = await http.post("/api/orders/", json=data, headers=bearer(OWNER))
        assert r.status_code == 201, r.text
        assert r.json()["shipping_address"]["recipient_name"] == "Maria Lopez"
        before = await census(db)
        bad = {**data, "shipping_address": {**data["shipping_address"], "recipient_phone": "x"}}
        r = await http.post("/api/orders/", json=bad, headers=bearer(OWNER))
        assert r.status_code == 422
        assert "recipient_phone" in r.json()["detail"]
        assert await census(db) == before

    async def test_a_bad_recipient_phone_from_the_model_is_a_field_error(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        before = await census(db)
        args = place_args(shipping_address={**GIFT_ADDRESS, "recipient_phone": "call her"})
        result = await toolkit.call(context(store), "place_order", args)
        assert result["ok"] is False
        assert result["error"]["field"] == "shipping_address.recipient_phone"
        assert await census(db) == before

    async def test_the_tracking_page_shows_the_recipient_in_the_full_view_only(
        self, toolkit: Toolkit, store: Agent, http: httpx.AsyncClient
    ) -> None:
        _, done = await gift_order(toolkit, store)
        order = done["order"]
        full = await http.get(path(order["tracking_url"]), follow_redirects=True)
        assert full.status_code == 200
        http.cookies.clear()  # what follows is someone else, with the number only
        assert 'id="recipient-name">Maria Lopez<' in full.text
        assert "+34 600 111 222" in visible(full.text)
        public = await http.get(f"/track/{order['order_number']}")
        assert public.status_code == 200
        # The public view shows status and dates only: not even the city.
        for secret in ("Maria", "Lopez", "600 111 222", "Calle Mayor", "Madrid"):
            assert secret not in public.text
        public_json = await http.get(f"/api/orders/track/{order['order_number']}")
        assert "Maria" not in public_json.text and "600 111" not in public_json.text
        full_json = await http.post(
            f"/api/orders/track/{order['order_number']}", json={"email": "ann@example.com"}
        )
        assert full_json.json()["customer"]["shipping_address"]["recipient_name"] == ("Maria Lopez")

    async def test_order_status_shows_the_recipient_to_the_customer_only(
        self, toolkit: Toolkit, store: Agent
    ) -> None:
        _, done = await gift_order(toolkit, store)
        args = {"order_number": done["order"]["order_number"], "email": None}
        mine = await toolkit.call(context(store, "gift-chat"), "get_order_status", args)
        assert mine["details"] == "full"
        assert mine["ship_to"].startswith("Maria Lopez, +34 600 111 222, 5 Calle Mayor")
        stranger = await toolkit.call(context(store, "someone-else"), "get_order_status", args)
        assert stranger["details"] == "redacted"
        assert "Maria" not in json.dumps(stranger)
