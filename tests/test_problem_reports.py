"""`report_problem` through `Toolkit.call`, and the owner's side of the case over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from agent_tools.db import Database
from agent_tools.models import Actor, Agent, Provenance
from agent_tools.service import orders
from agent_tools.tools import Toolkit
from tests.api_support import assert_problem, bearer, client, make_app
from tests.conftest import OTHER_OWNER, OWNER, census
from tests.tools_support import context, place_and_confirm


@pytest.fixture
def toolkit(db: Database) -> Toolkit:
    return Toolkit(db)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with client(make_app(db)) as c:
        c.headers.update(bearer(OWNER))
        yield c


async def shipped_order(db: Database, toolkit: Toolkit, store: Agent, chat: str) -> str:
    placed = await place_and_confirm(toolkit, context(store, chat))
    async with db.connection() as conn:
        await orders.update_status(
            conn,
            placed["order_number"],
            {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999"},
            by=Provenance(actor=Actor.owner),
        )
    return str(placed["order_number"])


def report(number: str, kind: str = "not_received", details: str = "Nothing came") -> Any:
    return {"order_number": number, "kind": kind, "details": details}


class TestReportProblem:
    async def test_it_never_arrived(self, db: Database, toolkit: Toolkit, store: Agent) -> None:
        number = await shipped_order(db, toolkit, store, "chat")
        ctx = context(store, "chat", turn=9)
        result = await toolkit.call(
            ctx, "report_problem", report(number, details="Parcel never came, it's been 2 weeks")
        )
        assert result["ok"], result
        case = result["case"]
        assert (case["order_number"], case["kind"], case["status"]) == (
            number,
            "not_received",
            "open",
        )
        assert result["already_reported"] is False
        assert "no refund or replacement is promised" in result["what_happens_next"]
        assert "1Z999" in result["carrier_url"]
        # Customer-visible on the order's history, without the customer's own words.
        status = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert status["timeline"][-1]["event"] == "problem_reported"
        assert status["problems"] == [
            {
                "kind": "not_received",
                "status": "open",
                "reported_at": case["reported_at"],
            }
        ]
        async with db.connection() as conn:
            saved = await orders.get_order(conn, number)
            events = await orders.list_events(conn, saved.id)
        last = events[-1]
        assert (last.kind, last.actor, last.customer_visible, last.conversation_id) == (
            "problem_reported",
            Actor.agent,
            True,
            "chat",
        )
        assert last.data == {"problem_id": case["id"], "kind": "not_received"}
        assert "2 weeks" not in (last.note or "")

    async def test_reporting_again_finds_the_open_case(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        number = await shipped_order(db, toolkit, store, "chat")
        ctx = context(store, "chat")
        results = await asyncio.gather(
            *(toolkit.call(ctx, "report_problem", report(number)) for _ in range(4))
        )
        assert len({r["case"]["id"] for r in results}) == 1
        assert sorted(r["already_reported"] for r in results) == [False, True, True, True]
        other = await toolkit.call(ctx, "report_problem", report(number, "damaged", "Cracked"))
        assert other["case"]["id"] != results[0]["case"]["id"]
        async with db.connection() as conn:
            cur = await conn.execute(
                "select count(*) as n from agent_orders.order_events"
                " where kind = 'problem_reported'"
            )
            row = await cur.fetchone()
        assert row is not None and row["n"] == 2

    async def test_only_the_customers_own_shipped_order(
        self, db: Database, toolkit: Toolkit, store: Agent
    ) -> None:
        number = await shipped_order(db, toolkit, store, "chat")
        pending = await place_and_confirm(toolkit, context(store, "chat2"))
        before = await census(db)
        stranger = context(store, "someone-else", customer_email="bob@example.com")
        err = (await toolkit.call(stranger, "report_problem", report(number)))["error"]
        assert err["code"] == "not_found"
        ctx = context(store, "chat2")
        err = (await toolkit.call(ctx, "report_problem", report(pending["order_number"])))["error"]
        assert err["code"] == "not_shipped" and "get_order_status" in err["hint"]
        bad = await toolkit.call(ctx, "report_problem", report(number, kind="lost_forever"))
        assert bad["error"]["field"] == "kind"
        assert await census(db) == before
        other = await toolkit.call(
            ctx, "report_problem", report(pending["order_number"], "other", "Wrong address typed")
        )
        assert other["ok"] and other["case"]["kind"] == "other"


class TestOwnerCase:
    async def test_the_owner_sees_and_resolves_the_case(
        self, db: Database, toolkit: Toolkit, store: Agent, api: httpx.AsyncClient
    ) -> None:
        number = await shipped_order(db, toolkit, store, "chat")
        ctx = context(store, "chat")
        reported = await toolkit.call(ctx, "report_problem", report(number, "damaged", "Mug broke"))
        case_id = reported["case"]["id"]
        detail = (await api.get(f"/api/orders/{number}")).json()
        assert [(p["id"], p["kind"], p["details"], p["status"]) for p in detail["problems"]] == [
            (case_id, "damaged", "Mug broke", "open")
        ]
        queue = (await api.get("/api/problems/")).json()
        assert [(p["id"], p["order_number"]) for p in queue] == [(case_id, number)]
        r = await api.post(f"/api/problems/{case_id}/resolve", json={"note": "  "})
        assert_problem(r, 422, "validation")
        r = await api.post(
            f"/api/problems/{case_id}/resolve",
            json={"note": "A replacement mug ships today."},
            headers={"Idempotency-Key": "resolve-1"},
        )
        assert r.status_code == 200, r.text
        resolved = r.json()
        assert (resolved["status"], resolved["resolution"]) == (
            "resolved",
            "A replacement mug ships today.",
        )
        assert resolved["resolved_at"] is not None
        replay = await api.post(
            f"/api/problems/{case_id}/resolve",
            json={"note": "A replacement mug ships today."},
            headers={"Idempotency-Key": "resolve-1"},
        )
        assert replay.json() == resolved and replay.headers["Idempotent-Replayed"] == "true"
        again = await api.post(f"/api/problems/{case_id}/resolve", json={"note": "Again"})
        assert_problem(again, 409, "conflict")
        assert (await api.get("/api/problems/")).json() == []
        everything = (await api.get("/api/problems/", params={"status": "all"})).json()
        assert [p["status"] for p in everything] == ["resolved"]
        detail = (await api.get(f"/api/orders/{number}")).json()
        history = [(e["kind"], e["actor"], e["note"]) for e in detail["status_history"]]
        assert history[-1] == ("problem_resolved", "owner", "A replacement mug ships today.")
        # The customer reads the answer through the agent.
        status = await toolkit.call(
            ctx, "get_order_status", {"order_number": number, "email": None}
        )
        assert status["problems"][0]["resolution"] == "A replacement mug ships today."
        assert status["timeline"][-1]["note"] == "A replacement mug ships today."
        # The case is reported anew once the old one is resolved.
        anew = await toolkit.call(ctx, "report_problem", report(number, "damaged", "Also broke"))
        assert anew["already_reported"] is False and anew["case"]["id"] != case_id

    async def test_another_owner_cannot_see_or_resolve_it(
        self, db: Database, toolkit: Toolkit, store: Agent, api: httpx.AsyncClient
    ) -> None:
        number = await shipped_order(db, toolkit, store, "chat")
        reported = await toolkit.call(context(store, "chat"), "report_problem", report(number))
        case_id = reported["case"]["id"]
        other = bearer(OTHER_OWNER)
        assert (await api.get("/api/problems/", headers=other)).json() == []
        r = await api.post(
            f"/api/problems/{case_id}/resolve", json={"note": "mine now"}, headers=other
        )
        assert_problem(r, 404, "not_found")
        detail = (await api.get(f"/api/orders/{number}")).json()
        assert detail["problems"][0]["status"] == "open"
        assert "mine now" not in json.dumps(detail)
