"""Changing a placed order on the customer's behalf; every change is a draft confirmed later."""

from __future__ import annotations

from agent_tools.errors import InvalidTransition
from agent_tools.models import CANCELLABLE, Order, OrderStatus
from agent_tools.service import drafts, tracking
from agent_tools.tools.args import CancelOrderArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import (
    Result,
    Tool,
    awaiting,
    brief,
    own_order,
    ship_to,
)


def order_brief(order: Order) -> Result:
    """The order a cancellation would cancel; its status under its own key, apart from the
    draft's `status` (awaiting_confirmation)."""
    out = brief(order)
    out["order_status"] = out.pop("status")
    return out


async def cancel_order(inv: Invocation, a: CancelOrderArgs) -> Result:
    ctx = inv.ctx
    rule = "only their own orders can be cancelled here"
    order = await own_order(inv, a.order_number, rule=rule)
    number = order.order_number
    if order.status == OrderStatus.cancelled:
        raise InvalidTransition(
            f"{number} is already cancelled",
            hint="tell the customer it is already cancelled; nothing more to do",
            current=order.status.value,
        )
    if order.status not in CANCELLABLE:
        raise InvalidTransition(
            f"{number} is {order.status.value} and can no longer be cancelled",
            hint="tell the customer it has already shipped; if it arrives damaged or wrong, "
            "or never arrives, use report_problem",
            current=order.status.value,
        )
    key = await tracking.signing_key(inv.conn, inv.settings)
    draft = await drafts.draft_cancel(
        inv.conn,
        order,
        reason=a.reason,
        conversation_id=ctx.conversation_id,
        turn=ctx.turn,
        ttl_seconds=inv.settings.draft_ttl_seconds,
        key=key,
    )
    summary = {
        k: v
        for k, v in {
            **order_brief(order),
            "ship_to": ship_to(order.shipping_address),
            "action": "cancel",
            "reason": a.reason,
        }.items()
        if v is not None
    }
    return awaiting(inv, key, draft, summary)


TOOLS: tuple[Tool, ...] = (
    Tool(
        "cancel_order",
        "Draft cancelling the customer's own order before it ships. Returns draft_id: "
        "confirm_order it after the customer says yes.",
        CancelOrderArgs,
        cancel_order,
        writes=True,
        destructive=True,
    ),
)
