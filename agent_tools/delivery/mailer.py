"""Customer emails: rendered from the package's Jinja2 templates, sent with aiosmtplib.

A mail is rendered once, at its first attempt, and kept in `mail_messages` as rendered; its
`Message-ID` is derived from the event, so a send retried after a crash is recognisable as
the same message. With no `SMTP_URL` the rendered mail is kept (state `kept`) for the
dashboard's Mail view instead of being sent.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent_tools.config import Settings
from agent_tools.db import Conn, Database
from agent_tools.delivery import retry
from agent_tools.service import events, tracking

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCALE = "en_US"
SMTP_TIMEOUT = 30.0

SUBJECTS = {
    "confirmation": "Your order {number} is confirmed",
    "shipped": "Your order {number} is on its way",
    "delivered": "Your order {number} was delivered",
    "cancelled": "Your order {number} is cancelled",
    "return_requested": "We received your return request for order {number}",
    "return_approved": "Your return for order {number} is approved",
    "return_rejected": "About your return for order {number}",
    "return_refunded": "Your refund for order {number}",
    "out_for_delivery": "Your order {number} is out for delivery",
    "failed_attempt": "Delivery of your order {number} was attempted",
    "payment_receipt": "Payment received for your order {number}",
}

PARCEL_MAILS = frozenset({"out_for_delivery", "failed_attempt"})


def money(amount: str | Decimal, currency: str) -> str:
    return str(format_currency(Decimal(amount), currency, locale=LOCALE))


def day(value: str | date | None) -> str | None:
    if value is None:
        return None
    return str(format_date(date.fromisoformat(str(value)), format="long", locale=LOCALE))


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["money"] = money
_env.filters["day"] = day


class Unrenderable(Exception):
    """The mail of an event cannot be rendered (no readable snapshot, no text for its kind)."""


@dataclass
class MailJob:
    id: int
    event_id: int
    kind: str
    to: str
    sender_name: str
    subject: str | None
    text: str | None
    html: str | None
    message_id: str | None
    attempts: int
    card_payments: bool = False


def render(
    kind: str, body: dict[str, Any], store: str, *, card_payments: bool = False
) -> tuple[str, str, str]:
    """(subject, text, html) of a `kind` mail about the event `body` (a webhook body).
    `card_payments`: the store takes payment by Stripe Checkout, so an unpaid order's mail
    has a "Pay now" link (through the tracking link, which opens the payment page)."""
    order = body["data"]["order"]
    # A parcel's mail names that parcel (an order may ship in several).
    parcel = body["data"]["event"]["data"] if kind in PARCEL_MAILS else {}
    unpaid = order.get("payment_status") in ("pending", "failed") and order["status"] != "cancelled"
    context = {
        "kind": kind,
        "store": store,
        "order": order,
        "event": body["data"]["event"],
        "carrier_url": tracking.carrier_url(
            parcel.get("carrier", order["carrier"]),
            parcel.get("tracking_number", order["tracking_number"]),
        ),
        "parcel": parcel,
        "pay_url": order["tracking_url"] + "&pay=1" if card_payments and unpaid else None,
    }
    subject = SUBJECTS[kind].format(number=order["order_number"])
    return (
        subject,
        _env.get_template("mail.txt").render(context),
        _env.get_template("mail.html").render(context, subject=subject),
    )


def message_id(event_id: int, kind: str, sender: str) -> str:
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<order-event-{event_id}.{kind}@{domain}>"


_CLAIM = (
    "with due as ("
    " select id from agent_orders.mail_messages"
    " where state = 'pending' and next_attempt_at <= now()"
    " and (locked_until is null or locked_until < now())"
    " order by next_attempt_at, id limit %(n)s for update skip locked"
    ") update agent_orders.mail_messages m"
    " set locked_until = now() + make_interval(secs => %(lease)s), locked_by = %(me)s"
    " from due, agent_orders.outbox x, agent_orders.agents a"
    " where m.id = due.id and x.event_id = m.event_id and a.id = x.agent_id"
    " returning m.id, m.event_id, m.kind, m.to_address, m.subject, m.text_body, m.html_body,"
    " m.message_id, m.attempts, a.name as store, a.payment_mode = 'stripe' as card_payments"
)


async def claim(conn: Conn, n: int, me: str, settings: Settings) -> list[MailJob]:
    """Take due mails for a lease (rendering is left to `deliver`, outside this
    transaction)."""
    cur = await conn.execute(_CLAIM, {"n": n, "lease": settings.delivery_lease, "me": me})
    return [
        MailJob(
            id=r["id"],
            event_id=r["event_id"],
            kind=r["kind"],
            to=r["to_address"],
            sender_name=r["store"],
            subject=r["subject"],
            text=r["text_body"],
            html=r["html_body"],
            message_id=r["message_id"],
            attempts=r["attempts"],
            card_payments=r["card_payments"],
        )
        for r in await cur.fetchall()
    ]


async def _render_once(db: Database, job: MailJob, settings: Settings) -> None:
    """Render a mail at its first attempt and keep the rendering (and its Message-ID), so
    every later attempt sends the very same message."""
    if job.subject is not None:
        return
    async with db.connection() as conn:
        bodies = await events.bodies(conn, [job.event_id], settings)
        if job.event_id not in bodies:
            raise Unrenderable("the event's order snapshot could not be read")
        if job.kind not in SUBJECTS:
            raise Unrenderable(f"no mail text for the kind {job.kind!r}")
        job.subject, job.text, job.html = render(
            job.kind, bodies[job.event_id], job.sender_name, card_payments=job.card_payments
        )
        job.message_id = message_id(job.event_id, job.kind, settings.mail_from)
        await conn.execute(
            "update agent_orders.mail_messages set subject = %(subject)s, text_body = %(text)s,"
            " html_body = %(html)s, message_id = %(mid)s where id = %(id)s",
            {
                "id": job.id,
                "subject": job.subject,
                "text": job.text,
                "html": job.html,
                "mid": job.message_id,
            },
        )


def build(job: MailJob, settings: Settings) -> EmailMessage:
    # `_render_once` has filled these in.
    assert job.subject is not None and job.text is not None and job.html is not None
    assert job.message_id is not None
    msg = EmailMessage()
    msg["From"] = formataddr((job.sender_name, settings.mail_from))
    msg["To"] = job.to
    msg["Subject"] = job.subject
    msg["Message-ID"] = job.message_id
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg.set_content(job.text)
    msg.add_alternative(job.html, subtype="html")
    return msg


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def send(message: EmailMessage, smtp_url: str) -> None:
    """`smtps://` is TLS from the start; `smtp://` upgrades with STARTTLS, which is required
    except towards a server on this machine."""
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
    implicit = parts.scheme == "smtps"
    await aiosmtplib.send(
        message,
        hostname=parts.hostname,
        port=parts.port or (465 if implicit else 587),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=implicit,
        start_tls=None if implicit or _loopback(parts.hostname) else True,
        timeout=SMTP_TIMEOUT,
    )


async def deliver(db: Database, job: MailJob, me: str, settings: Settings) -> None:
    params: dict[str, Any] = {"id": job.id, "me": me}
    try:
        await _render_once(db, job, settings)
        if settings.smtp_url is None:
            state, error, delay = "kept", None, 0.0
        else:
            await send(build(job, settings), settings.smtp_url.get_secret_value())
            state, error, delay = "sent", None, 0.0
    except (Unrenderable, aiosmtplib.SMTPException, OSError, ValueError) as exc:
        # A mail that cannot be rendered is retried like a failed send: a fix deployed
        # meanwhile lets a later attempt through, and it holds up no other mail.
        wait = retry.next_delay(job.attempts + 1, settings.retry_scale)
        state = "failed" if wait is None else "pending"
        error, delay = str(exc)[:500], wait or 0.0
        log.warning("mail %s not sent: %s", job.id, exc)
    async with db.connection() as conn:
        await conn.execute(
            "update agent_orders.mail_messages set state = %(state)s, attempts = attempts + 1,"
            " last_error = %(error)s, next_attempt_at = now() + make_interval(secs => %(delay)s),"
            " sent_at = case when %(state)s = 'sent' then now() end,"
            " locked_until = null, locked_by = null where id = %(id)s and locked_by = %(me)s",
            {**params, "state": state, "error": error, "delay": delay},
        )
