"""What the API tests share: an app on the test database, owner tokens, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import jwt
from fastapi import FastAPI

from agent_tools.db import Database
from api.app import create_app
from api.settings import ApiSettings

JWT_SECRET = "test-jwt-secret-" + "0123456789abcdef" * 3
PROBLEM_JSON = "application/problem+json"


def settings(**overrides: Any) -> ApiSettings:
    """Settings independent of the machine's environment: HS256 on, no JWKS."""
    values: dict[str, Any] = {
        "auth_jwt_secret": JWT_SECRET,
        "supabase_url": None,
        "track_burst": 1000,
        "track_per_minute": 60_000,
    }
    values.update(overrides)
    return ApiSettings(_env_file=None, **values)  # type: ignore[call-arg]


def make_app(db: Database, **overrides: Any) -> FastAPI:
    return create_app(database=db, settings=settings(**overrides))


def client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def token(
    owner: UUID | str,
    *,
    key: Any = JWT_SECRET,
    algorithm: str = "HS256",
    expires_in: int = 3600,
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {"sub": str(owner), "aud": "authenticated", "role": "authenticated"}
    payload.update(iat=now, exp=now + expires_in)
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def bearer(owner: UUID | str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(owner, **kw)}"}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert body["type"] == f"urn:agent-orders:problem:{code}"
    assert body["detail"]
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    log: Path
    """The process's stdout and stderr."""

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def server(args: list[str], env: dict[str, str], tmp: Path) -> Iterator[Server]:
    """Run `agent-orders <args> --port <free>` until `/ready` answers 200; stop it after."""
    port = free_port()
    running = Server(f"http://127.0.0.1:{port}", tmp / f"server-{port}.log")
    command = [sys.executable, "-m", "agent_tools.cli", *args, "--host", "127.0.0.1"]
    with running.log.open("w") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            env={**os.environ, "AGENT_ORDERS_TRACK_BURST": "100000", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the server exited with {proc.returncode}:\n{running.output()}"
                )
            try:
                if httpx.get(running.base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the server did not become ready in 30 s")
            time.sleep(0.1)
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
