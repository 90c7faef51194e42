"""The demo store: one owner, one agent "Demo Store", ~20 products, a few orders. Idempotent."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from uuid import UUID

from agent_tools.db import Conn
from agent_tools.models import Actor, Agent, AgentIn, OrderStatus, Provenance
from agent_tools.service import agents, catalog, orders

DEMO_OWNER = UUID("00000000-0000-4000-8000-000000000001")
DEMO_AGENT_NAME = "Demo Store"

PRODUCTS: list[tuple[str, str, str, int | None]] = [
    ("MUG-BLUE", "Ceramic mug, blue", "12.50", 40),
    ("MUG-RED", "Ceramic mug, red", "12.50", 35),
    ("MUG-TRAVEL", "Insulated travel mug", "24.00", 20),
    ("TEE-S", "Organic cotton tee, S", "19.99", 25),
    ("TEE-M", "Organic cotton tee, M", "19.99", 30),
    ("TEE-L", "Organic cotton tee, L", "19.99", 30),
    ("HOODIE-M", "Zip hoodie, M", "54.00", 12),
    ("HOODIE-L", "Zip hoodie, L", "54.00", 10),
    ("CAP-BLK", "Baseball cap, black", "18.00", 50),
    ("TOTE-NAT", "Canvas tote bag", "15.00", 60),
    ("NOTE-A5", "A5 dotted notebook", "9.50", 100),
    ("PEN-3", "Gel pens, pack of 3", "4.20", 200),
    ("STICK-PK", "Sticker pack", "0.10", None),
    ("POSTER-A3", "A3 art print", "22.00", 15),
    ("CANDLE-SOY", "Soy candle, cedar", "16.75", 18),
    ("SOCKS-2", "Wool socks, 2 pairs", "14.00", 45),
    ("BOTTLE-750", "Steel water bottle, 750 ml", "27.50", 22),
    ("BEANIE", "Knitted beanie", "21.00", 16),
    ("GIFT-25", "Gift card, 25", "25.00", None),
    ("KEYCHAIN", "Enamel keychain", "6.00", 3),
]

_SAMPLES = [
    ("Ann Lee", "ann@example.com", "Portland", "US", [("MUG-BLUE", 2)], OrderStatus.pending),
    (
        "Bob Stone",
        "bob@example.com",
        "Austin",
        "US",
        [("TEE-M", 1), ("CAP-BLK", 1)],
        OrderStatus.confirmed,
    ),
    ("Chloé Martin", "chloe@example.com", "Lyon", "FR", [("HOODIE-L", 1)], OrderStatus.processing),
    (
        "Dev Patel",
        "dev@example.com",
        "Leeds",
        "GB",
        [("NOTE-A5", 3), ("PEN-3", 2)],
        OrderStatus.shipped,
    ),
    ("Eva Novak", "eva@example.com", "Brno", "CZ", [("BOTTLE-750", 1)], OrderStatus.delivered),
    ("Finn Berg", "finn@example.com", "Oslo", "NO", [("SOCKS-2", 2)], OrderStatus.cancelled),
]


async def load_demo(conn: Conn) -> tuple[Agent, bool]:
    """Create the demo store unless it exists. Returns the agent and whether it was created."""
    existing = [a for a in await agents.list_agents(conn, DEMO_OWNER) if a.name == DEMO_AGENT_NAME]
    if existing:
        return existing[0], False
    system = Provenance(actor=Actor.system)
    async with conn.transaction():
        agent = await agents.create_agent(
            conn,
            DEMO_OWNER,
            AgentIn(name=DEMO_AGENT_NAME, currency="USD", shipping_fee=Decimal("4.95")),
        )
        await catalog.upsert_products(
            conn,
            agent.id,
            [
                {"sku": sku, "name": name, "unit_price": price, "stock": stock}
                for sku, name, price, stock in PRODUCTS
            ],
        )
        for i, (name, email, city, country, items, status) in enumerate(_SAMPLES):
            order = await orders.create_order(
                conn,
                {
                    "agent_id": agent.id,
                    "customer": {"name": name, "email": email},
                    "shipping_address": {
                        "line1": f"{10 + i} Main Street",
                        "city": city,
                        "postal_code": f"{10000 + i}",
                        "country": country,
                    },
                    "items": [{"sku": s, "quantity": q} for s, q in items],
                    "payment_method": "card",
                },
                by=system,
            )
            path = {
                OrderStatus.pending: [],
                OrderStatus.confirmed: [OrderStatus.confirmed],
                OrderStatus.processing: [OrderStatus.confirmed, OrderStatus.processing],
                OrderStatus.shipped: [
                    OrderStatus.confirmed,
                    OrderStatus.packaged,
                    OrderStatus.shipped,
                ],
                OrderStatus.delivered: [
                    OrderStatus.confirmed,
                    OrderStatus.shipped,
                    OrderStatus.delivered,
                ],
                OrderStatus.cancelled: [OrderStatus.cancelled],
            }[status]
            for step in path:
                change: dict[str, object] = {"status": step}
                if step == OrderStatus.shipped:
                    change.update(
                        carrier="UPS",
                        tracking_number=f"1Z999AA1012345678{i}",
                        estimated_delivery=date.today() + timedelta(days=3),
                    )
                if step == OrderStatus.cancelled:
                    change["note"] = "Customer changed their mind"
                await orders.update_status(conn, order.id, change, by=Provenance(actor=Actor.owner))
    return agent, True
