"""What the API tests share: an app on the test database, owner tokens, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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


class ApiProcess:
    """`agent-orders <args>` as a child process on a free 127.0.0.1 port, which a test may
    start, stop, kill -9 and start again (on the same port, appending to the same log)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "agent_tools.cli", *args]
        self.command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, "AGENT_ORDERS_TRACK_BURST": "100000", **env}
        self.log = log
        """The process's stdout and stderr."""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90) -> None:
        """Start it and wait until `/ready` answers 200. `serve` and `run` start a worker per
        CPU, each importing the app afresh: on a machine busy with other work that takes
        a while."""
        assert self.proc is None, "already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise AssertionError(f"the server exited with {code}:\n{self.output()}")
            with suppress(httpx.TransportError):
                if httpx.get(self.base + "/ready", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not become ready:\n{self.output()}")
            time.sleep(0.05)

    def crash(self) -> None:
        """`kill -9` the server."""
        assert self.proc is not None, "not running"
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, as a service manager would; kill -9 if it has not exited after 10 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def server(args: list[str], env: dict[str, str], tmp: Path) -> Iterator[ApiProcess]:
    """Run `agent-orders <args> --port <free>` until `/ready` answers 200; stop it after."""
    running = ApiProcess(args, env, tmp / "server.log")
    try:
        running.start()
        yield running
    finally:
        running.stop()
