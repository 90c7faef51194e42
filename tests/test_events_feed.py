"""The events feed: webhook-shaped events, a cursor that never skips a late commit."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from agent_tools.service import events
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER, make_store, order_data
from tests.webhook_support import feed, feed_when


@pytest.fixture
async def api(db: Database) -> Any:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


def new_order(agent: Agent) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(order_data(agent), default=str))
    return body


def add_note(conn: psycopg.Connection[Any], order_id: str, text: str) -> int:
    row = conn.execute(
        "insert into agent_orders.order_events (order_id, kind, note, actor)"
        " values (%s, 'note', %s, 'owner') returning id",
        (order_id, text),
    ).fetchone()
    assert row is not None
    event_id: int = row[0]
    return event_id


async def test_a_late_commit_is_never_skipped(
    db: Database, db_url: str, store: Agent, api: httpx.AsyncClient
) -> None:
    """Transaction A writes an event first (lower id), B writes one after it and commits
    first. A reader paging by id would take B, move its cursor past A's id, and never see A.
    The feed holds B back until A has ended, then returns both, in a stable order."""
    order = (await api.post("/api/orders/", json=new_order(store))).json()
    start = await feed_when(api, 1)
    assert [e["type"] for e in start["events"]] == ["order.created"]
    cursor = start["next_cursor"]

    a = psycopg.connect(db_url)
    b = psycopg.connect(db_url)
    try:
        a_id = add_note(a, order["id"], "A, written first")
        b_id = add_note(b, order["id"], "B, written second")
        assert a_id < b_id
        b.commit()

        # The naive reader: B is committed and visible, A is not; its cursor would pass A.
        with psycopg.connect(db_url) as naive:
            ids = [r[0] for r in naive.execute("select id from agent_orders.order_events")]
        assert b_id in ids and a_id not in ids

        held = await feed(api, cursor)
        assert held["events"] == []  # B waits for A
        assert held["next_cursor"] == cursor

        a.commit()
        page = await feed_when(api, 2, cursor)
        assert [e["id"] for e in page["events"]] == [str(a_id), str(b_id)]
        assert [e["data"]["event"]["note"] for e in page["events"]] == [
            "A, written first",
            "B, written second",
        ]
        assert (await feed(api, page["next_cursor"]))["events"] == []
    finally:
        a.close()
        b.close()


async def test_a_rolled_back_event_never_appears(
    db: Database, db_url: str, store: Agent, api: httpx.AsyncClient
) -> None:
    order = (await api.post("/api/orders/", json=new_order(store))).json()
    cursor = (await feed_when(api, 1))["next_cursor"]
    with psycopg.connect(db_url) as conn:
        add_note(conn, order["id"], "never")
        conn.rollback()
        kept = add_note(conn, order["id"], "kept")
        conn.commit()
    page = await feed_when(api, 1, cursor)
    assert [e["id"] for e in page["events"]] == [str(kept)]


async def test_pages_types_and_owners(db: Database, store: Agent, api: httpx.AsyncClient) -> None:
    for _ in range(3):
        order = (await api.post("/api/orders/", json=new_order(store))).json()
        await api.patch(f"/api/orders/{order['id']}/status", json={"status": "shipped"})
    other = await make_store(db, OTHER_OWNER, "Other")
    async with client(make_app(db)) as api_b:
        api_b.headers.update(bearer(OTHER_OWNER))
        await api_b.post("/api/orders/", json=new_order(other))
        theirs = await feed_when(api_b, 1)
        assert [e["type"] for e in theirs["events"]] == ["order.created"]

    await feed_when(api, 6)
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        page = await feed(api, cursor, limit=2)
        if not page["events"]:
            break
        assert len(page["events"]) <= 2
        seen += page["events"]
        cursor = page["next_cursor"]
    assert [e["type"] for e in seen] == ["order.created", "order.shipped"] * 3
    assert len({e["id"] for e in seen}) == 6
    first = seen[0]
    assert set(first) == {"id", "type", "timestamp", "data"}
    assert first["data"]["order"]["customer_email"] == "ann@example.com"
    assert first["data"]["order"]["subtotal"] == "12.50"
    assert first["data"]["order"]["tracking_url"].startswith("http")
    assert first["data"]["event"]["kind"] == "created"

    shipped = await feed(api, types=["order.shipped"])
    assert [e["type"] for e in shipped["events"]] == ["order.shipped"] * 3
    # The same body as the webhook: rendered by one function.
    async with db.connection() as conn:
        bodies = await events.bodies(conn, [int(seen[1]["id"])])
    assert {"id": seen[1]["id"], **bodies[int(seen[1]["id"])]} == seen[1]


@pytest.mark.parametrize(
    "params",
    [
        {"after": "not-a-cursor"},
        {"after": "bm9wZQ"},
        {"limit": 0},
        {"limit": 501},
        {"types": "nope"},
    ],
)
async def test_bad_parameters_are_refused(api: httpx.AsyncClient, params: dict[str, Any]) -> None:
    r = await api.get("/api/events/", params=params)
    assert_problem(r, 422, "validation")


async def test_the_feed_needs_an_owner(db: Database) -> None:
    async with client(make_app(db)) as anonymous:
        assert_problem(await anonymous.get("/api/events/"), 401, "unauthorized")
