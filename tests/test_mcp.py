"""The MCP server, driven by the SDK's own client: over stdio (`agent-orders mcp` as a child
process) and over streamable HTTP (`agent-orders serve`, session tokens), in the protocol's
handshake revision (2025-11-25, `mode="legacy"`) and the current one (2026-07-28).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ElicitResult

from agent_tools.db import Database
from agent_tools.integrations.mcp import TURN_HEADER, build_server, fixed_identity
from agent_tools.models import Agent
from agent_tools.service import agents, api_keys, sessions, tracking
from agent_tools.service.sessions import SessionIn
from agent_tools.tools import ToolContext, Toolkit
from tests.api_support import ApiProcess, client, make_app, server
from tests.conftest import OWNER, census
from tests.tools_support import place_and_confirm, place_args

MODES = ["legacy", "2026-07-28"]


class Human:
    """The person behind the MCP client: answers each question as told, and remembers them."""

    def __init__(self, answer: str = "accept") -> None:
        self.answer = answer
        self.questions: list[str] = []

    async def __call__(self, context: Any, params: Any) -> ElicitResult:
        self.questions.append(params.message)
        if self.answer == "accept":
            return ElicitResult(action="accept", content={})
        return ElicitResult(action=self.answer)  # type: ignore[arg-type]


async def use_elicitation(db: Database, store: Agent) -> None:
    async with db.connection() as conn:
        await agents.update_agent(conn, store.id, {"confirmation": "elicitation"})


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    assert result.is_error == (not result.structured_content["ok"])
    return dict(result.structured_content)


async def press_page(db: Database, url: str) -> None:
    """The customer's click on the confirmation page (the page's own test is elsewhere)."""
    token = url.rsplit("/", 1)[1]
    async with client(make_app(db)) as web:
        page = await web.get(f"/confirm/{token}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        for _ in range(2):  # the second press places nothing more
            r = await web.post(
                f"/confirm/{token}", data={"csrf": csrf.group(1)}, headers={"Origin": "http://test"}
            )
            assert r.status_code == 303


async def order_flow(db: Database, open_client: Any, toolkit: Toolkit) -> None:
    """The checks every transport must pass: the listed tools are `openai_tools()`; accept
    places; decline does not; a client that cannot ask is sent to the page, which places once."""
    human = Human()
    async with open_client(human) as mcp:
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
        published = {t["function"]["name"]: t["function"] for t in toolkit.openai_tools()}
        assert list(listed) == list(published)
        for name, tool in listed.items():
            assert tool.input_schema == published[name]["parameters"]
            assert tool.description == published[name]["description"]
            assert tool.output_schema is not None and "ok" in tool.output_schema["properties"]
        hints = {n: t.annotations for n, t in listed.items()}
        assert hints["search_products"].read_only_hint is True  # type: ignore[union-attr]
        assert hints["get_order_status"].read_only_hint is True  # type: ignore[union-attr]
        assert hints["list_my_orders"].read_only_hint is True  # type: ignore[union-attr]
        assert hints["confirm_order"].destructive_hint is True  # type: ignore[union-attr]
        assert hints["confirm_order"].idempotent_hint is True  # type: ignore[union-attr]
        assert hints["cancel_order"].destructive_hint is True  # type: ignore[union-attr]
        assert hints["place_order"].read_only_hint is False  # type: ignore[union-attr]

        draft = structured(await mcp.call_tool("place_order", place_args()))
        assert draft["confirmation"] == "elicitation" and draft["confirm_url"]
        before = await census(db)
        done = structured(await mcp.call_tool("confirm_order", {"draft_id": draft["draft_id"]}))
        assert done["ok"] and done["order"]["total"] == "30.00 USD", done
        assert human.questions == [
            "Place this order for 30.00 USD (shipping 5.00 USD included)? 2 x Blue mug"
            " (12.50 USD each). Ship to Ann Lee, 1 Main St, Portland, 97201, US."
        ]
        assert (await census(db))["orders"] == before["orders"] + 1
        # Asked again: the same order, no second question.
        again = structured(await mcp.call_tool("confirm_order", {"draft_id": draft["draft_id"]}))
        assert again["already_confirmed"] and len(human.questions) == 1

        human.answer = "decline"
        other = structured(await mcp.call_tool("place_order", place_args(payment_method="cash")))
        before = await census(db)
        declined = structured(await mcp.call_tool("confirm_order", {"draft_id": other["draft_id"]}))
        assert declined["error"]["code"] == "customer_declined"
        assert await census(db) == before

        # Bad arguments come back as the toolkit's own structured errors.
        bad = structured(await mcp.call_tool("place_order", {**place_args(), "total": "0.01"}))
        assert bad["error"]["code"] == "validation" and "catalog" in bad["error"]["hint"]

    # A client that cannot ask the human: refused, pointed to the page.
    async with open_client(None) as mute:
        third = structured(await mute.call_tool("place_order", place_args(payment_method="card!")))
        before = await census(db)
        refused = structured(await mute.call_tool("confirm_order", {"draft_id": third["draft_id"]}))
        assert refused["error"]["code"] == "confirmation_required"
        assert refused["error"]["confirm_url"] == third["confirm_url"]
        assert await census(db) == before
        await press_page(db, third["confirm_url"])
        assert (await census(db))["orders"] == before["orders"] + 1
        placed = structured(await mute.call_tool("confirm_order", {"draft_id": third["draft_id"]}))
        assert placed["already_confirmed"]


class TestStdio:
    @pytest.mark.parametrize("mode", MODES)
    async def test_order_flow(self, db: Database, db_url: str, store: Agent, mode: str) -> None:
        await use_elicitation(db, store)
        command = [sys.executable, "-m", "agent_tools.cli", "mcp", "--agent", str(store.id)]
        command += ["--conversation", f"desk-{mode}", "--email", "ann@example.com", "--verified"]
        params = StdioServerParameters(
            command=command[0], args=command[1:], env={**os.environ, "DATABASE_URL": db_url}
        )

        @asynccontextmanager
        async def open_client(human: Human | None) -> AsyncIterator[Client]:
            async with Client(params, mode=mode, elicitation_callback=human) as mcp:
                yield mcp

        await order_flow(db, open_client, Toolkit(db))

    async def test_an_unknown_agent_stops_at_start(self, db_url: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent_tools.cli",
            "mcp",
            "--agent",
            "00000000-0000-4000-8000-000000000000",
            env={**os.environ, "DATABASE_URL": db_url},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 1 and out == b""
        assert b"no agent" in err


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    with server(["serve"], {"DATABASE_URL": db_url}, tmp_path) as srv:
        yield srv


async def mint(srv: ApiProcess, db: Database, store: Agent, **body: Any) -> str:
    """A session token from the owner API, as a host gets one."""
    async with db.connection() as conn:
        _, key = await api_keys.create_key(conn, OWNER, {"name": "host"})
    async with httpx.AsyncClient(base_url=srv.base) as owner:
        r = await owner.post(
            f"/api/agents/{store.id}/sessions",
            json={"conversation_id": "web-1", **body},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def http_client(url: str, token: str, mode: str, human: Human | None, **headers: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers})
    transport = streamable_http_client(url, http_client=http)
    return Client(transport, mode=mode, elicitation_callback=human)


class TestStreamableHttp:
    async def test_order_flow(self, db: Database, store: Agent, api: ApiProcess) -> None:
        await use_elicitation(db, store)
        token = await mint(api, db, store, customer_email="ann@example.com")

        @asynccontextmanager
        async def open_client(human: Human | None) -> AsyncIterator[Client]:
            async with http_client(f"{api.base}/mcp", token, "2026-07-28", human) as mcp:
                yield mcp

        await order_flow(db, open_client, Toolkit(db))

        # Stateless HTTP cannot carry a 2025-11-25 server-to-client request: such a client
        # is refused and pointed to the page, like one without elicitation.
        async with http_client(f"{api.base}/mcp", token, "legacy", Human()) as old:
            draft = structured(await old.call_tool("place_order", place_args(customer_notes="x")))
            refused = structured(
                await old.call_tool("confirm_order", {"draft_id": draft["draft_id"]})
            )
            assert refused["error"]["code"] == "confirmation_required"
            assert refused["error"]["confirm_url"] == draft["confirm_url"]

    async def test_the_host_may_carry_the_turn_in_a_header(
        self, db: Database, store: Agent, api: ApiProcess
    ) -> None:
        token = await mint(api, db, store)
        url = f"{api.base}/mcp"
        async with http_client(url, token, "2026-07-28", None, **{TURN_HEADER: "3"}) as mcp:
            draft = structured(await mcp.call_tool("place_order", place_args()))
            assert draft["confirmation"] == "turns"
            refused = structured(
                await mcp.call_tool("confirm_order", {"draft_id": draft["draft_id"]})
            )
            assert refused["error"]["code"] == "confirmation_required"
        async with http_client(url, token, "2026-07-28", None, **{TURN_HEADER: "4"}) as mcp:
            done = structured(await mcp.call_tool("confirm_order", {"draft_id": draft["draft_id"]}))
            assert done["ok"] and not done["already_confirmed"]

    async def test_bad_session_tokens_are_refused_before_any_tool_runs(
        self, db: Database, store: Agent, api: ApiProcess
    ) -> None:
        good = await mint(api, db, store)
        async with db.connection() as conn:
            key = sessions.session_key(await tracking.signing_key(conn))
        header, payload, signature = good.split(".")
        expired = sessions.encode(
            key,
            store.id,
            SessionIn(conversation_id="web-1"),
            now=datetime.now(UTC) - timedelta(hours=2),
        )
        other_store = sessions.encode(
            sessions.session_key(b"another deployment's secret"),
            store.id,
            SessionIn(conversation_id="web-1"),
        )
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "place_order", "arguments": place_args()},
        }
        before = await census(db)
        async with httpx.AsyncClient(base_url=api.base) as raw:
            for authorization in (
                None,
                "Basic dXNlcjpwYXNz",
                f"Bearer {header}.{payload}x.{signature}",  # tampered
                f"Bearer {expired}",
                f"Bearer {other_store}",
            ):
                headers = {"Accept": "application/json, text/event-stream"}
                if authorization is not None:
                    headers["Authorization"] = authorization
                r = await raw.post("/mcp", json=call, headers=headers)
                assert r.status_code == 401, r.text
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert r.json()["code"] == "invalid_session"
                assert good not in r.text
        assert await census(db) == before
        with pytest.raises(Exception):  # noqa: B017 - the SDK's client cannot even connect
            async with http_client(f"{api.base}/mcp", expired, "2026-07-28", None) as mcp:
                await mcp.list_tools()
        assert await census(db) == before

    async def test_parallel_calls_over_one_session_answer_as_toolkit_call(
        self, db: Database, store: Agent, api: ApiProcess
    ) -> None:
        toolkit = Toolkit(db)
        ctx = ToolContext(agent_id=store.id, conversation_id="web-1")
        placed = [(await place_and_confirm(toolkit, ctx))["order_number"] for _ in range(3)]
        calls: list[tuple[str, dict[str, Any]]] = []
        for i in range(100):
            calls.append(
                [
                    ("search_products", {"query": ["mug", "tee", None, "zz"][i % 4], "limit": 5}),
                    ("get_order_status", {"order_number": placed[i % 3], "email": None}),
                    ("list_my_orders", {"status": None, "limit": 1 + i % 5}),
                    ("search_products", {"query": None, "limit": 99}),  # invalid
                    ("get_order_status", {"order_number": "ORD-1999-000000", "email": None}),
                ][i % 5]
            )
        token = await mint(api, db, store)
        async with http_client(f"{api.base}/mcp", token, "2026-07-28", None) as mcp:
            results = await asyncio.gather(*(mcp.call_tool(n, a) for n, a in calls))
        ctx = ToolContext(agent_id=store.id, conversation_id="web-1")
        for (name, args), result in zip(calls, results, strict=True):
            assert structured(result) == await toolkit.call(ctx, name, args), (name, args)


async def test_elicitation_rounds_may_land_on_different_workers(
    db: Database, db_url: str, store: Agent, tmp_path: Path
) -> None:
    """2026-07-28 asks in two HTTP requests (question, then answer); with two workers the
    answer often reaches the other one, which must resume from the sealed state alone."""
    await use_elicitation(db, store)
    with server(["serve", "--workers", "2"], {"DATABASE_URL": db_url}, tmp_path) as api:
        token = await mint(api, db, store)
        human = Human()
        # A new connection per request: a kept-alive one would stay with one worker.
        url, close = f"{api.base}/mcp", {"Connection": "close"}
        async with http_client(url, token, "2026-07-28", human, **close) as mcp:
            before = await census(db)
            for i in range(8):
                draft = structured(
                    await mcp.call_tool("place_order", place_args(customer_notes=f"n{i}"))
                )
                done = structured(
                    await mcp.call_tool("confirm_order", {"draft_id": draft["draft_id"]})
                )
                assert done["ok"], done
        assert (await census(db))["orders"] == before["orders"] + 8
        assert len(human.questions) == 8


async def test_in_process_server_lists_every_toolkit_tool(db: Database, store: Agent) -> None:
    """A tool added to the toolkit's one list appears here with nothing else to change."""
    toolkit = Toolkit(db)
    ctx = ToolContext(agent_id=store.id, conversation_id="inproc")
    mcp_server = build_server(toolkit, fixed_identity(ctx))
    async with Client(mcp_server) as mcp:
        names = [t.name for t in (await mcp.list_tools()).tools]
    assert names == list(toolkit.tools)
