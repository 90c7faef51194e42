"""The catalog: an agent's products, their prices and stock."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from psycopg.types.json import Jsonb

from agent_tools.db import Conn
from agent_tools.errors import OutOfStock, UnknownAgent, UnknownSku, ValidationFailed, parse
from agent_tools.models import MAX_QUANTITY, Agent, Product, ProductIn
from agent_tools.service.agents import get_agent

_COLUMNS = (
    "id, agent_id, sku, name, description, unit_price, stock, active, keywords, created_at,"
    " updated_at"
)
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
            " (agent_id, sku, name, description, unit_price, stock, active, keywords)"
            " select %(agent)s, u.sku, u.name, u.description, u.price, u.stock, u.active,"
            "   coalesce((select array_agg(k) from jsonb_array_elements_text(u.keywords) k),"
            "            '{}')"
            " from unnest("
            "   %(sku)s::text[], %(name)s::text[], %(description)s::text[],"
            "   %(price)s::numeric[], %(stock)s::int[], %(active)s::bool[], %(keywords)s::jsonb[])"
            "   as u(sku, name, description, price, stock, active, keywords)"
            " on conflict (agent_id, sku) do update set"
            "   name = excluded.name, description = excluded.description,"
            "   unit_price = excluded.unit_price, stock = excluded.stock,"
            "   active = excluded.active, keywords = excluded.keywords, updated_at = now()"
            " returning " + _COLUMNS,
            {
                "agent": agent_id,
                "sku": skus,
                "name": [p.name for p in items],
                "description": [p.description for p in items],
                "price": [p.unit_price for p in items],
                "stock": [p.stock for p in items],
                "active": [p.active for p in items],
                # unnest cannot take a text[][] of ragged rows: each row's list travels as JSON.
                "keywords": [Jsonb(p.keywords) for p in items],
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


CANDIDATES = 200
"""Matching rows read before ranking: a word in thousands of products ("mug") must not make
one search read them all. Any of them matches every word; the shortest names come first."""


@dataclass(frozen=True)
class Search:
    products: list[Product]
    closest: bool = False
    """Nothing matched every word: these match some of them (typos corrected)."""
    searched_for: str | None = None
    """The words searched for after correcting typos against the catalog, if they differ."""


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\W_]+", text.lower()) if w][:8]


def _conditions(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """One condition per word. Words of 3+ characters use the trigram index (LIKE); shorter
    ones give the index no trigram to look up, so they only filter (strpos)."""
    conds, params = [], {}
    for i, w in enumerate(words):
        if len(w) >= 3:
            conds.append(f"search_text like %(w{i})s")
            params[f"w{i}"] = like_pattern(w)
        else:
            conds.append(f"strpos(search_text, %(w{i})s) > 0")
            params[f"w{i}"] = w
    return conds, params


def _every_word_sql(words: list[str]) -> tuple[str, dict[str, str]]:
    conds, params = _conditions(words)
    return (
        "select * from (select " + _COLUMNS + " from agent_orders.products"
        " where agent_id = %(agent)s and active and " + " and ".join(conds) + " limit "
        f"{CANDIDATES}) c order by length(name), name limit %(limit)s"
    ), params


def _some_words_sql(words: list[str]) -> tuple[str, dict[str, str]]:
    conds, params = _conditions(words)
    hits = " + ".join(f"({c})::int" for c in conds)
    return (
        "select * from (select " + _COLUMNS + ", " + hits + " as hits"
        " from agent_orders.products where agent_id = %(agent)s and active"
        " and (" + " or ".join(conds) + f") limit {CANDIDATES}) c"
        " order by hits desc, length(name), name limit %(limit)s"
    ), params


async def _run(conn: Conn, sql: str, params: dict[str, object]) -> list[Product]:
    cur = await conn.execute(sql, params)
    return [Product.model_validate(r) for r in await cur.fetchall()]


async def _corrected(conn: Conn, agent_id: UUID, words: list[str]) -> list[str]:
    """Each word replaced by the most similar word of the catalog (itself if present; kept if
    nothing is similar), looked up in the short list of the catalog's words."""
    cur = await conn.execute(
        "select q.w, (select pw.word from agent_orders.product_words pw"
        "   where pw.agent_id = %(agent)s and pw.word %% q.w"
        "   order by pw.word <-> q.w, pw.word limit 1) as near"
        " from unnest(%(words)s::text[]) with ordinality as q(w, n) order by q.n",
        {"agent": agent_id, "words": words},
    )
    return [r["near"] or r["w"] for r in await cur.fetchall()]


async def search_products(
    conn: Conn, agent_id: UUID, query: str | None, *, limit: int = 10
) -> Search:
    """Active products for `query`, tried in order until something is found: the exact sku;
    every word in the sku, name or keywords; the same after correcting typos against the
    catalog's own words; then, as "closest", products with some of the words. No query lists
    the catalog by name.
    """
    limit = max(1, min(limit, 50))
    text = " ".join((query or "").replace("\x00", "").split())[:200]
    words = _words(text)
    base: dict[str, object] = {"agent": agent_id, "limit": limit}
    if not words:
        return Search(
            await _run(
                conn,
                "select " + _COLUMNS + " from agent_orders.products"
                " where agent_id = %(agent)s and active order by name, sku limit %(limit)s",
                base,
            )
        )
    exact = await _run(
        conn,
        "select " + _COLUMNS + " from agent_orders.products where agent_id = %(agent)s"
        " and active and sku in (%(sku)s, upper(%(sku)s))",
        {**base, "sku": text[:64]},
    )
    if exact:
        return Search(exact)
    sql, params = _every_word_sql(words)
    found = await _run(conn, sql, {**base, **params})
    if found:
        return Search(found)
    fixed = await _corrected(conn, agent_id, words)
    searched_for = " ".join(fixed) if fixed != words else None
    if searched_for:
        sql, params = _every_word_sql(fixed)
        found = await _run(conn, sql, {**base, **params})
        if found:
            return Search(found, searched_for=searched_for)
    indexed = [w for w in fixed if len(w) >= 3]
    if not indexed:
        return Search([])
    sql, params = _some_words_sql(indexed)
    near = await _run(conn, sql, {**base, **params})
    return Search(near, closest=bool(near), searched_for=searched_for)


async def all_skus(conn: Conn, agent_id: UUID) -> list[str]:
    """Every active sku of the agent, for "did you mean" hints."""
    cur = await conn.execute(
        "select sku from agent_orders.products where agent_id = %(agent)s and active order by sku",
        {"agent": agent_id},
    )
    return [r["sku"] for r in await cur.fetchall()]


_OFFER = (
    "select a.owner_id as agent_owner_id, a.name as agent_name, a.currency as agent_currency,"
    " a.shipping_fee as agent_shipping_fee, a.confirmation as agent_confirmation,"
    " a.language as agent_language, a.created_at as agent_created_at,"
    " a.updated_at as agent_updated_at, " + _JOINED + " from"
    # Strict: a null name takes no lock.
    " (select pg_advisory_xact_lock(hashtextextended(%(lock)s, 0))) l"
    " cross join agent_orders.agents a"
    " left join agent_orders.products p on p.agent_id = a.id and p.sku = any(%(skus)s)"
    " where a.id = %(agent)s"
)


async def offer(
    conn: Conn, agent_id: UUID, skus: Sequence[str], *, lock: str | None = None
) -> tuple[Agent, dict[str, Product]]:
    """The agent and those of its products with these skus (active or not), in one query.

    `lock`: the name of an advisory transaction lock the same statement takes first, so a
    caller that must hold one (drafting holds the conversation's) saves a round trip."""
    cur = await conn.execute(_OFFER, {"agent": agent_id, "skus": list(skus), "lock": lock})
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
        language=first["agent_language"],
        created_at=first["agent_created_at"],
        updated_at=first["agent_updated_at"],
    )
    products = {
        r["sku"]: Product.model_validate({k: r[k] for k in _FIELDS}) for r in rows if r["id"]
    }
    return agent, products
