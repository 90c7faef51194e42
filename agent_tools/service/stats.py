"""The owner's summary: counts, revenue per currency, status mix, orders per day."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import ValidationFailed
from agent_tools.models import DayCount, OrderStatus, Stats


async def summary(
    conn: Conn,
    *,
    owner_id: UUID | None,
    agent_id: UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Stats:
    if created_from and created_to and created_from >= created_to:
        raise ValidationFailed("created_from must be before created_to", field="created_from")
    # One pass over the owner's orders, grouped finely, folded here.
    cur = await conn.execute(
        "select status, currency, (created_at at time zone 'UTC')::date as day,"
        " count(*) as n, sum(total) as revenue"
        " from agent_orders.orders"
        " where (%(owner)s::uuid is null or owner_id = %(owner)s)"
        " and (%(agent)s::uuid is null or agent_id = %(agent)s)"
        " and (%(from)s::timestamptz is null or created_at >= %(from)s)"
        " and (%(to)s::timestamptz is null or created_at < %(to)s)"
        " group by 1, 2, 3",
        {"owner": owner_id, "agent": agent_id, "from": created_from, "to": created_to},
    )
    total = 0
    revenue: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    by_status = {s.value: 0 for s in OrderStatus}
    per_day: dict[object, int] = defaultdict(int)
    for row in await cur.fetchall():
        total += row["n"]
        by_status[row["status"]] += row["n"]
        per_day[row["day"]] += row["n"]
        if row["status"] != OrderStatus.cancelled:
            revenue[row["currency"]] += row["revenue"]
    return Stats(
        total_orders=total,
        revenue=dict(sorted(revenue.items())),
        by_status=by_status,
        per_day=[DayCount(day=d, orders=n) for d, n in sorted(per_day.items())],
    )
