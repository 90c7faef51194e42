"""The endpoints without login: order tracking (redaction, rate limit) and health probes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_tools.batching import Batcher
from agent_tools.db import Database
from agent_tools.errors import Unavailable
from agent_tools.models import Agent, Order
from agent_tools.service import orders, tracking
from tests.api_support import assert_problem, client, free_port, make_app, settings
from tests.conftest import order_data

PERSONAL = ("Ann Lee", "ann@example.com", "+1 555 0100", "1 Main St")


@pytest.fixture
async def order(db: Database, store: Agent) -> Order:
    async with db.connection() as conn:
        order = await orders.create_order(
            conn,
            order_data(
                store,
                customer={"name": "Ann Lee", "email": "ann@example.com", "phone": "+1 555 0100"},
            ),
        )
        return await orders.update_status(
            conn,
            order.id,
            {"status": "shipped", "carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
        )


async def tracking_link_token(db: Database, order: Order) -> str:
    async with db.connection() as conn:
        key = await tracking.signing_key(conn)
    return tracking.order_token(key, order)


class TestTracking:
    async def test_number_alone_is_redacted(self, db: Database, order: Order) -> None:
        async with client(make_app(db)) as api:
            r = await api.get(f"/api/orders/track/{order.order_number}")
        assert r.status_code == 200, r.text
        assert r.headers["Cache-Control"] == "no-store"
        view = r.json()
        assert view["status"] == "shipped"
        assert view["full"] is False and view["customer"] is None
        # Status, progress and dates only: the number is all a guesser needs to get this far.
        for hidden in ("city", "country", "items", "carrier", "tracking_number", "carrier_url"):
            assert view[hidden] is None, hidden
        assert view["progress"] == 5
        assert [e["status"] for e in view["timeline"]] == ["pending", "shipped"]
        for secret in (*PERSONAL, "Portland", "Blue mug", "1Z999AA10123456784"):
            assert secret not in r.text

    async def test_matching_email_or_token_shows_everything(
        self, db: Database, order: Order
    ) -> None:
        token = await tracking_link_token(db, order)
        async with client(make_app(db)) as api:
            by_email = await api.post(
                f"/api/orders/track/{order.order_number}", json={"email": " ANN@example.com "}
            )
            by_token = await api.post(
                f"/api/orders/track/{order.order_number.lower()}", json={"token": token}
            )
            in_url = await api.get(
                f"/api/orders/track/{order.order_number}", params={"email": "ann@example.com"}
            )
            token_in_url = await api.get(
                f"/api/orders/track/{order.order_number}", params={"token": token}
            )
        for r in (by_email, by_token):
            assert r.status_code == 200, r.text
            view = r.json()
            assert view["full"] is True
            assert view["customer"]["name"] == "Ann Lee"
            assert view["customer"]["shipping_address"]["line1"] == "1 Main St"
            assert view["customer"]["total"] == "17.50"
            assert view["items"] == [{"name": "Blue mug", "quantity": 1}]
            assert view["carrier_url"].startswith("https://www.ups.com/")
            assert (view["city"], view["country"]) == ("Portland", "US")
        # Secrets in a URL end up in logs: refused, with where to send them instead.
        for r in (in_url, token_in_url):
            assert "POST" in assert_problem(r, 422, "validation")["hint"]

    async def test_wrong_email_looks_like_no_such_order(self, db: Database, order: Order) -> None:
        async with client(make_app(db)) as api:
            wrong = await api.post(
                f"/api/orders/track/{order.order_number}", json={"email": "eve@example.com"}
            )
            missing = await api.post(
                "/api/orders/track/ORD-2020-000001", json={"email": "eve@example.com"}
            )
            bad_token = await api.post(
                f"/api/orders/track/{order.order_number}", json={"token": "x" * 32}
            )
        assert_problem(wrong, 404, "not_found")
        assert_problem(missing, 404, "not_found")
        strip = {"instance"}
        assert {k: v for k, v in wrong.json().items() if k not in strip} == {
            k: v for k, v in missing.json().items() if k not in strip
        }
        # A wrong token is not an error: it just shows the redacted view.
        assert bad_token.status_code == 200 and bad_token.json()["customer"] is None

    async def test_rate_limited_per_client_address(self, db: Database, order: Order) -> None:
        app = make_app(db, track_burst=5, track_per_minute=6)
        path = f"/api/orders/track/{order.order_number}"
        async with client(app, "203.0.113.7") as api:
            codes = [(await api.get(path)).status_code for _ in range(5)]
            assert codes == [200] * 5
            limited = await api.get("/api/orders/track/ORD-2020-000001")
            problem = assert_problem(limited, 429, "rate_limited")
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert problem["retry_after"] == int(limited.headers["Retry-After"])
        async with client(app, "203.0.113.8") as other:
            assert (await other.get(path)).status_code == 200


class TestHealth:
    async def test_health_and_ready(self, db: Database) -> None:
        async with client(make_app(db)) as api:
            assert (await api.get("/health")).json() == {"status": "ok"}
            assert (await api.get("/ready")).json() == {"status": "ok"}

    async def test_not_ready_without_a_database(self) -> None:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            f"postgresql://127.0.0.1:{free_port()}/nothing", open=False, timeout=0.3
        )
        await pool.open(wait=False)
        try:
            async with client(make_app(Database(pool, "unreachable"))) as api:
                assert (await api.get("/health")).status_code == 200
                r = await api.get("/ready")
        finally:
            await pool.close()
        assert_problem(r, 503, "unavailable")
        assert r.headers["Retry-After"]

    async def test_unknown_route_and_method_are_problems(self, db: Database) -> None:
        async with client(make_app(db)) as api:
            assert_problem(await api.get("/api/nothing"), 404, "not_found")
            assert_problem(await api.delete("/health"), 405, "method_not_allowed")

    async def test_openapi_documents_errors_as_problem_json(self, db: Database) -> None:
        async with client(make_app(db)) as api:
            spec = (await api.get("/openapi.json")).json()
            assert (await api.get("/docs")).status_code == 200
        track = spec["paths"]["/api/orders/track/{order_number}"]["get"]["responses"]
        assert set(track) >= {"200", "404", "422", "429"}
        assert list(track["429"]["content"]) == ["application/problem+json"]
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


class TestViewBuiltByTheDatabase:
    async def test_public_bytes_are_the_documented_view_and_agree_with_the_full_one(
        self, db: Database, order: Order
    ) -> None:
        async with db.connection() as conn:
            await orders.add_note(conn, order.id, "left at the door", customer_visible=True)
        path = f"/api/orders/track/{order.order_number}"
        async with client(make_app(db)) as api:
            public = await api.get(path)
            full = await api.post(path, json={"email": "ann@example.com"})
        assert public.headers["content-type"] == "application/json"
        shown = tracking.TrackingView.model_validate_json(public.content)
        whole = tracking.TrackingView.model_validate_json(full.content)
        same = ("order_number", "status", "progress", "steps", "created_at", "updated_at")
        assert shown.model_dump(include=set(same)) == whole.model_dump(include=set(same))
        # The full timeline has the note with its text; the public one neither.
        assert [e.kind for e in whole.timeline if e.kind != "note"] == [
            e.kind for e in shown.timeline
        ]
        assert any(e.note == "left at the door" for e in whole.timeline)
        assert all(e.note is None for e in shown.timeline)
        assert public.json()["created_at"].endswith("Z")


class TestLookupsReadTogether:
    """Concurrent public lookups are read in one statement (`agent_tools.batching`): each
    still gets its own order's view, an unknown number its own 404, and nothing stale."""

    async def test_each_lookup_gets_its_own_view_in_fewer_statements(
        self, db: Database, store: Agent
    ) -> None:
        async with db.connection() as conn:
            placed = [await orders.create_order(conn, order_data(store)) for _ in range(10)]
        app = make_app(db, track_failed_per_minute=1000)
        views = app.state.api.public_views
        fetched: list[list[str]] = []
        read = views.fetch

        async def counted(keys: list[str]) -> dict[str, bytes]:
            fetched.append(keys)
            return await read(keys)

        views.fetch = counted
        numbers = [o.order_number for o in placed] + ["ORD-2020-000001"]
        numbers += [placed[0].order_number.lower(), str(placed[1].id)]
        async with client(app) as api:
            answers = await asyncio.gather(*(api.get(f"/api/orders/track/{n}") for n in numbers))
        for order, answer in zip(placed, answers, strict=False):
            assert answer.status_code == 200, answer.text
            assert answer.json()["order_number"] == order.order_number
        assert_problem(answers[10], 404, "not_found")
        assert answers[11].json()["order_number"] == placed[0].order_number
        assert answers[12].json()["order_number"] == placed[1].order_number
        assert sum(len(keys) for keys in fetched) >= len(set(numbers)) - 1
        assert len(fetched) < len(numbers)  # some statements answered several lookups

    async def test_a_change_is_in_the_next_answer(self, db: Database, order: Order) -> None:
        path = f"/api/orders/track/{order.order_number}"
        async with client(make_app(db)) as api:
            assert (await api.get(path)).json()["status"] == "shipped"
            async with db.connection() as conn:
                await orders.update_status(conn, order.id, {"status": "delivered"})
            assert (await api.get(path)).json()["status"] == "delivered"

    async def test_a_failed_read_fails_every_lookup_waiting_for_it(
        self, db: Database, order: Order
    ) -> None:
        app = make_app(db)
        views = app.state.api.public_views
        read = views.fetch

        async def broken(keys: list[str]) -> dict[str, bytes]:
            raise Unavailable("the database is unreachable", hint="retry")

        views.fetch = broken
        async with client(app) as api:
            answers = await asyncio.gather(
                *(api.get(f"/api/orders/track/{order.order_number}") for _ in range(5))
            )
            for answer in answers:
                assert_problem(answer, 503, "unavailable")
            views.fetch = read
            assert (await api.get(f"/api/orders/track/{order.order_number}")).status_code == 200


async def test_a_lookup_given_up_by_its_caller_leaves_the_others_answered() -> None:
    release = asyncio.Event()

    async def slow(keys: list[str]) -> dict[str, str]:
        await release.wait()
        return {k: k.lower() for k in keys}

    batcher: Batcher[str, str] = Batcher(slow)
    first = asyncio.create_task(batcher.get("A"))
    queued = [asyncio.create_task(batcher.get(k)) for k in ("B", "C", "B")]
    await asyncio.sleep(0)
    queued[1].cancel()
    release.set()
    assert await first == "a"
    assert await queued[0] == "b" and await queued[2] == "b"
    with pytest.raises(asyncio.CancelledError):
        await queued[1]


async def test_a_lookup_right_after_a_fetch_ends_starts_its_own() -> None:
    """One lookup after another, each queued just as the fetch before it ended: none waits
    for a fetch that will never come."""

    async def echo(keys: list[str]) -> dict[str, str]:
        return {k: k for k in keys}

    batcher: Batcher[str, str] = Batcher(echo)
    for i in range(50):
        assert await asyncio.wait_for(batcher.get(str(i)), timeout=5) == str(i)


@pytest.mark.parametrize("otel", [False, True])
async def test_opentelemetry_is_asked_only_when_turned_on(
    db: Database, monkeypatch: pytest.MonkeyPatch, otel: bool
) -> None:
    """FastAPI's own telemetry asks OpenTelemetry for its providers on every request; off by
    default (`AGENT_ORDERS_OTEL`), no request pays for it."""
    from opentelemetry import trace

    asked: list[bool] = []
    real = trace.get_tracer_provider

    def provider() -> trace.TracerProvider:
        asked.append(True)
        return real()

    monkeypatch.setattr(trace, "get_tracer_provider", provider)
    async with client(make_app(db, otel=otel)) as api:
        assert (await api.get("/health")).status_code == 200
    assert bool(asked) is otel


def test_a_serving_app_keeps_what_lives_as_long_as_it_out_of_the_collector(
    db: Database,
) -> None:
    """Started on its own pool (as `agent-orders serve` starts it), the app freezes what is
    alive once it is up, so full collections do not walk the whole heap while it serves;
    stopping gives it back."""
    import gc

    from fastapi.testclient import TestClient

    from api.app import create_app

    app = create_app(settings=settings(database_url=db.url, deliver=False))
    assert gc.get_freeze_count() == 0
    with TestClient(app) as served:
        assert served.get("/ready").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0
