"""Orders: create at catalog prices, read, list, move through the status machine, cancel."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from agent_tools.db import Conn
from agent_tools.errors import (
    CurrencyMismatch,
    InvalidTransition,
    NotFound,
    ValidationFailed,
    VersionConflict,
    parse,
)
from agent_tools.models import (
    FINAL,
    MAX_MONEY,
    Actor,
    LineItem,
    NewOrder,
    Order,
    OrderEvent,
    OrderFilter,
    OrderPage,
    OrderStatus,
    PaymentStatus,
    Provenance,
    StatusChange,
    allowed_next,
)
from agent_tools.service import catalog, payments, stock

COLUMNS = (
    "id, order_number, agent_id, owner_id, conversation_id, customer_name, customer_email,"
    " customer_phone, shipping_address, line_items, subtotal, shipping_fee, total, currency,"
    " status, tracking_number, carrier, estimated_delivery, customer_notes, internal_notes,"
    " payment_status, payment_method, amount_paid, amount_refunded, metadata, contact_verified,"
    " tracking_token_version, version, created_at, updated_at, shipped_at,"
    " delivered_at, cancelled_at"
)
"""Every column an `Order` is read from."""
_COLUMNS = sql.SQL(COLUMNS)
ORDER_NUMBER = re.compile(r"^ORD-\d{4}-\d{6,}$")
_NUMBER_TRIES = 12


def new_order_number(year: int, attempt: int = 0) -> str:
    """`ORD-YYYY-NNNNNN`, random so it cannot be guessed by counting.

    Every third collision adds a digit, so a crowded year's space grows instead of spinning.
    """
    digits = 6 + attempt // 3
    return f"ORD-{year}-{secrets.randbelow(10**digits):0{digits}d}"


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01")))


def checked_subtotal(lines: list[LineItem], shipping_fee: Decimal) -> Decimal:
    """The lines' sum, refused when the total with shipping would not fit numeric(12,2)."""
    subtotal = sum((ln.line_total for ln in lines), Decimal("0.00"))
    if subtotal + shipping_fee > MAX_MONEY:
        raise ValidationFailed(
            f"the order total exceeds {MAX_MONEY}", field="items", hint="split the order"
        )
    return subtotal


def line_json(line: LineItem) -> dict[str, Any]:
    return {
        "sku": line.sku,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price": _money(line.unit_price),
        "line_total": _money(line.line_total),
        "stock_reserved": line.stock_reserved,
    }


_INSERT = sql.SQL(
    "with o as ("
    " insert into agent_orders.orders (order_number, agent_id, owner_id, conversation_id,"
    " customer_name, customer_email, customer_phone, shipping_address, line_items, subtotal,"
    " shipping_fee, total, currency, customer_notes, internal_notes, payment_status,"
    " payment_method, metadata, contact_verified, amount_paid)"
    " values (%(number)s, %(agent)s, %(owner)s, %(conv)s, %(name)s, %(email)s, %(phone)s,"
    " %(address)s, %(lines)s, %(subtotal)s, %(fee)s, %(total)s, %(currency)s, %(cnotes)s,"
    " %(inotes)s, %(pstatus)s, %(pmethod)s, %(metadata)s, %(verified)s, %(paid)s)"
    " on conflict (order_number) do nothing returning {}"
    "), created as ("
    " insert into agent_orders.order_events (order_id, kind, to_status, actor,"
    " customer_visible, conversation_id, tool_call_id, data)"
    " select id, 'created', 'pending', %(actor)s, true, %(by_conv)s, %(call)s, '{{}}' from o"
    "), taken as ("
    " update agent_orders.products p set stock = p.stock - v.q, updated_at = now()"
    " from unnest(%(ids)s::uuid[], %(qs)s::int[]) as v(id, q)"
    " where p.id = v.id and exists (select from o)"
    ") select * from o"
).format(_COLUMNS)
"""The order, its `created` event and the stock it takes (rows the caller has locked), in one
statement; none of them when the order number is taken."""


async def _price_catalog_lines(
    conn: Conn, new: NewOrder, owner_id: UUID | None
) -> tuple[dict[str, Any], list[LineItem], list[tuple[UUID, int]]]:
    """Lock the agent's products, check them and price the lines. Raises before any write.

    Returns the agent's row, the priced catalog lines, and the (product id, quantity) pairs
    whose stock is tracked, in id order, for the caller to take.
    """
    wanted: dict[str, int] = defaultdict(int)
    for item in new.items:
        wanted[item.sku] += item.quantity
    agent, rows = await stock.lock_catalog(conn, new.agent_id, wanted, owner_id=owner_id)
    if new.currency is not None and new.currency != agent["currency"]:
        raise CurrencyMismatch(
            f"this store sells in {agent['currency']}, not {new.currency}",
            field="currency",
            expected=agent["currency"],
        )
    catalog.check_available(wanted, {s: (r["active"], r["stock"]) for s, r in rows.items()})
    tracked = sorted((rows[s]["id"], q) for s, q in wanted.items() if rows[s]["stock"] is not None)
    lines = []
    for item in new.items:
        row = rows[item.sku]
        price = Decimal(row["unit_price"])
        lines.append(
            LineItem(
                sku=item.sku,
                name=row["name"],
                quantity=item.quantity,
                unit_price=price,
                line_total=price * item.quantity,
                stock_reserved=row["stock"] is not None,
            )
        )
    return agent, lines, tracked


async def create_order(
    conn: Conn,
    data: NewOrder | dict[str, Any],
    *,
    by: Provenance | None = None,
    owner_id: UUID | None = None,
) -> Order:
    """Price `data` from the catalog (custom lines as given), reserve stock, insert the order
    and its `created` event, all in one transaction. With `owner_id`, the agent must be theirs."""
    new = parse(NewOrder, data)
    async with conn.transaction():
        return await insert_order(conn, new, by=by or Provenance(), owner_id=owner_id)


async def insert_order(
    conn: Conn,
    new: NewOrder,
    *,
    by: Provenance,
    owner_id: UUID | None = None,
    check: Callable[[Decimal, str], None] | None = None,
) -> Order:
    """`create_order`'s work inside a transaction the caller has open (and rolls back if this
    raises), without a savepoint of its own. `check(total, currency)` may refuse the priced
    order before anything is written."""
    agent, lines, tracked = await _price_catalog_lines(conn, new, owner_id)
    lines += [c.line() for c in new.custom_lines]
    fee: Decimal = agent["shipping_fee"]
    subtotal = checked_subtotal(lines, fee)
    if check is not None:
        check(subtotal + fee, agent["currency"])
    params = {
        "agent": new.agent_id,
        "owner": agent["owner_id"],
        "conv": new.conversation_id or by.conversation_id,
        "name": new.customer.name,
        "email": new.customer.email,
        "phone": new.customer.phone,
        "address": Jsonb(new.shipping_address.model_dump(exclude_none=True)),
        "lines": Jsonb([line_json(ln) for ln in lines]),
        "subtotal": subtotal,
        "fee": fee,
        "total": subtotal + fee,
        "currency": agent["currency"],
        "cnotes": new.customer_notes,
        "inotes": new.internal_notes,
        "pstatus": new.payment_status.value,
        # An order placed as paid (the owner took the money elsewhere) was paid in full.
        "paid": subtotal + fee if new.payment_status == PaymentStatus.paid else Decimal(0),
        "pmethod": new.payment_method,
        "metadata": Jsonb(new.metadata),
        "verified": new.contact_verified,
        "actor": by.actor.value,
        "by_conv": by.conversation_id,
        "call": by.tool_call_id,
        "ids": [t[0] for t in tracked],
        "qs": [t[1] for t in tracked],
    }
    year = datetime.now(UTC).year
    row = None
    for attempt in range(_NUMBER_TRIES):
        params["number"] = new_order_number(year, attempt)
        cur = await conn.execute(_INSERT, params)
        row = await cur.fetchone()
        if row is not None:
            break
    if row is None:  # pragma: no cover - needs ~12 collisions in a row
        raise RuntimeError("could not find a free order number")
    return Order.model_validate(row)


async def add_event(
    conn: Conn,
    order_id: UUID,
    kind: str,
    by: Provenance,
    *,
    from_status: OrderStatus | None = None,
    to_status: OrderStatus | None = None,
    note: str | None = None,
    visible: bool = True,
    note_visible: bool = False,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "insert into agent_orders.order_events (order_id, kind, from_status, to_status, note,"
        " actor, customer_visible, note_visible, conversation_id, tool_call_id, data)"
        " values (%(order)s, %(kind)s, %(from)s, %(to)s, %(note)s, %(actor)s, %(visible)s,"
        " %(note_visible)s, %(conv)s, %(call)s, %(data)s)",
        {
            "order": order_id,
            "kind": kind,
            "from": from_status,
            "to": to_status,
            "note": note,
            "actor": by.actor.value,
            "visible": visible,
            "note_visible": note is not None and note_visible,
            "conv": by.conversation_id,
            "call": by.tool_call_id,
            "data": Jsonb(data or {}),
        },
    )


def check_version(order: Order, expected: int | None, *, hint: str) -> None:
    """Refuse a change made against another version of the order (`If-Match`); None: any."""
    if expected is not None and expected != order.version:
        raise VersionConflict(
            f"order {order.order_number} changed since version {expected} (now {order.version})",
            hint=hint,
            current_version=order.version,
            current=order.status.value,
            allowed=[s.value for s in allowed_next(order.status)],
        )


def _scope(owner_id: UUID | None, agent_id: UUID | None) -> tuple[sql.Composable, dict[str, Any]]:
    return (
        sql.SQL(
            "(%(owner)s::uuid is null or owner_id = %(owner)s)"
            " and (%(agent)s::uuid is null or agent_id = %(agent)s)"
        ),
        {"owner": owner_id, "agent": agent_id},
    )


def _key_clause(key: UUID | str) -> tuple[sql.Composable, Any]:
    """Orders are addressed by UUID or by order number."""
    if isinstance(key, UUID):
        return sql.SQL("id = %(key)s"), key
    text = key.strip()
    if ORDER_NUMBER.match(text.upper()):
        return sql.SQL("order_number = %(key)s"), text.upper()
    try:
        return sql.SQL("id = %(key)s"), UUID(text)
    except ValueError:
        raise NotFound(
            f"no order {key!r}", hint="order numbers look like ORD-2026-123456"
        ) from None


async def get_order(
    conn: Conn,
    key: UUID | str,
    *,
    owner_id: UUID | None = None,
    agent_id: UUID | None = None,
    for_update: bool = False,
) -> Order:
    """One order by id or number; `NotFound` also when it is outside the given scope."""
    clause, value = _key_clause(key)
    scope, params = _scope(owner_id, agent_id)
    query = sql.SQL("select {} from agent_orders.orders where {} and {}{}").format(
        _COLUMNS, clause, scope, sql.SQL(" for update" if for_update else "")
    )
    cur = await conn.execute(query, {**params, "key": value})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no order {key}", hint="check the order number")
    return Order.model_validate(row)


_EVENTS = (
    "select id, order_id, kind, from_status, to_status, note, actor, customer_visible,"
    " note_visible, conversation_id, tool_call_id, data, created_at"
    " from agent_orders.order_events"
    " where order_id = {} and (not %(visible)s or customer_visible)"
)


async def list_events(
    conn: Conn, order_id: UUID, *, customer_visible_only: bool = False
) -> list[OrderEvent]:
    cur = await conn.execute(
        _EVENTS.format("%(order)s") + " order by id",
        {"order": order_id, "visible": customer_visible_only},
    )
    return [OrderEvent.model_validate(r) for r in await cur.fetchall()]


async def get_order_with_events(
    conn: Conn,
    key: UUID | str,
    *,
    agent_id: UUID | None = None,
    customer_visible_only: bool = False,
) -> tuple[Order, list[OrderEvent]]:
    """`get_order` and `list_events` in one query: one round trip, one snapshot."""
    clause, value = _key_clause(key)
    scope, params = _scope(None, agent_id)
    query = sql.SQL(
        "select {}, (select coalesce(json_agg(e order by e.id), '[]') from ({}) e) as events"
        " from agent_orders.orders o where {} and {}"
    ).format(_COLUMNS, sql.SQL(_EVENTS.format("o.id")), clause, scope)
    cur = await conn.execute(query, {**params, "key": value, "visible": customer_visible_only})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no order {key}", hint="check the order number")
    events = [OrderEvent.model_validate(e) for e in row.pop("events")]
    return Order.model_validate(row), events


async def update_status(
    conn: Conn,
    key: UUID | str,
    data: StatusChange | dict[str, Any],
    *,
    by: Provenance | None = None,
    owner_id: UUID | None = None,
    agent_id: UUID | None = None,
) -> Order:
    """Move an order through the state machine, in one transaction with its event.

    Moving to the same status only updates tracking details (a `tracking_updated` event).
    Cancelling returns reserved stock.
    """
    change = parse(StatusChange, data)
    by = by or Provenance()
    async with conn.transaction():
        order = await get_order(conn, key, owner_id=owner_id, agent_id=agent_id, for_update=True)
        check_version(order, change.expected_version, hint="reload the order and try again")
        target = change.status
        at = _happened_at(order, change.at)
        tracking = {
            k: v
            for k, v in {
                "tracking_number": change.tracking_number,
                "carrier": change.carrier,
                "estimated_delivery": change.estimated_delivery.isoformat()
                if change.estimated_delivery
                else None,
            }.items()
            if v is not None
        }
        if target == order.status:
            if order.status in FINAL or not tracking:
                raise InvalidTransition(
                    f"order {order.order_number} is already {order.status.value}",
                    current=order.status.value,
                    allowed=[s.value for s in allowed_next(order.status)],
                )
            kind = "tracking_updated"
        elif target not in allowed_next(order.status):
            allowed = [s.value for s in allowed_next(order.status)]
            raise InvalidTransition(
                f"order {order.order_number} cannot go from {order.status.value} to {target.value}",
                hint=f"allowed next: {', '.join(allowed)}" if allowed else "this order is final",
                current=order.status.value,
                allowed=allowed,
            )
        else:
            kind = "cancelled" if target == OrderStatus.cancelled else "status_changed"
        if at is not None:
            tracking["at"] = at.isoformat()
        if target == OrderStatus.cancelled:
            await stock.give_back(conn, order.agent_id, order.line_items)
        cur = await conn.execute(
            sql.SQL(
                "update agent_orders.orders set status = %(status)s, version = version + 1,"
                " updated_at = now(),"
                " tracking_number = coalesce(%(tn)s, tracking_number),"
                " carrier = coalesce(%(carrier)s, carrier),"
                " estimated_delivery = coalesce(%(eta)s, estimated_delivery),"
                " shipped_at = case when %(status)s = 'shipped' and shipped_at is null"
                "   then coalesce(%(at)s, now()) else shipped_at end,"
                " delivered_at = case when %(status)s = 'delivered'"
                "   then coalesce(%(at)s, now()) else delivered_at end,"
                " cancelled_at = case when %(status)s = 'cancelled'"
                "   then coalesce(%(at)s, now()) else cancelled_at end"
                " where id = %(id)s returning {}"
            ).format(_COLUMNS),
            {
                "id": order.id,
                "status": target.value,
                "tn": change.tracking_number,
                "carrier": change.carrier,
                "eta": change.estimated_delivery,
                "at": at,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        if change.tracking_number or change.carrier or change.estimated_delivery:
            # The order's carrier fields name its first shipment (imported here: shipments
            # moves orders through this function).
            from agent_tools.service import shipments

            await shipments.sync_from_order(conn, Order.model_validate(row))
        await add_event(
            conn,
            order.id,
            kind,
            by,
            from_status=order.status,
            to_status=target,
            note=change.note,
            # The customer's own words (a cancellation reason given in the chat) are theirs to
            # see; an owner's note is internal unless the owner says it is for the customer.
            note_visible=change.note_for_customer or by.actor in (Actor.agent, Actor.customer),
            data=tracking,
        )
        if target == OrderStatus.cancelled:
            # Open payment links close; what was paid is refunded (after the commit).
            await payments.order_cancelled(conn, order.id, by)
            cur = await conn.execute(
                sql.SQL("select {} from agent_orders.orders where id = %(id)s").format(_COLUMNS),
                {"id": order.id},
            )
            row = await cur.fetchone()
            assert row is not None
    return Order.model_validate(row)


FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of this server's clock a client's `at` may be (clocks drift)."""


def _happened_at(order: Order, at: datetime | None) -> datetime | None:
    """A step's reported time, checked: not in the future, not before the order was placed
    or shipped (the steps whose times it keeps)."""
    if at is None:
        return None
    now = datetime.now(UTC)
    if at > now + FUTURE_SKEW:
        raise ValidationFailed(
            "at is in the future", field="at", hint="give the time it happened, or leave it out"
        )
    floor = max(t for t in (order.created_at, order.shipped_at) if t is not None)
    if at < floor:
        raise ValidationFailed(
            f"at is before the order's previous step ({floor:%Y-%m-%d %H:%M} UTC)",
            field="at",
            hint="give a later time, or leave it out for now",
        )
    return min(at, now)


async def cancel_order(
    conn: Conn,
    key: UUID | str,
    *,
    reason: str | None = None,
    by: Provenance | None = None,
    owner_id: UUID | None = None,
    agent_id: UUID | None = None,
    expected_version: int | None = None,
) -> Order:
    return await update_status(
        conn,
        key,
        {"status": OrderStatus.cancelled, "note": reason, "expected_version": expected_version},
        by=by,
        owner_id=owner_id,
        agent_id=agent_id,
    )


async def add_note(
    conn: Conn,
    key: UUID | str,
    note: str,
    *,
    customer_visible: bool = False,
    by: Provenance | None = None,
    owner_id: UUID | None = None,
) -> OrderEvent:
    text = note.strip()
    if not text or len(text) > 2000:
        raise ValidationFailed("a note is 1 to 2000 characters", field="note")
    async with conn.transaction():
        order = await get_order(conn, key, owner_id=owner_id)
        await add_event(
            conn,
            order.id,
            "note",
            by or Provenance(),
            note=text,
            visible=customer_visible,
            note_visible=customer_visible,
        )
    return (await list_events(conn, order.id))[-1]


# ---- listing ------------------------------------------------------------------------------


def encode_cursor(order: Order) -> str:
    raw = json.dumps([order.created_at.isoformat(), str(order.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        return datetime.fromisoformat(created), UUID(ident)
    except (ValueError, TypeError) as exc:
        raise ValidationFailed("the cursor is not one this API returned", field="cursor") from exc


async def list_orders(
    conn: Conn,
    *,
    owner_id: UUID | None,
    filters: OrderFilter | dict[str, Any] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> OrderPage:
    """Newest first, keyset-paginated on (created_at, id): pages neither skip nor repeat rows
    while orders are being inserted."""
    f = parse(OrderFilter, filters or {})
    if not 1 <= limit <= 100:
        raise ValidationFailed("limit must be between 1 and 100", field="limit")
    where: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": limit + 1}
    if owner_id is not None:
        where.append(sql.SQL("owner_id = %(owner)s"))
        params["owner"] = owner_id
    if f.agent_id is not None:
        where.append(sql.SQL("agent_id = %(agent)s"))
        params["agent"] = f.agent_id
    if len(f.statuses) == 1:
        # `status = any(...)` keeps the planner off the (…, status, created_at) indexes: at a
        # million orders a rare status took 40 ms instead of 0.2 ms.
        where.append(sql.SQL("status = %(status)s"))
        params["status"] = f.statuses[0].value
    elif f.statuses:
        where.append(sql.SQL("status = any(%(statuses)s)"))
        params["statuses"] = [s.value for s in f.statuses]
    if f.customer_email is not None:
        where.append(sql.SQL("customer_email = %(email)s"))
        params["email"] = f.customer_email
    if f.customer_phone_digits is not None:
        # The expression of index orders_phone_digits_idx (migration 0005).
        where.append(sql.SQL("regexp_replace(customer_phone, '[^0-9]', '', 'g') = %(phone)s"))
        params["phone"] = f.customer_phone_digits
    if f.conversation_id is not None:
        where.append(sql.SQL("conversation_id = %(conv)s"))
        params["conv"] = f.conversation_id
    if f.contact_verified is not None:
        where.append(sql.SQL("contact_verified = %(verified)s"))
        params["verified"] = f.contact_verified
    if f.created_from is not None:
        where.append(sql.SQL("created_at >= %(from)s"))
        params["from"] = f.created_from
    if f.created_to is not None:
        where.append(sql.SQL("created_at < %(to)s"))
        params["to"] = f.created_to
    if f.search:
        q = f.search
        # Pick the one predicate an index can serve rather than OR-ing them all.
        if ORDER_NUMBER.match(q.upper()):
            where.append(sql.SQL("order_number = %(q)s"))
            params["q"] = q.upper()
        elif "@" in q:
            where.append(sql.SQL("customer_email = %(q)s"))
            params["q"] = q.lower()
        else:
            where.append(sql.SQL("(customer_name ilike %(q)s or order_number ilike %(q)s)"))
            params["q"] = catalog.like_pattern(q)
    if cursor:
        created, ident = decode_cursor(cursor)
        where.append(sql.SQL("(created_at, id) < (%(c_at)s, %(c_id)s)"))
        params.update(c_at=created, c_id=ident)
    query = sql.SQL(
        "select {} from agent_orders.orders where {} order by created_at desc, id desc"
        " limit %(limit)s"
    ).format(_COLUMNS, sql.SQL(" and ").join(where) if where else sql.SQL("true"))
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    orders = [Order.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return OrderPage(orders=orders, next_cursor=encode_cursor(orders[-1]) if more else None)
