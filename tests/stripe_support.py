"""A local stand-in for the few Stripe endpoints agent-orders calls, on a real socket, and
Stripe-signed webhook payloads.

The objects it answers with are checked against the `stripe` library's typed resource classes
(`check_shape`): those classes are generated from Stripe's published OpenAPI description, so a
field this server invents, a required field it leaves out, or a value of the wrong type or
outside an enum fails the test that made the call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe
from stripe.checkout import Session

# ---- shapes, checked against the library's generated types ---------------------------------


def _namespace() -> dict[str, Any]:
    # The resource classes the annotations name (imported lazily by the package).
    names: dict[str, Any] = {}
    for name in {*dir(stripe), *getattr(stripe, "_import_map", {})}:
        if name[:1].isupper():
            try:
                names[name] = getattr(stripe, name)
            except AttributeError:
                continue
    return names


_NS = _namespace()


def _hints(cls: type) -> dict[str, Any]:
    module = vars(__import__(cls.__module__, fromlist=["_"]))
    return {
        k: v
        for k, v in typing.get_type_hints(cls, globalns={**_NS, **module}).items()
        if typing.get_origin(v) is not typing.ClassVar and not k.startswith("_")
    }


def _matches(value: Any, t: Any, path: str, problems: list[str]) -> bool:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if t is type(None):
        return value is None
    if t is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        trials: list[list[str]] = []
        for a in args:
            sub: list[str] = []
            if _matches(value, a, path, sub):
                return True
            trials.append(sub)
        problems.extend(min(trials, key=len) if trials else [])
        if not any(trials):
            problems.append(f"{path}: {value!r} is none of {t}")
        return False
    if origin is typing.Literal:
        if value not in args:
            problems.append(f"{path}: {value!r} not in {args}")
            return False
        return True
    if t is bool:
        return isinstance(value, bool) or problems.append(f"{path}: not a bool") or False
    if t is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return ok or problems.append(f"{path}: {value!r} is not an int") or False
    if t is float:
        return isinstance(value, int | float) or problems.append(f"{path}: not a number") or False
    if t is str:
        return isinstance(value, str) or problems.append(f"{path}: {value!r} not a string") or False
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            problems.append(f"{path}: not a list")
            return False
        return all(_matches(v, args[0], f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin in (dict, typing.Dict):  # noqa: UP006
        return isinstance(value, dict) or problems.append(f"{path}: not an object") or False
    base = origin or t
    if isinstance(base, type) and issubclass(base, stripe.ListObject):
        ok = isinstance(value, dict) and value.get("object") == "list"
        return ok or problems.append(f"{path}: not a list object") or False
    if isinstance(base, type) and base.__name__ == "UntypedStripeObject":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return ok or problems.append(f"{path}: not a string map") or False
    if isinstance(base, type) and issubclass(base, stripe.StripeObject):
        if not isinstance(value, dict):
            problems.append(f"{path}: not an object")
            return False
        before = len(problems)
        problems.extend(shape_problems(value, base, path))
        return len(problems) == before
    problems.append(f"{path}: cannot check {t}")
    return False


def shape_problems(obj: dict[str, Any], cls: type, path: str = "") -> list[str]:
    """Differences between `obj` and the library's type `cls`: unknown fields, required
    (non-nullable) fields missing, values of the wrong type or outside an enum."""
    hints = _hints(cls)
    problems = [f"{path}.{k}: not a field of {cls.__name__}" for k in obj if k not in hints]
    for name, t in hints.items():
        where = f"{path}.{name}"
        if name not in obj:
            nullable = type(None) in typing.get_args(t)
            if not nullable:
                problems.append(f"{where}: required, missing")
            continue
        _matches(obj[name], t, where, problems)
    return problems


def check_shape(obj: dict[str, Any], cls: type) -> None:
    problems = shape_problems(obj, cls, cls.__name__)
    assert not problems, "\n".join(problems)


# ---- the server ------------------------------------------------------------------------------


def _form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (`line_items[0][price_data][currency]=usd`) back into JSON."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    result: dict[str, Any] = _lists(root)
    return result


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeStripe:
    """State of the stand-in: sessions, refunds, and every request it was sent."""

    base: str = ""
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)
    """Statuses to answer the next requests with (a 500 makes the client retry later)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def requests(self, method: str, prefix: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and c.path.startswith(prefix)]

    def pay(self, session_id: str) -> dict[str, Any]:
        """The customer paid: the session is complete, with a payment intent."""
        with self.lock:
            s = self.sessions[session_id]
            s.update(
                status="complete",
                payment_status="paid",
                payment_intent="pi_" + secrets.token_hex(12),
            )
            return dict(s)

    # -- endpoints

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]):
        with self.lock:
            self.calls.append(Call(method, path, params, headers))
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, _error("api_error", "scripted failure")
            key = headers.get("idempotency-key")
            if method == "POST" and key and key in self._idempotent:
                return self._idempotent[key]
            answer = self._route(method, path, params, headers)
            if method == "POST" and key and answer[0] < 500:
                self._idempotent[key] = answer
            return answer

    def _route(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if not headers.get("authorization", "").startswith("Bearer sk_test_"):
            return 401, _error("invalid_request_error", "Invalid API Key provided")
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "checkout", "sessions"]:
            return self._create_session(params, headers)
        if parts[:3] == ["v1", "checkout", "sessions"] and len(parts) >= 4:
            s = self.sessions.get(parts[3])
            if s is None:
                return 404, _error("invalid_request_error", "No such checkout.session")
            if method == "GET" and len(parts) == 4:
                return 200, s
            if method == "POST" and parts[4:] == ["expire"]:
                if s["status"] != "open":
                    return 400, _error("invalid_request_error", "Session is not open")
                s["status"] = "expired"
                return 200, s
        if method == "POST" and parts == ["v1", "refunds"]:
            return self._create_refund(params)
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({path})")

    def _create_session(
        self, p: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        lines = p.get("line_items") or []
        if p.get("mode") != "payment" or not lines:
            return 400, _error("invalid_request_error", "mode payment with line_items")
        currencies = {ln["price_data"]["currency"] for ln in lines}
        if len(currencies) != 1:
            return 400, _error("invalid_request_error", "one currency per session")
        total = sum(int(ln["price_data"]["unit_amount"]) * int(ln["quantity"]) for ln in lines)
        now = int(time.time())
        expires = int(p.get("expires_at") or now + 86400)
        if not now + 1800 - 5 <= expires <= now + 86400 + 5:
            return 400, _error("invalid_request_error", "expires_at must be 30 min to 24 h away")
        sid = "cs_test_" + secrets.token_hex(16)
        session = {name: None for name in _hints(Session) if name not in ("line_items",)}
        session.update(
            id=sid,
            object="checkout.session",
            amount_subtotal=total,
            amount_total=total,
            automatic_tax={"enabled": False, "liability": None, "provider": None, "status": None},
            cancel_url=p.get("cancel_url"),
            client_reference_id=p.get("client_reference_id"),
            created=now,
            currency=currencies.pop(),
            custom_fields=[],
            custom_text={
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            customer_email=p.get("customer_email"),
            expires_at=expires,
            livemode=False,
            metadata=p.get("metadata") or {},
            mode="payment",
            payment_method_types=["card"],
            payment_status="unpaid",
            shipping_options=[],
            status="open",
            success_url=p.get("success_url"),
            ui_mode="hosted_page",
            url=f"{self.base}/pay/{sid}",
        )
        self.sessions[sid] = session
        return 200, session

    def _create_refund(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = p.get("payment_intent")
        paid = [s for s in self.sessions.values() if s["payment_intent"] == intent]
        if not paid:
            return 400, _error("invalid_request_error", "No such payment_intent")
        session = paid[0]
        done = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent)
        amount = int(p.get("amount") or session["amount_total"] - done)
        if amount <= 0 or done + amount > session["amount_total"]:
            return 400, _error(
                "invalid_request_error", "Refund amount is greater than unrefunded amount"
            )
        rid = "re_" + secrets.token_hex(12)
        refund = {name: None for name in _hints(stripe.Refund)}
        refund.update(
            id=rid,
            object="refund",
            amount=amount,
            charge="ch_" + intent[3:],
            created=int(time.time()),
            currency=session["currency"],
            metadata=p.get("metadata") or {},
            payment_intent=intent,
            reason=p.get("reason"),
            status="succeeded",
        )
        self.refunds[rid] = refund
        return 200, refund

    def refunded(self, intent: str | None = None) -> int:
        """Minor units refunded (for one payment intent, or all)."""
        with self.lock:
            return sum(
                r["amount"]
                for r in self.refunds.values()
                if intent is None or r["payment_intent"] == intent
            )


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


@contextmanager
def fake_stripe() -> Iterator[FakeStripe]:
    state = FakeStripe()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length).decode()
            url = urlsplit(self.path)
            params = _form(body if method == "POST" else url.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = state.handle(method, url.path, params, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("request-id", "req_" + secrets.token_hex(8))
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self._answer("POST")

        def do_GET(self) -> None:
            self._answer("GET")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# ---- events, signed the way Stripe signs them ----------------------------------------------

WEBHOOK_SECRET = "whsec_test_" + "a1b2c3d4" * 4
SECRET_KEY = "sk_test_" + "x" * 24


def event(kind: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    body = {name: None for name in _hints(stripe.Event)}
    body.update(
        id=event_id or "evt_" + secrets.token_hex(12),
        object="event",
        api_version="2026-10-28",
        created=int(time.time()),
        data={"object": obj},
        livemode=False,
        pending_webhooks=1,
        type=kind,
    )
    return body


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">`."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
