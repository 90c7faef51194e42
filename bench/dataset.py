"""Bench data: stores made through the service, and a year of orders loaded with COPY."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4, uuid5

import psycopg

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import agents, catalog

_NS = UUID("6d1c1f1e-5c2a-4a55-9f6e-0a9e2b7c1d00")
FIRST = ["Ann", "Bob", "Chloé", "Dev", "Eva", "Finn", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
LAST = ["Lee", "Stone", "Martin", "Patel", "Novak", "Berg", "Silva", "Kim", "Rossi", "Meyer"]
CITIES = [("Portland", "US"), ("Austin", "US"), ("Lyon", "FR"), ("Leeds", "GB"), ("Brno", "CZ")]
STATUSES = ("pending", "confirmed", "processing", "packaged", "shipped", "delivered", "cancelled")


@dataclass(frozen=True)
class Store:
    agent: Agent
    products: list[tuple[str, str, Decimal]]
    """(sku, name, unit price) of its catalog."""


def owner_ids(n: int) -> list[UUID]:
    return [uuid5(_NS, f"owner-{i}") for i in range(n)]


async def make_stores(
    db: Database,
    *,
    owners: int = 5,
    agents_per_owner: int = 10,
    products: int = 20,
    stock: int | None = 1_000_000,
) -> list[Store]:
    """`owners` x `agents_per_owner` agents, each with `products` products, via the service."""
    stores = []
    async with db.connection() as conn:
        for o, owner in enumerate(owner_ids(owners)):
            for a in range(agents_per_owner):
                i = o * agents_per_owner + a
                currency = "EUR" if i % 5 == 4 else "GBP" if i % 7 == 6 else "USD"
                agent = await agents.create_agent(
                    conn,
                    owner,
                    {"name": f"Store {i}", "currency": currency, "shipping_fee": Decimal("4.90")},
                )
                items = [
                    (
                        f"SKU-{p:03d}",
                        f"Product {p} of store {i}",
                        Decimal(random.Random(i * 1000 + p).randrange(100, 9000)) / 100,
                    )
                    for p in range(products)
                ]
                await catalog.upsert_products(
                    conn,
                    agent.id,
                    [
                        {"sku": s, "name": nm, "unit_price": pr, "stock": stock}
                        for s, nm, pr in items
                    ],
                )
                stores.append(Store(agent, items))
    return stores


def _status(age_days: float, rnd: random.Random) -> str:
    """A plausible status for an order this old: recent ones in flight, old ones done."""
    x = rnd.random()
    if x < 0.07:
        return "cancelled"
    if age_days < 2:
        return "pending" if x < 0.35 else "confirmed" if x < 0.7 else "processing"
    if age_days < 5:
        return "processing" if x < 0.3 else "packaged" if x < 0.5 else "shipped"
    if age_days < 12:
        return "shipped" if x < 0.4 else "delivered"
    return "delivered"


def _ts(t: datetime) -> str:
    return t.isoformat(sep=" ")


@dataclass(frozen=True)
class Sample:
    """A loaded order, remembered to look it up later."""

    id: UUID
    order_number: str
    owner_id: UUID
    agent_id: UUID
    email: str
    created_at: datetime


ORDER_COLUMNS = (
    "id, order_number, agent_id, owner_id, conversation_id, customer_name, customer_email,"
    " customer_phone, shipping_address, line_items, subtotal, shipping_fee, total, currency,"
    " status, tracking_number, carrier, estimated_delivery, payment_status, payment_method,"
    " created_at, updated_at, shipped_at, delivered_at, cancelled_at"
)
EVENT_COLUMNS = "order_id, kind, to_status, actor, conversation_id, created_at"


def _numbers(created: list[datetime], rnd: random.Random) -> list[str]:
    """Unique random order numbers per year; 7 digits once 6 would be over a third full."""
    by_year: dict[int, list[int]] = {}
    for i, t in enumerate(created):
        by_year.setdefault(t.year, []).append(i)
    out = [""] * len(created)
    for year, idx in by_year.items():
        digits = 6 if len(idx) <= 10**6 // 3 else 7
        for i, n in zip(idx, rnd.sample(range(10**digits), len(idx)), strict=True):
            out[i] = f"ORD-{year}-{n:0{digits}d}"
    return out


def load_orders(
    url: str,
    stores: list[Store],
    n: int,
    *,
    seed: int = 7,
    samples: int = 2000,
    chunk: int = 20_000,
) -> list[Sample]:
    """COPY `n` orders spread over a year (and one `created` event each) into the database.

    Customers repeat (about three orders each), line items are 1-3 catalog lines with money
    as strings, statuses follow age. Rows go in in time order, as a live store writes them.
    """
    rnd = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=5)
    created = sorted(end - timedelta(seconds=rnd.random() * 365 * 86400) for _ in range(n))
    numbers = _numbers(created, rnd)
    customers = max(1, n // 3)
    keep = set(rnd.sample(range(n), min(samples, n)))
    picked: list[Sample] = []
    with psycopg.connect(url) as conn:
        for start in range(0, n, chunk):
            order_rows: list[str] = []
            event_rows: list[str] = []
            for i in range(start, min(n, start + chunk)):
                store = stores[rnd.randrange(len(stores))]
                agent = store.agent
                c = rnd.randrange(customers)
                email = f"c{c}@example.com"
                name = f"{FIRST[c % len(FIRST)]} {LAST[(c // len(FIRST)) % len(LAST)]}"
                city, country = CITIES[c % len(CITIES)]
                address = json.dumps(
                    {"line1": f"{c % 400 + 1} Main St", "city": city, "country": country}
                )
                lines, subtotal = [], Decimal("0.00")
                for sku, pname, price in rnd.sample(store.products, rnd.choice((1, 1, 2, 3))):
                    qty = rnd.choice((1, 1, 1, 2, 3))
                    total = price * qty
                    subtotal += total
                    lines.append(
                        {
                            "sku": sku,
                            "name": pname,
                            "quantity": qty,
                            "unit_price": str(price),
                            "line_total": str(total),
                            "stock_reserved": True,
                        }
                    )
                t = created[i]
                age = (end - t).total_seconds() / 86400
                status = _status(age, rnd)
                shipped = status in ("shipped", "delivered")
                oid = uuid4()
                conv = f"conv-{oid.hex[:12]}"
                fee = agent.shipping_fee
                order_rows.append(
                    "\t".join(
                        (
                            str(oid),
                            numbers[i],
                            str(agent.id),
                            str(agent.owner_id),
                            conv,
                            name,
                            email,
                            "\\N",
                            address,
                            json.dumps(lines),
                            str(subtotal),
                            str(fee),
                            str(subtotal + fee),
                            agent.currency,
                            status,
                            f"1Z{rnd.randrange(10**12):012d}" if shipped else "\\N",
                            "UPS" if shipped else "\\N",
                            (t + timedelta(days=5)).date().isoformat() if shipped else "\\N",
                            "refunded"
                            if status == "cancelled"
                            else "pending"
                            if status == "pending"
                            else "paid",
                            "card",
                            _ts(t),
                            _ts(t + timedelta(hours=min(age * 24, 72) * 0.5)),
                            _ts(t + timedelta(days=min(age, 3))) if shipped else "\\N",
                            _ts(t + timedelta(days=min(age, 6)))
                            if status == "delivered"
                            else "\\N",
                            _ts(t + timedelta(hours=1)) if status == "cancelled" else "\\N",
                        )
                    )
                )
                event_rows.append(f"{oid}\tcreated\tpending\tagent\t{conv}\t{_ts(t)}")
                if i in keep:
                    picked.append(Sample(oid, numbers[i], agent.owner_id, agent.id, email, t))
            with conn.cursor() as cur:
                with cur.copy(f"copy agent_orders.orders ({ORDER_COLUMNS}) from stdin") as copy:
                    copy.write("\n".join(order_rows) + "\n")
                with cur.copy(
                    f"copy agent_orders.order_events ({EVENT_COLUMNS}) from stdin"
                ) as copy:
                    copy.write("\n".join(event_rows) + "\n")
            conn.commit()
        conn.autocommit = True
        conn.execute("vacuum analyze agent_orders.orders")
        conn.execute("vacuum analyze agent_orders.order_events")
    return picked
