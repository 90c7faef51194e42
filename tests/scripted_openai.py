"""A scripted OpenAI-compatible server on 127.0.0.1 that replays prepared assistant turns.

Each request to `POST /v1/chat/completions` takes the next turn of the script: an assistant
message, or a function of the request that builds one (to reuse a `draft_id` the tools just
returned). Every request body is kept, so tests can check what the real SDK sent.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai import AsyncOpenAI

Request = dict[str, Any]
Turn = dict[str, Any] | Callable[[Request], dict[str, Any]]
_ids = itertools.count(1)


def say(text: str | Callable[[Request], str]) -> Turn:
    """An assistant turn answering in text."""
    if callable(text):
        return lambda req: {"role": "assistant", "content": text(req)}
    return {"role": "assistant", "content": text}


def calls(*wanted: tuple[str, Any]) -> Turn:
    """An assistant turn calling tools: (name, arguments) where arguments is a dict, a raw
    string, or a function of the request returning either."""

    def build(req: Request) -> dict[str, Any]:
        tool_calls = []
        for name, args in wanted:
            value = args(req) if callable(args) else args
            tool_calls.append(
                {
                    "id": f"call_{next(_ids)}",
                    "type": "function",
                    "function": {
                        "name": name,
                        "arguments": value if isinstance(value, str) else json.dumps(value),
                    },
                }
            )
        return {"role": "assistant", "content": None, "tool_calls": tool_calls}

    return build


def tool_results(req: Request) -> list[dict[str, Any]]:
    """Every tool result in the conversation so far, oldest first, parsed."""
    return [json.loads(m["content"]) for m in req["messages"] if m["role"] == "tool"]


def latest(req: Request, key: str) -> Any:
    """`key` from the most recent tool result that has it."""
    for result in reversed(tool_results(req)):
        if key in result:
            return result[key]
    raise AssertionError(f"no tool result with {key!r} yet")


class ScriptedOpenAI:
    def __init__(self) -> None:
        self.turns: deque[Turn] = deque()
        self.policy: Callable[[Request], dict[str, Any]] | None = None
        """Answers every request when set (instead of the script): for concurrent chats."""
        self.usage = (0, 0)
        """(prompt, completion) tokens reported for each answer."""
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def script(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def client(self) -> AsyncOpenAI:
        return AsyncOpenAI(api_key="test", base_url=self.base_url, max_retries=0, timeout=10)

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reply(self, req: Request) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(req)
            turn = None if self.policy or not self.turns else self.turns.popleft()
        if self.policy is not None:
            message = self.policy(req)
        elif turn is None:
            return 400, {"error": {"message": "the script has no more turns", "type": "test"}}
        else:
            message = turn(req) if callable(turn) else turn
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": req.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": self.usage[0],
                "completion_tokens": self.usage[1],
                "total_tokens": sum(self.usage),
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    status, body = 404, {"error": {"message": f"no route {self.path}"}}
                else:
                    size = int(self.headers.get("content-length", 0))
                    status, body = outer._reply(json.loads(self.rfile.read(size)))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def scripted() -> Iterator[ScriptedOpenAI]:
    """Body of a pytest fixture: `llm = pytest.fixture(scripted)` in a test module."""
    with ScriptedOpenAI() as server:
        yield server
