"""The tools as an MCP server (the official `mcp` SDK): stdio for one local customer, and
streamable HTTP for many, mounted by the API at `/mcp`.

Every tool is registered from the `Toolkit`'s own definitions — its strict JSON schema is the
`inputSchema` — and every call goes through `Toolkit.call`, which validates the arguments
against that schema: no second copy of a schema or a rule. The identity of a call comes from
the host (the stdio command line, or the HTTP session token), never from the model.

`confirm_order` asks the human itself when the store's setting is `elicitation` and the
client can ask: the SDK's resolver sends the question (a server-to-client request up to
2025-11-25, an `input_required` round trip from 2026-07-28), and only an `accept` reaches
`Toolkit.call` as the host's approval. A client that cannot ask gets `confirm_order`'s own
refusal, which points to the confirmation page.
"""

import functools
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, Elicit, MCPServer, RequestStateSecurity, Resolve
from mcp.server.mcpserver.tools import Tool as McpTool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, ConfigDict
from starlette.types import Receive, Scope, Send

from agent_tools.models import ConfirmationMode
from agent_tools.service import sessions, tracking
from agent_tools.tools.context import ToolContext
from agent_tools.tools.handlers import Tool
from agent_tools.tools.toolkit import Toolkit

SERVER_NAME = "agent-orders"
TURN_HEADER = "agent-orders-turn"
"""Optional: the index of the customer's latest message, for stores confirming by turns."""

MAX_BODY = 256 * 1024
"""Bytes of one HTTP request; `Toolkit.call` refuses arguments over 32,000 characters anyway."""

Identity = Callable[[Context], Awaitable[ToolContext]]
"""How a server learns who is calling: fixed for stdio, the session token over HTTP."""

INSTRUCTIONS = (
    "Order tools of one store. Prices come from the catalog; place_order only drafts. "
    "Follow each draft's `next`: the customer's final yes reaches the store through their "
    "app (confirm_order asks them), the confirmation page (confirm_url), or their next message."
)


class ToolFailure(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    hint: str


class ToolOutcome(BaseModel):
    """Every tool's structured result: `ok`, then the tool's fields or an `error` to act on."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    error: ToolFailure | None = None


class Approval(BaseModel):
    """The elicitation's form: nothing to fill in; accepting it is the yes."""


class _NotAsked(BaseModel):
    """The resolver's answer when the human was not asked (another setting, a client that
    cannot ask, nothing open): `confirm_order` then decides as it always does."""


class _RawArguments(ArgModelBase):
    """The arguments exactly as sent; `Toolkit.call` validates them against the schema."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


def _annotations(tool: Tool) -> ToolAnnotations:
    return ToolAnnotations(
        title=tool.name.replace("_", " ").capitalize(),
        read_only_hint=not tool.writes,
        destructive_hint=tool.destructive if tool.writes else None,
        idempotent_hint=tool.idempotent if tool.writes else None,
        open_world_hint=False,
    )


def _result(outcome: dict[str, Any]) -> CallToolResult:
    """`structuredContent` plus the same JSON as text, for clients that read only text."""
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(outcome, ensure_ascii=False))],
        structured_content=outcome,
        is_error=not outcome.get("ok", False),
    )


def _call_id(ctx: Context) -> str:
    """The JSON-RPC request id, kept on the events a call causes (the audit trail)."""
    return f"mcp:{ctx.request_id}"


def _can_ask(ctx: Context) -> bool:
    """Whether this client can put a question to the human on this request."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        return True  # asked through an input_required round trip, which needs no back channel
    # Earlier revisions send a request mid-call: impossible on stateless HTTP.
    return bool(ctx.session.can_send_request)


def build_server(
    toolkit: Toolkit, identity: Identity, *, state_key: bytes | None = None
) -> MCPServer:
    """An MCP server with every tool of `toolkit`. `state_key` seals the elicitation state
    that round-trips through the client (2026-07-28), so any worker sharing it can resume."""

    async def ask_customer(ctx: Context, arguments: dict[str, Any]) -> Elicit[Approval] | _NotAsked:
        draft_id = arguments.get("draft_id")
        if not isinstance(draft_id, str) or not draft_id:
            return _NotAsked()
        found = await toolkit.pending(await identity(ctx), draft_id)
        if found is None or found.confirmation is not ConfirmationMode.elicitation:
            return _NotAsked()
        if not _can_ask(ctx):
            return _NotAsked()
        return Elicit(found.question, Approval)

    def register(tool: Tool) -> McpTool:
        async def call(arguments: dict[str, Any], ctx: Context) -> CallToolResult:
            who = await identity(ctx)
            return _result(await toolkit.call(who, tool.name, arguments, _call_id(ctx)))

        async def confirm(
            arguments: dict[str, Any],
            ctx: Context,
            answer: Annotated[ElicitationResult[Approval], Resolve(ask_customer)],
        ) -> CallToolResult:
            who = await identity(ctx)
            if isinstance(answer, AcceptedElicitation):
                if isinstance(answer.data, Approval):
                    who = replace(who, approved_draft_id=str(arguments.get("draft_id")))
                return _result(await toolkit.call(who, tool.name, arguments, _call_id(ctx)))
            return _result(
                {
                    "ok": False,
                    "error": {
                        "code": "customer_declined",
                        "message": "the customer did not confirm; nothing was placed or changed",
                        "hint": "ask the customer what to change, then draft it again",
                    },
                }
            )

        fn = confirm if tool.name == "confirm_order" else call
        base = McpTool.from_function(
            fn, name=tool.name, description=tool.description, annotations=_annotations(tool)
        )
        return base.model_copy(
            update={
                "parameters": tool.schema,
                "fn_metadata": FuncMetadata(arg_model=_RawArguments, output_model=ToolOutcome),
            }
        )

    security = (
        RequestStateSecurity(keys=[state_key], bind_principal=_principal)
        if state_key is not None
        else None
    )
    return MCPServer(
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        # The SDK configures the root logger at this level when none is set: INFO would log
        # (and render) a line per request.
        log_level="WARNING",
        tools=[register(t) for t in toolkit.tools.values()],
        request_state_security=security,
    )


def _principal(request_context: Any) -> str | None:
    """Who a sealed elicitation state belongs to: the session token it was asked under, so
    one conversation's recorded answer can never complete another's call."""
    token = _bearer(getattr(request_context.request, "headers", None))
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def fixed_identity(ctx: ToolContext) -> Identity:
    """One customer for the server's whole life (stdio)."""

    async def identity(_: Context) -> ToolContext:
        return ctx

    return identity


def _derive(signing_key: bytes, purpose: bytes) -> bytes:
    return hmac.new(signing_key, b"agent-orders:" + purpose, hashlib.sha256).digest()


def _bearer(headers: Any) -> str:
    value = str(headers.get("authorization") or "") if headers is not None else ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class HttpEndpoint:
    """The ASGI endpoint for `/mcp`: the session token is checked before the SDK sees the
    request, so nothing runs for a missing, tampered, expired or foreign token. Stateless:
    any worker serves any request."""

    def __init__(self, toolkit: Toolkit, signing_key: bytes) -> None:
        self.session_key = sessions.session_key(signing_key)
        self.server = build_server(
            toolkit, self.identity, state_key=_derive(signing_key, b"mcp-request-state")
        )
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            max_request_body_size=MAX_BODY,
            # Every request carries a bearer token a rebinding page cannot have.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.session_manager = self.server.session_manager
        self._decoded = functools.lru_cache(maxsize=256)(
            lambda token: sessions.decode(self.session_key, token)
        )

    @classmethod
    async def open(cls, toolkit: Toolkit) -> "HttpEndpoint":
        async with toolkit.db.connection() as conn:
            key = await tracking.signing_key(conn, toolkit.settings)
        return cls(toolkit, key)

    def session(self, token: str) -> sessions.Session:
        """The token's session; checked twice per call (before the SDK, then for the
        identity), so a few recent ones are remembered, their expiry checked on every use."""
        session = self._decoded(token)
        if session.expires_at <= datetime.now(UTC):
            raise sessions.InvalidSession("the session token expired")
        return session

    async def identity(self, ctx: Context) -> ToolContext:
        headers = ctx.headers
        session = self.session(_bearer(headers))
        turn = str(headers.get(TURN_HEADER, "0")) if headers is not None else "0"
        return ToolContext(
            agent_id=session.agent_id,
            conversation_id=session.conversation_id,
            customer_email=session.customer_email,
            customer_phone=session.customer_phone,
            customer_verified=session.customer_verified,
            turn=int(turn) if turn.isdigit() and len(turn) < 10 else 0,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            try:
                self.session(_bearer(headers))
            except sessions.InvalidSession as exc:
                await _unauthorized(send, exc)
                return
        await self.session_manager.handle_request(scope, receive, send)


async def _unauthorized(send: Send, exc: sessions.InvalidSession) -> None:
    body = json.dumps(
        {
            "type": f"urn:agent-orders:problem:{exc.code}",
            "title": "Unauthorized",
            "status": 401,
            "code": exc.code,
            "detail": exc.message,
            "hint": exc.hint,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="agent-orders", error="invalid_token"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Deferred:
    """The `/mcp` route's target: the app builds the endpoint once the database is open
    (the instance secret lives there); until then, and after, a 503."""

    def __init__(self) -> None:
        self.endpoint: HttpEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.endpoint is not None:
            await self.endpoint(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"text/plain"), (b"retry-after", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": b"the server is starting or stopping"})
