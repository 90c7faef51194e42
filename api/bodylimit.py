"""A cap on request bodies, enforced before any route reads, parses or authenticates them.

Pure ASGI, so it sees the body as the server streams it: a `Content-Length` above the cap is
refused before a byte is read, and a body that grows past it while streaming (chunked, or a
lying length) is cut off there, the route seeing a disconnected client. Either way the
answer is a 413 problem and at most `max_bytes` were held in memory.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON


def _problem(max_bytes: int, path: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(
        {
            "type": "urn:agent-orders:problem:payload_too_large",
            "title": "Content Too Large",
            "status": 413,
            "detail": f"the request body is larger than {max_bytes} bytes",
            "code": "payload_too_large",
            "instance": path,
            "hint": "send a smaller body",
        }
    ).encode()
    start = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, body


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_long = int(value) > self.max_bytes
                except ValueError:
                    too_long = False  # the server itself refuses a malformed length
                if too_long:
                    await self._refuse(send, path)
                    return
        received = 0
        refused = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await self._refuse(send, path)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 went out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not refused:
                raise
            # The route failed on the body cut off above; the client already has its 413.

    async def _refuse(self, send: Send, path: str) -> None:
        start, body = _problem(self.max_bytes, path)
        await send(start)
        await send({"type": "http.response.body", "body": body})
