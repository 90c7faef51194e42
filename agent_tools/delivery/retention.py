"""Retention: the outbox (the event feed, and the record of each webhook delivery and mail)
is kept `event_retention_days`, then trimmed by the deliverers, in small batches so no
statement holds many locks or runs long. An event still being delivered is kept however old;
the order's history (`order_events`) is never trimmed.
"""

from __future__ import annotations

from agent_tools.config import Settings
from agent_tools.db import Database

BATCH = 1000

_TRIM = (
    "with old as ("
    " select x.event_id from agent_orders.outbox x"
    " where x.created_at < now() - make_interval(days => %(days)s)"
    "   and not exists (select 1 from agent_orders.webhook_deliveries d"
    "                   where d.event_id = x.event_id and d.state = 'pending')"
    "   and not exists (select 1 from agent_orders.mail_messages m"
    "                   where m.event_id = x.event_id and m.state = 'pending')"
    " order by x.created_at limit %(batch)s for update of x skip locked"
    ") delete from agent_orders.outbox x using old where x.event_id = old.event_id"
)
"""Deleting an outbox row deletes its deliveries and mails (foreign keys on delete cascade).
Rows another deliverer is trimming are skipped, not waited for."""

_TRIM_PINGS = (
    "delete from agent_orders.webhook_deliveries where id in ("
    " select id from agent_orders.webhook_deliveries"
    " where event_id is null and state <> 'pending'"
    "   and created_at < now() - make_interval(days => %(days)s)"
    " limit %(batch)s for update skip locked)"
)
"""Test pings belong to no event; they age out the same way."""


async def trim(db: Database, settings: Settings) -> int:
    """Delete what is past retention; return the number of events trimmed."""
    days = settings.event_retention_days
    if days == 0:
        return 0
    trimmed = 0
    while True:
        async with db.connection() as conn:
            cur = await conn.execute(_TRIM, {"days": days, "batch": BATCH})
            n = cur.rowcount
            await conn.execute(_TRIM_PINGS, {"days": days, "batch": BATCH})
        trimmed += n
        if n < BATCH:
            return trimmed
