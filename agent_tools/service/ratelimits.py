"""Fixed-window counters in PostgreSQL, for limits every server process must share.

One statement adds hits to several windows at once and reads another counter beside them, so
a server can count a batch of lookups in one round trip. A window starts at its key's first
hit and ends `seconds` later; the next hit after that starts a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent_tools.db import Conn

_HIT = (
    "with hit as ("
    " insert into agent_orders.rate_limits as r (key, hits, resets_at)"
    " select k, n, now() + make_interval(secs => s)"
    " from unnest(%(keys)s::text[], %(seconds)s::float8[], %(hits)s::int[]) as v(k, s, n)"
    " on conflict (key) do update set"
    " hits = case when r.resets_at <= now() then excluded.hits else r.hits + excluded.hits end,"
    " resets_at = case when r.resets_at <= now() then excluded.resets_at else r.resets_at end"
    " returning key, hits, resets_at"
    ") select key, hits, resets_at from hit"
    " union all select key, hits, resets_at from agent_orders.rate_limits"
    " where key = %(watch)s and resets_at > now()"
)


@dataclass(frozen=True)
class Window:
    key: str
    hits: int
    """Hits in the current window, this one included."""
    resets_at: datetime


async def hit(
    conn: Conn, windows: list[tuple[str, float, int]], *, watch: str | None = None
) -> dict[str, Window]:
    """Add hits to each (key, window seconds, hits); also read the live window of `watch`
    without counting (not one of `windows`). Returns the windows by key (`watch` absent while
    it has none).

    The counters are updated in key order: two workers adding the same keys at once would
    otherwise lock them in opposite orders, and PostgreSQL would abort one as a deadlock."""
    assert watch is None or all(k != watch for k, _, _ in windows)
    windows = sorted(windows)
    cur = await conn.execute(
        _HIT,
        {
            "keys": [k for k, _, _ in windows],
            "seconds": [s for _, s, _ in windows],
            "hits": [n for _, _, n in windows],
            "watch": watch,
        },
    )
    return {r["key"]: Window(r["key"], r["hits"], r["resets_at"]) for r in await cur.fetchall()}


async def purge(conn: Conn) -> int:
    """Forget windows that have ended."""
    cur = await conn.execute("delete from agent_orders.rate_limits where resets_at <= now()")
    return cur.rowcount
