"""Stock held by orders: locking an agent's products for a change, taking and giving back units.

Every change that moves stock (placing, editing or cancelling an order, receiving a return)
locks the products it touches in id order, so no two of them deadlock, and moves the stock in
the same transaction as the change. A line with `stock_reserved` holds its units until the
order is cancelled, edited down or the units come back in a return.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import UnknownAgent
from agent_tools.models import LineItem

_CATALOG = (
    "select a.owner_id, a.currency, a.shipping_fee,"
    " p.id, p.sku, p.name, p.unit_price, p.stock, p.active"
    " from agent_orders.agents a left join lateral ("
    "   select id, sku, name, unit_price, stock, active from agent_orders.products"
    "   where agent_id = a.id and sku = any(%(skus)s) order by id {lock}"
    " ) p on true"
    " where a.id = %(agent)s and (%(owner)s::uuid is null or a.owner_id = %(owner)s)"
)
"""The agent, and its products with these skus locked in id order (so two changes never
deadlock): one round trip. No product matched: one row of nulls for the product."""


async def lock_catalog(
    conn: Conn,
    agent_id: UUID,
    skus: Iterable[str],
    *,
    owner_id: UUID | None = None,
    lock: bool = True,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The agent's row and its products with these skus, by sku, locked for this transaction
    (unless `lock` is false: a preview). `UnknownAgent` if the agent does not exist (or is not
    `owner_id`'s)."""
    query = _CATALOG.format(lock="for update" if lock else "")
    cur = await conn.execute(
        query, {"agent": agent_id, "owner": owner_id, "skus": sorted(set(skus))}
    )
    found = await cur.fetchall()
    if not found:
        raise UnknownAgent(agent_id)
    return found[0], {r["sku"]: r for r in found if r["id"] is not None}


def held(lines: Iterable[LineItem]) -> dict[str, int]:
    """Units of each sku these lines hold in stock."""
    out: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.stock_reserved and line.sku:
            out[line.sku] += line.quantity
    return dict(out)


async def move(
    conn: Conn, products: Mapping[str, Mapping[str, Any]], delta: Mapping[str, int]
) -> None:
    """Take (positive) or give back (negative) units of locked `products`; products whose
    stock is not counted (any more) are left alone. The caller checked what it takes."""
    pairs = sorted(
        (products[sku]["id"], -q)
        for sku, q in delta.items()
        if q and sku in products and products[sku]["stock"] is not None
    )
    if pairs:
        await conn.execute(
            "update agent_orders.products p set stock = p.stock + v.q, updated_at = now()"
            " from unnest(%(ids)s::uuid[], %(qs)s::int[]) as v(id, q) where p.id = v.id",
            {"ids": [p[0] for p in pairs], "qs": [p[1] for p in pairs]},
        )


async def give_back(conn: Conn, agent_id: UUID, lines: Iterable[LineItem]) -> None:
    """Return the units these lines hold to stock (a cancelled order, a received return)."""
    units = held(lines)
    if units:
        _, products = await lock_catalog(conn, agent_id, units)
        await move(conn, products, {sku: -q for sku, q in units.items()})
