"""Problem reports: a customer's "it never arrived" (or damaged, or wrong) as an owner's case."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, StringConstraints

from agent_tools.models.common import _In
from agent_tools.models.orders import Actor


class ProblemKind(StrEnum):
    not_received = "not_received"
    damaged = "damaged"
    wrong_item = "wrong_item"
    other = "other"


class ProblemStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class ProblemReport(BaseModel):
    """One case: what the customer reported about one order, and how the owner resolved it."""

    id: UUID
    order_id: UUID
    order_number: str
    kind: ProblemKind
    details: str
    """The customer's words, as the agent passed them on."""
    status: ProblemStatus
    resolution: str | None
    """The owner's note on resolving; shown to the customer in the order's history."""
    reported_by: Actor
    conversation_id: str | None
    created_at: datetime
    resolved_at: datetime | None


class Resolution(_In):
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
    """What was done (a replacement sent, a refund, the parcel found), in words for the
    customer: it appears in the order's history on the tracking page."""
