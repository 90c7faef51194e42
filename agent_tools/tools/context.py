"""Who is calling: the identity a host binds to a conversation, never taken from arguments."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from agent_tools.config import Settings
from agent_tools.db import Conn, Database
from agent_tools.models import Actor, Order, Provenance


@dataclass
class ToolContext:
    """One conversation of one agent with one customer, as the host knows it."""

    agent_id: UUID
    """The store's agent; the tools never see another agent's products or orders."""
    conversation_id: str
    """The host's id for this chat; drafts and "orders placed here" are scoped to it."""
    customer_email: str | None = None
    customer_phone: str | None = None
    customer_verified: bool = False
    """Whether the host checked the email/phone (signed-in user, verified channel)."""
    turn: int = 0
    """Index of the customer's latest message; advance it on every customer message."""
    approved_draft_id: str | None = None
    """A draft the human approved in the host's own UI (MCP elicitation, an Agents SDK
    approval): set by the host for the one `confirm_order` call that follows the approval."""

    def __post_init__(self) -> None:
        if not isinstance(self.agent_id, UUID):
            self.agent_id = UUID(str(self.agent_id))
        if not self.conversation_id or len(self.conversation_id) > 200:
            raise ValueError("conversation_id must be 1 to 200 characters")
        if self.customer_email:
            self.customer_email = self.customer_email.strip().lower()

    def owns(self, order: Order) -> bool:
        """Whether `order` is the bound customer's: placed in this conversation, or matching
        the verified email or phone of an order whose contact was verified too (an email typed
        into some other chat proves nothing)."""
        if order.agent_id != self.agent_id:
            return False
        if order.conversation_id is not None and order.conversation_id == self.conversation_id:
            return True
        if not (self.customer_verified and order.contact_verified):
            return False
        if self.customer_email and order.customer_email == self.customer_email:
            return True
        digits = self.phone_digits()
        return bool(digits and order.customer_phone and digits == _digits(order.customer_phone))

    def phone_digits(self) -> str | None:
        """The bound phone's digits, if there are enough of them to name one customer."""
        digits = _digits(self.customer_phone or "")
        return digits if 5 <= len(digits) <= 32 else None


def _digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


@dataclass(frozen=True)
class Invocation:
    """One tool call being run: its transaction, context and provenance."""

    conn: Conn
    ctx: ToolContext
    tool_call_id: str | None
    settings: Settings
    after_commit: list[Callable[[Database, dict[str, Any]], Awaitable[None]]] = field(
        default_factory=list
    )
    """Steps to run once the call's transaction committed, each given the database and the
    result to complete (a payment link is made at Stripe only for an order that exists)."""

    @property
    def by(self) -> Provenance:
        return Provenance(
            actor=Actor.agent,
            conversation_id=self.ctx.conversation_id,
            tool_call_id=self.tool_call_id,
        )
