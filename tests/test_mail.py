"""Customer emails: a real SMTP server in-process (aiosmtpd), the tracking link on a running
server, kept mails without SMTP, retries with the same Message-ID, the confirm_order notice."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from agent_tools.db import Database
from agent_tools.delivery.worker import delivering
from agent_tools.models import Agent
from agent_tools.service import orders
from agent_tools.tools import ToolContext, Toolkit
from tests.api_support import ApiProcess, bearer, client, free_port, make_app, settings
from tests.tools_support import place_and_confirm, place_args
from tests.webhook_support import wait_until

FAST = {"retry_scale": 0.001, "delivery_poll": 0.05, "mail_from": "orders@shop.example"}


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def chat(agent: Agent, email_address: str | None = "ann@example.com") -> ToolContext:
    return ToolContext(
        agent_id=agent.id,
        conversation_id="mail-chat",
        customer_email=email_address,
        customer_verified=email_address is not None,
        turn=1,
    )


@pytest.fixture
def web(db_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    """The API on the test's database, to open the links the emails carry."""
    server = ApiProcess(
        ["serve"],
        {"DATABASE_URL": db_url, "AGENT_ORDERS_DELIVER": "0", "SUPABASE_URL": ""},
        tmp_path / "server.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_confirmation_email_is_sent_over_smtp(
    db: Database, store: Agent, web: ApiProcess
) -> None:
    with smtp_server() as (inbox, url):
        s = settings(**FAST, smtp_url=url, public_url=web.base)
        toolkit = Toolkit(db, settings=s)
        placed = await place_and_confirm(toolkit, chat(store), place_args())
        async with delivering(db, s):
            await wait_until(lambda: inbox.messages, what="the confirmation email")
        [msg] = inbox.messages
        assert inbox.envelopes == [("orders@shop.example", ["ann@example.com"])]
        assert msg["From"] == "Test Store <orders@shop.example>"
        assert msg["To"] == "ann@example.com"
        number = placed["order_number"]
        assert msg["Subject"] == f"Your order {number} is confirmed"
        assert re.fullmatch(r"<order-event-\d+\.confirmation@shop\.example>", msg["Message-ID"])
        assert msg.get_content_type() == "multipart/alternative"
        text, html = parts(msg)
        for body in (text, html):
            assert number in body
            assert "Blue mug" in body
            assert "$25.00" in body and "$5.00" in body and "$30.00" in body  # 2 x 12.50 + 5
            assert "1 Main St" in body and "Portland" in body
        assert "<table" in html and "<table" not in text
        # The tracking link in the mail opens the order on the running server.
        [link] = set(re.findall(r"http://127\.0\.0\.1:\d+/track/\S+", text))
        assert link.startswith(web.base)
        assert link == placed["tracking_url"]
        # (It trades the token for a cookie and lands on the order's page.)
        async with httpx.AsyncClient(follow_redirects=True) as http:
            page = await http.get(link)
        assert page.status_code == 200
        assert number in page.text and "Ann Lee" in page.text
        # The row says so.
        async with db.connection() as conn:
            cur = await conn.execute(
                "select state, attempts, message_id from agent_orders.mail_messages"
            )
            assert await cur.fetchall() == [
                {"state": "sent", "attempts": 1, "message_id": msg["Message-ID"]}
            ]


async def test_confirm_order_says_whether_an_email_goes_out(db: Database, store: Agent) -> None:
    with_smtp = Toolkit(db, settings=settings(**FAST, smtp_url="smtp://127.0.0.1:1"))
    done = await with_smtp.call(chat(store), "place_order", place_args())
    ctx = chat(store)
    ctx.turn = 2
    result = await with_smtp.call(ctx, "confirm_order", {"draft_id": done["draft_id"]})
    assert result["confirmation_email"] == {"will_be_sent": True, "to": "a***@example.com"}
    assert "a***@example.com" in result["next"]
    again = await with_smtp.call(ctx, "confirm_order", {"draft_id": done["draft_id"]})
    assert again["already_confirmed"]
    assert again["confirmation_email"] == result["confirmation_email"]

    # No mail server configured: the agent must not promise an email.
    no_smtp = Toolkit(db, settings=settings(**FAST, smtp_url=None))
    anonymous = chat(store, None)
    args = place_args(customer={"name": "Bo", "email": "bo@example.com", "phone": None})
    draft = await no_smtp.call(anonymous, "place_order", args)
    anonymous.turn += 1
    result = await no_smtp.call(anonymous, "confirm_order", {"draft_id": draft["draft_id"]})
    assert result["confirmation_email"]["will_be_sent"] is False
    assert "mail" in result["confirmation_email"]["reason"]
    assert "email" not in result["next"] or "no confirmation email" in result["next"]

    # No address on the order: no email, and the tool says so.
    args = place_args(customer={"name": "Cy", "email": None, "phone": "+1 555 0100"})
    draft = await with_smtp.call(anonymous, "place_order", args)
    anonymous.turn += 1
    result = await with_smtp.call(anonymous, "confirm_order", {"draft_id": draft["draft_id"]})
    assert result["confirmation_email"] == {
        "will_be_sent": False,
        "reason": "the order has no email address",
    }


async def test_without_smtp_mails_are_kept_and_listed(db: Database, store: Agent) -> None:
    s = settings(**FAST, smtp_url=None)
    toolkit = Toolkit(db, settings=s)
    placed = await place_and_confirm(toolkit, chat(store), place_args())
    async with db.connection() as conn:
        order = await orders.get_order(conn, placed["order_number"])
        await orders.update_status(
            conn,
            order.id,
            {
                "status": "shipped",
                "carrier": "UPS",
                "tracking_number": "1Z 999",
                "estimated_delivery": "2026-12-24",
            },
        )
        await orders.update_status(conn, order.id, {"status": "delivered"})
        other = await orders.create_order(
            conn,
            {
                "agent_id": store.id,
                "customer": {"name": "Dee", "email": "dee@example.com"},
                "shipping_address": {"line1": "2 Side St", "city": "Salem", "country": "US"},
                "items": [{"sku": "TEE-M", "quantity": 1}],
            },
        )
        await orders.cancel_order(conn, other.id, reason="changed my mind")
    async with delivering(db, s):

        async def all_kept() -> bool:
            async with db.connection() as conn:
                cur = await conn.execute(
                    "select count(*) filter (where state = 'kept') as kept, count(*) as n"
                    " from agent_orders.mail_messages"
                )
                row = await cur.fetchone()
                return row is not None and row["kept"] == row["n"] == 5

        await wait_until(all_kept, what="5 kept mails")
    async with client(make_app(db)) as api:
        api.headers.update(bearer(store.owner_id))
        listed = (await api.get("/api/mail/")).json()
        assert [(m["kind"], m["to_address"]) for m in listed] == [
            ("cancelled", "dee@example.com"),
            ("confirmation", "dee@example.com"),
            ("delivered", "ann@example.com"),
            ("shipped", "ann@example.com"),
            ("confirmation", "ann@example.com"),
        ]
        assert {m["state"] for m in listed} == {"kept"}
        shipped = (await api.get(f"/api/mail/{listed[3]['id']}")).json()
        assert shipped["subject"] == f"Your order {order.order_number} is on its way"
        for body in (shipped["text_body"], shipped["html_body"]):
            assert "UPS" in body
            assert "https://www.ups.com/track?tracknum=1Z%20999" in body
            assert "December 24, 2026" in body
        cancelled = (await api.get(f"/api/mail/{listed[0]['id']}")).json()
        assert "changed my mind" in cancelled["text_body"]
        assert "$19.99" in cancelled["html_body"]
        # Another owner sees none of them.
        other_owner = bearer("33333333-3333-4333-8333-333333333333")
        assert (await api.get("/api/mail/", headers=other_owner)).json() == []
        r = await api.get(f"/api/mail/{listed[0]['id']}", headers=other_owner)
        assert r.status_code == 404


async def test_a_failed_send_is_retried_as_the_same_message(db: Database, store: Agent) -> None:
    port = free_port()
    s = settings(**FAST, smtp_url=f"smtp://127.0.0.1:{port}")
    await place_and_confirm(Toolkit(db, settings=s), chat(store), place_args())

    async def attempted() -> bool:
        async with db.connection() as conn:
            cur = await conn.execute("select attempts, last_error from agent_orders.mail_messages")
            row = await cur.fetchone()
            return row is not None and row["attempts"] >= 1 and row["last_error"] is not None

    async with delivering(db, settings(**{**FAST, "retry_scale": 10.0}, smtp_url=s.smtp_url)):
        await wait_until(attempted, what="a failed attempt")  # nothing listens on the port
    async with db.connection() as conn:
        cur = await conn.execute("select state, message_id from agent_orders.mail_messages")
        row = await cur.fetchone()
        assert row is not None and row["state"] == "pending"
        first_id = row["message_id"]
        await conn.execute("update agent_orders.mail_messages set next_attempt_at = now()")
    with smtp_server(port) as (inbox, _):
        async with delivering(db, s):
            await wait_until(lambda: inbox.messages, what="the retried email")
        await asyncio.sleep(0.1)
    [msg] = inbox.messages
    assert msg["Message-ID"] == first_id
