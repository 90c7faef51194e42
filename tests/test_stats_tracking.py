"""Stats summary, tracking links and redaction, the demo store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent_tools.db import Database
from agent_tools.demo import DEMO_OWNER, PRODUCTS, load_demo
from agent_tools.errors import NotFound, ValidationFailed
from agent_tools.models import Agent, OrderStatus
from agent_tools.service import agents, catalog, orders, stats, tracking
from tests.conftest import OTHER_OWNER, OWNER, make_store, order_data


class TestStats:
    async def test_summary_counts_and_revenue(self, db: Database, store: Agent) -> None:
        eur = None
        async with db.connection() as conn:
            eur = await agents.create_agent(conn, OWNER, {"name": "EU", "currency": "EUR"})
            await catalog.upsert_products(
                conn, eur.id, [{"sku": "X", "name": "x", "unit_price": "3.10"}]
            )
            a = await orders.create_order(conn, order_data(store))  # 12.50 + 5.00
            b = await orders.create_order(conn, order_data(store, [{"sku": "DIME", "quantity": 3}]))
            await orders.create_order(conn, order_data(eur, [{"sku": "X", "quantity": 2}]))
            await orders.cancel_order(conn, b.id)
            await orders.update_status(conn, a.id, {"status": "shipped"})
            other = await make_store(db, OTHER_OWNER, "Other")
            await orders.create_order(conn, order_data(other))
            summary = await stats.summary(conn, owner_id=OWNER)
            only_usd = await stats.summary(conn, owner_id=OWNER, agent_id=store.id)
            future = await stats.summary(
                conn, owner_id=OWNER, created_from=datetime.now(UTC) + timedelta(days=1)
            )
            with pytest.raises(ValidationFailed):
                await stats.summary(
                    conn,
                    owner_id=OWNER,
                    created_from=datetime.now(UTC),
                    created_to=datetime.now(UTC) - timedelta(days=1),
                )
        assert summary.total_orders == 3
        assert summary.revenue == {"EUR": Decimal("6.20"), "USD": Decimal("17.50")}
        assert summary.by_status["cancelled"] == 1 and summary.by_status["shipped"] == 1
        assert summary.by_status["pending"] == 1
        assert [d.orders for d in summary.per_day] == [3]
        assert only_usd.total_orders == 2 and list(only_usd.revenue) == ["USD"]
        assert future.total_orders == 0 and future.per_day == []


class TestTracking:
    async def test_redacted_without_proof_full_with_email_or_token(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn,
                order_data(
                    store,
                    customer={
                        "name": "Ann Lee",
                        "email": "Ann@Example.com",
                        "phone": "+1 555 0100",
                    },
                ),
            )
            order = await orders.update_status(
                conn, order.id, {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z 99"}
            )
            await orders.add_note(conn, order.id, "fraud check passed")  # internal
            public = await tracking.track(conn, order.order_number)
            by_email = await tracking.track(conn, order.order_number, email=" ANN@example.com ")
            key = await tracking.signing_key(conn)
            url = tracking.tracking_url(key, order)
            token = url.split("token=")[1]
            by_token = await tracking.track(conn, order.order_number, token=token)
            wrong_token = await tracking.track(conn, order.order_number, token=token[:-2] + "AA")
            with pytest.raises(NotFound) as wrong_email:
                await tracking.track(conn, order.order_number, email="bob@example.com")
            with pytest.raises(NotFound) as unknown:
                await tracking.track(conn, "ORD-2026-000000")
        dumped = public.model_dump_json()
        assert public.full is False and public.customer is None
        for secret in ("Ann", "ann@example.com", "555", "1 Main St", "fraud"):
            assert secret not in dumped
        assert (public.city, public.country, public.items, public.carrier_url) == (None,) * 4
        assert public.status == OrderStatus.shipped and public.progress == 5
        assert [e.kind for e in public.timeline] == ["created", "status_changed"]
        assert by_email.carrier_url == "https://www.ups.com/track?tracknum=1Z%2099"
        assert (by_email.city, by_email.country) == ("Portland", "US")
        assert by_email.full and by_email.customer is not None
        assert by_email.customer.email == "ann@example.com"
        assert by_token.full
        assert wrong_token.full is False
        assert wrong_email.value.message == unknown.value.message
        assert len(token) >= 32  # 192 bits, base64

    def test_tokens_differ_per_order_and_key(self) -> None:
        t1 = tracking.tracking_token(b"k1", "a")
        assert t1 != tracking.tracking_token(b"k1", "b")
        assert t1 != tracking.tracking_token(b"k2", "a")
        assert t1 != tracking.tracking_token(b"k1", "a", version=2)

    def test_carrier_links(self) -> None:
        assert tracking.carrier_url("FedEx", "12") == "https://www.fedex.com/fedextrack/?trknbr=12"
        assert tracking.carrier_url("USPS", "9400") is not None
        assert tracking.carrier_url("DHL", "JD1") is not None
        assert tracking.carrier_url("Acme Post", "1") is None
        assert tracking.carrier_url("UPS", None) is None


class TestDemo:
    async def test_demo_store_loads_once(self, db: Database) -> None:
        async with db.connection() as conn:
            agent, created = await load_demo(conn)
            again, created_again = await load_demo(conn)
            listed = await orders.list_orders(conn, owner_id=DEMO_OWNER)
            products = await catalog.list_products(conn, agent.id)
        assert created and not created_again and again.id == agent.id
        assert len(products) == len(PRODUCTS) >= 20
        assert {o.status for o in listed.orders} >= {
            OrderStatus.pending,
            OrderStatus.shipped,
            OrderStatus.delivered,
            OrderStatus.cancelled,
        }
        assert len(listed.orders) == 6
