"""Problem reports: a customer's "it never arrived", "it came damaged", "wrong item" as a case.

Reporting and resolving each write one customer-visible event on the order, in the same
transaction as the case, so the order's history (and whatever reads events) tells the story.
A problem is reported once: while a case of that kind is open, reporting it again finds it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import Conflict, NotFound, OrderError, parse
from agent_tools.models import (
    Order,
    OrderStatus,
    ProblemKind,
    ProblemReport,
    ProblemStatus,
    Provenance,
    Resolution,
)
from agent_tools.service import orders

_SELECT = (
    "select p.id, p.order_id, o.order_number, p.kind, p.details, p.status, p.resolution,"
    " p.reported_by, p.conversation_id, p.created_at, p.resolved_at"
    " from {} p join agent_orders.orders o on o.id = p.order_id"
)
"""A case with its order's number; `{}` is the table, or a CTE that changed rows."""
_CASES = _SELECT.format("agent_orders.problem_reports")

LABELS = {
    ProblemKind.not_received: "parcel not received",
    ProblemKind.damaged: "arrived damaged",
    ProblemKind.wrong_item: "wrong item received",
    ProblemKind.other: "other problem",
}

AFTER_SHIPPING = frozenset({OrderStatus.shipped, OrderStatus.delivered})
"""A parcel can be missing, damaged or wrong only once it has left the store."""


class NotShipped(OrderError):
    """A delivery problem reported on an order that has not shipped."""

    code = "not_shipped"
    status = 409


async def report(
    conn: Conn, order: Order, kind: ProblemKind, details: str, *, by: Provenance
) -> tuple[ProblemReport, bool]:
    """Open a case on `order`, or find the open one of this kind. Returns it and whether it
    is new."""
    if kind != ProblemKind.other and order.status not in AFTER_SHIPPING:
        raise NotShipped(
            f"{order.order_number} is {order.status.value}: it has not shipped yet",
            hint="tell the customer the order's status (get_order_status); "
            "use kind other for anything else",
            current=order.status.value,
        )
    async with conn.transaction():
        cur = await conn.execute(
            "with new as (insert into agent_orders.problem_reports (order_id, owner_id, kind,"
            " details, reported_by, conversation_id, tool_call_id)"
            " values (%(order)s, %(owner)s, %(kind)s, %(details)s, %(actor)s, %(conv)s, %(call)s)"
            " on conflict (order_id, kind) where status = 'open' do nothing returning *) "
            + _SELECT.format("new"),
            {
                "order": order.id,
                "owner": order.owner_id,
                "kind": kind.value,
                "details": details,
                "actor": by.actor.value,
                "conv": by.conversation_id,
                "call": by.tool_call_id,
            },
        )
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(
                _CASES + " where p.order_id = %(order)s and p.kind = %(kind)s"
                " and p.status = 'open'",
                {"order": order.id, "kind": kind.value},
            )
            existing = await cur.fetchone()
            assert existing is not None
            return ProblemReport.model_validate(existing), False
        case = ProblemReport.model_validate(row)
        await orders.add_event(
            conn,
            order.id,
            "problem_reported",
            by,
            # The label, not the customer's words: those stay in the case for the owner.
            note=f"Problem reported: {LABELS[kind]}",
            note_visible=True,
            data=_event_data(case),
        )
    return case, True


async def resolve(
    conn: Conn,
    problem_id: UUID,
    data: Resolution | dict[str, Any],
    *,
    owner_id: UUID,
    by: Provenance,
) -> ProblemReport:
    """Close an owner's open case with a note the customer will see in the order's history."""
    resolution = parse(Resolution, data)
    async with conn.transaction():
        cur = await conn.execute(
            _CASES + " where p.id = %(id)s and p.owner_id = %(owner)s for update of p",
            {"id": problem_id, "owner": owner_id},
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no problem report {problem_id}", hint="check the case id")
        if row["status"] == ProblemStatus.resolved:
            raise Conflict(
                "this case is already resolved",
                hint="add a note to the order to tell the customer more",
                resolution=row["resolution"],
            )
        cur = await conn.execute(
            "with changed as (update agent_orders.problem_reports set status = 'resolved',"
            " resolution = %(note)s, resolved_at = now() where id = %(id)s returning *) "
            + _SELECT.format("changed"),
            {"id": problem_id, "note": resolution.note},
        )
        updated = await cur.fetchone()
        assert updated is not None
        case = ProblemReport.model_validate(updated)
        await orders.add_event(
            conn,
            case.order_id,
            "problem_resolved",
            by,
            note=case.resolution,
            note_visible=True,  # written for the customer
            data=_event_data(case),
        )
    return case


def _event_data(case: ProblemReport) -> dict[str, Any]:
    return {"problem_id": str(case.id), "kind": case.kind.value}


async def list_for_order(conn: Conn, order_id: UUID) -> list[ProblemReport]:
    """An order's cases, oldest first."""
    cur = await conn.execute(
        _CASES + " where p.order_id = %(order)s order by p.created_at, p.id",
        {"order": order_id},
    )
    return [ProblemReport.model_validate(r) for r in await cur.fetchall()]


async def list_cases(
    conn: Conn,
    owner_id: UUID,
    *,
    status: ProblemStatus | None = ProblemStatus.open,
    limit: int = 50,
) -> list[ProblemReport]:
    """The owner's cases, oldest first (the queue to work through)."""
    cur = await conn.execute(
        _CASES + " where p.owner_id = %(owner)s"
        " and (%(status)s::text is null or p.status = %(status)s)"
        " order by p.created_at, p.id limit %(limit)s",
        {"owner": owner_id, "status": status.value if status else None, "limit": limit},
    )
    return [ProblemReport.model_validate(r) for r in await cur.fetchall()]
