"""Inbound carrier webhooks over HTTP: verified before anything is read, stored once per
carrier event, safe out of order, and moving the order forward only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Agent
from tests.api_support import assert_problem, bearer, client, make_app
from tests.carrier_support import BODIES, Scan, at, encode, sign, stamp
from tests.conftest import OTHER_OWNER, OWNER, make_store

PROVIDERS = ["easypost", "aftership", "generic"]
UPS = "1Z999AA10123456784"
SECRETS = {
    "easypost": "épost-secret-12345",  # non-ASCII: signed after NFKD, as EasyPost does
    "aftership": "as-webhook-secret-0001",
    "generic": None,  # made by the server, whsec_...
}


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        yield c


async def connect(api: httpx.AsyncClient, store: Agent, provider: str) -> tuple[str, str]:
    """The store's account with `provider`: (webhook path, secret)."""
    body: dict[str, Any] = {"agent_id": str(store.id), "provider": provider}
    if SECRETS[provider]:
        body["secret"] = SECRETS[provider]
    r = await api.put("/api/carriers/", json=body, headers=bearer(OWNER))
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["webhook_path"].startswith(f"/api/carriers/{provider}/webhook?account=")
    return account["webhook_path"], account["secret"]


async def ship_order(api: httpx.AsyncClient, store: Agent, db: Database, **shipment: Any) -> str:
    """A confirmed order placed a week ago with one shipment holding everything; its number."""
    r = await api.post(
        "/api/orders/",
        json={
            "agent_id": str(store.id),
            "customer": {"name": "Ann Lee", "email": "ann@example.com"},
            "shipping_address": {"line1": "1 Main St", "city": "Portland", "country": "US"},
            "items": [{"sku": "MUG-BLUE", "quantity": 2}],
        },
        headers=bearer(OWNER),
    )
    assert r.status_code == 201, r.text
    number: str = r.json()["order_number"]
    async with db.connection() as conn:
        await conn.execute(
            "update agent_orders.orders set created_at = now() - interval '7 days'"
            " where order_number = %s",
            (number,),
        )
        await conn.execute(
            "update agent_orders.order_events e set created_at = e.created_at - interval '7 days'"
            " from agent_orders.orders o where o.id = e.order_id and o.order_number = %s",
            (number,),
        )
    r = await api.patch(
        f"/api/orders/{number}/status", json={"status": "confirmed"}, headers=bearer(OWNER)
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        f"/api/orders/{number}/shipments",
        json={"tracking_number": UPS, **shipment},
        headers=bearer(OWNER),
    )
    assert r.status_code == 201, r.text
    return number


async def post(
    api: httpx.AsyncClient, path: str, provider: str, secret: str, scans: list[Scan], **kw: Any
) -> httpx.Response:
    raw = encode(BODIES[provider](kw.pop("number", UPS), scans))
    headers = {"Content-Type": "application/json", **sign(provider, secret, raw)}
    return await api.post(path, content=raw, headers=headers)


async def order(api: httpx.AsyncClient, number: str) -> dict[str, Any]:
    r = await api.get(f"/api/orders/{number}", headers=bearer(OWNER))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def carrier_rows(db: Database) -> dict[str, Any]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "select (select count(*) from agent_orders.carrier_events) as carrier_events,"
            " (select count(*) from agent_orders.order_events) as order_events,"
            " (select count(*) from agent_orders.carrier_unmatched) as unmatched,"
            " (select count(*) from agent_orders.mail_messages) as mails,"
            " (select json_agg(json_build_object('s', status, 'v', version) order by id)"
            "  from agent_orders.orders) as orders,"
            " (select json_agg(json_build_object('s', status, 'd', delivered_at) order by id)"
            "  from agent_orders.shipments) as shipments"
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


IN_TRANSIT: Scan = ("in_transit", at(2), "Louisville")
OUT: Scan = ("out_for_delivery", at(20), "Portland")
DELIVERED: Scan = ("delivered", at(26), "Portland")


@pytest.mark.parametrize("provider", PROVIDERS)
class TestCarrierEvents:
    async def test_a_parcels_journey_moves_the_order_on_with_the_carriers_times(
        self, api: httpx.AsyncClient, store: Agent, db: Database, provider: str
    ) -> None:
        path, secret = await connect(api, store, provider)
        number = await ship_order(api, store, db)
        label: Scan = ("label_created", at(0), "Shipper")
        r = await post(api, path, provider, secret, [label])
        assert r.status_code == 200, r.text
        assert r.json() == {"events": 1, "new": 1, "shipments": 1, "unmatched": 0}
        assert (await order(api, number))["status"] == "confirmed"  # a label is not a scan

        await post(api, path, provider, secret, [label, IN_TRANSIT])
        shipped = await order(api, number)
        assert shipped["status"] == "shipped"
        assert shipped["shipped_at"].startswith(stamp(2))  # the carrier's time

        await post(api, path, provider, secret, [label, IN_TRANSIT, OUT])
        await post(api, path, provider, secret, [label, IN_TRANSIT, OUT, DELIVERED])
        done = await order(api, number)
        assert done["status"] == "delivered"
        assert done["delivered_at"].startswith(stamp(26))
        kinds = [e["kind"] for e in done["status_history"]]
        assert kinds.count("shipment_out_for_delivery") == 1
        assert kinds.count("shipment_delivered") == 1
        async with db.connection() as conn:
            cur = await conn.execute("select kind from agent_orders.mail_messages order by id")
            mails = [r["kind"] for r in await cur.fetchall()]
        # The order's own delivered mail covers the parcel's delivery: one mail, not two.
        assert mails == ["confirmation", "shipped", "out_for_delivery", "delivered"]

        r = await api.get(f"/api/orders/{number}/shipments", headers=bearer(OWNER))
        (shipment,) = r.json()
        assert shipment["carrier"] == "UPS" and shipment["status"] == "delivered"
        assert [e["kind"] for e in shipment["events"]] == [
            "label_created",
            "in_transit",
            "out_for_delivery",
            "delivered",
        ]
        assert "Portland" in shipment["events"][-1]["location"]

    async def test_replays_duplicates_and_reordered_events_are_kept_once(
        self, api: httpx.AsyncClient, store: Agent, db: Database, provider: str
    ) -> None:
        path, secret = await connect(api, store, provider)
        number = await ship_order(api, store, db)
        # The newest news first, then older updates, then the same ones again.
        for scans in (
            [DELIVERED],
            [IN_TRANSIT],
            [OUT, IN_TRANSIT],
            [DELIVERED],
            [IN_TRANSIT, OUT, DELIVERED],
            [OUT],
        ):
            r = await post(api, path, provider, secret, scans)
            assert r.status_code == 200, r.text
        rows = await carrier_rows(db)
        assert rows["carrier_events"] == 3  # one each
        assert rows["shipments"][0]["s"] == "delivered"
        done = await order(api, number)
        assert done["status"] == "delivered"
        assert done["delivered_at"].startswith(stamp(26))
        moves = [(e["from_status"], e["to_status"]) for e in done["status_history"]]
        assert moves.count(("confirmed", "delivered")) == 1
        kinds = [e["kind"] for e in done["status_history"]]
        # Only news about the parcel's latest state is announced; late old scans are not.
        assert kinds.count("shipment_delivered") == 1
        assert "shipment_in_transit" not in kinds and "shipment_out_for_delivery" not in kinds
        assert rows["mails"] == 2  # confirmed, delivered; no "out for delivery" after the fact

        # An old scan nobody had seen, after delivery: kept, shown, and moves nothing back.
        late: Scan = ("in_transit", at(5), "Memphis")
        r = await post(api, path, provider, secret, [late])
        assert r.json()["new"] == 1
        after = await carrier_rows(db)
        assert after["carrier_events"] == 4
        assert after["orders"] == rows["orders"] and after["shipments"] == rows["shipments"]
        track = await api.post(f"/api/orders/track/{number}", json={"email": "ann@example.com"})
        scans = [(e["kind"], e["location"]) for e in track.json()["timeline"] if e["shipment"]]
        assert [k for k, _ in scans] == [
            "in_transit",
            "in_transit",
            "out_for_delivery",
            "delivered",
        ]
        assert "Memphis" in scans[1][1]  # in the carrier's order, not the order it arrived in

    async def test_forged_or_unsigned_webhooks_change_nothing(
        self, api: httpx.AsyncClient, store: Agent, db: Database, provider: str
    ) -> None:
        path, secret = await connect(api, store, provider)
        await ship_order(api, store, db)
        before = await carrier_rows(db)
        raw = encode(BODIES[provider](UPS, [DELIVERED]))
        good = sign(provider, secret, raw)
        wrong = sign(
            provider, "another-secret-0000" if provider != "generic" else "whsec_" + "QUJD" * 8, raw
        )
        other = await make_store(db, OTHER_OWNER, "Other")
        attempts = [
            (path, {}, raw),  # unsigned
            (path, wrong, raw),  # another secret
            (path, good, raw.replace(b"Portland", b"Portlanx")),  # tampered after signing
            (path.split("?")[0] + "?account=" + str(other.id), good, raw),  # no such account
        ]
        garbage = {
            "easypost": {"X-Hmac-Signature": "hmac-sha256-hex=zz"},
            "aftership": {"aftership-hmac-sha256": "!!"},
            "generic": {**good, "webhook-signature": "v1"},
        }[provider]
        attempts.append((path, garbage, raw))  # a malformed signature header
        for other_provider in PROVIDERS:
            if other_provider != provider:  # this account, another provider's path
                attempts.append((path.replace(provider, other_provider, 1), good, raw))
        for url, headers, body in attempts:
            r = await api.post(url, content=body, headers=headers)
            assert_problem(r, 401, "invalid_signature")
        assert await carrier_rows(db) == before

    async def test_an_unknown_number_is_kept_until_a_shipment_claims_it(
        self, api: httpx.AsyncClient, store: Agent, db: Database, provider: str
    ) -> None:
        path, secret = await connect(api, store, provider)
        unknown = "9400111899223197428497"
        r = await post(api, path, provider, secret, [IN_TRANSIT], number=unknown)
        assert r.json() == {"events": 1, "new": 0, "shipments": 0, "unmatched": 1}
        await post(api, path, provider, secret, [IN_TRANSIT, OUT], number=unknown)
        kept = (await api.get("/api/carriers/unmatched", headers=bearer(OWNER))).json()
        assert len(kept) == 1
        assert kept[0]["tracking_number"] == unknown
        assert (kept[0]["events"], kept[0]["updates"], kept[0]["latest_kind"]) == (
            2,
            2,
            "out_for_delivery",
        )
        others = await api.get("/api/carriers/unmatched", headers=bearer(OTHER_OWNER))
        assert others.json() == []

        number = await ship_order(api, store, db)
        r = await api.post(
            f"/api/orders/{number}/shipments",
            json={"tracking_number": "9400 1118 9922 3197 4284 97"},
            headers=bearer(OWNER),
        )
        assert_problem(r, 409, "conflict")  # every line is in the first shipment already
        second = await ship_order(api, store, db, tracking_number=unknown)
        shipped = await order(api, second)
        assert shipped["status"] == "shipped"
        assert shipped["carrier"] == "USPS"  # detected from the number
        assert (await api.get("/api/carriers/unmatched", headers=bearer(OWNER))).json() == []


class TestAccountsAndBadInput:
    async def test_secrets_are_shown_once_and_accounts_are_the_owners(
        self, api: httpx.AsyncClient, store: Agent
    ) -> None:
        r = await api.put(
            "/api/carriers/",
            json={"agent_id": str(store.id), "provider": "generic"},
            headers={**bearer(OWNER), "Idempotency-Key": "acct-1"},
        )
        assert r.status_code == 200 and r.json()["secret"].startswith("whsec_")
        replay = await api.put(
            "/api/carriers/",
            json={"agent_id": str(store.id), "provider": "generic"},
            headers={**bearer(OWNER), "Idempotency-Key": "acct-1"},
        )
        assert replay.json()["secret"] is None  # never kept with the idempotency record
        listed = (await api.get("/api/carriers/", headers=bearer(OWNER))).json()
        assert [a["provider"] for a in listed] == ["generic"] and "secret" not in listed[0]
        r = await api.put(
            "/api/carriers/",
            json={"agent_id": str(store.id), "provider": "aftership"},
            headers=bearer(OWNER),
        )
        assert_problem(r, 422, "validation")  # AfterShip's secret is AfterShip's
        r = await api.put(
            "/api/carriers/",
            json={"agent_id": str(store.id), "provider": "easypost", "secret": "x" * 12},
            headers=bearer(OTHER_OWNER),
        )
        assert_problem(r, 404, "not_found")
        r = await api.delete(f"/api/carriers/{listed[0]['id']}", headers=bearer(OTHER_OWNER))
        assert_problem(r, 404, "not_found")
        r = await api.delete(f"/api/carriers/{listed[0]['id']}", headers=bearer(OWNER))
        assert r.status_code == 204

    @pytest.mark.parametrize("provider", PROVIDERS)
    async def test_a_signed_body_that_is_not_the_providers_is_refused_unwritten(
        self, api: httpx.AsyncClient, store: Agent, db: Database, provider: str
    ) -> None:
        path, secret = await connect(api, store, provider)
        await ship_order(api, store, db)
        before = await carrier_rows(db)
        broken = {"object": "Event", "description": "tracker.updated", "result": [], "msg": 3}
        for raw in (b"not json", b"[1, 2]", encode(broken)):
            r = await api.post(path, content=raw, headers=sign(provider, secret, raw))
            assert_problem(r, 422, "validation")
        assert await carrier_rows(db) == before
