"""Shared helpers for the tool tests: a context, valid arguments, a placed order."""

from __future__ import annotations

from typing import Any

from agent_tools.models import Agent
from agent_tools.tools import ToolContext, Toolkit


def context(agent: Agent, conversation: str = "conv-1", **kw: Any) -> ToolContext:
    return ToolContext(agent_id=agent.id, conversation_id=conversation, **kw)


def place_args(items: list[dict[str, Any]] | None = None, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "items": items if items is not None else [{"sku": "MUG-BLUE", "quantity": 2}],
        "customer": {"name": "Ann Lee", "email": "ann@example.com", "phone": None},
        "shipping_address": {
            "line1": "1 Main St",
            "line2": None,
            "city": "Portland",
            "region": "OR",
            "postal_code": "97201",
            "country": "US",
            "recipient_name": None,
            "recipient_phone": None,
        },
        "payment_method": "card",
        "customer_notes": None,
    }
    args.update(over)
    return args


async def place_and_confirm(
    toolkit: Toolkit, ctx: ToolContext, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Draft in this turn, confirm in the next: the happy path. Returns the order result."""
    draft = await toolkit.call(ctx, "place_order", args or place_args())
    assert draft["ok"], draft
    ctx.turn += 1
    done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
    assert done["ok"], done
    return dict(done["order"])
