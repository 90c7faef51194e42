"""How a customer's yes reaches the server: the agent's confirmation setting, host approvals,
and the trusted confirmation page (over real HTTP, against the app; the browser test is in
`test_pages_browser.py`)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import agents
from agent_tools.tools import Toolkit
from tests.api_support import bearer, client, make_app
from tests.conftest import OWNER, census
from tests.tools_support import context, place_and_confirm, place_args


async def set_mode(db: Database, store: Agent, mode: str) -> None:
    async with db.connection() as conn:
        await agents.update_agent(conn, store.id, {"confirmation": mode})


def token_of(url: str) -> str:
    match = re.search(r"/confirm/([A-Za-z0-9_-]+)$", url)
    assert match, url
    return match.group(1)


class TestModes:
    async def test_default_is_counted_turns_with_the_page_as_a_way_out(
        self, db: Database, store: Agent
    ) -> None:
        toolkit = Toolkit(db)
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        assert draft["confirmation"] == "turns"
        assert draft["confirm_url"].startswith("http://127.0.0.1:8000/confirm/")
        assert len(token_of(draft["confirm_url"])) >= 32  # 192 bits, base64url
        assert "confirm_order" in draft["next"] and "confirm_url" in draft["next"]

        early = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert early["error"]["code"] == "confirmation_required"
        assert early["error"]["confirm_url"] == draft["confirm_url"]
        assert early["error"]["confirmation"] == "turns"

        ctx.turn += 1
        done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert done["ok"] and done["order"]["order_number"].startswith("ORD-")

    async def test_the_same_draft_again_carries_the_same_link(
        self, db: Database, store: Agent
    ) -> None:
        toolkit = Toolkit(db)
        ctx = context(store)
        first = await toolkit.call(ctx, "place_order", place_args())
        again = await toolkit.call(ctx, "place_order", place_args())
        assert again["draft_id"] == first["draft_id"]
        assert again["confirm_url"] == first["confirm_url"]
        other = await toolkit.call(ctx, "place_order", place_args(payment_method="cash"))
        assert other["confirm_url"] != first["confirm_url"]

    async def test_elicitation_ignores_turns_and_takes_the_hosts_approval(
        self, db: Database, store: Agent
    ) -> None:
        await set_mode(db, store, "elicitation")
        toolkit = Toolkit(db)
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        assert draft["confirmation"] == "elicitation"
        assert "their app asks them" in draft["next"]
        ctx.turn += 5
        before = await census(db)
        refused = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert refused["error"]["code"] == "confirmation_required"
        assert refused["error"]["confirm_url"] == draft["confirm_url"]
        assert await census(db) == before

        # Approval of another draft does not count for this one.
        other = replace(ctx, approved_draft_id="drf_0000000000000000")
        refused = await toolkit.call(other, "confirm_order", {"draft_id": draft["draft_id"]})
        assert refused["error"]["code"] == "confirmation_required"

        approved = replace(ctx, approved_draft_id=draft["draft_id"])
        done = await toolkit.call(approved, "confirm_order", {"draft_id": draft["draft_id"]})
        assert done["ok"] and not done["already_confirmed"]
        # Afterwards confirm_order reports the order to anyone in the conversation.
        again = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert again["order"]["order_number"] == done["order"]["order_number"]
        assert again["already_confirmed"]

    async def test_page_mode_refuses_every_yes_but_the_page(
        self, db: Database, store: Agent
    ) -> None:
        await set_mode(db, store, "page")
        toolkit = Toolkit(db)
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        assert draft["confirmation"] == "page" and "confirm_url" in draft["next"]
        before = await census(db)
        for attempt in (replace(ctx, turn=9), replace(ctx, approved_draft_id=draft["draft_id"])):
            refused = await toolkit.call(attempt, "confirm_order", {"draft_id": draft["draft_id"]})
            assert refused["error"]["code"] == "confirmation_required"
            assert refused["error"]["confirmation"] == "page"
        assert await census(db) == before

        async with client(make_app(db)) as web:
            await press(web, token_of(draft["confirm_url"]))
        done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert done["ok"] and done["already_confirmed"]

    async def test_the_setting_is_an_owner_api_field(self, db: Database, store: Agent) -> None:
        async with client(make_app(db)) as api:
            r = await api.get(f"/api/agents/{store.id}", headers=bearer(OWNER))
            assert r.json()["confirmation"] == "turns"
            r = await api.patch(
                f"/api/agents/{store.id}", json={"confirmation": "page"}, headers=bearer(OWNER)
            )
            assert r.status_code == 200 and r.json()["confirmation"] == "page"
            r = await api.patch(
                f"/api/agents/{store.id}", json={"confirmation": "maybe"}, headers=bearer(OWNER)
            )
            assert r.status_code == 422


async def press(web: httpx.AsyncClient, token: str, **headers: str) -> httpx.Response:
    """What the browser does: load the page (cookie + hidden token), then submit its form."""
    page = await web.get(f"/confirm/{token}")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    return await web.post(
        f"/confirm/{token}",
        data={"csrf": csrf.group(1)},
        headers={"Origin": "http://test", **headers},
    )


class TestConfirmationPage:
    async def test_the_button_places_the_order_once(self, db: Database, store: Agent) -> None:
        toolkit = Toolkit(db)
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        token = token_of(draft["confirm_url"])
        async with client(make_app(db)) as web:
            page = await web.get(f"/confirm/{token}")
            assert page.status_code == 200
            assert "Place order" in page.text and "Blue mug" in page.text
            assert "30.00 USD" in page.text  # 2 x 12.50 + 5.00 shipping
            assert page.headers["cache-control"] == "no-store"
            cookie = page.headers["set-cookie"].lower()
            assert "samesite=strict" in cookie and "httponly" in cookie

            before = await census(db)
            r = await press(web, token)
            assert r.status_code == 303
            after = await census(db)
            assert after["orders"] == before["orders"] + 1
            done = await web.get(f"/confirm/{token}")
            number = re.search(r'id="order-number"[^>]*>(ORD-[0-9-]+)<', done.text)
            assert number, done.text
            assert "/track/" + number.group(1) + "?token=" in done.text

            # A second press, and a replay of the very same POST, place nothing more.
            csrf = web.cookies.get("ao_confirm")
            for _ in range(2):
                r = await web.post(
                    f"/confirm/{token}", data={"csrf": csrf}, headers={"Origin": "http://test"}
                )
                assert r.status_code == 303
            assert await census(db) == after

        # The conversation's confirm_order sees the same order.
        same = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert same["order"]["order_number"] == number.group(1) and same["already_confirmed"]

    @pytest.mark.parametrize(
        ("cookie", "form", "origin"),
        [
            (None, "good", "http://test"),  # no cookie: a cross-site form post
            ("good", None, "http://test"),  # no hidden field
            ("good", "forged-value-of-the-right-len", "http://test"),
            ("good", "good", "https://evil.example"),  # another site's page
        ],
    )
    async def test_a_forged_post_is_refused_and_changes_nothing(
        self,
        db: Database,
        store: Agent,
        cookie: str | None,
        form: str | None,
        origin: str,
    ) -> None:
        toolkit = Toolkit(db)
        draft = await toolkit.call(context(store), "place_order", place_args())
        token = token_of(draft["confirm_url"])
        async with client(make_app(db)) as web:
            page = await web.get(f"/confirm/{token}")
            good = web.cookies["ao_confirm"]
            web.cookies.clear()
            if cookie:
                web.cookies.set("ao_confirm", good, path="/confirm")
            data: dict[str, Any] = {}
            if form:
                data["csrf"] = good if form == "good" else form
            before = await census(db)
            r = await web.post(f"/confirm/{token}", data=data, headers={"Origin": origin})
            assert r.status_code == 403 and "Nothing was ordered" in r.text
            assert await census(db) == before
            assert page.status_code == 200

    async def test_unknown_expired_and_replaced_links(self, db: Database, store: Agent) -> None:
        toolkit = Toolkit(db)
        ctx = context(store)
        first = await toolkit.call(ctx, "place_order", place_args())
        # A different order replaces the first draft: its link stops working.
        await toolkit.call(ctx, "place_order", place_args(payment_method="cash"))
        async with client(make_app(db)) as web:
            r = await web.get("/confirm/" + "A" * 32)
            assert r.status_code == 404 and "not valid" in r.text
            r = await web.get("/confirm/short")
            assert r.status_code in (404, 422)
            replaced = await web.get(f"/confirm/{token_of(first['confirm_url'])}")
            assert replaced.status_code == 410 and "Nothing was ordered" in replaced.text
            before = await census(db)
            web.cookies.set("ao_confirm", "x" * 32, path="/confirm")
            r = await web.post(
                f"/confirm/{token_of(first['confirm_url'])}",
                data={"csrf": "x" * 32},
                headers={"Origin": "http://test"},
            )
            assert r.status_code == 410
            assert await census(db) == before

    async def test_a_cancellation_has_its_page_too(self, db: Database, store: Agent) -> None:
        toolkit = Toolkit(db)
        ctx = context(store)
        order = await place_and_confirm(toolkit, ctx)
        draft = await toolkit.call(
            ctx, "cancel_order", {"order_number": order["order_number"], "reason": None}
        )
        token = token_of(draft["confirm_url"])
        async with client(make_app(db)) as web:
            page = await web.get(f"/confirm/{token}")
            assert "Cancel order" in page.text and order["order_number"] in page.text
            assert (await press(web, token)).status_code == 303
            done = await web.get(f"/confirm/{token}")
            assert "is cancelled" in done.text
        assert (await census(db))["cancelled"] == 1


class TestValidatedOnce:
    async def test_the_yes_does_not_validate_the_drafted_order_again(
        self, db: Database, store: Agent, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import email_validator

        checked: list[str] = []
        real = email_validator.validate_email

        def counting(email: str, *args: Any, **kwargs: Any) -> Any:
            checked.append(email)
            return real(email, *args, **kwargs)

        monkeypatch.setattr(email_validator, "validate_email", counting)
        toolkit = Toolkit(db)
        ctx = context(store)
        draft = await toolkit.call(ctx, "place_order", place_args())
        assert draft["ok"], draft
        drafted = len(checked)
        assert drafted >= 1  # the customer's email, checked when the order was drafted
        ctx.turn += 1
        done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
        assert done["ok"], done
        assert len(checked) == drafted  # not again at the yes: nothing changed since
        async with db.connection() as conn:
            cur = await conn.execute(
                "select customer_email from agent_orders.orders where order_number = %(n)s",
                {"n": done["order"]["order_number"]},
            )
            assert await cur.fetchone() == {"customer_email": "ann@example.com"}
