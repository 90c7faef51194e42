"""`dispatch`: what `Toolkit.call` adds to the service calls it wraps, in microseconds.

`get_order_status` through the toolkit (JSON decoding, schema and model validation, the
result dict) against the same service calls made directly in one transaction: the order and
its views (`tracking.lookup`, one query), the signing key, the full view and tracking link,
the order's problem reports and returns, and its store (for the payment status). Alternating
blocks, one call at a time.
"""

from __future__ import annotations

import json
from typing import Any

from agent_tools.db import Database
from agent_tools.service import agents, orders, problems, returns, tracking
from bench.dataset import make_stores
from bench.harness import Figure, Result, Target, fresh_database, timed

REQUIRES = ("agent_tools.tools",)
BLOCKS = 6
PER_BLOCK = 250
TARGET_US = 300.0


async def run(opts: Any) -> Result:
    from agent_tools.tools import ToolContext, Toolkit

    result = Result("dispatch", {"blocks": BLOCKS, "calls_per_block": PER_BLOCK, "view": "full"})
    async with fresh_database("dispatch", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=2, max_size=4)
        try:
            store = (await make_stores(db, owners=1, agents_per_owner=1))[0]
            async with db.connection() as conn:
                order = await orders.create_order(
                    conn,
                    {
                        "agent_id": store.agent.id,
                        "conversation_id": "bench-dispatch",
                        "customer": {"name": "Ann Lee", "email": "ann@example.com"},
                        "shipping_address": {"line1": "1 Main St", "city": "Lyon", "country": "FR"},
                        "items": [{"sku": store.products[0][0], "quantity": 2}],
                    },
                )
                await orders.update_status(
                    conn,
                    order.id,
                    {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z9"},
                )
            toolkit = Toolkit(db)
            ctx = ToolContext(agent_id=store.agent.id, conversation_id="bench-dispatch")
            args = json.dumps({"order_number": order.order_number, "email": None})

            async def through_toolkit() -> None:
                out = await toolkit.call(ctx, "get_order_status", args)
                assert out["ok"] and out["details"] == "full", out

            async def direct() -> None:
                async with db.connection() as conn:
                    found = await tracking.lookup(conn, order.order_number, agent_id=ctx.agent_id)
                    key = await tracking.signing_key(conn)
                    found.view(full=True)
                    await problems.list_for_order(conn, found.order.id)
                    await returns.for_order(conn, found.order.id)
                    await agents.get_agent(conn, found.order.agent_id)
                    tracking.tracking_url(key, found.order)

            samples: dict[str, list[float]] = {"toolkit": [], "service": []}
            for _ in range(BLOCKS):
                samples["service"] += await timed(direct, PER_BLOCK, warmup=20)
                samples["toolkit"] += await timed(through_toolkit, PER_BLOCK, warmup=20)
            service = result.add(
                Figure.from_latencies("service calls", samples["service"], note="baseline")
            )
            tk = result.add(
                Figure.from_latencies(
                    "Toolkit.call get_order_status", samples["toolkit"], note="one call at a time"
                )
            )
            assert service.p50_ms is not None and tk.p50_ms is not None
            overhead_us = (tk.p50_ms - service.p50_ms) * 1000
            result.ratios["toolkit / service p50"] = tk.p50_ms / service.p50_ms
            result.targets.append(Target("dispatch overhead p50", overhead_us, TARGET_US, "µs"))
        finally:
            await db.close()
    return result
