"""What every tool module shares: the `Tool` declaration, money as text, order-number parsing.

No SQL here or in any handler module; a handler checks identity from the context, calls the
service and returns compact JSON. Money leaves as strings with the currency ("12.50 USD").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pycountry

from agent_tools.errors import Forbidden, NotFound, ValidationFailed
from agent_tools.models import ConfirmationMode, Order
from agent_tools.service import drafts, orders
from agent_tools.tools.args import Args
from agent_tools.tools.context import Invocation
from agent_tools.tools.strict import strict_schema

Result = dict[str, Any]
MAX_LIST = 5
"""The longest list a result reads aloud (timeline entries, an order's items); the rest is
counted, not listed."""


@dataclass(frozen=True)
class Tool:
    """A tool's name, description for the model, argument model and handler, together."""

    name: str
    description: str
    args: type[Args]
    run: Callable[[Invocation, Any], Awaitable[Result]]
    writes: bool = False
    """Whether it can create or change orders (parallel calls are turned off for these)."""
    destructive: bool = False
    """Whether it can carry out an irreversible change (place or cancel an order)."""
    idempotent: bool = False
    """Whether calling it again with the same arguments changes nothing more."""
    schema: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", strict_schema(self.args.model_json_schema()))


class IdentityRequired(Forbidden):
    code = "identity_required"


def money(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01'))} {currency}"


def language_name(tag: str) -> str:
    """ "es" -> "Spanish (es)": how the model is told the catalog's language."""
    found = pycountry.languages.get(alpha_2=tag.split("-")[0]) or pycountry.languages.get(
        alpha_3=tag.split("-")[0]
    )
    return f"{found.name} ({tag})" if found else tag


def order_number(text: str) -> str:
    """The model's order number, normalised, or a validation error it can act on."""
    number = text.strip().upper()
    if not orders.ORDER_NUMBER.match(number):
        raise ValidationFailed(
            f"order_number {text[:40]!r} is not an order number",
            field="order_number",
            hint="order numbers look like ORD-2026-123456; ask the customer for theirs",
        )
    return number


async def own_order(inv: Invocation, text: str, *, rule: str) -> Order:
    """The bound customer's order `text`, for a tool that acts on it. Another customer's order
    and an unknown number get the same answer, so a number's existence is not revealed."""
    number = order_number(text)
    missing = NotFound(
        f"no order {number} of this customer",
        hint=f"check the order number with the customer; {rule}",
    )
    try:
        order = await orders.get_order(inv.conn, number, agent_id=inv.ctx.agent_id)
    except NotFound:
        raise missing from None
    if not inv.ctx.owns(order):
        raise missing
    return order


ADDRESS_PARTS = (
    "recipient_name",
    "recipient_phone",
    "line1",
    "line2",
    "city",
    "region",
    "postal_code",
    "country",
)


def ship_to(address: Mapping[str, Any]) -> str:
    """The shipping address on one line, led by the recipient when the parcel is for someone
    other than the customer (what the label will say)."""
    return ", ".join(str(address[k]) for k in ADDRESS_PARTS if address.get(k))


def brief(order: Order) -> Result:
    """An order in one short object: what a list or a confirmation shows."""
    out: Result = {
        "order_number": order.order_number,
        "status": order.status.value,
        "placed": order.created_at.date().isoformat(),
        "items": [f"{ln.quantity} x {ln.name}" for ln in order.line_items[:MAX_LIST]],
        "total": money(order.total, order.currency),
    }
    if len(order.line_items) > MAX_LIST:
        out["more_items"] = len(order.line_items) - MAX_LIST
    return out


_NEXT: dict[ConfirmationMode, str] = {
    ConfirmationMode.turns: "Read this summary to the customer and ask for an explicit yes. "
    "Call confirm_order with this draft_id only after they reply yes. They may also confirm "
    "themselves at confirm_url.",
    ConfirmationMode.elicitation: "Read this summary to the customer, then call confirm_order "
    "with this draft_id: their app asks them to confirm. If it cannot, give them confirm_url.",
    ConfirmationMode.page: "Read this summary to the customer and give them confirm_url: this "
    "store takes their yes only there. Do not say it is done until confirm_order reports it.",
}
"""What the model does next under each confirmation setting, so it says the right thing."""


def confirm_url(inv: Invocation, key: bytes, draft_id: str) -> str:
    """The draft's trusted confirmation page, which any channel can hand to the customer."""
    base = inv.settings.public_url.rstrip("/")
    return f"{base}/confirm/{drafts.confirm_token(key, draft_id)}"


def awaiting(inv: Invocation, key: bytes, draft: drafts.Draft, summary: Result) -> Result:
    """A draft's result: its summary, how this store takes the yes, and the page's link."""
    return {
        "draft_id": draft.id,
        "status": "awaiting_confirmation",
        "summary": summary,
        "expires_at": draft.expires_at.isoformat(timespec="seconds"),
        "confirmation": draft.confirmation.value,
        "confirm_url": confirm_url(inv, key, draft.id),
        "next": _NEXT[draft.confirmation],
    }
