"""The question a host puts to the human itself before `confirm_order` (MCP elicitation, an
Agents SDK approval): what exactly they are saying yes to, read from the draft, not the chat."""

from __future__ import annotations

from dataclasses import dataclass

from agent_tools.db import Conn
from agent_tools.errors import OrderError
from agent_tools.models import ConfirmationMode
from agent_tools.service import drafts, edits, orders
from agent_tools.tools.context import ToolContext
from agent_tools.tools.handlers.common import money, ship_to


@dataclass(frozen=True)
class PendingDraft:
    """An open draft of the conversation, as the human is asked about it."""

    draft_id: str
    confirmation: ConfirmationMode
    """The store's setting: whether asking the human is how this store takes the yes."""
    question: str
    """E.g. "Place this order for 30.00 USD? 2 x Blue mug (12.50 USD each). Ship to ..."."""


async def pending(conn: Conn, ctx: ToolContext, draft_id: str) -> PendingDraft | None:
    """The conversation's open draft, or None (unknown, expired, already carried out): then
    there is nothing to ask, and `confirm_order` itself says what happened."""
    draft = await drafts.find(
        conn, draft_id, agent_id=ctx.agent_id, conversation_id=ctx.conversation_id
    )
    if draft is None or draft.confirmed_at is not None:
        return None
    if draft.kind == "order":
        quote = drafts.Quote.model_validate(draft.payload["quote"])
        order = draft.payload["order"]
        address = order["shipping_address"]
        lines = "; ".join(
            f"{ln.quantity} x {ln.name} ({money(ln.unit_price, quote.currency)} each)"
            for ln in quote.lines
        )
        where = ", ".join(
            str(address[k])
            for k in ("line1", "line2", "city", "postal_code", "country")
            if address.get(k)
        )
        question = (
            f"Place this order for {money(quote.total, quote.currency)}"
            f" (shipping {money(quote.shipping_fee, quote.currency)} included)? {lines}."
            f" Ship to {order['customer']['name']}, {where}."
        )
    else:
        assert draft.order_id is not None
        order_ = await orders.get_order(conn, draft.order_id, agent_id=ctx.agent_id)
        number, cur = order_.order_number, order_.currency
        if draft.kind == "modify":
            try:
                plan = await edits.preview(conn, order_.id, draft.payload["edit"])
            except OrderError:
                return None  # the order moved on: confirm_order will say why
            lines = "; ".join(f"{ln.quantity} x {ln.name}" for ln in plan.after.line_items)
            question = (
                f"Change order {number}"
                f" ({money(plan.before.total, cur)} -> {money(plan.after.total, cur)})?"
                f" Items: {lines}. Ship to {ship_to(plan.after.shipping_address)}."
            )
        elif draft.kind == "return":
            items = ", ".join(f"{i['quantity']} x {i['sku']}" for i in draft.payload["items"])
            question = f"Ask to return {items} from order {number}?"
        else:
            question = f"Cancel order {number} ({money(order_.total, cur)})?"
    return PendingDraft(draft.id, draft.confirmation, question)
