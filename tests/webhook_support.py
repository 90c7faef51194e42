"""A real webhook receiver on 127.0.0.1 (HTTP in a thread) and helpers to wait for deliveries
and for the events feed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """Records every POST; answers with the next scripted status (then `default`)."""

    def __init__(self, default: int = 200, delay: float = 0.0, held: bool = False) -> None:
        self.default = default
        self.delay = delay
        """Seconds each answer takes (so deliveries are in flight when a test kills one)."""
        self.gate = threading.Event()
        """While clear (`held=True`), every answer waits for `release()`: deliveries stay in
        flight for as long as a test needs, whatever the machine's speed."""
        if not held:
            self.gate.set()
        self.script: list[int] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # the sender died mid-request: nothing was delivered
                with receiver.lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.gate.wait()
                if receiver.delay:
                    time.sleep(receiver.delay)
                answer = f'{{"status": {status}}}'.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops connections of a busy deliverer

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def release(self) -> None:
        """Let held answers (and every later one) go."""
        self.gate.set()

    def ids(self) -> list[str]:
        with self.lock:
            return [r.webhook_id for r in self.received]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every delivery, verified the way a receiver would: `Webhook(secret).verify`."""
        with self.lock:
            got = list(self.received)
        return [Webhook(secret).verify(r.body, r.headers) for r in got]


@contextmanager
def receiver(default: int = 200, delay: float = 0.0, held: bool = False) -> Iterator[Receiver]:
    r = Receiver(default, delay, held)
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield r
    finally:
        r.release()
        r.server.shutdown()
        r.server.server_close()


async def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    """Poll `check` (sync or async) until it returns truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        await asyncio.sleep(0.02)


async def feed(api: httpx.AsyncClient, after: str | None = None, **params: Any) -> dict[str, Any]:
    if after:
        params["after"] = after
    r = await api.get("/api/events/", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def feed_when(
    api: httpx.AsyncClient, n: int, after: str | None = None, **params: Any
) -> dict[str, Any]:
    """The first page that has at least `n` events. The feed waits for every transaction
    older than its newest event to end, on the whole server: on a server shared with other
    work, a commit may take a moment to show."""
    deadline = time.monotonic() + 30
    while True:
        page = await feed(api, after, **params)
        if len(page["events"]) >= n or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.05)
