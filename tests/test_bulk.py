"""`POST /api/orders/bulk/status`: many orders, one transaction each, a result per order."""

from __future__ import annotations

from agent_tools.db import Database
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import orders
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER, make_store, order_data

OWNER_BY = Provenance(actor=Actor.owner)


async def test_partial_success_is_reported_per_order(db: Database, store: Agent) -> None:
    other_store = await make_store(db, OTHER_OWNER, "Other")
    async with db.connection() as conn:
        made = [await orders.create_order(conn, order_data(store), by=OWNER_BY) for _ in range(4)]
        theirs = await orders.create_order(conn, order_data(other_store), by=OWNER_BY)
        await orders.update_status(conn, made[2].id, {"status": "cancelled"}, by=OWNER_BY)
    body = {
        "status": "shipped",
        "orders": [
            {"order": made[0].order_number, "carrier": "UPS", "tracking_number": "1Z1"},
            str(made[1].id),
            made[2].order_number,  # cancelled: cannot ship
            {"order": made[3].order_number, "expected_version": 7},
            theirs.order_number,  # another owner's: as unknown
            "ORD-2026-000000",
        ],
    }
    async with client(make_app(db)) as api:
        api.headers.update(bearer(OWNER))
        r = await api.post("/api/orders/bulk/status", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["succeeded"], out["failed"]) == (2, 4)
        results = out["results"]
        assert [x["ok"] for x in results] == [True, True, False, False, False, False]
        assert [x["order"] for x in results] == [
            body["orders"][0]["order"],  # type: ignore[index]
            str(made[1].id),
            made[2].order_number,
            made[3].order_number,
            theirs.order_number,
            "ORD-2026-000000",
        ]
        assert results[0]["status"] == "shipped" and results[0]["version"] == 2
        assert [x["problem"]["code"] for x in results[2:]] == [
            "invalid_transition",
            "version_conflict",
            "not_found",
            "not_found",
        ]
        assert results[2]["problem"]["allowed"] == []
        assert results[3]["problem"]["current_version"] == 1

        assert_problem(
            await api.post("/api/orders/bulk/status", json={"status": "shipped", "orders": []}),
            422,
            "validation",
        )
        too_many = {"status": "shipped", "orders": [made[3].order_number] * 501}
        assert_problem(await api.post("/api/orders/bulk/status", json=too_many), 422, "validation")

    async with db.connection() as conn:
        first = await orders.get_order(conn, made[0].id)
        untouched = await orders.get_order(conn, made[3].id)
        events = await orders.list_events(conn, made[3].id)
    assert (first.status, first.carrier, first.tracking_number) == ("shipped", "UPS", "1Z1")
    assert (untouched.status, untouched.version, len(events)) == ("pending", 1, 1)


async def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer(
    db: Database, store: Agent
) -> None:
    async with db.connection() as conn:
        made = [await orders.create_order(conn, order_data(store), by=OWNER_BY) for _ in range(2)]
    body = {"status": "confirmed", "orders": [o.order_number for o in made]}
    async with client(make_app(db)) as api:
        api.headers.update(bearer(OWNER))
        keyed = {"Idempotency-Key": "bulk-1"}
        first = await api.post("/api/orders/bulk/status", json=body, headers=keyed)
        again = await api.post("/api/orders/bulk/status", json=body, headers=keyed)
        unkeyed = await api.post("/api/orders/bulk/status", json=body)
        other = await api.post(
            "/api/orders/bulk/status", json={**body, "status": "cancelled"}, headers=keyed
        )
    assert first.status_code == again.status_code == 200
    assert first.json()["succeeded"] == 2 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    # Without a key the same request runs again: the orders have moved already.
    assert unkeyed.json()["failed"] == 2
    assert_problem(other, 409, "idempotency_key_reused")
    async with db.connection() as conn:
        events = await orders.list_events(conn, made[0].id)
    assert [e.kind for e in events].count("status_changed") == 1
