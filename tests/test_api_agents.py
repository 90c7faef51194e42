"""The owner's agents, their settings and catalogs over HTTP; the demo key of `make run`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER
from agent_tools.service import api_keys
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import CATALOG, OWNER


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


class TestAgents:
    async def test_create_list_read_and_change_settings(self, api: httpx.AsyncClient) -> None:
        r = await api.post("/api/agents/", json={"name": "Shop", "shipping_fee": "4.95"})
        assert r.status_code == 201, r.text
        agent = r.json()
        assert (agent["currency"], agent["shipping_fee"]) == ("USD", "4.95")
        assert agent["owner_id"] == str(OWNER)

        assert [a["id"] for a in (await api.get("/api/agents/")).json()] == [agent["id"]]
        assert (await api.get(f"/api/agents/{agent['id']}")).json() == agent

        r = await api.patch(f"/api/agents/{agent['id']}", json={"currency": "EUR"})
        assert r.status_code == 200, r.text
        assert (r.json()["currency"], r.json()["shipping_fee"], r.json()["name"]) == (
            "EUR",
            "4.95",
            "Shop",
        )

    async def test_invalid_settings(self, api: httpx.AsyncClient) -> None:
        agent = (await api.post("/api/agents/", json={"name": "Shop"})).json()
        for body, field in [
            ({"currency": "euro"}, "body.currency"),
            ({"shipping_fee": "1.001"}, "body.shipping_fee"),
            ({"shipping_fee": "-1"}, "body.shipping_fee"),
            ({"colour": "red"}, "body.colour"),
        ]:
            r = await api.patch(f"/api/agents/{agent['id']}", json=body)
            assert assert_problem(r, 422, "validation")["field"] == field
        assert_problem(await api.get("/api/agents/not-a-uuid"), 422, "validation")

    async def test_idempotent_create(self, api: httpx.AsyncClient) -> None:
        headers = {"Idempotency-Key": "agent-1"}
        first = await api.post("/api/agents/", json={"name": "Shop"}, headers=headers)
        again = await api.post("/api/agents/", json={"name": "Shop"}, headers=headers)
        assert again.json() == first.json()
        assert len((await api.get("/api/agents/")).json()) == 1


class TestCatalog:
    async def test_upsert_and_list(self, api: httpx.AsyncClient) -> None:
        agent = (await api.post("/api/agents/", json={"name": "Shop"})).json()
        path = f"/api/agents/{agent['id']}/products"
        r = await api.post(path, json={"products": CATALOG})
        assert r.status_code == 200, r.text
        assert [p["sku"] for p in r.json()] == sorted(p["sku"] for p in CATALOG)

        r = await api.post(
            path, json={"products": [{"sku": "MUG-BLUE", "name": "Blue mug", "unit_price": "13"}]}
        )
        assert r.json()[0]["unit_price"] == "13.00"
        products = {p["sku"]: p for p in (await api.get(path)).json()}
        assert products["MUG-BLUE"]["unit_price"] == "13.00"
        assert len(products) == len(CATALOG)
        active = (await api.get(path, params={"include_inactive": "false"})).json()
        assert "OLD-HAT" not in {p["sku"] for p in active}

    async def test_invalid_batches(self, api: httpx.AsyncClient) -> None:
        agent = (await api.post("/api/agents/", json={"name": "Shop"})).json()
        path = f"/api/agents/{agent['id']}/products"
        twice = [{"sku": "A", "name": "a", "unit_price": "1"}] * 2
        assert_problem(await api.post(path, json={"products": twice}), 422, "validation")
        assert_problem(await api.post(path, json={"products": []}), 422, "validation")
        r = await api.post(path, json={"products": [{"sku": "A", "name": "a", "unit_price": 0.1}]})
        assert r.status_code == 200  # a JSON number is accepted, then kept as a decimal
        assert r.json()[0]["unit_price"] == "0.10"


async def test_the_demo_key_is_the_same_on_every_run(db: Database) -> None:
    """`make run` makes a key derived from the instance secret, so it survives restarts."""
    seed = b"instance secret"
    key = api_keys.derive_token(seed, "demo")
    assert key == api_keys.derive_token(seed, "demo") != api_keys.derive_token(b"other", "demo")
    async with db.connection() as conn:
        first, created = await api_keys.ensure_key(conn, DEMO_OWNER, "demo", key)
        again, created_again = await api_keys.ensure_key(conn, DEMO_OWNER, "demo", key)
        assert created and not created_again and again.id == first.id
        assert await api_keys.authenticate(conn, key) == DEMO_OWNER
