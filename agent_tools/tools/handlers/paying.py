"""How an order is paid, as the agent tells the customer: the Checkout link of a `stripe`
store (made at Stripe once the order is committed), or the store's own arrangement."""

from __future__ import annotations

from typing import Any

from agent_tools.db import Database
from agent_tools.models import Order, OrderStatus, PaymentMode, PaymentStatus
from agent_tools.payments import runner
from agent_tools.service import agents, payments
from agent_tools.tools.context import Invocation
from agent_tools.tools.handlers.common import Result, money

OFFLINE = (
    "this store takes no card payments here: the customer pays on delivery or by invoice,"
    " as the store arranges"
)
PAY_LINK = (
    " Give the customer the payment link (payment.pay_url): paying there is the only way to"
    " pay by card; never take card details in the chat."
)
LINK_LATER = (
    " The payment link is being prepared: tell the customer it follows, and call"
    " get_order_status for it in a moment."
)


async def payment(
    inv: Invocation, order: Order, *, link: bool, mode: PaymentMode | None = None
) -> Result:
    """The order's payment for a tool result. With `link`, an unpaid order of a `stripe`
    store gets its Checkout link (a fresh one if it expired) once the call has committed.
    `mode`: the store's payment mode when the caller has it already."""
    if mode is None:
        mode = (await agents.get_agent(inv.conn, order.agent_id)).payment_mode
    out: Result = {"status": order.payment_status.value}
    if order.amount_paid > 0:
        out["paid"] = money(order.amount_paid, order.currency)
    if order.amount_refunded > 0:
        out["refunded"] = money(order.amount_refunded, order.currency)
    unpaid = order.payment_status in (PaymentStatus.pending, PaymentStatus.failed)
    if mode == PaymentMode.none:
        if unpaid and order.status != OrderStatus.cancelled:
            out["how"] = OFFLINE
        return out
    if not (link and unpaid and order.status != OrderStatus.cancelled):
        return out
    try:
        await payments.request_link(inv.conn, order.id, by=inv.by)
    except payments.NothingOwed:
        return out

    async def fill(db: Database, result: dict[str, Any]) -> None:
        url = await runner.payment_url(db, order.id, inv.settings)
        if url:
            result["payment"]["pay_url"] = url
        else:
            result["payment"]["pay_url_note"] = "being prepared; ask again in a moment"
        if "next" in result:
            result["next"] += PAY_LINK if url else LINK_LATER

    inv.after_commit.append(fill)
    return out
