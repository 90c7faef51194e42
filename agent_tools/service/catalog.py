"""The catalog: an agent's products, their prices and stock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.errors import OutOfStock, UnknownAgent, UnknownSku, ValidationFailed, parse
from agent_tools.models import MAX_QUANTITY, Agent, Product, ProductIn
from agent_tools.service.agents import get_agent

_COLUMNS = "id, agent_id, sku, name, description, unit_price, stock, active, created_at, updated_at"
_FIELDS = _COLUMNS.split(", ")
_JOINED = ", ".join(f"p.{c}" for c in _FIELDS)
MAX_BATCH = 1000


async def upsert_products(
    conn: Conn,
    agent_id: UUID,
    products: Sequence[ProductIn | dict[str, object]],
    *,
    owner_id: UUID | None = None,
) -> list[Product]:
    """Insert or update products by sku, all or nothing."""
    items = [parse(ProductIn, p) for p in products]
    if not items:
        raise ValidationFailed("no products given", field="products")
    if len(items) > MAX_BATCH:
        raise ValidationFailed(f"at most {MAX_BATCH} products per call", field="products")
    skus = [p.sku for p in items]
    if len(set(skus)) != len(skus):
        raise ValidationFailed("the same sku appears twice", field="products")
    await get_agent(conn, agent_id, owner_id=owner_id)
    async with conn.transaction():
        cur = await conn.execute(
            "insert into agent_orders.products"
            " (agent_id, sku, name, description, unit_price, stock, active)"
            " select %(agent)s, * from unnest("
            "   %(sku)s::text[], %(name)s::text[], %(description)s::text[],"
            "   %(price)s::numeric[], %(stock)s::int[], %(active)s::bool[])"
            " on conflict (agent_id, sku) do update set"
            "   name = excluded.name, description = excluded.description,"
            "   unit_price = excluded.unit_price, stock = excluded.stock,"
            "   active = excluded.active, updated_at = now()"
            " returning " + _COLUMNS,
            {
                "agent": agent_id,
                "sku": skus,
                "name": [p.name for p in items],
                "description": [p.description for p in items],
                "price": [p.unit_price for p in items],
                "stock": [p.stock for p in items],
                "active": [p.active for p in items],
            },
        )
        rows = await cur.fetchall()
    return sorted((Product.model_validate(r) for r in rows), key=lambda p: p.sku)


async def list_products(
    conn: Conn, agent_id: UUID, *, owner_id: UUID | None = None, include_inactive: bool = True
) -> list[Product]:
    await get_agent(conn, agent_id, owner_id=owner_id)
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.products where agent_id = %(agent)s"
        " and (%(all)s or active) order by sku",
        {"agent": agent_id, "all": include_inactive},
    )
    return [Product.model_validate(r) for r in await cur.fetchall()]


def check_available(
    wanted: Mapping[str, int], offer: Mapping[str, tuple[bool, int | None]]
) -> None:
    """The one rule for selling catalog lines: every sku known and active, enough stock.

    `wanted` maps sku -> quantity; `offer` maps sku -> (active, stock or None if untracked).
    """
    for sku, qty in wanted.items():
        if qty > MAX_QUANTITY:
            raise ValidationFailed(f"at most {MAX_QUANTITY} of {sku!r} per order", field="items")
    unknown = [s for s in wanted if s not in offer or not offer[s][0]]
    if unknown:
        raise UnknownSku(
            f"unknown or unavailable sku {', '.join(map(repr, unknown))}",
            hint="use a sku from the catalog",
            skus=unknown,
        )
    short = [
        {"sku": s, "requested": q, "available": stock}
        for s, q in wanted.items()
        if (stock := offer[s][1]) is not None and stock < q
    ]
    if short:
        names = ", ".join(
            f"{x['sku']} ({'none' if x['available'] == 0 else 'only ' + str(x['available'])} left)"
            for x in short
        )
        hint = (
            "remove or replace the sold-out items"
            if any(x["available"] == 0 for x in short)
            else "lower the quantity to what is available"
        )
        raise OutOfStock(f"not enough stock: {names}", hint=hint, items=short)


def like_pattern(text: str) -> str:
    """`text` anywhere, with LIKE's wildcards in it taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search_products(
    conn: Conn, agent_id: UUID, query: str | None, *, limit: int = 10
) -> list[Product]:
    """Active products whose sku or name matches `query` (every word), exact sku first."""
    limit = max(1, min(limit, 50))
    query = (query or "").replace("\x00", "")[:200]
    words = query.split()[:8]
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.products"
        " where agent_id = %(agent)s and active"
        " and (select bool_and(name ilike w or sku ilike w) from unnest(%(words)s::text[]) w)"
        "     is not false"
        " order by (lower(sku) = lower(%(q)s)) desc, name limit %(limit)s",
        {"agent": agent_id, "words": [like_pattern(w) for w in words], "q": query, "limit": limit},
    )
    return [Product.model_validate(r) for r in await cur.fetchall()]


async def all_skus(conn: Conn, agent_id: UUID) -> list[str]:
    """Every active sku of the agent, for "did you mean" hints."""
    cur = await conn.execute(
        "select sku from agent_orders.products where agent_id = %(agent)s and active order by sku",
        {"agent": agent_id},
    )
    return [r["sku"] for r in await cur.fetchall()]


async def offer(
    conn: Conn, agent_id: UUID, skus: Sequence[str]
) -> tuple[Agent, dict[str, Product]]:
    """The agent and those of its products with these skus (active or not), in one query."""
    cur = await conn.execute(
        "select a.owner_id as agent_owner_id, a.name as agent_name, a.currency as agent_currency,"
        " a.shipping_fee as agent_shipping_fee, a.confirmation as agent_confirmation,"
        " a.created_at as agent_created_at,"
        " a.updated_at as agent_updated_at, " + _JOINED + " from agent_orders.agents a"
        " left join agent_orders.products p on p.agent_id = a.id and p.sku = any(%(skus)s)"
        " where a.id = %(agent)s",
        {"agent": agent_id, "skus": list(skus)},
    )
    rows = await cur.fetchall()
    if not rows:
        raise UnknownAgent(agent_id)
    first = rows[0]
    agent = Agent(
        id=agent_id,
        owner_id=first["agent_owner_id"],
        name=first["agent_name"],
        currency=first["agent_currency"],
        shipping_fee=first["agent_shipping_fee"],
        confirmation=first["agent_confirmation"],
        created_at=first["agent_created_at"],
        updated_at=first["agent_updated_at"],
    )
    products = {
        r["sku"]: Product.model_validate({k: r[k] for k in _FIELDS}) for r in rows if r["id"]
    }
    return agent, products
