"""Drafts: an order, cancellation, edit or return the agent proposed, carried out only on the
customer's yes.

A draft belongs to one agent and one conversation and remembers the customer turn in which it
was made. The customer's yes reaches the server one of three ways (`Consent`): a later
customer turn counted by the host, an approval the host's own UI asked the human for (MCP
elicitation, an Agents SDK approval), or the draft's trusted confirmation page. The agent's
`confirmation` setting says which of them count (`ACCEPTED`, the one place of that rule).
Confirming is accepted only before the draft expires, and is idempotent: the draft row is
locked, and once it has an order that order is returned again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from psycopg.types.json import Jsonb
from pydantic import BaseModel

from agent_tools.db import Conn
from agent_tools.errors import NotFound, OrderError, parse
from agent_tools.models import (
    Actor,
    ConfirmationMode,
    LineItem,
    NewOrder,
    Order,
    PaymentMode,
    Provenance,
)
from agent_tools.models.changes import EditPlan
from agent_tools.models.common import STORED
from agent_tools.service import catalog, edits, mail, orders, payments, returns

_COLUMNS = (
    "id, kind, agent_id, conversation_id, turn, payload, order_id, created_at, expires_at,"
    " confirmed_at, (select a.confirmation from agent_orders.agents a"
    " where a.id = drafts.agent_id) as confirmation,"
    " (select a.payment_mode from agent_orders.agents a"
    " where a.id = drafts.agent_id) as payment_mode"
)


DRAFT_PREFIX = "drf_"
DRAFT_ID = re.compile(r"drf_[0-9a-f]{16}")
"""A draft's id: the prefix and 64 random bits in hex."""


class Consent(StrEnum):
    """How the customer's yes reached the server."""

    turn = "turn"
    """A customer message after the draft's, counted by the host (`ToolContext.turn`)."""
    approval = "approval"
    """The host's own UI asked the human about this draft and they accepted."""
    page = "page"
    """The customer pressed "Place order" on the draft's confirmation page."""


ACCEPTED: dict[ConfirmationMode, frozenset[Consent]] = {
    ConfirmationMode.turns: frozenset(Consent),
    ConfirmationMode.elicitation: frozenset({Consent.approval, Consent.page}),
    ConfirmationMode.page: frozenset({Consent.page}),
}
"""Which ways of saying yes each setting accepts. The page counts everywhere: it is the
customer's own click in a page the store serves; a counted turn only where the store trusts
its host to count them."""


class ConfirmationRequired(OrderError):
    """The customer's yes has not reached the server in a way the store accepts."""

    code = "confirmation_required"
    status = 409


class DraftExpired(OrderError):
    code = "draft_expired"
    status = 410


class DraftReplaced(DraftExpired):
    """A later place_order in the conversation replaced this draft; `use_draft_id` names it."""

    code = "draft_replaced"


class PriceChanged(OrderError):
    """The catalog changed between the draft and the yes: the customer agreed to another total."""

    code = "price_changed"
    status = 409


class Draft(BaseModel):
    id: str
    kind: Literal["order", "cancel", "modify", "return"]
    agent_id: UUID
    conversation_id: str
    turn: int
    payload: dict[str, Any]
    order_id: UUID | None
    created_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None
    confirmation: ConfirmationMode
    """The agent's setting: which ways of saying yes count for this draft."""
    payment_mode: PaymentMode
    """The agent's setting: whether its orders are paid through Stripe."""
    replaces: list[str] = []
    """Open drafts this one expired when it was made (not stored: known only on creation)."""
    repeats: str | None = None
    """The number of an order this conversation confirmed in the last 30 minutes with the
    same items and address (not stored: known only when drafted)."""


class Quote(BaseModel):
    """The catalog price of a drafted order, as read back to the customer."""

    lines: list[LineItem]
    subtotal: Decimal
    shipping_fee: Decimal
    total: Decimal
    currency: str


class Confirmation(BaseModel):
    draft: Draft
    order: Order
    repeated: bool
    """True when the draft had already been confirmed: the same order, nothing new written."""
    mail_to: str | None = None
    """The address the customer email about the effect was queued for; None: none was (no
    address, or a kind of change that sends none)."""


MAIL: dict[str, str] = {
    "order": "confirmation",
    "cancel": "cancelled",
    "return": "return_requested",
}
"""The customer email each kind of draft's effect queues (through the outbox)."""


def confirm_token(key: bytes, draft_id: str) -> str:
    """The token of the draft's confirmation page: 192 bits of HMAC over its id, so the same
    draft returned again carries the same link, and only its digest is stored."""
    mac = hmac.new(key, f"confirm:{draft_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def quote(conn: Conn, new: NewOrder, *, lock: str | None = None) -> Quote:
    """Price catalog items without reserving anything; refuses unknown, inactive or short skus.
    `lock`: an advisory transaction lock the catalog read takes first."""
    wanted: dict[str, int] = {}
    for item in new.items:
        wanted[item.sku] = wanted.get(item.sku, 0) + item.quantity
    agent, products = await catalog.offer(conn, new.agent_id, list(wanted), lock=lock)
    catalog.check_available(wanted, {s: (p.active, p.stock) for s, p in products.items()})
    lines = [
        LineItem(
            sku=item.sku,
            name=products[item.sku].name,
            quantity=item.quantity,
            unit_price=products[item.sku].unit_price,
            line_total=products[item.sku].unit_price * item.quantity,
        )
        for item in new.items
    ]
    subtotal = sum((ln.line_total for ln in lines), Decimal("0.00"))
    return Quote(
        lines=lines,
        subtotal=subtotal,
        shipping_fee=agent.shipping_fee,
        total=subtotal + agent.shipping_fee,
        currency=agent.currency,
    )


def _conversation_lock(agent_id: UUID, conversation_id: str) -> str:
    """The advisory lock a conversation's drafting holds: two identical drafts made at once
    (parallel tool calls) must find each other. Taken before the statement that reads the
    conversation's open drafts, so that statement sees what the last holder committed."""
    return f"agent-orders:draft:{agent_id}:{conversation_id}"


async def _lock_conversation(conn: Conn, agent_id: UUID, conversation_id: str) -> None:
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%(key)s, 0))",
        {"key": _conversation_lock(agent_id, conversation_id)},
    )


async def _open_draft(
    conn: Conn, agent_id: UUID, conversation_id: str, kind: str, order_id: UUID | None = None
) -> Draft | None:
    """The conversation's open draft of this kind (and order); drafting keeps at most one."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.drafts"
        " where agent_id = %(agent)s and conversation_id = %(conv)s and kind = %(kind)s"
        " and (%(order)s::uuid is null or order_id = %(order)s)"
        " and confirmed_at is null and expires_at > now()"
        " order by created_at desc limit 1",
        {"agent": agent_id, "conv": conversation_id, "kind": kind, "order": order_id},
    )
    row = await cur.fetchone()
    return Draft.model_validate(row) if row else None


async def _insert(
    conn: Conn,
    *,
    kind: str,
    agent_id: UUID,
    conversation_id: str,
    turn: int,
    payload: dict[str, Any],
    order_id: UUID | None,
    ttl_seconds: int,
    key: bytes,
) -> Draft:
    draft_id = DRAFT_PREFIX + secrets.token_hex(8)
    cur = await conn.execute(
        "insert into agent_orders.drafts"
        " (id, kind, agent_id, conversation_id, turn, payload, order_id, expires_at,"
        " confirm_digest) values (%(id)s, %(kind)s, %(agent)s, %(conv)s, %(turn)s,"
        " %(payload)s, %(order)s, now() + %(ttl)s, %(digest)s) returning " + _COLUMNS,
        {
            "id": draft_id,
            "digest": _digest(confirm_token(key, draft_id)),
            "kind": kind,
            "agent": agent_id,
            "conv": conversation_id,
            "turn": turn,
            "payload": Jsonb(payload),
            "order": order_id,
            "ttl": timedelta(seconds=ttl_seconds),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Draft.model_validate(row)


DUPLICATE_WINDOW = timedelta(minutes=30)

# The open-draft check folded into the insert: the conversation's latest open order draft is
# returned again when it holds the same order; otherwise every open one expires and the new
# draft is inserted, naming them. Either way the statement also names an order this
# conversation confirmed in the last 30 minutes with the same items (per sku) and address
# (empty fields left out): a stray "yes" must not order the same things twice.
_DRAFT_ORDER = (
    "with open as ("
    " select id, created_at, payload->'order' = %(order)s as same from agent_orders.drafts"
    " where agent_id = %(agent)s and conversation_id = %(conv)s and kind = 'order'"
    " and confirmed_at is null and expires_at > now()"
    "), reuse as ("
    " select id from open where same and created_at = (select max(created_at) from open)"
    " limit 1"
    "), expired as ("
    " update agent_orders.drafts d set expires_at = now() from open"
    " where d.id = open.id and not exists (select from reuse) returning d.id"
    "), made as ("
    " insert into agent_orders.drafts (id, kind, agent_id, conversation_id, turn, payload,"
    " expires_at, confirm_digest) select %(id)s, 'order', %(agent)s, %(conv)s, %(turn)s,"
    " jsonb_build_object('order', %(order)s::jsonb, 'quote', %(quote)s::jsonb),"
    " now() + %(ttl)s, %(digest)s where not exists (select from reuse) returning " + _COLUMNS + ""
    "), chosen as ("
    " select " + _COLUMNS + " from agent_orders.drafts where id = (select id from reuse)"
    " union all select * from made"
    "), recent as ("
    " select o.order_number, o.line_items, o.shipping_address from agent_orders.drafts d"
    " join agent_orders.orders o on o.id = d.order_id"
    " where d.agent_id = %(agent)s and d.conversation_id = %(conv)s and d.kind = 'order'"
    " and d.confirmed_at > now() - %(window)s and o.status <> 'cancelled'"
    " order by d.confirmed_at desc limit 20"
    ") select c.*, (select coalesce(array_agg(id), '{}') from expired) as replaces,"
    " (select r.order_number from recent r"
    " where (select coalesce(jsonb_object_agg(a.key, a.value), '{}')"
    " from jsonb_each(r.shipping_address) a"
    " where a.value not in ('null'::jsonb, '\"\"'::jsonb, 'false'::jsonb, '0'::jsonb))"
    " = %(address)s::jsonb"
    " and (select coalesce(jsonb_object_agg(i.sku, i.n), '{}') from (select l->>'sku' as sku,"
    " sum((l->>'quantity')::int) as n from jsonb_array_elements(r.line_items) l"
    " where coalesce(l->>'sku', '') <> '' group by 1) i) = %(items)s::jsonb"
    " limit 1) as repeats from chosen c"
)


def _wanted(items: list[dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for item in items:
        if item.get("sku"):
            total[item["sku"]] = total.get(item["sku"], 0) + int(item["quantity"])
    return total


async def draft_order(
    conn: Conn,
    data: NewOrder | dict[str, Any],
    *,
    conversation_id: str,
    turn: int,
    ttl_seconds: int,
    key: bytes,
) -> tuple[Draft, Quote]:
    """Price an order and keep it as a draft; no order, no stock taken. Runs in the caller's
    transaction (a tool call is one), which ends before the customer can answer.

    The same order drafted again while its draft is open returns that draft. A different one
    replaces the conversation's open order drafts: only the latest summary can be confirmed.
    """
    new = parse(NewOrder, data)
    order_json = new.model_dump(mode="json")
    priced = await quote(conn, new, lock=_conversation_lock(new.agent_id, conversation_id))
    draft_id = DRAFT_PREFIX + secrets.token_hex(8)
    address = {k: v for k, v in order_json["shipping_address"].items() if v}
    cur = await conn.execute(
        _DRAFT_ORDER,
        {
            "id": draft_id,
            "digest": _digest(confirm_token(key, draft_id)),
            "agent": new.agent_id,
            "conv": conversation_id,
            "turn": turn,
            "order": Jsonb(order_json),
            "quote": Jsonb(priced.model_dump(mode="json")),
            "ttl": timedelta(seconds=ttl_seconds),
            "window": DUPLICATE_WINDOW,
            "address": Jsonb(address),
            "items": Jsonb(_wanted(order_json["items"])),
        },
    )
    row = await cur.fetchone()
    assert row is not None
    draft = Draft.model_validate(row)
    if draft.id != draft_id:  # the same order drafted again: its draft, as it was priced
        return draft, Quote.model_validate(draft.payload["quote"])
    return draft, priced


async def draft_cancel(
    conn: Conn,
    order: Order,
    *,
    reason: str | None,
    conversation_id: str,
    turn: int,
    ttl_seconds: int,
    key: bytes,
) -> Draft:
    """Propose cancelling `order`; an open cancellation draft for it is returned again."""
    async with conn.transaction():
        await _lock_conversation(conn, order.agent_id, conversation_id)
        existing = await _open_draft(conn, order.agent_id, conversation_id, "cancel", order.id)
        if existing is not None:
            return existing
        return await _insert(
            conn,
            kind="cancel",
            agent_id=order.agent_id,
            conversation_id=conversation_id,
            turn=turn,
            payload={"reason": reason},
            order_id=order.id,
            ttl_seconds=ttl_seconds,
            key=key,
        )


async def draft_change(
    conn: Conn,
    order: Order,
    kind: Literal["modify", "return"],
    payload: dict[str, Any],
    *,
    conversation_id: str,
    turn: int,
    ttl_seconds: int,
    key: bytes,
) -> Draft:
    """Propose editing `order` or returning items of it (`payload` is the service's, as
    JSON). The same proposal while its draft is open returns that draft; another one replaces
    the conversation's open drafts of this kind: only the latest summary can be confirmed."""
    async with conn.transaction():
        await _lock_conversation(conn, order.agent_id, conversation_id)
        existing = await _open_draft(conn, order.agent_id, conversation_id, kind, order.id)
        if existing is not None and existing.payload == payload:
            return existing
        await conn.execute(
            "update agent_orders.drafts set expires_at = now()"
            " where agent_id = %(agent)s and conversation_id = %(conv)s and kind = %(kind)s"
            " and confirmed_at is null and expires_at > now()",
            {"agent": order.agent_id, "conv": conversation_id, "kind": kind},
        )
        return await _insert(
            conn,
            kind=kind,
            agent_id=order.agent_id,
            conversation_id=conversation_id,
            turn=turn,
            payload=payload,
            order_id=order.id,
            ttl_seconds=ttl_seconds,
            key=key,
        )


async def find(conn: Conn, draft_id: str, *, agent_id: UUID, conversation_id: str) -> Draft | None:
    """A draft of this agent and conversation, confirmed or not, expired or not."""
    cur = await conn.execute(
        "select " + _COLUMNS + " from agent_orders.drafts"
        " where id = %(id)s and agent_id = %(agent)s and conversation_id = %(conv)s",
        {"id": draft_id, "agent": agent_id, "conv": conversation_id},
    )
    row = await cur.fetchone()
    return Draft.model_validate(row) if row else None


_REFUSALS: dict[ConfirmationMode, tuple[str, str]] = {
    ConfirmationMode.turns: (
        "the customer has not answered this draft yet",
        "read the summary to the customer, ask for an explicit yes, and call confirm_order"
        " only after they reply (or give them the confirmation link)",
    ),
    ConfirmationMode.elicitation: (
        "this store takes the customer's yes in their app or on the confirmation page",
        "this client cannot ask the customer itself: give them the confirmation link",
    ),
    ConfirmationMode.page: (
        "this store takes the customer's yes on its confirmation page only",
        "give the customer the confirmation link; call confirm_order later to see whether"
        " they placed it",
    ),
}


_LOCKED = (
    "select " + _COLUMNS + ", expires_at <= now() as expired from agent_orders.drafts"
    " where {where} for update"
)


async def _locked(conn: Conn, where: str, params: dict[str, Any]) -> tuple[Draft, bool] | None:
    """The draft matching `where`, locked for this transaction, and whether it expired."""
    cur = await conn.execute(_LOCKED.format(where=where), params)
    row = await cur.fetchone()
    return (Draft.model_validate(row), bool(row["expired"])) if row else None


async def confirm(
    conn: Conn,
    draft_id: str,
    *,
    agent_id: UUID,
    conversation_id: str,
    turn: int,
    by: Provenance,
    approved: bool = False,
) -> Confirmation:
    """Carry out a draft for the conversation's agent: create the order, or cancel it.

    `approved`: the host's own UI asked the human about this draft and they accepted. Without
    it the yes is the host's counted turn. Idempotent under concurrency. Runs in the
    caller's transaction (the draft stays locked until it ends); nothing is written before
    any refusal, so a refused confirmation leaves that transaction clean for reads.
    """
    found = await _locked(
        conn,
        "id = %(id)s and agent_id = %(agent)s and conversation_id = %(conv)s",
        {"id": draft_id, "agent": agent_id, "conv": conversation_id},
    )
    if found is None:
        raise NotFound(
            f"no draft {draft_id!r} in this conversation",
            hint="use the draft_id the last draft returned (place_order, cancel_order,"
            " modify_order or request_return)",
        )
    draft, expired = found
    consent = Consent.approval if approved else Consent.turn if turn > draft.turn else None
    return await _carry_out(conn, draft, expired, consent, by)


async def confirm_on_page(conn: Conn, token: str) -> Confirmation:
    """Carry out the draft whose confirmation page this is: the customer pressed its button.

    A second press, or a replay of the token, returns the same order and writes nothing.
    """
    found = await _locked(conn, "confirm_digest = %(digest)s", {"digest": _digest(token)})
    if found is None:
        raise NotFound("no such confirmation page", hint="ask the agent for a new link")
    draft, expired = found
    by = Provenance(actor=Actor.customer, conversation_id=draft.conversation_id)
    return await _carry_out(conn, draft, expired, Consent.page, by)


async def find_by_token(conn: Conn, token: str) -> tuple[Draft, bool, Order | None]:
    """The draft behind a confirmation page, whether it expired, and its order once it has one
    (the placed order, or the order a cancellation is about)."""
    cur = await conn.execute(
        "select " + _COLUMNS + ", expires_at <= now() as expired from agent_orders.drafts"
        " where confirm_digest = %(digest)s",
        {"digest": _digest(token)},
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound("no such confirmation page", hint="ask the agent for a new link")
    draft = Draft.model_validate(row)
    order = None
    if draft.order_id is not None:
        order = await orders.get_order(conn, draft.order_id, agent_id=draft.agent_id)
    return draft, bool(row["expired"]), order


_CONFIRMED = (
    "update agent_orders.drafts set order_id = %(order)s, confirmed_at = now()"
    " where id = %(id)s returning confirmed_at, " + mail.QUEUED_TO + " as mail_to"
)
"""The draft carried out, and where the email about it was queued (read in the same trip)."""


async def _carry_out(
    conn: Conn, draft: Draft, expired: bool, consent: Consent | None, by: Provenance
) -> Confirmation:
    """The one path from a locked draft to its effect, whichever way the yes came. Every
    refusal comes before the first write."""
    if draft.confirmed_at is not None and draft.order_id is not None:
        order = await orders.get_order(conn, draft.order_id, agent_id=draft.agent_id)
        kind = MAIL.get(draft.kind)
        mail_to = await mail.queued_to(conn, order.id, kind) if kind else None
        return Confirmation(draft=draft, order=order, repeated=True, mail_to=mail_to)
    if consent is None or consent not in ACCEPTED[draft.confirmation]:
        message, hint = _REFUSALS[draft.confirmation]
        raise ConfirmationRequired(message, hint=hint, confirmation=draft.confirmation.value)
    if expired:
        newer = await _open_draft(conn, draft.agent_id, draft.conversation_id, draft.kind)
        if draft.kind == "order" and newer is not None and newer.created_at > draft.created_at:
            raise DraftReplaced(
                f"draft {draft.id} was replaced by the newer draft {newer.id}",
                hint=f"the latest summary is draft {newer.id}: confirm it only if the"
                " customer said yes to that summary; otherwise read it back first",
                use_draft_id=newer.id,
            )
        raise DraftExpired(
            f"draft {draft.id} expired or was replaced by a newer draft",
            hint="confirm the latest draft_id, or draft it again and read it back",
        )
    if draft.kind == "order":
        # Validated when it was drafted, and stored as validated: not checked again.
        new = parse(NewOrder, draft.payload["order"], context=STORED)
        quoted = Decimal(draft.payload["quote"]["total"])

        def same_total(total: Decimal, currency: str) -> None:
            if total != quoted:
                raise PriceChanged(
                    f"prices changed since the draft: total is now {total}"
                    f" {currency}, not {quoted}",
                    hint="call place_order again and read the new total to the customer",
                )

        order = await orders.insert_order(conn, new, by=by, check=same_total)
        # A `stripe` store's order gets its Checkout link, made at Stripe after the commit.
        if draft.payment_mode == PaymentMode.stripe:
            await payments.order_placed(conn, order)
    elif draft.kind == "cancel":
        assert draft.order_id is not None
        order = await orders.cancel_order(
            conn,
            draft.order_id,
            reason=draft.payload.get("reason"),
            by=by,
            agent_id=draft.agent_id,
        )
    elif draft.kind == "modify":
        assert draft.order_id is not None
        promised = Decimal(draft.payload["total"])

        def same_new_total(plan: EditPlan) -> None:
            if plan.after.total != promised:
                raise PriceChanged(
                    f"prices changed since the draft: the new total would be"
                    f" {plan.after.total} {plan.currency}, not {promised}",
                    hint="call modify_order again and read the new total to the customer",
                )

        order, _ = await edits.apply(
            conn,
            draft.order_id,
            draft.payload["edit"],
            by=by,
            agent_id=draft.agent_id,
            check=same_new_total,
        )
    else:
        assert draft.order_id is not None
        await returns.request(
            conn,
            draft.order_id,
            draft.payload["items"],
            reason=draft.payload.get("reason"),
            by=by,
            draft_id=draft.id,
            agent_id=draft.agent_id,
        )
        order = await orders.get_order(conn, draft.order_id)
    cur = await conn.execute(
        _CONFIRMED, {"order": order.id, "id": draft.id, "mail": MAIL.get(draft.kind)}
    )
    updated = await cur.fetchone()
    assert updated is not None
    return Confirmation(
        draft=draft.model_copy(
            update={"order_id": order.id, "confirmed_at": updated["confirmed_at"]}
        ),
        order=order,
        repeated=False,
        mail_to=updated["mail_to"],
    )


async def purge_expired(conn: Conn, *, keep_days: int = 7, limit: int = 1000) -> int:
    """Delete up to `limit` drafts that expired unconfirmed more than `keep_days` ago.

    Confirmed drafts stay: they are the record of what the customer said yes to.
    """
    cur = await conn.execute(
        "delete from agent_orders.drafts where id in ("
        " select id from agent_orders.drafts where confirmed_at is null"
        " and expires_at < now() - make_interval(days => %(days)s)"
        " limit %(limit)s for update skip locked)",
        {"days": keep_days, "limit": limit},
    )
    return cur.rowcount
