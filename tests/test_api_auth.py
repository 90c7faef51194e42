"""Who may call the owner API: Supabase JWTs (HS256, ES256/RS256 from a JWKS), API keys,
and an owner never reaching another owner's data."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from psycopg_pool import AsyncConnectionPool

from agent_tools.db import Database
from agent_tools.models import Agent, ProblemKind, Provenance
from agent_tools.service import (
    api_keys,
    carrier_accounts,
    orders,
    problems,
    returns,
    shipments,
    webhooks,
)
from agent_tools.service import mail as mails
from tests.api_support import JWT_SECRET, assert_problem, bearer, client, free_port, make_app, token
from tests.conftest import OTHER_OWNER, OWNER, order_data


class Jwks:
    """A tiny JWKS endpoint on 127.0.0.1 at the path Supabase uses."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/auth/v1/.well-known/jwks.json":
                    self.send_error(404)
                    return
                jwks.fetches += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url + "/auth/v1"

    def publish(self, kid: str, private: Any, alg: str) -> None:
        algorithm = jwt.get_algorithm_by_name(alg)
        jwk = json.loads(algorithm.to_jwk(private.public_key()))
        self.keys = [{**jwk, "kid": kid, "alg": alg, "use": "sig"}]


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
async def api(db: Database, jwks: Jwks) -> AsyncIterator[httpx.AsyncClient]:
    """HS256 and the JWKS both on; rotation is picked up at once (no refetch cooldown)."""
    async with client(make_app(db, supabase_url=jwks.url, jwks_cooldown=0)) as c:
        yield c


@pytest.fixture
def no_db() -> Database:
    """For requests refused before any query: a pool that is never opened."""
    return Database(AsyncConnectionPool("postgresql:///unused", open=False), "unused")


@pytest.fixture
async def refusing(no_db: Database, jwks: Jwks) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(no_db, supabase_url=jwks.url, jwks_cooldown=0)) as c:
        yield c


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def status_with(api: httpx.AsyncClient, tok: str) -> httpx.Response:
    return await api.get("/api/agents/", headers={"Authorization": f"Bearer {tok}"})


class TestJwt:
    async def test_hs256_with_the_project_secret(self, api: httpx.AsyncClient, jwks: Jwks) -> None:
        r = await status_with(api, token(OWNER, iss=jwks.issuer))
        assert r.status_code == 200, r.text
        assert r.json() == []

    async def test_missing_or_malformed_credentials(self, refusing: httpx.AsyncClient) -> None:
        r = await refusing.get("/api/agents/")
        assert_problem(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert_problem(await status_with(refusing, "not.a.jwt"), 401, "unauthorized")
        r = await refusing.get("/api/agents/", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert_problem(r, 401, "unauthorized")

    @pytest.mark.parametrize(
        ("claims", "detail"),
        [
            ({"expires_in": -60}, "expired"),
            ({"aud": "anon"}, "audience"),
            ({"iss": "https://elsewhere.example/auth/v1"}, "issued"),
            ({"sub": "not-a-uuid"}, "subject"),
            ({"key": "another-secret-" + "x" * 48}, "invalid"),
        ],
    )
    async def test_refused_claims(
        self, refusing: httpx.AsyncClient, jwks: Jwks, claims: dict[str, Any], detail: str
    ) -> None:
        tok = token(OWNER, **{"iss": jwks.issuer, **claims})
        problem = assert_problem(await status_with(refusing, tok), 401, "unauthorized")
        assert detail in problem["detail"]

    async def test_missing_exp_is_refused(self, refusing: httpx.AsyncClient, jwks: Jwks) -> None:
        tok = jwt.encode(
            {"sub": str(OWNER), "aud": "authenticated", "iss": jwks.issuer},
            JWT_SECRET,
        )
        assert_problem(await status_with(refusing, tok), 401, "unauthorized")

    async def test_alg_none_and_other_algorithms(
        self, refusing: httpx.AsyncClient, jwks: Jwks
    ) -> None:
        claims = {"sub": str(OWNER), "aud": "authenticated", "iss": jwks.issuer, "exp": 2**40}
        unsigned = jwt.encode(claims, None, algorithm="none")
        problem = assert_problem(await status_with(refusing, unsigned), 401, "unauthorized")
        assert "'none'" in problem["detail"]
        hs384 = token(OWNER, iss=jwks.issuer, algorithm="HS384")
        assert_problem(await status_with(refusing, hs384), 401, "unauthorized")

    async def test_hs256_signed_with_the_public_key_is_refused(
        self, no_db: Database, jwks: Jwks
    ) -> None:
        # Algorithm confusion: with only the JWKS configured, HS256 is not accepted at all.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks.publish("k1", key, "RS256")
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        payload = json.dumps(
            {"sub": str(OWNER), "aud": "authenticated", "iss": jwks.issuer, "exp": 2**40}
        ).encode()
        forged_token = _hmac_token(payload, pem)  # PyJWT itself refuses to sign this
        async with client(make_app(no_db, auth_jwt_secret=None, supabase_url=jwks.url)) as api:
            assert_problem(await status_with(api, forged_token), 401, "unauthorized")

    async def test_tampered_signature(self, refusing: httpx.AsyncClient, jwks: Jwks) -> None:
        header, _, signature = token(OWNER, iss=jwks.issuer).split(".")
        other_payload = token(OTHER_OWNER, iss=jwks.issuer).split(".")[1]
        tampered = f"{header}.{other_payload}.{signature}"
        assert_problem(await status_with(refusing, tampered), 401, "unauthorized")

    @pytest.mark.parametrize("alg", ["ES256", "RS256"])
    async def test_asymmetric_tokens_from_the_jwks(
        self, api: httpx.AsyncClient, jwks: Jwks, alg: str
    ) -> None:
        key = ec_key() if alg == "ES256" else rsa.generate_private_key(65537, 2048)
        jwks.publish("key-1", key, alg)
        tok = token(OWNER, key=key, algorithm=alg, iss=jwks.issuer, headers={"kid": "key-1"})
        assert (await status_with(api, tok)).status_code == 200
        other = token(
            OWNER,
            key=ec_key() if alg == "ES256" else rsa.generate_private_key(65537, 2048),
            algorithm=alg,
            iss=jwks.issuer,
            headers={"kid": "key-1"},
        )
        assert_problem(await status_with(api, other), 401, "unauthorized")

    async def test_jwks_rotation(self, api: httpx.AsyncClient, jwks: Jwks) -> None:
        old, new = ec_key(), ec_key()
        jwks.publish("old", old, "ES256")
        old_token = token(
            OWNER, key=old, algorithm="ES256", iss=jwks.issuer, headers={"kid": "old"}
        )
        assert (await status_with(api, old_token)).status_code == 200
        assert (await status_with(api, old_token)).status_code == 200
        assert jwks.fetches == 1  # cached

        jwks.publish("new", new, "ES256")
        new_token = token(
            OWNER, key=new, algorithm="ES256", iss=jwks.issuer, headers={"kid": "new"}
        )
        r = await status_with(api, new_token)
        assert r.status_code == 200, r.text
        assert jwks.fetches == 2  # the unknown kid made it refetch
        r = await status_with(api, old_token)
        assert "unknown key" in assert_problem(r, 401, "unauthorized")["detail"]

    async def test_unreachable_jwks_is_503(self, no_db: Database) -> None:
        app = make_app(no_db, supabase_url=f"http://127.0.0.1:{free_port()}")
        tok = token(OWNER, key=ec_key(), algorithm="ES256", headers={"kid": "k"})
        async with client(app) as api:
            assert_problem(await status_with(api, tok), 503, "unavailable")


def _hmac_token(payload: bytes, secret: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}') + "." + b64(payload)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


class TestApiKeys:
    async def test_create_use_list_revoke(self, db: Database) -> None:
        async with client(make_app(db)) as api:
            r = await api.post("/api/api-keys/", json={"name": "backend"}, headers=bearer(OWNER))
            assert r.status_code == 201, r.text
            created = r.json()
            key = created["key"]
            assert key.startswith(created["prefix"] + "_")
            as_key = {"Authorization": f"Bearer {key}"}

            r = await api.get("/api/api-keys/", headers=as_key)
            assert r.status_code == 200
            [listed] = r.json()
            assert listed["id"] == created["id"]
            assert "key" not in listed and listed["last_used_at"] is not None

            async with db.connection() as conn:
                cur = await conn.execute("select secret_hash from agent_orders.api_keys")
                stored = str((await cur.fetchone() or {})["secret_hash"])
            assert key.split("_")[-1] not in stored and len(stored) == 64

            r = await api.delete(f"/api/api-keys/{created['id']}", headers=as_key)
            assert r.status_code == 200 and r.json()["revoked_at"] is not None
            assert_problem(await api.get("/api/agents/", headers=as_key), 401, "unauthorized")

    async def test_wrong_secret_and_garbage_keys(self, db: Database) -> None:
        async with db.connection() as conn:
            _, key = await api_keys.create_key(conn, OWNER, {"name": "k"})
        prefix, secret = key.rsplit("_", 1)
        wrong = prefix + "_" + ("A" if secret[0] != "A" else "B") + secret[1:]
        async with client(make_app(db)) as api:
            for bad in (wrong, "ao_nothing", prefix):
                r = await api.get("/api/agents/", headers={"Authorization": f"Bearer {bad}"})
                assert_problem(r, 401, "unauthorized")
            r = await api.get("/api/agents/", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200


class TestTenancy:
    async def test_another_owner_sees_and_changes_nothing(self, db: Database, store: Agent) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(conn, order_data(store))
            mine, _ = await api_keys.create_key(conn, OWNER, {"name": "mine"})
            case, _ = await problems.report(
                conn, order, ProblemKind.other, "typo in the address", by=Provenance()
            )
            hook = await webhooks.create_endpoint(
                conn, OWNER, {"url": "http://127.0.0.1:9/hooks"}, allow_private=True
            )
            delivery = await webhooks.send_test(conn, OWNER, hook.id)
            [mail] = await mails.list_mail(conn, OWNER)
            sent = await orders.create_order(conn, order_data(store))
            await orders.update_status(conn, sent.id, {"status": "delivered"})
            back = await returns.request(conn, sent.id, None, reason=None, by=Provenance())
            parcel = await shipments.create_shipment(
                conn, order.id, {"tracking_number": "1Z999AA10123456784"}
            )
            account = await carrier_accounts.put_account(
                conn, OWNER, {"agent_id": store.id, "provider": "generic"}
            )
        app = make_app(db, webhook_allow_private=True)
        w, d = hook.id, delivery.id
        o, a = order.id, store.id
        new_order = {**order_data(store), "agent_id": str(a)}
        attempts: list[tuple[str, str, dict[str, Any], int]] = [
            ("GET", f"/api/orders/{o}", {}, 404),
            ("GET", f"/api/orders/{order.order_number}", {}, 404),
            ("PATCH", f"/api/orders/{o}/status", {"json": {"status": "cancelled"}}, 404),
            ("POST", f"/api/orders/{o}/tracking-links/revoke", {}, 404),
            ("PATCH", f"/api/orders/{o}", {"json": {"customer_notes": "theirs"}}, 404),
            (
                "POST",
                "/api/orders/bulk/status",
                {"json": {"status": "cancelled", "orders": [str(o)]}},
                200,
            ),
            ("GET", "/api/returns/", {}, 200),
            ("POST", f"/api/returns/{back.id}/approve", {}, 404),
            ("POST", f"/api/returns/{back.id}/reject", {}, 404),
            ("POST", f"/api/returns/{back.id}/receive", {}, 404),
            ("POST", f"/api/returns/{back.id}/refund", {}, 404),
            ("POST", f"/api/orders/{o}/refunds", {"json": {}}, 404),
            ("POST", f"/api/orders/{o}/payments", {"json": {"method": "cash", "amount": "1"}}, 404),
            ("POST", f"/api/orders/{o}/payment-link", {}, 404),
            ("POST", "/api/orders/", {"json": new_order}, 404),
            ("GET", "/api/orders/", {"params": {"agent_id": str(a)}}, 200),
            ("GET", "/api/orders/stats/summary", {}, 200),
            ("GET", "/api/agents/", {}, 200),
            ("POST", "/api/agents/", {"json": {"name": "Mine"}}, 201),
            ("GET", f"/api/agents/{a}", {}, 404),
            ("PATCH", f"/api/agents/{a}", {"json": {"shipping_fee": "0.00"}}, 404),
            ("GET", f"/api/agents/{a}/products", {}, 404),
            (
                "POST",
                f"/api/agents/{a}/products",
                {"json": {"products": [{"sku": "X", "name": "X", "unit_price": "0.01"}]}},
                404,
            ),
            ("POST", f"/api/agents/{a}/sessions", {"json": {"conversation_id": "c-1"}}, 404),
            ("GET", "/api/api-keys/", {}, 200),
            ("POST", "/api/api-keys/", {"json": {"name": "theirs"}}, 201),
            ("DELETE", f"/api/api-keys/{mine.id}", {}, 404),
            ("GET", "/api/problems/", {}, 200),
            ("POST", f"/api/problems/{case.id}/resolve", {"json": {"note": "theirs"}}, 404),
            ("GET", "/api/webhooks/", {}, 200),
            ("POST", "/api/webhooks/", {"json": {"url": "http://127.0.0.1:9/theirs"}}, 201),
            ("GET", f"/api/webhooks/{w}", {}, 404),
            ("PATCH", f"/api/webhooks/{w}", {"json": {"enabled": False}}, 404),
            ("DELETE", f"/api/webhooks/{w}", {}, 404),
            ("POST", f"/api/webhooks/{w}/rotate-secret", {}, 404),
            ("GET", f"/api/webhooks/{w}/deliveries", {}, 404),
            ("POST", f"/api/webhooks/{w}/deliveries/{d}/redeliver", {}, 404),
            ("POST", f"/api/webhooks/{w}/test", {}, 404),
            ("GET", "/api/events/", {}, 200),
            ("GET", "/api/mail/", {}, 200),
            ("GET", f"/api/mail/{mail.id}", {}, 404),
            ("GET", f"/api/orders/{o}/shipments", {}, 404),
            (
                "POST",
                f"/api/orders/{o}/shipments",
                {"json": {"tracking_number": "3318810025"}},
                404,
            ),
            (
                "POST",
                f"/api/orders/{o}/shipments/{parcel.id}/events",
                {"json": {"kind": "delivered"}},
                404,
            ),
            ("PUT", "/api/carriers/", {"json": {"agent_id": str(a), "provider": "generic"}}, 404),
            ("GET", "/api/carriers/", {}, 200),
            ("DELETE", f"/api/carriers/{account.id}", {}, 404),
            ("GET", "/api/carriers/unmatched", {}, 200),
        ]
        owner_routes = {
            (method.upper(), path)
            for path, item in app.openapi()["paths"].items()
            for method, operation in item.items()
            if operation.get("security")
        }
        walked = {(m, _template(p)) for m, p, _, _ in attempts}
        assert walked == owner_routes

        async with client(app) as api:
            for method, path, kw, expected in attempts:
                r = await api.request(method, path, headers=bearer(OTHER_OWNER), **kw)
                assert r.status_code == expected, (method, path, r.text)
                if expected == 404:
                    assert_problem(r, 404, "not_found")
                elif method == "GET" and path.startswith("/api/orders/stats"):
                    assert r.json()["total_orders"] == 0
                elif method == "GET" and path == "/api/orders/":
                    assert r.json()["orders"] == []
                elif path == "/api/orders/bulk/status":
                    assert r.json()["results"][0]["problem"]["code"] == "not_found"
                elif method == "GET" and path == "/api/events/":
                    assert r.json()["events"] == []
                elif method == "GET":
                    assert r.json() == []

            # The owner's things are untouched.
            headers = bearer(OWNER)
            assert (await api.get(f"/api/orders/{o}", headers=headers)).json()[
                "status"
            ] == "pending"
            assert (await api.get(f"/api/agents/{a}", headers=headers)).json()[
                "shipping_fee"
            ] == "5.00"
            keys = (await api.get("/api/api-keys/", headers=headers)).json()
            assert [k["revoked_at"] for k in keys] == [None]
            hooks = (await api.get("/api/webhooks/", headers=headers)).json()
            assert [(h["id"], h["enabled"]) for h in hooks] == [(str(w), True)]
            assert len((await api.get("/api/orders/", headers=headers)).json()["orders"]) == 2
            assert [
                x["state"] for x in (await api.get("/api/returns/", headers=headers)).json()
            ] == ["requested"]


def _template(path: str) -> str:
    """`/api/orders/<uuid>/status` -> `/api/orders/{order_id}/status`, to match route paths."""
    parts = path.split("/")
    names = {
        "orders": "{order_id}",
        "agents": "{agent_id}",
        "api-keys": "{key_id}",
        "problems": "{problem_id}",
        "webhooks": "{endpoint_id}",
        "deliveries": "{delivery_id}",
        "mail": "{mail_id}",
        "returns": "{return_id}",
        "shipments": "{shipment_id}",
        "carriers": "{account_id}",
    }
    for i in range(3, len(parts)):
        if parts[i] and parts[i - 1] in names and parts[i] not in ("stats", "bulk", "unmatched"):
            parts[i] = names[parts[i - 1]]
    return "/".join(parts)
