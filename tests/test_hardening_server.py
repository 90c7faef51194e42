"""The server as `agent-orders serve` starts it: who the client is, how much of a request head
it reads, and what its access log keeps."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from agent_tools import cli
from agent_tools.config import get_settings
from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER
from agent_tools.service import api_keys
from tests.api_support import JWT_SECRET, ApiProcess, bearer, server
from tests.conftest import CATALOG, OWNER, drop_database, new_database


@pytest.fixture(scope="module")
def database(server_url: str, template_db: str) -> Iterator[str]:
    name, url = new_database(server_url, template_db)
    yield url
    drop_database(server_url, name)


def _env(url: str, **more: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "AUTH_JWT_SECRET": JWT_SECRET,
        "SUPABASE_URL": "",
        "FORWARDED_ALLOW_IPS": "*",  # uvicorn's own variable: must not be what decides
        **more,
    }


@pytest.fixture(scope="module")
def live(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    env = _env(database, AGENT_ORDERS_TRACK_BURST="3")
    with server(["serve"], env, tmp_path_factory.mktemp("hardened")) as running:
        yield running


def _spoofed(base: str, n: int) -> list[int]:
    return [
        httpx.get(
            f"{base}/api/orders/track/ORD-2020-000001",
            headers={"X-Forwarded-For": f"10.9.{n}.{i}"},
        ).status_code
        for i in range(5)
    ]


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(
    live: ApiProcess, database: str, tmp_path: Path
) -> None:
    assert _spoofed(live.base, 1) == [404, 404, 404, 429, 429]
    env = _env(database, AGENT_ORDERS_TRACK_BURST="3")
    with server(["serve", "--forwarded-allow-ips", "127.0.0.1"], env, tmp_path) as proxied:
        # Behind a trusted proxy each forwarded client has its own limit.
        assert _spoofed(proxied.base, 2) == [404] * 5


def test_an_oversized_request_head_is_refused_by_the_server(live: ApiProcess) -> None:
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        head = (
            b"GET /api/agents/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"e" * 1_000_000
            + b"\r\n\r\n"
        )
        # The server may close the connection before it has read everything.
        with suppress(OSError):
            sock.sendall(head)
        answer = b""
        with suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert httpx.get(f"{live.base}/health").status_code == 200


async def test_the_demo_key_is_printed_once_and_never_comes_back(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        key, _ = await cli._prepare_demo()
        assert key.startswith("ao_") and " " not in key
        again, _ = await cli._prepare_demo()
        assert key not in again and "printed in full when it was created" in again
        async with db.connection() as conn:
            (stored,) = await api_keys.list_keys(conn, DEMO_OWNER)
            await api_keys.revoke_key(conn, DEMO_OWNER, stored.id)
        after, _ = await cli._prepare_demo()
        assert "revoked" in after
        async with db.connection() as conn:
            assert await api_keys.authenticate(conn, key) is None
            assert len(await api_keys.list_keys(conn, DEMO_OWNER)) == 1
    finally:
        get_settings.cache_clear()


def test_the_access_log_keeps_no_tokens_or_emails(live: ApiProcess) -> None:
    api = httpx.Client(base_url=live.base, headers=bearer(OWNER))
    agent = api.post("/api/agents/", json={"name": "Logged"}).json()
    api.post(f"/api/agents/{agent['id']}/products", json={"products": CATALOG[:1]})
    created = api.post(
        "/api/orders/",
        json={
            "agent_id": agent["id"],
            "customer": {"name": "Ann", "email": "ann.secret@example.com"},
            "shipping_address": {"line1": "1 Main St", "city": "Portland", "country": "US"},
            "items": [{"sku": CATALOG[0]["sku"], "quantity": 1}],
        },
    )
    assert created.status_code == 201, created.text
    number = created.json()["order_number"]
    token = created.json()["tracking_url"].split("token=")[1]
    opened = httpx.get(f"{live.base}/track/{number}", params={"token": token})
    assert opened.status_code == 303
    httpx.get(f"{live.base}/api/orders/track/{number}", params={"email": "ann.secret@example.com"})
    httpx.post(f"{live.base}/api/orders/track/{number}", json={"email": "ann.secret@example.com"})
    api.get("/api/orders/", params={"search": "ann.secret@example.com", "status": "pending"})
    log = live.output()
    assert f"/track/{number}?token=*** HTTP/1.1" in log  # the request is logged, not its secret
    assert "search=***&status=pending" in log
    assert token not in log
    assert "ann.secret" not in log
