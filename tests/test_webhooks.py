"""Webhooks: signed order events to a real receiver, retries, 410, SSRF, tenancy, two workers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks import Webhook

from agent_tools.db import Database
from agent_tools.delivery.webhook import UNREADABLE
from agent_tools.delivery.worker import delivering
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import orders
from tests.api_support import assert_problem, bearer, client, make_app, settings
from tests.conftest import OTHER_OWNER, OWNER, make_store, order_data
from tests.webhook_support import feed_when, receiver, wait_until

OWNER_MADE = Provenance(actor=Actor.owner)
FAST = {
    "webhook_allow_private": True,
    "retry_scale": 0.001,
    "delivery_poll": 0.05,
}
"""A deliverer for tests: loopback receivers allowed, retries in milliseconds."""


@pytest.fixture
async def api(db: Database) -> Any:
    async with client(make_app(db, webhook_allow_private=True)) as c:
        c.headers.update(bearer(OWNER))
        yield c


def new_order(agent: Agent) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(order_data(agent), default=str))
    return body


async def register(api: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    r = await api.post("/api/webhooks/", json={"url": url, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["secret"].startswith("whsec_")
    return body


async def deliveries(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    r = await api.get(f"/api/webhooks/{endpoint}/deliveries")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found


async def test_order_events_arrive_signed_and_verifiable(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        endpoint = await register(api, hook.url, description="backend")
        r = await api.post("/api/orders/", json=new_order(store))
        order = r.json()
        for change in (
            {"status": "confirmed"},
            {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"},
            {"status": "shipped", "tracking_number": "1Z998"},
            {"status": "delivered", "note": "left at the door"},
        ):
            r = await api.patch(f"/api/orders/{order['id']}/status", json=change)
            assert r.status_code == 200, r.text
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 5, what="5 deliveries")
            await asyncio.sleep(0.2)  # nothing more arrives
        # Deliveries run concurrently: they may arrive in any order (the event id orders them).
        bodies = sorted(hook.verified(endpoint["secret"]), key=lambda b: b["data"]["event"]["id"])
        assert [b["type"] for b in bodies] == [
            "order.created",
            "order.confirmed",
            "order.shipped",
            "order.tracking_updated",
            "order.delivered",
        ]
        assert len(set(hook.ids())) == 5
        for b in bodies:
            assert set(b) == {"type", "timestamp", "data"}
            assert b["data"]["order"]["id"] == order["id"]
        last = bodies[-1]["data"]
        assert last["order"]["status"] == "delivered"
        assert last["order"]["total"] == "17.50"  # money as in the owner API: a string
        assert last["order"]["tracking_number"] == "1Z998"
        assert [e["kind"] for e in last["order"]["status_history"]] == [
            "created",
            "status_changed",
            "status_changed",
            "tracking_updated",
            "status_changed",
        ]
        assert last["event"]["from_status"] == "shipped"
        assert last["event"]["to_status"] == "delivered"
        assert last["event"]["note"] == "left at the door"
        assert last["event"]["actor"] == "owner"
        # The snapshot is the order as it was at its event, not as it is now.
        assert bodies[1]["data"]["order"]["status"] == "confirmed"
        assert bodies[0]["data"]["order"]["status_history"][0]["kind"] == "created"
        # The endpoint's delivery log agrees, with the receiver's answer.
        log = await deliveries(api, endpoint["id"])
        assert {d["state"] for d in log} == {"succeeded"}
        assert {d["webhook_id"] for d in log} == set(hook.ids())
        assert all(d["last_status"] == 200 and d["attempts"] == 1 for d in log)
        assert log[0]["last_response"] == '{"status": 200}'


async def test_a_500_is_retried_with_the_same_webhook_id(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        hook.script = [500, 503]
        endpoint = await register(api, hook.url)
        await api.post("/api/orders/", json=new_order(store))
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 3, what="a retried delivery")
            await asyncio.sleep(0.1)
        assert len(hook.received) == 3
        assert len(set(hook.ids())) == 1
        hook.verified(endpoint["secret"])  # every attempt is signed afresh and verifies
        [d] = await deliveries(api, endpoint["id"])
        assert d["state"] == "succeeded" and d["attempts"] == 3 and d["last_status"] == 200
        r = await api.get(f"/api/webhooks/{endpoint['id']}")
        assert r.json()["failing_since"] is None and r.json()["enabled"]


async def test_410_disables_the_endpoint(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver(default=410) as hook:
        endpoint = await register(api, hook.url)
        await api.post("/api/orders/", json=new_order(store))
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 1, what="a delivery")
            await asyncio.sleep(0.2)
            r = await api.get(f"/api/webhooks/{endpoint['id']}")
            assert r.json()["enabled"] is False
            assert "410" in r.json()["disabled_reason"]
            # Disabled: later events queue nothing new for it and nothing is sent.
            await api.post("/api/orders/", json=new_order(store))
            await asyncio.sleep(0.3)
        assert len(hook.received) == 1
        [d] = await deliveries(api, endpoint["id"])
        assert d["state"] == "failed" and d["last_status"] == 410


async def test_an_endpoint_failing_for_days_is_disabled(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver(default=500) as hook:
        endpoint = await register(api, hook.url)
        async with db.connection() as conn:
            await conn.execute(
                "update agent_orders.webhook_endpoints"
                " set failing_since = now() - interval '6 days'"
            )
        await api.post("/api/orders/", json=new_order(store))
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 1, what="a delivery")
            await asyncio.sleep(0.2)
        r = await api.get(f"/api/webhooks/{endpoint['id']}")
        assert r.json()["enabled"] is False
        assert "every delivery failed since" in r.json()["disabled_reason"]
        # Enabling it again clears the streak and the reason.
        r = await api.patch(f"/api/webhooks/{endpoint['id']}", json={"enabled": True})
        assert r.json()["enabled"] and r.json()["disabled_reason"] is None
        assert r.json()["failing_since"] is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hooks",
        "http://localhost/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0/hooks",
    ],
)
async def test_private_addresses_are_refused_without_the_setting(db: Database, url: str) -> None:
    async with client(make_app(db)) as api:
        r = await api.post("/api/webhooks/", json={"url": url}, headers=bearer(OWNER))
        body = assert_problem(r, 422, "validation")
        assert body["field"] == "url"
        assert (await api.get("/api/webhooks/", headers=bearer(OWNER))).json() == []


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "http://user:pw@example.com/x", "not a url", "http:///x"]
)
async def test_malformed_urls_are_refused(api: httpx.AsyncClient, url: str) -> None:
    assert_problem(await api.post("/api/webhooks/", json={"url": url}), 422, "validation")


async def test_the_address_is_checked_again_at_delivery(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    """Registered while private addresses were allowed; a deliverer without the setting
    refuses to connect (as it would after a DNS change) and retries later."""
    with receiver() as hook:
        endpoint = await register(api, hook.url)
        await api.post("/api/orders/", json=new_order(store))
        strict = {**FAST, "webhook_allow_private": False}
        async with delivering(db, settings(**strict)):
            await wait_until(lambda: deliveries(api, endpoint["id"]), what="the delivery log")

            async def attempted() -> bool:
                return (await deliveries(api, endpoint["id"]))[0]["attempts"] >= 1

            await wait_until(attempted, what="an attempt")
        assert hook.received == []
        [d] = await deliveries(api, endpoint["id"])
        assert d["state"] == "pending" and "non-public" in d["last_error"]


async def test_rolled_back_changes_send_nothing(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        await register(api, hook.url)
        with pytest.raises(RuntimeError):
            async with db.connection() as conn, conn.transaction():
                await orders.insert_order(
                    conn,
                    orders.parse(orders.NewOrder, order_data(store)),
                    by=Provenance(actor=Actor.owner),
                )
                raise RuntimeError("the caller changes its mind")
        async with db.connection() as conn:
            cur = await conn.execute(
                "select (select count(*) from agent_orders.outbox) as outbox,"
                " (select count(*) from agent_orders.webhook_deliveries) as deliveries,"
                " (select count(*) from agent_orders.mail_messages) as mails"
            )
            assert await cur.fetchone() == {"outbox": 0, "deliveries": 0, "mails": 0}
        async with delivering(db, settings(**FAST)):
            await asyncio.sleep(0.3)
        assert hook.received == []


async def test_owners_get_only_their_events_and_the_types_they_chose(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    other_store = await make_store(db, OTHER_OWNER, "Other")
    with receiver() as mine, receiver() as shipped_only, receiver() as theirs:
        await register(api, mine.url)
        await register(api, shipped_only.url, event_types=["order.shipped"])
        api_b = client(make_app(db, webhook_allow_private=True))
        async with api_b:
            api_b.headers.update(bearer(OTHER_OWNER))
            await register(api_b, theirs.url)
            # Scoped to one agent of the owner: another agent's orders are not sent.
            second = await make_store(db, OWNER, "Second store")
            r = await api.post(
                "/api/webhooks/", json={"url": mine.url + "/second", "agent_id": str(second.id)}
            )
            assert r.status_code == 201, r.text
            r = await api_b.post(
                "/api/webhooks/", json={"url": theirs.url, "agent_id": str(store.id)}
            )
            assert_problem(r, 404, "not_found")  # not their agent
        r = await api.post("/api/orders/", json=new_order(store))
        await api.patch(f"/api/orders/{r.json()['id']}/status", json={"status": "shipped"})
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(mine.received) >= 2 and shipped_only.received)
            await asyncio.sleep(0.2)
        assert sorted(x.json["type"] for x in mine.received) == ["order.created", "order.shipped"]
        assert [x.json["type"] for x in shipped_only.received] == ["order.shipped"]
        assert theirs.received == []
        assert other_store.owner_id == OTHER_OWNER


async def test_rotation_signs_with_both_secrets_for_a_day(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        old = await register(api, hook.url)
        r = await api.post(f"/api/webhooks/{old['id']}/rotate-secret")
        assert r.status_code == 200, r.text
        new = r.json()
        assert new["secret"] != old["secret"]
        assert "secret" not in (await api.get(f"/api/webhooks/{old['id']}")).json()
        await api.post("/api/orders/", json=new_order(store))
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: hook.received, what="a delivery")
        [got] = hook.received
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        Webhook(old["secret"]).verify(got.body, got.headers)
        Webhook(new["secret"]).verify(got.body, got.headers)
        # After the overlap only the new secret signs.
        async with db.connection() as conn:
            await conn.execute(
                "update agent_orders.webhook_endpoints"
                " set previous_secret_expires_at = now() - interval '1 second'"
            )
        await api.post("/api/orders/", json=new_order(store))
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) == 2, what="a second delivery")
        later = hook.received[1]
        assert len(later.headers["webhook-signature"].split(" ")) == 1
        Webhook(new["secret"]).verify(later.body, later.headers)
        with pytest.raises(Exception, match="signature"):
            Webhook(old["secret"]).verify(later.body, later.headers)


async def test_ping_redeliver_patch_and_delete(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        endpoint = await register(api, hook.url)
        eid = endpoint["id"]
        r = await api.post(f"/api/webhooks/{eid}/test")
        assert r.status_code == 202, r.text
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: hook.received, what="the ping")
            [ping] = hook.verified(endpoint["secret"])
            assert ping["type"] == "ping"
            [d] = await deliveries(api, eid)
            r = await api.post(f"/api/webhooks/{eid}/deliveries/{d['id']}/redeliver")
            assert r.status_code == 200, r.text
            await wait_until(lambda: len(hook.received) == 2, what="the redelivery")
        assert hook.ids()[0] == hook.ids()[1]
        r = await api.patch(
            f"/api/webhooks/{eid}", json={"event_types": ["order.cancelled"], "description": "x"}
        )
        assert r.json()["event_types"] == ["order.cancelled"] and r.json()["description"] == "x"
        assert_problem(
            await api.patch(f"/api/webhooks/{eid}", json={"event_types": ["nope"]}),
            422,
            "validation",
        )
        assert_problem(
            await api.post(f"/api/webhooks/{eid}/deliveries/999/redeliver"), 404, "not_found"
        )
        # Another owner sees none of it.
        async with client(make_app(db)) as other:
            other.headers.update(bearer(OTHER_OWNER))
            assert_problem(await other.get(f"/api/webhooks/{eid}/deliveries"), 404, "not_found")
            assert_problem(await other.delete(f"/api/webhooks/{eid}"), 404, "not_found")
            assert (await other.get("/api/webhooks/")).json() == []
        assert (await api.delete(f"/api/webhooks/{eid}")).status_code == 204
        assert (await api.get("/api/webhooks/")).json() == []


async def test_two_workers_send_1000_events_once_each(
    db: Database, db_url: str, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver() as hook:
        endpoint = await register(api, hook.url)
        async with db.connection() as conn:
            placed = [
                (
                    await orders.create_order(
                        conn,
                        order_data(store, items=[{"sku": "TEE-M", "quantity": 1}]),
                        by=OWNER_MADE,
                    )
                ).id
                for _ in range(200)
            ]
            # 800 more events in one statement: the trigger fans out each of them.
            await conn.execute(
                "insert into agent_orders.order_events (order_id, kind, note, actor)"
                " select o, 'note', 'note ' || n, 'owner'"
                " from unnest(%(orders)s::uuid[]) o, generate_series(1, 4) n",
                {"orders": placed},
            )
        second = await Database.open(db_url, migrate=False, min_size=1, max_size=10)
        try:
            async with (
                delivering(db, settings(**FAST, delivery_concurrency=4)),
                delivering(second, settings(**FAST, delivery_concurrency=4)),
            ):
                await wait_until(lambda: len(hook.received) >= 1000, timeout=60, what="1000")
                await asyncio.sleep(0.3)
        finally:
            await second.close()
        counts = Counter(hook.ids())
        assert len(counts) == 1000
        assert max(counts.values()) == 1, [i for i, n in counts.items() if n > 1][:5]
        async with db.connection() as conn:
            cur = await conn.execute(
                "select state, count(*) as n, count(distinct locked_by) as holders,"
                " max(attempts) as attempts from agent_orders.webhook_deliveries group by state"
            )
            assert await cur.fetchall() == [
                {"state": "succeeded", "n": 1000, "holders": 0, "attempts": 1}
            ]
        assert Webhook(endpoint["secret"]).verify(hook.received[-1].body, hook.received[-1].headers)


async def test_later_event_kinds_go_out_as_order_kind(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    """An event kind this module does not know (as later work adds) is still sent."""
    async with db.connection() as conn:
        assert await (
            await conn.execute("select agent_orders.webhook_type('payment_succeeded', null) as t")
        ).fetchone() == {"t": "order.payment_succeeded"}
    with receiver() as hook:
        await register(api, hook.url)
        order = (await api.post("/api/orders/", json=new_order(store))).json()
        async with db.connection() as conn:
            await orders.add_note(conn, order["id"], "gift wrap", owner_id=OWNER)
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 2)
        assert sorted(x.json["type"] for x in hook.received) == [
            "order.created",
            "order.note_added",
        ]


async def test_a_registered_event_kind_goes_out_with_its_type_and_mail(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    """A capability adds an event kind as data (migration 0010): the outbox sends it under the
    webhook type it registered and queues the customer mail registered for that type."""
    async with db.connection() as conn:
        await conn.execute(
            "insert into agent_orders.event_kinds (kind, webhook_type)"
            " values ('parcel_waved', 'parcel.waved')"
        )
        await conn.execute(
            "insert into agent_orders.customer_mail (webhook_type, mail_kind)"
            " values ('parcel.waved', 'parcel_waved')"
        )
    with receiver() as hook:
        await register(api, hook.url)
        order = (await api.post("/api/orders/", json=new_order(store))).json()
        async with db.connection() as conn:
            await conn.execute(
                "insert into agent_orders.order_events (order_id, kind, actor)"
                " values (%(id)s, 'parcel_waved', 'system')",
                {"id": order["id"]},
            )
        async with db.connection() as conn:
            with pytest.raises(psycopg.errors.ForeignKeyViolation):
                await conn.execute(
                    "insert into agent_orders.order_events (order_id, kind, actor)"
                    " values (%(id)s, 'never_registered', 'system')",
                    {"id": order["id"]},
                )
        async with db.connection() as conn:
            cur = await conn.execute(
                "select kind from agent_orders.mail_messages order by id",
            )
            assert [r["kind"] for r in await cur.fetchall()] == ["confirmation", "parcel_waved"]
            # The mailer has no text for this made-up kind; only the webhooks are sent here.
            await conn.execute("delete from agent_orders.mail_messages")
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 2)
        assert sorted(x.json["type"] for x in hook.received) == ["order.created", "parcel.waved"]


async def test_an_unreadable_event_holds_up_no_other(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    """An event whose order snapshot no longer validates (say, a snapshot older than a field the
    model now requires) fails on its own, with the reason kept; the events beside it go out."""
    with receiver() as hook:
        await register(api, hook.url)
        first = (await api.post("/api/orders/", json=new_order(store))).json()
        second = (await api.post("/api/orders/", json=new_order(store))).json()
        async with db.connection() as conn:
            await conn.execute(
                "update agent_orders.outbox set order_snapshot = order_snapshot - 'order_number'"
                " where order_id = %(id)s",
                {"id": first["id"]},
            )
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 1)
            async with db.connection() as conn:

                async def settled() -> bool:
                    """The unreadable event failed (reason kept), the other one went out."""
                    cur = await conn.execute(
                        "select (select count(*) from agent_orders.webhook_deliveries"
                        "        where last_error = %(e)s and state = 'pending') as hooks,"
                        " (select count(*) from agent_orders.mail_messages"
                        "   where last_error like '%%snapshot%%' and state = 'pending') as mails,"
                        " (select array_agg(o.order_number) from agent_orders.mail_messages m"
                        "   join agent_orders.orders o on o.id = m.order_id"
                        "   where m.state = 'kept') as kept",
                        {"e": UNREADABLE},
                    )
                    return await cur.fetchone() == {
                        "hooks": 1,
                        "mails": 1,
                        "kept": [second["order_number"]],
                    }

                await wait_until(settled, timeout=30, what="one failed and one delivered event")
        assert [x.json["data"]["order"]["id"] for x in hook.received] == [second["id"]]
        feed = await feed_when(api, 1)
        assert [e["data"]["order"]["id"] for e in feed["events"]] == [second["id"]]


async def test_events_past_retention_are_trimmed_unless_still_being_delivered(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    with receiver(default=500) as hook:
        await register(api, hook.url)
        old = (await api.post("/api/orders/", json=new_order(store))).json()
        stuck = (await api.post("/api/orders/", json=new_order(store))).json()
        recent = (await api.post("/api/orders/", json=new_order(store))).json()
        async with db.connection() as conn:
            # `old` was delivered and mailed 31 days ago; `stuck` is as old but still retried.
            await conn.execute(
                "update agent_orders.outbox set created_at = now() - interval '31 days'"
                " where order_id = any(%(ids)s)",
                {"ids": [old["id"], stuck["id"]]},
            )
            await conn.execute(
                "update agent_orders.webhook_deliveries d set state = 'succeeded'"
                " from agent_orders.outbox x where x.event_id = d.event_id and x.order_id = %(id)s",
                {"id": old["id"]},
            )
            await conn.execute(
                "update agent_orders.mail_messages set state = 'sent' where order_id = %(id)s",
                {"id": old["id"]},
            )
        async with delivering(db, settings(**FAST)):
            await wait_until(lambda: len(hook.received) >= 2)  # the deliverer is running
        async with db.connection() as conn:
            cur = await conn.execute(
                "select order_id::text as id, count(*) as n from agent_orders.outbox group by 1"
            )
            kept = {r["id"]: r["n"] for r in await cur.fetchall()}
            cur = await conn.execute(
                "select count(*) as n from agent_orders.order_events where order_id = %(id)s",
                {"id": old["id"]},
            )
            history = await cur.fetchone()
        assert kept == {stuck["id"]: 1, recent["id"]: 1}
        assert history == {"n": 1}
        feed = await feed_when(api, 2)
        assert {e["data"]["order"]["id"] for e in feed["events"]} == {stuck["id"], recent["id"]}
        assert (await api.get(f"/api/orders/{old['id']}")).json()["status_history"]


async def test_a_slow_endpoint_does_not_hold_up_the_mail(
    db: Database, store: Agent, api: httpx.AsyncClient
) -> None:
    """Webhooks and mails take turns for the deliverer's slots. An endpoint that never answers
    keeps its eight webhooks due again and again (each try times out after a second, retries
    come within microseconds here) until each gives up after ten tries: forty seconds of both
    slots. The eight confirmation mails must all go out while those webhooks are still being
    tried; served after them, no mail would leave before every webhook had given up."""
    with receiver(held=True) as hook:
        await register(api, hook.url)
        for _ in range(8):
            assert (await api.post("/api/orders/", json=new_order(store))).status_code == 201
        stuck = settings(
            **{**FAST, "retry_scale": 1e-6, "delivery_concurrency": 2, "webhook_timeout": 1.0}
        )
        async with delivering(db, stuck), db.connection() as conn:

            async def all_kept() -> bool:
                cur = await conn.execute(
                    "select count(*) as n from agent_orders.mail_messages where state = 'kept'"
                )
                row = await cur.fetchone()
                return row is not None and row["n"] == 8

            await wait_until(all_kept, timeout=120, what="the eight confirmation mails")
            cur = await conn.execute(
                "select count(*) as n from agent_orders.webhook_deliveries where state = 'pending'"
            )
            pending = await cur.fetchone()
            assert pending and pending["n"] > 0  # some still being tried: mail did not wait
            assert len(hook.received) >= 2  # and the endpoint held slots all along
            hook.release()
