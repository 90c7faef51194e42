"""What a security review showed the owner API accepting: oversized bodies and tokens, tokens
of the wrong Supabase role, stored secrets, and inputs that ended in a 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER
from agent_tools.models import Agent
from agent_tools.service import api_keys
from api import auth
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER, order_data


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        yield c


@pytest.fixture
def no_db() -> Database:
    """For requests refused before any query: a pool that is never opened."""
    return Database(AsyncConnectionPool("postgresql:///unused", open=False), "unused")


class TestBodyLimit:
    async def test_a_large_declared_body_is_refused_before_it_is_read(
        self, no_db: Database
    ) -> None:
        app = make_app(no_db, max_body_bytes=4096)
        read = []

        async def receive() -> dict[str, object]:
            read.append(1)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/orders/",
            "raw_path": b"/api/orders/",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-length", b"30000000"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }
        await app(scope, receive, send)  # type: ignore[arg-type]
        assert sent[0]["status"] == 413
        assert not read, "the body was read before the refusal"
        body = json.loads(sent[1]["body"])  # type: ignore[arg-type]
        assert body["code"] == "payload_too_large"

    async def test_a_streamed_body_is_cut_off_at_the_limit(self, no_db: Database) -> None:
        chunks = 0

        async def stream() -> AsyncIterator[bytes]:
            nonlocal chunks
            for _ in range(1000):  # 64 MB if it were all read
                chunks += 1
                yield b" " * 65536

        async with client(make_app(no_db, max_body_bytes=100_000)) as api:
            r = await api.post(
                "/api/orders/", content=stream(), headers={"Content-Type": "application/json"}
            )
        assert_problem(r, 413, "payload_too_large")
        assert chunks < 10

    async def test_bodies_under_the_limit_still_work(self, api: httpx.AsyncClient) -> None:
        r = await api.post("/api/agents/", json={"name": "Fine"}, headers=bearer(OWNER))
        assert r.status_code == 201, r.text

    async def test_the_tracking_form_reads_a_few_kilobytes_at_most(self, no_db: Database) -> None:
        async with client(make_app(no_db)) as api:
            r = await api.post(
                "/track",
                content=b"order_number=ORD-2026-000001&email=" + b"a" * 20_000,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        assert_problem(r, 413, "payload_too_large")


class TestAuthorization:
    async def test_a_huge_bearer_token_is_refused_unparsed(
        self, no_db: Database, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def parsed(*_: object) -> None:
            raise AssertionError("the token was parsed")

        monkeypatch.setattr(auth.jwt, "get_unverified_header", parsed)
        async with client(make_app(no_db)) as api:
            r = await api.get(
                "/api/agents/", headers={"Authorization": "Bearer " + "e" * 8_000_000}
            )
        body = assert_problem(r, 401, "unauthorized")
        assert "longer than" in body["detail"]

    @pytest.mark.parametrize(
        ("claims", "why"),
        [
            ({"role": "anon"}, "role"),
            ({"role": "service_role"}, "role"),
            ({"role": None}, "role"),
            ({"role": "authenticated", "is_anonymous": True}, "anonymous"),
        ],
    )
    async def test_only_signed_in_users_are_owners(
        self, no_db: Database, claims: dict[str, object], why: str
    ) -> None:
        async with client(make_app(no_db)) as api:
            r = await api.get("/api/agents/", headers=bearer(OWNER, **claims))
        body = assert_problem(r, 401, "unauthorized")
        assert why in body["detail"]

    async def test_an_allow_list_of_owners(self, db: Database) -> None:
        async with db.connection() as conn:
            _, other_key = await api_keys.create_key(conn, OTHER_OWNER, {"name": "k"})
        async with client(make_app(db, owner_ids=[OWNER])) as api:
            assert (await api.get("/api/agents/", headers=bearer(OWNER))).status_code == 200
            refused = await api.get("/api/agents/", headers=bearer(OTHER_OWNER))
            by_key = await api.get("/api/agents/", headers={"Authorization": f"Bearer {other_key}"})
        assert_problem(refused, 401, "unauthorized")
        assert_problem(by_key, 401, "unauthorized")

    def test_the_allow_list_reads_comma_separated_ids(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from api.settings import ApiSettings

        monkeypatch.setenv("AGENT_ORDERS_OWNER_IDS", f" {OWNER}, {OTHER_OWNER} ")
        assert ApiSettings(_env_file=None).owner_ids == [OWNER, OTHER_OWNER]  # type: ignore[call-arg]


class TestSecretsAreNotKept:
    async def test_an_idempotent_key_creation_stores_no_secret(
        self, api: httpx.AsyncClient, db: Database
    ) -> None:
        headers = {**bearer(OWNER), "Idempotency-Key": "key-1"}
        first = await api.post("/api/api-keys/", json={"name": "ci"}, headers=headers)
        assert first.status_code == 201, first.text
        secret = first.json()["key"]
        assert secret.startswith("ao_")
        async with db.connection() as conn:
            cur = await conn.execute(
                "select response::text as r from agent_orders.idempotency_keys"
            )
            stored = [row["r"] for row in await cur.fetchall()]
        hidden = secret.split("_", 2)[2]  # ao_<prefix>_<secret>; the secret may hold "_" too
        assert stored and all(hidden not in r for r in stored)
        replay = await api.post("/api/api-keys/", json={"name": "ci"}, headers=headers)
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["key"] is None
        assert replay.json()["id"] == first.json()["id"]

    async def test_an_idempotent_order_keeps_no_tracking_token(
        self, db: Database, store: Agent
    ) -> None:
        async with client(make_app(db)) as api:
            headers = {**bearer(OWNER), "Idempotency-Key": "order-1"}
            body = json.loads(json.dumps(order_data(store), default=str))
            first = await api.post("/api/orders/", json=body, headers=headers)
            assert first.status_code == 201, first.text
            link = first.json()["tracking_url"]
            token = link.split("token=")[1]
            async with db.connection() as conn:
                cur = await conn.execute(
                    "select response::text as r from agent_orders.idempotency_keys"
                )
                stored = [row["r"] for row in await cur.fetchall()]
            assert stored and all(token not in r for r in stored)
            replay = await api.post("/api/orders/", json=body, headers=headers)
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] == first.json()["id"]
            assert replay.json()["tracking_url"] == link
            # A replay after the owner revoked the links hands out the new link, not the old.
            order_id = first.json()["id"]
            revoked = await api.post(
                f"/api/orders/{order_id}/tracking-links/revoke", headers=bearer(OWNER)
            )
            assert revoked.status_code == 200, revoked.text
            again = await api.post("/api/orders/", json=body, headers=headers)
            assert again.json()["tracking_url"] not in ("", link)
            assert again.json()["tracking_url"] == revoked.json()["tracking_url"]

    async def test_an_idempotent_webhook_creation_keeps_no_signing_secret(
        self, db: Database
    ) -> None:
        async with client(make_app(db, webhook_allow_private=True)) as api:
            headers = {**bearer(OWNER), "Idempotency-Key": "hook-1"}
            hook = {"url": "http://127.0.0.1:9/hook"}
            first = await api.post("/api/webhooks/", json=hook, headers=headers)
            assert first.status_code == 201, first.text
            secret = first.json()["secret"]
            assert secret.startswith("whsec_")
            async with db.connection() as conn:
                cur = await conn.execute(
                    "select response::text as r from agent_orders.idempotency_keys"
                )
                stored = [row["r"] for row in await cur.fetchall()]
            assert stored and all(secret.removeprefix("whsec_") not in r for r in stored)
            replay = await api.post("/api/webhooks/", json=hook, headers=headers)
            assert replay.status_code == 201
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json()["id"] == first.json()["id"]
            assert replay.json()["secret"] is None

    async def test_a_revoked_demo_key_stays_revoked(self, db: Database) -> None:
        key = api_keys.derive_token(b"instance secret", "demo")
        async with db.connection() as conn:
            first, created = await api_keys.ensure_key(conn, DEMO_OWNER, "demo", key)
            assert created
            await api_keys.revoke_key(conn, DEMO_OWNER, first.id)
            again, created_again = await api_keys.ensure_key(conn, DEMO_OWNER, "demo", key)
            assert again.id == first.id and not created_again
            assert again.revoked_at is not None
            assert await api_keys.authenticate(conn, key) is None


class TestInputsThatWere500s:
    @pytest.mark.parametrize(
        "value", ['"\u00b2"', '"\u0661\u0662"', '"\U0001d7d9"', '"3 "', '"-1"', '""']
    )
    async def test_if_match_takes_ascii_digits_only(
        self, api: httpx.AsyncClient, db: Database, store: Agent, value: str
    ) -> None:
        created = await api.post(
            "/api/orders/", json=_json(order_data(store)), headers=bearer(OWNER)
        )
        number = created.json()["order_number"]
        r = await api.patch(
            f"/api/orders/{number}/status",
            json={"status": "confirmed"},
            headers=[*bearer(OWNER).items(), ("If-Match", value.encode())],
        )
        assert_problem(r, 422, "validation")

    @pytest.mark.parametrize(
        "when",
        [
            "9999-12-31T23:59:59.999999",
            "0001-01-01T00:00:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31",
        ],
    )
    @pytest.mark.parametrize("param", ["created_from", "created_to"])
    @pytest.mark.parametrize("path", ["/api/orders/stats/summary", "/api/orders/"])
    async def test_extreme_dates_are_refused(
        self, api: httpx.AsyncClient, path: str, param: str, when: str
    ) -> None:
        r = await api.get(path, params={param: when}, headers=bearer(OWNER))
        assert_problem(r, 422, "validation")

    async def test_ordinary_date_ranges_still_work(self, api: httpx.AsyncClient) -> None:
        params = {"created_from": "2020-01-01T10:00:00Z", "created_to": "2030-01-01"}
        for path in ("/api/orders/stats/summary", "/api/orders/"):
            assert (await api.get(path, params=params, headers=bearer(OWNER))).status_code == 200

    @pytest.mark.parametrize("depth", [40, 500, 950, 5000])
    async def test_deeply_nested_metadata_is_a_422(
        self, api: httpx.AsyncClient, store: Agent, depth: int
    ) -> None:
        nested = "[" * depth + "]" * depth
        raw = json.dumps(_json(order_data(store))).replace(
            '"items"', f'"metadata": {{"x": {nested}}}, "items"'
        )
        r = await api.post(
            "/api/orders/",
            content=raw,
            headers={**bearer(OWNER), "Content-Type": "application/json"},
        )
        assert_problem(r, 422, "validation")

    async def test_shallow_metadata_is_kept(self, api: httpx.AsyncClient, store: Agent) -> None:
        meta = {"a": {"b": [1, {"c": "d"}]}}
        r = await api.post(
            "/api/orders/", json=_json(order_data(store, metadata=meta)), headers=bearer(OWNER)
        )
        assert r.status_code == 201, r.text
        assert r.json()["metadata"] == meta


def _json(data: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(data, default=str))
