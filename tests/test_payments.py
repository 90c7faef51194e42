"""Payments: Checkout links, Stripe's signed webhook, refunds and manual payments, with the real
`stripe` library against a local stand-in of Stripe's API (tests/stripe_support.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import httpx
import pytest
import stripe
from stripe.checkout import Session

from agent_tools.db import Database
from agent_tools.delivery.worker import delivering
from agent_tools.models import Agent
from agent_tools.service import agents, orders, payments, stripe_calls
from agent_tools.tools import Toolkit
from api.settings import ApiSettings
from tests.api_support import assert_problem, bearer, client, make_app, settings
from tests.conftest import OWNER, census
from tests.stripe_support import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    FakeStripe,
    check_shape,
    event,
    fake_stripe,
    shape_problems,
    sign,
)
from tests.tools_support import context, place_args
from tests.webhook_support import wait_until

FAST = {"retry_scale": 0.001, "delivery_poll": 0.05}
WEBHOOK = "/api/payments/stripe/webhook"


@pytest.fixture
def fs() -> Iterator[FakeStripe]:
    with fake_stripe() as server:
        yield server


def stripe_settings(fs: FakeStripe) -> dict[str, Any]:
    return {
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": fs.base,
        **FAST,
    }


@pytest.fixture
def conf(fs: FakeStripe) -> ApiSettings:
    return settings(**stripe_settings(fs))


@pytest.fixture
async def shop(db: Database, store: Agent) -> Agent:
    """The test store, paid by Stripe Checkout into a connected account."""
    async with db.connection() as conn:
        return await agents.update_agent(
            conn, store.id, {"payment_mode": "stripe", "stripe_account": "acct_1Shop"}
        )


@pytest.fixture
async def http(db: Database, fs: FakeStripe) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db, **stripe_settings(fs))) as c:
        yield c


async def order_by_chat(db: Database, conf: ApiSettings, agent: Agent) -> dict[str, Any]:
    """Place and confirm an order through the tools (2 blue mugs + 5.00 shipping = 30.00)."""
    toolkit = Toolkit(db, settings=conf)
    ctx = context(agent, f"c-{uuid4().hex[:8]}", customer_email="ann@example.com")
    draft = await toolkit.call(ctx, "place_order", place_args())
    assert draft["ok"], draft
    ctx.turn += 1
    done = await toolkit.call(ctx, "confirm_order", {"draft_id": draft["draft_id"]})
    assert done["ok"], done
    return {"toolkit": toolkit, "ctx": ctx, **done}


async def post_event(
    http: httpx.AsyncClient,
    evt: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    at: int | None = None,
) -> httpx.Response:
    payload = json.dumps(evt).encode()
    return await http.post(
        WEBHOOK,
        content=payload,
        headers={"Stripe-Signature": sign(payload, secret, at), "content-type": "application/json"},
    )


async def row(db: Database, query: str, **params: Any) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        found = await cur.fetchone()
    assert found is not None
    return dict(found)


async def money_state(db: Database, number: str) -> dict[str, Any]:
    return await row(
        db,
        "select o.status, o.payment_status, o.amount_paid, o.amount_refunded,"
        " (select count(*) from agent_orders.payments p where p.order_id = o.id) as payments,"
        " (select count(*) from agent_orders.order_events e where e.order_id = o.id) as events,"
        " (select count(*) from agent_orders.stripe_events) as stripe_events"
        " from agent_orders.orders o where o.order_number = %(n)s",
        n=number,
    )


def session_of(fs: FakeStripe) -> dict[str, Any]:
    assert len(fs.sessions) == 1, fs.sessions
    return next(iter(fs.sessions.values()))


async def paid_order(
    db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
) -> str:
    done = await order_by_chat(db, conf, shop)
    session = fs.pay(session_of(fs)["id"])
    answer = await post_event(http, event("checkout.session.completed", session))
    assert answer.json()["outcome"] == "paid", answer.text
    return str(done["order"]["order_number"])


class TestCheckoutLink:
    async def test_confirm_order_returns_a_checkout_link_for_the_order(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        session = session_of(fs)
        assert done["payment"] == {"status": "pending", "pay_url": session["url"]}
        assert "payment link" in done["next"]
        # What Stripe was asked for, and how (one call, its key, the store's account).
        (call,) = fs.requests("POST", "/v1/checkout/sessions")
        assert call.headers["stripe-account"] == "acct_1Shop"
        assert call.headers["idempotency-key"].startswith("agent-orders-checkout-")
        p = call.params
        assert p["mode"] == "payment"
        assert [
            (
                ln["price_data"]["product_data"]["name"],
                ln["price_data"]["unit_amount"],
                ln["quantity"],
            )
            for ln in p["line_items"]
        ] == [("Blue mug", "1250", "2"), ("Shipping", "500", "1")]
        assert {ln["price_data"]["currency"] for ln in p["line_items"]} == {"usd"}
        order = await row(db, "select id, order_number from agent_orders.orders")
        assert p["client_reference_id"] == str(order["id"])
        assert p["metadata"]["order_number"] == order["order_number"]
        assert p["customer_email"] == "ann@example.com"
        assert abs(int(p["expires_at"]) - (time.time() + 24 * 3600)) < 60
        assert f"/track/{order['order_number']}?token=" in p["success_url"]
        assert session["amount_total"] == 3000
        check_shape(session, Session)
        # Asking again (get_order_status) hands out the same link.
        status = await done["toolkit"].call(
            done["ctx"], "get_order_status", {"order_number": order["order_number"], "email": None}
        )
        assert status["payment"]["pay_url"] == session["url"]
        assert len(fs.requests("POST", "/v1/checkout/sessions")) == 1

    async def test_link_follows_when_stripe_is_down_with_the_same_idempotency_key(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe
    ) -> None:
        fs.fail_next = [500]
        done = await order_by_chat(db, conf, shop)
        assert "pay_url" not in done["payment"]
        assert "being prepared" in done["next"]
        async with delivering(db, conf):
            await wait_until(lambda: fs.sessions, what="the session, made by the deliverer")
        calls = fs.requests("POST", "/v1/checkout/sessions")
        assert len(calls) == 2
        assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
        status = await done["toolkit"].call(
            done["ctx"],
            "get_order_status",
            {"order_number": done["order"]["order_number"], "email": None},
        )
        assert status["payment"]["pay_url"] == session_of(fs)["url"]

    async def test_expired_link_is_replaced_on_request(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        first = session_of(fs)
        first["status"] = "expired"
        answer = await post_event(http, event("checkout.session.expired", first))
        assert answer.json()["outcome"] == "expired"
        link = await http.post(f"/api/orders/{number}/payment-link", headers=bearer(OWNER))
        assert link.status_code == 200, link.text
        assert link.json()["payment_url"] not in (None, first["url"])
        assert len(fs.sessions) == 2
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        assert detail["payment_url"] == link.json()["payment_url"]
        assert [p["state"] for p in detail["payments"]] == ["expired", "open"]

    async def test_none_store_pays_on_delivery(
        self, db: Database, conf: ApiSettings, store: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, store)
        assert "on delivery or by invoice" in done["payment"]["how"]
        assert not fs.calls
        number = done["order"]["order_number"]
        answer = await http.post(f"/api/orders/{number}/payment-link", headers=bearer(OWNER))
        assert_problem(answer, 409, "not_stripe")


class TestStripeWebhook:
    async def test_completed_five_times_and_out_of_order_with_expired_pays_once(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        session = fs.pay(session_of(fs)["id"])
        completed = event("checkout.session.completed", session)
        expired = event("checkout.session.expired", {**session, "status": "expired"})
        late = event("checkout.session.async_payment_succeeded", session)
        first = await post_event(http, expired)
        answers = await asyncio.gather(*(post_event(http, completed) for _ in range(5)))
        answers += [await post_event(http, expired), await post_event(http, late)]
        assert first.json()["outcome"] == "expired"
        outcomes = sorted(a.json()["outcome"] for a in answers)
        assert outcomes == ["already_recorded", *["duplicate"] * 5, "paid"], outcomes
        state = await money_state(db, number)
        assert state["status"] == "confirmed"
        assert state["payment_status"] == "paid"
        assert state["amount_paid"] == Decimal("30.00")
        assert state["stripe_events"] == 3
        async with db.connection() as conn:
            _, history = await orders.get_order_with_events(conn, number)
        kinds = [e.kind for e in history]
        assert kinds.count("payment_succeeded") == 1
        assert [e.to_status for e in history if e.kind == "status_changed"] == ["confirmed"]
        receipt = await row(
            db,
            "select count(*) as n from agent_orders.mail_messages where kind = 'payment_receipt'",
        )
        assert receipt["n"] == 1

    @pytest.mark.parametrize(
        "tamper",
        ["unsigned", "other_secret", "stale", "body_changed", "not_json"],
    )
    async def test_bad_signatures_are_400_and_change_nothing(
        self,
        db: Database,
        conf: ApiSettings,
        shop: Agent,
        fs: FakeStripe,
        http: httpx.AsyncClient,
        tamper: str,
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        before = await money_state(db, number)
        payload = json.dumps(event("checkout.session.completed", fs.pay(session_of(fs)["id"])))
        body = payload.encode()
        headers = {"content-type": "application/json"}
        if tamper == "other_secret":
            headers["Stripe-Signature"] = sign(body, "whsec_someone_else")
        elif tamper == "stale":
            headers["Stripe-Signature"] = sign(body, at=int(time.time()) - 301)
        elif tamper == "body_changed":
            headers["Stripe-Signature"] = sign(body)
            body = body.replace(b'"paid"', b'"unpaid"', 1)
        elif tamper == "not_json":
            body = b"\xff not json"
            headers["Stripe-Signature"] = sign(body)
        answer = await http.post(WEBHOOK, content=body, headers=headers)
        assert_problem(answer, 400, "invalid_signature")
        assert await money_state(db, number) == before

    async def test_signature_scheme_is_stripes(self) -> None:
        payload = b'{"id": "evt_1"}'
        header = sign(payload)
        assert stripe.WebhookSignature.verify_header(payload.decode(), header, WEBHOOK_SECRET, 300)

    async def test_unknown_order_is_recorded_and_changes_no_order(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        before = await money_state(db, number)
        session = fs.pay(session_of(fs)["id"])
        stranger = {
            **session,
            "client_reference_id": str(uuid4()),
            "metadata": {"order_id": str(uuid4())},
        }
        answer = await post_event(http, event("checkout.session.completed", stranger))
        assert answer.status_code == 200
        assert answer.json()["outcome"] == "unknown_order"
        after = await money_state(db, number)
        assert after == {**before, "stripe_events": 1}

    @pytest.mark.parametrize("change", [{"amount_total": 2999}, {"currency": "eur"}])
    async def test_amount_or_currency_mismatch_flags_instead_of_paying(
        self,
        db: Database,
        conf: ApiSettings,
        shop: Agent,
        fs: FakeStripe,
        http: httpx.AsyncClient,
        change: dict[str, Any],
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        session = {**fs.pay(session_of(fs)["id"]), **change}
        answer = await post_event(http, event("checkout.session.completed", session))
        assert answer.json()["outcome"] == "flagged"
        state = await money_state(db, number)
        assert (state["status"], state["payment_status"], state["amount_paid"]) == (
            "pending",
            "pending",
            Decimal("0.00"),
        )
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        assert [p["state"] for p in detail["payments"]] == ["flagged"]
        flag = [e for e in detail["status_history"] if e["kind"] == "payment_flagged"]
        assert len(flag) == 1 and not flag[0]["customer_visible"]

    async def test_completed_after_cancellation_is_refunded(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        cancel = await http.patch(
            f"/api/orders/{number}/status", headers=bearer(OWNER), json={"status": "cancelled"}
        )
        assert cancel.status_code == 200
        session = fs.pay(session_of(fs)["id"])
        answer = await post_event(http, event("checkout.session.completed", session))
        assert answer.json()["outcome"] == "refunding"
        assert fs.refunded(session["payment_intent"]) == 3000
        (call,) = fs.requests("POST", "/v1/refunds")
        assert call.headers["stripe-account"] == "acct_1Shop"
        check_shape(next(iter(fs.refunds.values())), stripe.Refund)
        state = await money_state(db, number)
        assert (state["status"], state["payment_status"]) == ("cancelled", "refunded")
        assert state["amount_refunded"] == state["amount_paid"] == Decimal("30.00")
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        notes = [e["note"] for e in detail["status_history"] if e["kind"].startswith("payment_")]
        assert "after the order was cancelled" in notes[0]
        assert notes[1].startswith("Refund of 30.00 USD")

    async def test_refund_made_in_stripe_is_recorded_once(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        number = await paid_order(db, conf, shop, fs, http)
        intent = session_of(fs)["payment_intent"]
        charge = {
            "id": "ch_1",
            "object": "charge",
            "payment_intent": intent,
            "currency": "usd",
            "amount_refunded": 1000,
        }
        evt = event("charge.refunded", charge)
        assert (await post_event(http, evt)).json()["outcome"] == "refunded"
        assert (await post_event(http, evt)).json()["outcome"] == "duplicate"
        again = event("charge.refunded", charge)  # another event, same cumulative amount
        assert (await post_event(http, again)).json()["outcome"] == "already_recorded"
        state = await money_state(db, number)
        assert (state["payment_status"], state["amount_refunded"]) == (
            "partially_refunded",
            Decimal("10.00"),
        )


class TestRefunds:
    async def test_twenty_parallel_refunds_never_refund_more_than_was_paid(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        number = await paid_order(db, conf, shop, fs, http)
        answers = await asyncio.gather(
            *(
                http.post(
                    f"/api/orders/{number}/refunds",
                    headers=bearer(OWNER),
                    json={"amount": "4.00", "reason": f"parallel {i}"},
                )
                for i in range(20)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] * 7 + [409] * 13, codes
        for a in answers:
            if a.status_code == 409:
                assert_problem(a, 409, "refund_exceeds")
        state = await money_state(db, number)
        assert state["amount_refunded"] == Decimal("28.00")
        assert state["payment_status"] == "partially_refunded"
        assert fs.refunded() == 2800 <= 3000
        keys = [c.headers["idempotency-key"] for c in fs.requests("POST", "/v1/refunds")]
        assert len(keys) == len(set(keys)) == 7
        # A refund gives money back; the customer owes nothing again.
        link = await http.post(f"/api/orders/{number}/payment-link", headers=bearer(OWNER))
        assert_problem(link, 409, "nothing_owed")
        # The rest by default, then nothing is left.
        rest = await http.post(f"/api/orders/{number}/refunds", headers=bearer(OWNER), json={})
        assert rest.status_code == 201, rest.text
        assert rest.json()["payment_status"] == "refunded"
        assert fs.refunded() == 3000
        none_left = await http.post(f"/api/orders/{number}/refunds", headers=bearer(OWNER), json={})
        assert_problem(none_left, 409, "refund_exceeds")

    async def test_cancelling_a_paid_order_refunds_it_in_full(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        number = await paid_order(db, conf, shop, fs, http)
        cancel = await http.patch(
            f"/api/orders/{number}/status", headers=bearer(OWNER), json={"status": "cancelled"}
        )
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["amount_refunded"] == "30.00"
        async with delivering(db, conf):
            await wait_until(lambda: fs.refunded() == 3000, what="the refund at Stripe")

            async def recorded() -> bool:
                found = await row(
                    db,
                    "select count(*) as n from agent_orders.payments where state = 'succeeded'"
                    " and kind = 'refund'",
                )
                return bool(found["n"])

            await wait_until(recorded, what="the refund recorded")
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        refunds = [p for p in detail["payments"] if p["kind"] == "refund"]
        assert [(p["state"], p["amount"]) for p in refunds] == [("succeeded", "30.00")]
        assert detail["payment_status"] == "refunded"

    async def test_cancelling_closes_the_open_link_at_stripe(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        """The customer can no longer pay a cancelled order: its session is expired at Stripe
        by the deliverer, retried with the same key when Stripe is down."""
        done = await order_by_chat(db, conf, shop)
        number, sid = done["order"]["order_number"], session_of(fs)["id"]
        cancel = await http.patch(
            f"/api/orders/{number}/status", headers=bearer(OWNER), json={"status": "cancelled"}
        )
        assert cancel.status_code == 200, cancel.text
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        assert [p["state"] for p in detail["payments"]] == ["expiring"]
        assert detail["payment_url"] is None
        fs.fail_next = [500]
        async with delivering(db, conf):

            async def closed() -> bool:
                found = await row(
                    db, "select count(*) as n from agent_orders.payments where state = 'expired'"
                )
                return bool(found["n"])

            await wait_until(closed, what="the link closed")
        assert fs.sessions[sid]["status"] == "expired"
        check_shape(fs.sessions[sid], Session)
        calls = fs.requests("POST", f"/v1/checkout/sessions/{sid}/expire")
        assert len(calls) == 2  # Stripe was down the first time
        assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
        assert calls[0].headers["idempotency-key"] != fs.calls[0].headers["idempotency-key"]
        assert calls[0].headers["stripe-account"] == "acct_1Shop"

    async def test_a_link_made_while_its_order_was_cancelled_is_closed_too(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        """Stripe answers the session's creation after the cancellation committed: the new
        session is closed at once; a link never made is never made."""
        fs.fail_next = [500]  # no link at the confirmation: the row stays `pending`
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]
        async with db.connection() as conn:
            placed = await orders.get_order(conn, number)
            ids = await payments.pending_links(conn, placed.id)
            (job,) = await stripe_calls.claim(conn, "runner-a", 30, ids=ids)
        cancel = await http.patch(
            f"/api/orders/{number}/status", headers=bearer(OWNER), json={"status": "cancelled"}
        )
        assert cancel.status_code == 200, cancel.text
        async with db.connection() as conn:
            made = await stripe_calls.checkout_created(
                conn,
                job,
                "runner-a",
                session_id="cs_test_late",
                url="https://checkout.example/late",
                expires_at=datetime.now(UTC),
            )
        assert made is not None and made.state == "expiring"

        fs.fail_next = [500]
        other = await order_by_chat(db, conf, shop)
        cancel = await http.patch(
            f"/api/orders/{other['order']['order_number']}/status",
            headers=bearer(OWNER),
            json={"status": "cancelled"},
        )
        assert cancel.status_code == 200

        def made() -> int:
            return sum(c.path == "/v1/checkout/sessions" for c in fs.requests("POST", "/v1/"))

        before = made()
        async with delivering(db, conf):
            # The late session of the first order is closed; the second's is never made.
            await wait_until(
                lambda: fs.requests("POST", "/v1/checkout/sessions/cs_test_late/expire"),
                what="the late session closed",
            )
            await asyncio.sleep(0.3)
        assert made() == before
        detail = (
            await http.get(f"/api/orders/{other['order']['order_number']}", headers=bearer(OWNER))
        ).json()
        assert [p["state"] for p in detail["payments"]] == ["expired"]

    async def test_a_failed_refund_call_is_retried_with_the_same_key(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        number = await paid_order(db, conf, shop, fs, http)
        fs.fail_next = [503]
        answer = await http.post(
            f"/api/orders/{number}/refunds", headers=bearer(OWNER), json={"amount": "5.00"}
        )
        assert answer.status_code == 201
        assert [p["state"] for p in answer.json()["payments"] if p["kind"] == "refund"] == [
            "pending"
        ]
        async with delivering(db, conf):
            await wait_until(lambda: fs.refunded() == 500, what="the retried refund")
        calls = fs.requests("POST", "/v1/refunds")
        assert len(calls) == 2
        assert calls[0].headers["idempotency-key"] == calls[1].headers["idempotency-key"]
        assert len(fs.refunds) == 1

    async def test_idempotency_key_replays_a_refund(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        number = await paid_order(db, conf, shop, fs, http)
        headers = {**bearer(OWNER), "Idempotency-Key": "refund-1"}
        first = await http.post(
            f"/api/orders/{number}/refunds", headers=headers, json={"amount": "3.00"}
        )
        second = await http.post(
            f"/api/orders/{number}/refunds", headers=headers, json={"amount": "3.00"}
        )
        assert first.status_code == second.status_code == 201
        assert second.headers["Idempotent-Replayed"] == "true"
        assert fs.refunded() == 300


class TestManualPayments:
    async def test_record_payment_and_refund_on_a_none_store(
        self, db: Database, conf: ApiSettings, store: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, store)
        number = done["order"]["order_number"]
        over = await http.post(
            f"/api/orders/{number}/payments",
            headers=bearer(OWNER),
            json={"method": "cash on delivery", "amount": "30.01"},
        )
        assert_problem(over, 409, "overpayment")
        paid = await http.post(
            f"/api/orders/{number}/payments",
            headers=bearer(OWNER),
            json={"method": "cash on delivery", "amount": "30.00", "reference": "driver 7"},
        )
        assert paid.status_code == 201, paid.text
        assert paid.json()["payment_status"] == "paid"
        refund = await http.post(
            f"/api/orders/{number}/refunds", headers=bearer(OWNER), json={"amount": "10.00"}
        )
        body = refund.json()
        assert (body["payment_status"], body["amount_refunded"]) == ("partially_refunded", "10.00")
        assert [(p["kind"], p["provider"], p["state"]) for p in body["payments"]] == [
            ("payment", "manual", "succeeded"),
            ("refund", "manual", "succeeded"),
        ]
        assert not fs.calls
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        assert detail["status"] == "confirmed"
        kinds = [e["kind"] for e in detail["status_history"]]
        assert kinds[-3:] == ["payment_succeeded", "status_changed", "payment_refunded"]

        async def in_feed() -> bool:
            # The feed waits for older transactions anywhere on the server to end: poll.
            feed = (await http.get("/api/events/?limit=100", headers=bearer(OWNER))).json()
            types = {e["type"] for e in feed["events"]}
            return {"payment.succeeded", "payment.refunded"} <= types

        await wait_until(in_feed, what="payment events in the feed")

    async def test_bad_amounts_are_422(
        self, db: Database, conf: ApiSettings, store: Agent, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, store)
        number = done["order"]["order_number"]
        for amount in ("0", "-1", "1.001", "abc"):
            answer = await http.post(
                f"/api/orders/{number}/payments",
                headers=bearer(OWNER),
                json={"method": "cash", "amount": amount},
            )
            assert answer.status_code == 422, (amount, answer.text)

    async def test_an_order_placed_as_paid_was_paid_in_full(
        self, db: Database, conf: ApiSettings, store: Agent, http: httpx.AsyncClient
    ) -> None:
        """An owner's order placed as paid (the money was taken elsewhere) owes nothing and
        can be refunded; one cannot start refunded."""
        body = {
            "agent_id": str(store.id),
            "customer": {"name": "Ann Lee", "email": "ann@example.com"},
            "shipping_address": {
                "line1": "1 Main St",
                "city": "Portland",
                "postal_code": "97201",
                "country": "US",
            },
            "custom_lines": [{"name": "Gift wrap", "quantity": 2, "unit_price": "5.00"}],
            "payment_status": "paid",
        }
        placed = await http.post("/api/orders/", headers=bearer(OWNER), json=body)
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert (order["payment_status"], order["amount_paid"]) == ("paid", order["total"])
        refund = await http.post(
            f"/api/orders/{order['id']}/refunds", headers=bearer(OWNER), json={"amount": "1.00"}
        )
        assert refund.json()["payment_status"] == "partially_refunded", refund.text
        for status in ("refunded", "partially_refunded"):
            refused = await http.post(
                "/api/orders/", headers=bearer(OWNER), json={**body, "payment_status": status}
            )
            assert_problem(refused, 422, "validation")
        unpaid = await http.post(
            "/api/orders/", headers=bearer(OWNER), json={**body, "payment_status": "pending"}
        )
        assert unpaid.json()["amount_paid"] == "0.00"


class TestShapes:
    async def test_the_stand_in_answers_with_stripes_published_shapes(self, fs: FakeStripe) -> None:
        sc = stripe.StripeClient(
            SECRET_KEY,
            base_addresses={"api": fs.base},
            http_client=stripe.HTTPXClient(allow_sync_methods=False),
            max_network_retries=0,
        )
        line = {
            "quantity": 1,
            "price_data": {"currency": "usd", "unit_amount": 100, "product_data": {"name": "x"}},
        }
        s = await sc.v1.checkout.sessions.create_async(
            {"mode": "payment", "line_items": [line], "success_url": "https://x/"}
        )
        check_shape(fs.sessions[s.id], Session)
        got = await sc.v1.checkout.sessions.retrieve_async(s.id)
        assert got.id == s.id and got.status == "open"
        expired = await sc.v1.checkout.sessions.expire_async(s.id)
        assert expired.status == "expired"
        check_shape(fs.sessions[s.id], Session)
        # The check can fail: an invented field, a missing required one, a wrong type.
        bad = {**fs.sessions[s.id], "invented": 1, "created": "yesterday"}
        del bad["id"]
        problems = shape_problems(bad, Session)
        assert any("invented" in p for p in problems)
        assert any(".id: required" in p for p in problems)
        assert any(".created:" in p for p in problems)
        with pytest.raises(stripe.InvalidRequestError):
            await sc.v1.refunds.create_async({"payment_intent": "pi_unknown", "amount": 1})


class TestCardNumbers:
    CARD = "4242424242424242"

    async def test_card_numbers_are_refused_and_never_stored_or_logged(
        self, db: Database, store: Agent, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        toolkit = Toolkit(db, settings=settings())
        ctx = context(store, "c-card", customer_email="ann@example.com")
        before = await census(db)
        address = place_args()["shipping_address"]
        attempts = [
            (
                "place_order",
                place_args(payment_method="visa 4242 4242 4242 4242"),
                "payment_method",
            ),
            (
                "place_order",
                place_args(customer_notes="charge 4242-4242-4242-4242 exp 12/30 cvc 123"),
                "customer_notes",
            ),
            (
                "place_order",
                place_args(shipping_address={**address, "line2": "ref 9 4242424242424242 1"}),
                "shipping_address.line2",
            ),
            ("get_order_status", {"order_number": "ORD-2026-123456", "email": self.CARD}, "email"),
        ]
        for tool, args, where in attempts:
            result = await toolkit.call(ctx, tool, args, tool_call_id="call-card")
            assert result["ok"] is False, result
            assert result["error"]["code"] == "card_number_refused"
            assert result["error"]["field"] == where
            assert "payment link" in result["error"]["hint"]
            assert "4242" not in json.dumps(result)
        assert await census(db) == before
        # Nothing anywhere in the database holds the number, whatever its grouping.
        async with db.connection() as conn:
            cur = await conn.execute(
                "select table_name from information_schema.tables"
                " where table_schema = 'agent_orders' and table_type = 'BASE TABLE'"
            )
            tables = [r["table_name"] for r in await cur.fetchall()]
            for table in tables:
                cur = await conn.execute(
                    f"select regexp_replace(coalesce(string_agg(t::text, ' '), ''), '[^0-9]', '',"
                    f" 'g') as digits from agent_orders.{table} t"
                )
                found = await cur.fetchone()
                assert found is not None
                assert self.CARD not in found["digits"], table
        assert "4242" not in caplog.text
        # Long numbers that are not cards (a phone, an order number) still go through.
        fine = place_args(customer={"name": "Ann Lee", "email": None, "phone": "+1 415 555 0100"})
        assert (await toolkit.call(ctx, "place_order", fine))["ok"]

    async def test_ids_the_server_hands_out_are_never_taken_for_card_numbers(
        self, db: Database, store: Agent
    ) -> None:
        """A draft id is random hex: about one in two thousand holds a Luhn-valid run of 13+
        digits. Confirming it must work like any other (here: an unknown draft)."""
        toolkit = Toolkit(db, settings=settings())
        ctx = context(store, "c-card-ids", customer_email="ann@example.com")
        result = await toolkit.call(ctx, "confirm_order", {"draft_id": f"drf_{self.CARD}"})
        assert result["ok"] is False and result["error"]["code"] != "card_number_refused"
        uuid_like = "42424242-4242-4242-4242-424242424242"
        result = await toolkit.call(
            ctx, "get_order_status", {"order_number": uuid_like, "email": None}
        )
        assert result["error"]["code"] != "card_number_refused"
        # The same digits anywhere else are still refused.
        notes = place_args(customer_notes=f"drf_{self.CARD} is my card")
        result = await toolkit.call(ctx, "place_order", notes)
        assert result["error"]["code"] == "card_number_refused"


class TestCustomerFacing:
    async def test_mail_and_tracking_page_offer_pay_now_until_paid(
        self, db: Database, conf: ApiSettings, shop: Agent, fs: FakeStripe, http: httpx.AsyncClient
    ) -> None:
        done = await order_by_chat(db, conf, shop)
        number = done["order"]["order_number"]

        async def mail(kind: str) -> dict[str, Any] | None:
            async with db.connection() as conn:
                cur = await conn.execute(
                    "select subject, text_body, html_body from agent_orders.mail_messages"
                    " where kind = %(kind)s and subject is not null",
                    {"kind": kind},
                )
                return await cur.fetchone()

        async with delivering(db, conf):
            await wait_until(lambda: mail("confirmation"), what="the confirmation mail")
        confirmation = await mail("confirmation")
        assert confirmation is not None
        pay_line = next(ln for ln in confirmation["text_body"].splitlines() if "Pay now" in ln)
        pay_link = httpx.URL(pay_line.split(": ", 1)[1])
        assert 'id="pay-now"' in confirmation["html_body"]
        # The link sets the tracking cookie, goes on to /pay, and from there to Stripe's page.
        step = await http.get(pay_link.raw_path.decode())
        assert step.status_code == 303
        assert step.headers["location"] == f"/track/{number}/pay"
        onward = await http.get(step.headers["location"])
        assert onward.status_code == 303
        assert onward.headers["location"] == session_of(fs)["url"]
        page = await http.get(f"/track/{number}")
        assert 'id="pay-link"' in page.text
        # Without the tracking cookie: no button, and /pay goes back to the public page.
        async with client(make_app(db, **stripe_settings(fs))) as stranger:
            assert 'id="pay-link"' not in (await stranger.get(f"/track/{number}")).text
            back = await stranger.get(f"/track/{number}/pay")
            assert back.headers["location"] == f"/track/{number}"
        session = fs.pay(session_of(fs)["id"])
        assert (
            await post_event(http, event("checkout.session.completed", session))
        ).status_code == 200
        async with delivering(db, conf):
            await wait_until(lambda: mail("payment_receipt"), what="the receipt")
        receipt = await mail("payment_receipt")
        assert receipt is not None
        assert receipt["subject"] == f"Payment received for your order {number}"
        assert "$30.00" in receipt["text_body"] and "Pay now" not in receipt["text_body"]
        assert 'id="pay-link"' not in (await http.get(f"/track/{number}")).text
        detail = (await http.get(f"/api/orders/{number}", headers=bearer(OWNER))).json()
        assert (detail["payment_status"], detail["amount_paid"], detail["payment_url"]) == (
            "paid",
            "30.00",
            None,
        )
