"""`mcp`: a tool call over MCP streamable HTTP against the same call through `Toolkit.call`.

`get_order_status` through the SDK's own client (protocol 2026-07-28, one HTTP POST per call,
session token checked) to a real uvicorn server at `/mcp`, against `Toolkit.call` in this
process on the same database. Alternating blocks, one call at a time; the difference of the
medians is what MCP over HTTP adds to a tool call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx2

from agent_tools.db import Database
from agent_tools.service import orders, sessions, tracking
from bench.dataset import make_stores
from bench.harness import ROOT, Figure, Result, Target, fresh_database, timed
from bench.http import _free_port, _wait_ready

REQUIRES = ("agent_tools.integrations.mcp", "api.app")
BLOCKS = 5
PER_BLOCK = 200
TARGET_MS = 2.0


async def run(opts: Any) -> Result:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from agent_tools.tools import ToolContext, Toolkit

    result = Result("mcp", {"blocks": BLOCKS, "calls_per_block": PER_BLOCK, "view": "full"})
    async with fresh_database("mcp", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=2, max_size=4)
        port = _free_port()
        server = None
        try:
            store = (await make_stores(db, owners=1, agents_per_owner=1))[0]
            async with db.connection() as conn:
                order = await orders.create_order(
                    conn,
                    {
                        "agent_id": store.agent.id,
                        "conversation_id": "bench-mcp",
                        "customer": {"name": "Ann Lee", "email": "ann@example.com"},
                        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
                        "items": [{"sku": store.products[0][0], "quantity": 2}],
                    },
                )
                key = sessions.session_key(await tracking.signing_key(conn))
            token = sessions.encode(
                key, store.agent.id, sessions.SessionIn(conversation_id="bench-mcp")
            )
            toolkit = Toolkit(db)
            ctx = ToolContext(agent_id=store.agent.id, conversation_id="bench-mcp")
            args = {"order_number": order.order_number, "email": None}
            expected = await toolkit.call(ctx, "get_order_status", args)
            assert expected["ok"] and expected["details"] == "full", expected

            command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
            command += ["--host", "127.0.0.1", "--port", str(port)]
            command += ["--no-access-log", "--log-level", "warning"]
            server = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, "DATABASE_URL": url},
            )
            await _wait_ready(f"http://127.0.0.1:{port}", server)
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
            transport = streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)
            async with Client(transport, mode="2026-07-28") as mcp:

                async def over_mcp() -> None:
                    out = await mcp.call_tool("get_order_status", args)
                    assert out.structured_content == expected, out

                async def in_process() -> None:
                    out = await toolkit.call(ctx, "get_order_status", args)
                    assert out == expected

                async def health() -> None:
                    assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200

                samples: dict[str, list[float]] = {"mcp": [], "toolkit": [], "health": []}
                for _ in range(BLOCKS):
                    samples["toolkit"] += await timed(in_process, PER_BLOCK, warmup=20)
                    samples["mcp"] += await timed(over_mcp, PER_BLOCK, warmup=20)
                    samples["health"] += await timed(health, PER_BLOCK // 4, warmup=5)
            tk = result.add(
                Figure.from_latencies(
                    "Toolkit.call get_order_status", samples["toolkit"], note="in process"
                )
            )
            over = result.add(
                Figure.from_latencies(
                    "MCP tools/call get_order_status",
                    samples["mcp"],
                    note="streamable HTTP, stateless, JSON responses, one server worker",
                )
            )
            result.add(
                Figure.from_latencies(
                    "GET /health", samples["health"], note="the same server: HTTP alone"
                )
            )
            assert tk.p50_ms is not None and over.p50_ms is not None
            result.ratios["mcp / toolkit p50"] = over.p50_ms / tk.p50_ms
            result.targets.append(
                Target("MCP over HTTP overhead p50", over.p50_ms - tk.p50_ms, TARGET_MS, "ms")
            )
            result.notes.append(
                "client and server share the machine's cores; compare within this run only"
            )
            result.parameters["result_bytes"] = len(json.dumps(expected))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=15)
            await db.close()
    return result
