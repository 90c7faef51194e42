"""Bulk status changes: many orders moved to one status, each in its own transaction.

A partial success is normal: every order gets its own result (`ok`, or the problem that kept
it where it was), and nothing is half-applied within one order, because each move is the
ordinary `orders.update_status` transaction (status, version, stock, event).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from agent_tools.db import Database
from agent_tools.errors import OrderError, parse
from agent_tools.models import Provenance
from agent_tools.models.changes import BulkOutcome, BulkResult, BulkStatusChange, BulkTarget
from agent_tools.service import orders


async def update_statuses(
    db: Database,
    data: BulkStatusChange | dict[str, Any],
    *,
    owner_id: UUID,
    by: Provenance,
) -> BulkOutcome:
    """Move each of the owner's orders to `status`, one transaction per order, in the order
    given; another owner's order is `not_found`, like an unknown one."""
    change = parse(BulkStatusChange, data)
    results: list[BulkResult] = []
    # One connection, in autocommit: each update_status below is then a transaction of its
    # own (committed or rolled back alone), not a savepoint in one long transaction.
    async with db.reader() as conn:
        for entry in change.orders:
            target = entry if isinstance(entry, BulkTarget) else BulkTarget(order=entry)
            try:
                order = await orders.update_status(
                    conn,
                    target.order,
                    {
                        "status": change.status,
                        "carrier": target.carrier,
                        "tracking_number": target.tracking_number,
                        "expected_version": target.expected_version,
                        "note": change.note,
                        "note_for_customer": change.note_for_customer,
                    },
                    by=by,
                    owner_id=owner_id,
                )
            except OrderError as exc:
                problem = {"code": exc.code, "detail": exc.message, **exc.to_dict()}
                problem.pop("message")
                results.append(BulkResult(order=target.order, ok=False, problem=problem))
                continue
            results.append(
                BulkResult(
                    order=target.order,
                    ok=True,
                    order_number=order.order_number,
                    status=order.status,
                    version=order.version,
                )
            )
    ok = sum(r.ok for r in results)
    return BulkOutcome(
        status=change.status, succeeded=ok, failed=len(results) - ok, results=results
    )
