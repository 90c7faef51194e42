"""Editing an order before it ships: items, custom lines, address, contact, notes.

An edit is worked out as a plan first (both sides, the difference, the stock it moves) by one
pure function, so the customer's draft, the owner's preview and the change itself can never
disagree. Applying it is one transaction: the order row locked, the version checked, the
products locked in id order, stock moved by the difference (never below zero), totals
recomputed, the version bumped and an `edited` event carrying the diff written.

Units the order already had keep the price they were sold at; only added units are priced
from the catalog. The shipping fee is the one the order was placed with.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import suppress
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from agent_tools.db import Conn
from agent_tools.errors import (
    OrderError,
    UnknownSku,
    ValidationFailed,
    parse,
)
from agent_tools.models import (
    Agent,
    ItemIn,
    LineItem,
    Order,
    OrderStatus,
    Provenance,
)
from agent_tools.models.changes import EditPlan, OrderEdit, OrderSide
from agent_tools.service import agents, catalog, orders, payments, shipments, stock

EDITABLE = frozenset({OrderStatus.pending, OrderStatus.confirmed})
"""Where every store allows edits; a store may add `processing` (`editable_while_processing`)."""


class NotEditable(OrderError):
    """The order has gone too far (packaged, shipped, delivered or cancelled) to change."""

    code = "not_editable"
    status = 409


def editable(agent: Agent) -> frozenset[OrderStatus]:
    return EDITABLE | {OrderStatus.processing} if agent.editable_while_processing else EDITABLE


def check_editable(order: Order, agent: Agent) -> None:
    allowed = editable(agent)
    if order.status not in allowed:
        raise NotEditable(
            f"order {order.order_number} is {order.status.value} and can no longer be changed",
            hint="orders can be changed while "
            + " or ".join(s.value for s in sorted(allowed, key=list(OrderStatus).index))
            + "; once delivered, items can be returned",
            current=order.status.value,
        )


def _side(order: Order) -> OrderSide:
    return OrderSide.model_validate(order.model_dump())


def _catalog_lines(
    old: list[LineItem], items: list[ItemIn], products: Mapping[str, Mapping[str, Any]]
) -> tuple[list[LineItem], dict[str, int]]:
    """The new catalog lines for `items`, and the units of each sku priced from the catalog.

    Units of a sku the order had are taken from its old lines first (their price, name and
    stock reservation); only the rest is new, at today's catalog price.
    """
    pool: dict[str, list[list[Any]]] = defaultdict(list)
    for line in old:
        assert line.sku is not None
        pool[line.sku].append([line, line.quantity])
    lines: list[LineItem] = []
    added: dict[str, int] = defaultdict(int)
    for i, item in enumerate(items):
        left = item.quantity
        parts: list[LineItem] = []
        for entry in pool.get(item.sku, []):
            line, available = entry
            take = min(left, available)
            if take:
                entry[1] -= take
                left -= take
                parts.append(line.model_copy(update={"quantity": take}))
        if left:
            product = products.get(item.sku)
            if product is None:
                raise UnknownSku(
                    f"unknown sku {item.sku!r}",
                    hint="use a sku from the catalog (search_products)",
                    field=f"items[{i}].sku",
                    skus=[item.sku],
                )
            added[item.sku] += left
            parts.append(
                LineItem(
                    sku=item.sku,
                    name=product["name"],
                    quantity=left,
                    unit_price=Decimal(product["unit_price"]),
                    line_total=Decimal(0),
                    stock_reserved=product["stock"] is not None,
                )
            )
        for part in parts:
            last = lines[-1] if lines else None
            if last is not None and (last.sku, last.name, last.unit_price, last.stock_reserved) == (
                part.sku,
                part.name,
                part.unit_price,
                part.stock_reserved,
            ):
                lines[-1] = last.model_copy(update={"quantity": last.quantity + part.quantity})
            else:
                lines.append(part)
    priced = [ln.model_copy(update={"line_total": ln.unit_price * ln.quantity}) for ln in lines]
    return priced, dict(added)


def plan(order: Order, edit: OrderEdit, products: Mapping[str, Mapping[str, Any]]) -> EditPlan:
    """The edit worked out against the order and the catalog rows of every sku involved
    (`stock.lock_catalog`). Raises before anything is written: unknown or inactive skus,
    short stock, a total too large."""
    old_catalog = [ln for ln in order.line_items if ln.sku and ln.sku in products]
    old_custom = [ln for ln in order.line_items if not (ln.sku and ln.sku in products)]
    catalog_lines, added = old_catalog, dict[str, int]()
    if edit.items is not None:
        catalog_lines, added = _catalog_lines(old_catalog, list(edit.items), products)
    custom = old_custom
    if edit.custom_lines is not None:
        custom = [c.line() for c in edit.custom_lines]
    lines = catalog_lines + custom
    if not lines:
        raise ValidationFailed(
            "an order needs at least one item",
            field="items",
            hint="to drop everything, cancel the order instead",
        )
    before, after_held = stock.held(order.line_items), stock.held(lines)
    delta = {
        sku: after_held.get(sku, 0) - before.get(sku, 0)
        for sku in sorted(set(before) | set(after_held))
    }
    delta = {s: q for s, q in delta.items() if q}
    # Only what is taken anew must be on sale and in stock; kept units are already the order's.
    wanted = {s: max(delta.get(s, 0), 0) for s in added} | {s: q for s, q in delta.items() if q > 0}
    catalog.check_available(
        wanted, {s: (bool(r["active"]), r["stock"]) for s, r in products.items()}
    )
    subtotal = orders.checked_subtotal(lines, order.shipping_fee)
    customer = edit.customer
    address = (
        edit.shipping_address.model_dump(exclude_none=True)
        if edit.shipping_address is not None
        else order.shipping_address
    )
    after = OrderSide(
        line_items=lines,
        subtotal=subtotal,
        shipping_fee=order.shipping_fee,
        total=subtotal + order.shipping_fee,
        shipping_address=address,
        customer_name=customer.name if customer else order.customer_name,
        customer_email=customer.email if customer else order.customer_email,
        customer_phone=customer.phone if customer else order.customer_phone,
        customer_notes=order.customer_notes if edit.customer_notes is None else edit.customer_notes,
        internal_notes=order.internal_notes if edit.internal_notes is None else edit.internal_notes,
    )
    before_side = _side(order)
    changed = [
        name
        for name, fields in _PARTS.items()
        if any(getattr(before_side, f) != getattr(after, f) for f in fields)
    ]
    # What a paid order's money does: refunded beyond the new total, or owed up to it.
    zero = Decimal("0.00")
    total = subtotal + order.shipping_fee
    net_paid = order.amount_paid - order.amount_refunded
    cheaper, dearer = total < before_side.total, total > before_side.total
    return EditPlan(
        refund=max(zero, net_paid - total) if cheaper else zero,
        owed=max(zero, total - order.amount_paid) if dearer and order.amount_paid > 0 else zero,
        order_id=order.id,
        order_number=order.order_number,
        version=order.version,
        currency=order.currency,
        before=before_side,
        after=after,
        changed=changed,
        difference=after.total - before_side.total,
        stock=delta,
    )


_PARTS: dict[str, tuple[str, ...]] = {
    "items": ("line_items",),
    "shipping_address": ("shipping_address",),
    "customer": ("customer_name", "customer_email", "customer_phone"),
    "customer_notes": ("customer_notes",),
    "internal_notes": ("internal_notes",),
}
"""What an edit can change, and the order's fields each part covers."""


def _skus(order: Order, edit: OrderEdit) -> set[str]:
    skus = {ln.sku for ln in order.line_items if ln.sku}
    return skus | {i.sku for i in edit.items or []}


async def preview(
    conn: Conn,
    key: UUID | str,
    data: OrderEdit | dict[str, Any],
    *,
    owner_id: UUID | None = None,
    agent_id: UUID | None = None,
) -> EditPlan:
    """What the edit would do, without doing it (nothing locked, nothing written)."""
    edit = parse(OrderEdit, data)
    order = await orders.get_order(conn, key, owner_id=owner_id, agent_id=agent_id)
    return (await _checked_plan(conn, order, edit, lock=False))[0]


async def _checked_plan(
    conn: Conn, order: Order, edit: OrderEdit, *, lock: bool
) -> tuple[EditPlan, dict[str, dict[str, Any]]]:
    """The plan, refused unless the version matches, the order is editable and the edit
    changes something; and the products' rows it read."""
    orders.check_version(
        order, edit.expected_version, hint="reload the order and make the change again"
    )
    agent = await agents.get_agent(conn, order.agent_id)
    check_editable(order, agent)
    lines = edit.items is not None or edit.custom_lines is not None
    if lines and await shipments.for_order(conn, order):
        # Shipments hold lines by their place in the order: the lines stay as they are.
        raise NotEditable(
            f"order {order.order_number} has a shipment already, so its items cannot change",
            hint="change the address, contact or notes only, or add items as another order",
            current=order.status.value,
        )
    _, products = await stock.lock_catalog(conn, order.agent_id, _skus(order, edit), lock=lock)
    result = plan(order, edit, products)
    if not result.changed:
        raise ValidationFailed(
            "the edit changes nothing", hint="send only what should be different"
        )
    return result, products


async def apply(
    conn: Conn,
    key: UUID | str,
    data: OrderEdit | dict[str, Any],
    *,
    by: Provenance,
    owner_id: UUID | None = None,
    agent_id: UUID | None = None,
    check: Callable[[EditPlan], None] | None = None,
) -> tuple[Order, EditPlan]:
    """Carry out an edit in one transaction; returns the order as it now is and the plan.
    `check(plan)` may refuse the worked-out edit before anything is written."""
    edit = parse(OrderEdit, data)
    async with conn.transaction():
        order = await orders.get_order(
            conn, key, owner_id=owner_id, agent_id=agent_id, for_update=True
        )
        result, products = await _checked_plan(conn, order, edit, lock=True)
        if check is not None:
            check(result)
        after = result.after
        await stock.move(conn, products, result.stock)
        contact_changed = (after.customer_email, after.customer_phone) != (
            order.customer_email,
            order.customer_phone,
        )
        await conn.execute(
            "update agent_orders.orders set line_items = %(lines)s, subtotal = %(subtotal)s,"
            " total = %(total)s, shipping_address = %(address)s, customer_name = %(name)s,"
            " customer_email = %(email)s, customer_phone = %(phone)s,"
            " customer_notes = %(cnotes)s, internal_notes = %(inotes)s,"
            " contact_verified = contact_verified and not %(contact_changed)s,"
            " version = version + 1, updated_at = now() where id = %(id)s",
            {
                "id": order.id,
                "lines": Jsonb([orders.line_json(ln) for ln in after.line_items]),
                "subtotal": after.subtotal,
                "total": after.total,
                "address": Jsonb(after.shipping_address),
                "name": after.customer_name,
                "email": after.customer_email,
                "phone": after.customer_phone,
                "cnotes": after.customer_notes,
                "inotes": after.internal_notes,
                "contact_changed": contact_changed,
            },
        )
        await orders.add_event(
            conn,
            order.id,
            "edited",
            by,
            note=f"Order changed: {', '.join(p.replace('_', ' ') for p in result.changed)}",
            note_visible=True,
            data=event_data(result),
        )
        # Money follows the new total in the same transaction: what was paid beyond it is
        # refunded; what a paid order now owes gets a payment link where the store has them.
        if result.difference and order.amount_paid > 0:
            await payments.total_changed(conn, order.id)
            if result.refund > 0:
                await payments.refund(conn, order.id, result.refund, reason="order changed", by=by)
            if result.owed > 0:
                with suppress(payments.NotStripe):
                    await payments.request_link(conn, order.id, by=by)
        updated = await orders.get_order(conn, order.id)
    return updated, result


def event_data(result: EditPlan) -> dict[str, Any]:
    """The `edited` event's diff: each changed part before and after, and the difference."""
    before = result.before.model_dump(mode="json")
    after = result.after.model_dump(mode="json")
    diff: dict[str, Any] = {}
    for part in result.changed:
        fields = _PARTS[part]
        if part == "items":
            fields = ("line_items", "subtotal", "total")
        diff[part] = {
            "before": {f: before[f] for f in fields},
            "after": {f: after[f] for f in fields},
        }
    return {
        "changed": result.changed,
        "diff": diff,
        "difference": str(result.difference),
        "refund": str(result.refund),
        "owed": str(result.owed),
        "stock": result.stock,
        "from_version": result.version,
    }
