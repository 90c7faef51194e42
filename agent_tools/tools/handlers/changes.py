"""Changing a placed order on the customer's behalf (cancel, edit before it ships, return once
delivered); every change is a draft confirmed later with `confirm_order`."""

from __future__ import annotations

from decimal import Decimal

from agent_tools.errors import InvalidTransition, UnknownSku, ValidationFailed, parse
from agent_tools.models import CANCELLABLE, LineItem, Order, OrderStatus
from agent_tools.models.changes import EditPlan, OrderEdit, ReturnItemIn
from agent_tools.service import addresses, drafts, edits, returns, tracking
from agent_tools.tools.args import CancelOrderArgs, ModifyOrderArgs, RequestReturnArgs
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import (
    Result,
    Tool,
    awaiting,
    brief,
    money,
    own_order,
    ship_to,
)
from agent_tools.tools.handlers.ordering import check_skus

AFTER_SHIPPING = (
    "tell the customer it has already shipped; once delivered they can return items"
    " (request_return, within the store's return window); if it arrives damaged or wrong,"
    " or never arrives, use report_problem"
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
            hint=AFTER_SHIPPING,
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


def _lines(lines: list[LineItem], currency: str) -> list[str]:
    return [f"{ln.quantity} x {ln.name} ({money(ln.unit_price, currency)} each)" for ln in lines]


def _settlement(order: Order, plan: EditPlan) -> str:
    """What the change does to the customer's money, in words the agent can pass on."""
    if plan.refund > 0:
        return f"{money(plan.refund, order.currency)} will be refunded to the customer"
    if plan.owed > 0:
        return (
            f"{money(plan.owed, order.currency)} more to pay; the store sends a payment link"
            " or asks for it"
        )
    if not plan.difference:
        return "the total stays the same"
    direction = "up" if plan.difference > 0 else "down"
    return f"the total goes {direction} by {money(abs(plan.difference), order.currency)}"


async def modify_order(inv: Invocation, a: ModifyOrderArgs) -> Result:
    rule = "only their own orders can be changed here"
    order = await own_order(inv, a.order_number, rule=rule)
    if a.items is None and a.shipping_address is None:
        raise ValidationFailed(
            "nothing to change",
            field="items",
            hint="send the complete new items list, the new shipping_address, or both",
        )
    if order.status in (OrderStatus.shipped, OrderStatus.delivered):
        raise edits.NotEditable(
            f"{order.order_number} is {order.status.value} and can no longer be changed",
            hint=AFTER_SHIPPING,
            current=order.status.value,
        )
    address = None
    if a.shipping_address is not None:
        address = addresses.normalise(a.shipping_address.model_dump())
    edit = parse(
        OrderEdit,
        {
            "items": [i.model_dump() for i in a.items] if a.items is not None else None,
            "shipping_address": address,
            "expected_version": order.version,
        },
    )
    try:
        plan = await edits.preview(inv.conn, order.id, edit, agent_id=inv.ctx.agent_id)
    except UnknownSku:
        await check_skus(inv, a.items or [])
        raise
    key = await tracking.signing_key(inv.conn, inv.settings)
    draft = await drafts.draft_change(
        inv.conn,
        order,
        "modify",
        {
            "edit": edit.model_dump(mode="json", exclude_none=True),
            "total": str(plan.after.total),
            "difference": str(plan.difference),
            # What the confirmation page shows.
            "shown": {
                "items": [f"{ln.quantity} x {ln.name}" for ln in plan.after.line_items],
                "ship_to": ship_to(plan.after.shipping_address),
                "total_before": money(plan.before.total, order.currency),
                "total_after": money(plan.after.total, order.currency),
            },
        },
        conversation_id=inv.ctx.conversation_id,
        turn=inv.ctx.turn,
        ttl_seconds=inv.settings.draft_ttl_seconds,
        key=key,
    )
    cur = order.currency
    summary: Result = {"order_number": order.order_number, "action": "modify"}
    if "items" in plan.changed:
        summary["items_before"] = _lines(plan.before.line_items, cur)
        summary["items_after"] = _lines(plan.after.line_items, cur)
    if "shipping_address" in plan.changed:
        summary["ship_to_before"] = ship_to(plan.before.shipping_address)
        summary["ship_to_after"] = ship_to(plan.after.shipping_address)
    summary |= {
        "total_before": money(plan.before.total, cur),
        "total_after": money(plan.after.total, cur),
        "difference": _settlement(order, plan),
    }
    return awaiting(inv, key, draft, summary)


async def request_return(inv: Invocation, a: RequestReturnArgs) -> Result:
    rule = "only their own orders can be returned here"
    order = await own_order(inv, a.order_number, rule=rule)
    wanted = None
    if a.items is not None:
        wanted = [parse(ReturnItemIn, i.model_dump()) for i in a.items]
    lines = await returns.preview(inv.conn, order, wanted)
    key = await tracking.signing_key(inv.conn, inv.settings)
    amount = sum((ln.line_total for ln in lines), Decimal("0.00"))
    items: dict[str, int] = {}
    for ln in lines:
        assert ln.sku is not None
        items[ln.sku] = items.get(ln.sku, 0) + ln.quantity
    draft = await drafts.draft_change(
        inv.conn,
        order,
        "return",
        {
            "items": [{"sku": s, "quantity": q} for s, q in items.items()],
            "reason": a.reason,
            "shown": {
                "items": [f"{ln.quantity} x {ln.name}" for ln in lines],
                "amount": money(amount, order.currency),
            },
        },
        conversation_id=inv.ctx.conversation_id,
        turn=inv.ctx.turn,
        ttl_seconds=inv.settings.draft_ttl_seconds,
        key=key,
    )
    summary: Result = {
        "order_number": order.order_number,
        "action": "return",
        "items": [f"{ln.quantity} x {ln.name}" for ln in lines],
        "refund_up_to": money(amount, order.currency),
        "what_happens_next": RETURN_STEPS,
    }
    if a.reason:
        summary["reason"] = a.reason
    return awaiting(inv, key, draft, summary)


RETURN_STEPS = (
    "The store reviews the request and tells the customer how to send the items back;"
    " the refund follows once they arrive."
)


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
    Tool(
        "modify_order",
        "Draft new items or address for the customer's own unshipped order; confirm_order "
        "after a yes.",
        ModifyOrderArgs,
        modify_order,
        writes=True,
    ),
    Tool(
        "request_return",
        "Draft returning items of the customer's own delivered order; confirm_order after a yes.",
        RequestReturnArgs,
        request_return,
        writes=True,
    ),
)
