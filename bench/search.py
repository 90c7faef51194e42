"""`search`: the agent's catalog search with 100,000 products per store.

Two stores of 100,000 products each (names built from colours, materials and kinds, some
with keywords in Spanish) and a small store of 20, loaded with COPY. Times `search_products`
through the service, one call at a time: words that match, a typo, an exact sku, a Spanish
keyword, and a query that matches nothing (the closest-products fallback, two queries). The
targets are the scale scenario's read target; the ratio compares the big store with the
small one in the same run.
"""

from __future__ import annotations

import random
import statistics
from typing import Any
from uuid import UUID

import psycopg

from agent_tools.db import Database
from bench.dataset import make_stores
from bench.harness import Figure, Result, Target, fresh_database, percentile, timed
from bench.scale import READ_P99_MS

REQUIRES: tuple[str, ...] = ()
COLOURS = ["black", "white", "red", "green", "blue", "grey", "yellow", "navy", "pink", "brown"]
MATERIALS = ["cotton", "wool", "linen", "ceramic", "steel", "oak", "leather", "glass", "bamboo"]
KINDS = ["mug", "cap", "scarf", "shirt", "bowl", "lamp", "chair", "bag", "sock", "plate", "vase"]
SPANISH = {"mug": "taza", "cap": "gorra", "scarf": "bufanda", "bag": "bolso", "sock": "calcetín"}
SPANISH_COLOURS = {"black": "negra", "white": "blanca", "red": "roja", "green": "verde"}
BLOCKS = 5


def _product(i: int) -> tuple[str, str, list[str]]:
    colour, material = COLOURS[i % 10], MATERIALS[(i // 10) % 9]
    kind = KINDS[(i // 90) % 11]
    keywords = []
    if kind in SPANISH and colour in SPANISH_COLOURS and i % 3 == 0:
        keywords = [f"{SPANISH[kind]} {SPANISH_COLOURS[colour]}"]
    return f"{kind.upper()}-{i:06d}", f"{colour.title()} {material} {kind} no. {i}", keywords


async def _load(db: Database, agent_id: UUID, n: int) -> None:
    async with (
        db.connection() as conn,
        conn.cursor().copy(
            "copy agent_orders.products (agent_id, sku, name, unit_price, stock, keywords)"
            " from stdin"
        ) as copy,
    ):
        for i in range(n):
            sku, name, keywords = _product(i)
            await copy.write_row((agent_id, sku, name, "19.90", 100, keywords))


async def run(opts: Any) -> Result:
    from agent_tools.service import catalog

    n = opts.rows or 100_000
    iterations = 300
    result = Result(
        "search",
        {"products_per_big_store": n, "big_stores": 2, "small_store_products": 20},
    )
    async with fresh_database("search", keep=opts.keep) as url:
        db = await Database.open(url, migrate=False, min_size=1, max_size=4)
        try:
            stores = await make_stores(db, owners=1, agents_per_owner=3, products=20)
            big, other, small = (s.agent.id for s in stores)
            for agent_id in (big, other):
                await _load(db, agent_id, n)
            # What autovacuum does after a bulk load: statistics, and the GIN index's pending
            # list merged (rows COPYed in sit there until then, and every search scans it).
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute("vacuum analyze agent_orders.products")
                await admin.execute("vacuum analyze agent_orders.product_words")
            rnd = random.Random(5)

            def words() -> str:
                return f"{rnd.choice(COLOURS)} {rnd.choice(KINDS)}"

            queries: dict[str, Any] = {
                "words (colour + kind)": words,
                "typos (gren mugg)": lambda: rnd.choice(["gren mugg", "blak capp", "wite bowel"]),
                "exact sku": lambda: _product(rnd.randrange(n))[0],
                "spanish keyword": lambda: rnd.choice(["gorra negra", "taza verde", "bolso rojo"]),
                "no match -> closest": lambda: rnd.choice(["green kettle", "oak sofa"]),
                "nothing at all": lambda: "zqxv",
            }

            async with db.connection() as conn:
                hits = {
                    q: await catalog.search_products(conn, big, q, limit=5)
                    for q in ("green mug", "gorra negra", "gren mugg", "green kettle", "zqxv")
                }
                sql, params = catalog._every_word_sql(["green", "mug"])
                cur = await conn.execute("explain " + sql, {"agent": big, "limit": 5, **params})
                plan = "\n".join(r["QUERY PLAN"] for r in await cur.fetchall())
            assert len(hits["green mug"].products) == 5
            assert hits["gorra negra"].products and not hits["gorra negra"].closest
            assert hits["gren mugg"].searched_for == "green mug"
            assert hits["green kettle"].closest and not hits["zqxv"].products
            result.notes.append(
                "plan for 'green mug' in a big store uses the trigram index: "
                + ("yes" if "products_search_trgm_idx" in plan else "NO")
            )
            for label, store in (("100k store", big), ("20-product store", small)):
                blocks: dict[str, list[list[float]]] = {name: [] for name in queries}
                for _ in range(BLOCKS):
                    for name, make in queries.items():

                        async def once(make: Any = make, store: UUID = store) -> None:
                            async with db.connection() as conn:
                                await catalog.search_products(conn, store, make(), limit=5)

                        blocks[name].append(await timed(once, iterations // BLOCKS, warmup=3))
                for name in queries:
                    flat = [x for b in blocks[name] for x in b]
                    result.add(Figure.from_latencies(f"{label}: {name}", flat))
                    if store == big:
                        p99 = statistics.median(percentile(b, 0.99) * 1000 for b in blocks[name])
                        result.targets.append(Target(f"{name} p99", p99, READ_P99_MS, "ms"))
            for name in queries:
                ratio = (result.figure(f"100k store: {name}").p50_ms or 0.0) / (
                    result.figure(f"20-product store: {name}").p50_ms or 1.0
                )
                result.ratios[f"p50 {name}, 100k / 20 products"] = ratio
            result.notes.append(
                "each call is one search_products (exact sku, every word, typos corrected,"
                f" closest: as far as it needs); targets use the median of the p99s of {BLOCKS}"
                " blocks of"
                f" {iterations // BLOCKS} calls (pool connection + query, as a tool call does)"
            )
        finally:
            await db.close()
    return result
