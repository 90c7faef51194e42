"""The owner's summary: counts, revenue per currency, status mix, orders per day."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import ValidationFailed
from agent_tools.models import DayCount, OrderStatus, Stats

# Whole UTC days come from the roll-up that migration 0004's triggers keep up to date; part of
# a day at either end of a range is counted from the orders themselves. Both come grouped two
# ways: by (status, currency) with `day` null, and by day with `status` null.
_ROLLUP = (
    "select status, currency, day, sum(orders)::bigint as n, sum(revenue) as revenue"
    " from agent_orders.order_daily_stats"
    " where (%(owner)s::uuid is null or owner_id = %(owner)s)"
    " and (%(agent)s::uuid is null or agent_id = %(agent)s)"
    " and (%(from)s::date is null or day >= %(from)s)"
    " and (%(to)s::date is null or day < %(to)s)"
    " group by grouping sets ((status, currency), (day)) having sum(orders) <> 0"
)
_LIVE = (
    "select status, currency, (created_at at time zone 'UTC')::date as day,"
    " count(*) as n, sum(total) as revenue"
    " from agent_orders.orders"
    " where (%(owner)s::uuid is null or owner_id = %(owner)s)"
    " and (%(agent)s::uuid is null or agent_id = %(agent)s)"
    " and created_at >= %(from)s and created_at < %(to)s"
    " group by grouping sets ((status, currency), ((created_at at time zone 'UTC')::date))"
)


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _split(
    start: datetime | None, end: datetime | None
) -> tuple[date | None, date | None, list[tuple[datetime, datetime]]]:
    """[start, end) as whole UTC days [first, last) plus the partial days at its edges."""
    if start and end and _midnight(start) == _midnight(end):
        return start.date(), start.date(), [(start, end)]
    first = last = None
    partial = []
    if start is not None:
        first_midnight = _midnight(start)
        if first_midnight < start:
            first_midnight += timedelta(days=1)
            partial.append((start, first_midnight))
        first = first_midnight.date()
    if end is not None:
        last = end.date()
        if _midnight(end) < end:
            partial.append((_midnight(end), end))
    return first, last, partial


async def summary(
    conn: Conn,
    *,
    owner_id: UUID | None,
    agent_id: UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Stats:
    start, end = _utc(created_from), _utc(created_to)
    if start and end and start >= end:
        raise ValidationFailed("created_from must be before created_to", field="created_from")
    first, last, partial = _split(start, end)
    scope = {"owner": owner_id, "agent": agent_id}
    rows = await (await conn.execute(_ROLLUP, {**scope, "from": first, "to": last})).fetchall()
    for lo, hi in partial:
        cur = await conn.execute(_LIVE, {**scope, "from": lo, "to": hi})
        rows += await cur.fetchall()
    total = 0
    revenue: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
    by_status = {s.value: 0 for s in OrderStatus}
    per_day: dict[date, int] = defaultdict(int)
    for row in rows:
        if row["day"] is not None:
            per_day[row["day"]] += row["n"]
            continue
        total += row["n"]
        by_status[row["status"]] += row["n"]
        if row["status"] != OrderStatus.cancelled:
            revenue[row["currency"]] += row["revenue"]
    return Stats(
        total_orders=total,
        revenue=dict(sorted(revenue.items())),
        by_status=by_status,
        per_day=[DayCount(day=d, orders=n) for d, n in sorted(per_day.items())],
    )
