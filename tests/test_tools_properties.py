"""Random and hostile arguments at every tool: nothing escapes as an exception, every failure is
a structured error, and a refused call writes nothing. One fresh database per test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_tools.db import Database
from agent_tools.tools import TOOLS, ToolContext, Toolkit
from tests.conftest import census, make_store
from tests.tools_support import context, place_and_confirm, place_args

EXAMPLES = 60

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "x" * 5000, "\x00", "\ud800", "' or 1=1 --", "%", "\\", "null", "{}", "🛒" * 50]
    ),
    st.lists(st.none(), max_size=2),
    st.dictionaries(st.text(max_size=6), st.none(), max_size=2),
    # Shapes that once broke the HTTP layer: non-ASCII digits, dates at the edges of the
    # calendar, JSON nested past any sane depth.
    st.text("0123456789\u00b2\u0661\U0001d7d9", min_size=1, max_size=6),
    st.sampled_from(["9999-12-31T23:59:59.999999", "0001-01-01T00:00:00+14:00"]),
    st.integers(min_value=30, max_value=600).map(lambda n: _nested(n)),
)


def _nested(depth: int) -> Any:
    value: Any = None
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    db: Database
    toolkit: Toolkit
    ctx: ToolContext
    known: dict[str, list[str]]
    """Real skus, order numbers and a draft id per field, so random calls reach deep code."""

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    loop = asyncio.new_event_loop()

    async def setup() -> World:
        db = await Database.open(db_url, migrate=False, min_size=1, max_size=2)
        store = await make_store(db)
        toolkit = Toolkit(db)
        ctx = context(store, customer_email="ann@example.com", customer_verified=True)
        order = await place_and_confirm(toolkit, ctx)
        draft = await toolkit.call(ctx, "place_order", place_args(customer_notes="open"))
        known = {
            "sku": ["MUG-BLUE", "MUG-RED", "TEE-M", "MUG-BLU", "OLD-HAT"],
            "country": ["US", "fr", "USA"],
            "email": ["ann@example.com", "bob@example.com", "not-an-email"],
            "order_number": [order["order_number"], order["order_number"].lower(), "ORD-1"],
            "draft_id": [draft["draft_id"], "drf_0000000000000000"],
        }
        return World(loop, db, toolkit, ctx, known)

    w = loop.run_until_complete(setup())
    yield w
    loop.run_until_complete(w.db.close())
    loop.close()


def shaped(schema: dict[str, Any], known: dict[str, list[str]], name: str = "") -> Any:
    """Arguments of the schema's shape: half the time plausible (so calls reach the database),
    half the time with hostile values, dropped fields or a price slipped in."""
    if not name:
        return st.one_of(_shaped(schema, known, "", False), _shaped(schema, known, "", True))
    return _shaped(schema, known, name, True)


def _shaped(schema: dict[str, Any], known: dict[str, list[str]], name: str, bad: bool) -> Any:
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    good: st.SearchStrategy[Any]
    if "enum" in schema:
        good = st.sampled_from(schema["enum"])
    elif "object" in types:
        fields = {k: _shaped(v, known, k, bad) for k, v in schema["properties"].items()}
        how = st.sampled_from(["keep", "keep", "keep", "drop", "extra"] if bad else ["keep"])
        good = st.tuples(st.fixed_dictionaries(fields), how).map(
            lambda p: (
                {k: v for k, v in list(p[0].items())[1:]}
                if p[1] == "drop"
                else {**p[0], "unit_price": "0.01"}
                if p[1] == "extra"
                else p[0]
            )
        )
    elif "array" in types:
        good = st.lists(_shaped(schema["items"], known, name, bad), min_size=1, max_size=3)
    elif "integer" in types:
        good = st.integers(min_value=-3, max_value=1200) if bad else st.integers(1, 30)
    elif name in known:
        good = st.sampled_from(known[name])
        good = st.one_of(good, st.text(max_size=20)) if bad else good
    else:
        good = st.text(max_size=30) if bad else st.text("abc xyz-.,1", min_size=1, max_size=30)
    if "null" in types:
        good = st.one_of(good, st.none())
    if bad and name:
        return st.one_of(good, HOSTILE)
    return good


def contexts(base: ToolContext) -> st.SearchStrategy[ToolContext]:
    return st.builds(
        ToolContext,
        agent_id=st.just(base.agent_id),
        conversation_id=st.sampled_from([base.conversation_id, "other-conversation"]),
        customer_email=st.sampled_from([None, "ann@example.com", "bob@example.com"]),
        customer_phone=st.sampled_from([None, "+1 555 0100", "()"]),
        customer_verified=st.booleans(),
        turn=st.integers(min_value=0, max_value=4),
    )


def check(w: World, ctx: ToolContext, name: str, arguments: Any) -> dict[str, Any]:
    before = w.run(census(w.db))
    result = w.run(w.toolkit.call(ctx, name, arguments, tool_call_id="call_prop"))
    json.dumps(result)  # always plain JSON for the model
    assert result["ok"] in (True, False)
    if not result["ok"]:
        err = result["error"]
        assert isinstance(err["message"], str) and isinstance(err["hint"], str)
        assert err["code"] != "internal", err
        assert len(json.dumps(err)) < 2000, "an error must not echo a huge value"
        assert w.run(census(w.db)) == before, f"{name} failed but wrote: {err}"
    return dict(result)


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_shaped_hostile_arguments(world: World, tool: Any) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(ctx=contexts(world.ctx), args=shaped(tool.schema, world.known), as_text=st.booleans())
    def run(ctx: ToolContext, args: Any, as_text: bool) -> None:
        check(world, ctx, tool.name, json.dumps(args) if as_text else args)

    run()


def test_random_payloads_and_names(world: World) -> None:
    names = st.one_of(st.sampled_from([t.name for t in TOOLS]), st.text(max_size=20))
    payloads = st.one_of(
        st.text(max_size=200),
        st.binary(max_size=50),
        st.recursive(HOSTILE, lambda c: st.lists(c, max_size=3), max_leaves=8).map(json.dumps),
        st.dictionaries(st.text(max_size=10), HOSTILE, max_size=5),
        st.integers(min_value=30, max_value=100_000).map(lambda n: "[" * n + "]" * n),
        st.integers(min_value=30, max_value=100_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    )

    @settings(
        max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(name=names, payload=payloads)
    def run(name: str, payload: Any) -> None:
        check(world, world.ctx, name, payload)

    run()
