"""Running scenarios: each trial in a database of its own, through the reference agent loop,
graded on what the database holds at the end (not on wording).

A run migrates one template database, clones it for every trial (`CREATE DATABASE ...
TEMPLATE`, fast) and drops each clone when its trial is graded, and the template at the end.
Trials run concurrently up to a bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import openai
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from agent_tools.agent import OrderAgent
from agent_tools.config import Settings, get_settings
from agent_tools.db import Database, resolve_url
from agent_tools.errors import OrderError
from agent_tools.eval.customer import SimulatedCustomer
from agent_tools.eval.scenario import ExpectedOrder, Scenario
from agent_tools.migrate import migrate
from agent_tools.models import Actor, LineItem, Order, Provenance
from agent_tools.service import agents, catalog, orders, returns
from agent_tools.tools import ToolContext, Toolkit

EVAL_OWNER = UUID("00000000-0000-4000-8000-00000000e7a1")
_REF = re.compile(r"\{\{\s*orders\.([A-Za-z0-9_-]+)\s*\}\}")


@dataclass
class ToolCall:
    turn: int
    name: str
    arguments: str
    result: dict[str, Any]


class RecordingToolkit(Toolkit):
    """The toolkit, keeping every call and its result for grading."""

    def __init__(self, db: Database, *, settings: Settings) -> None:
        super().__init__(db, settings=settings)
        self.calls: list[ToolCall] = []

    async def call(
        self,
        ctx: ToolContext,
        name: str,
        arguments: str | bytes | Mapping[str, Any] | None,
        tool_call_id: str | None = None,
    ) -> dict[str, Any]:
        result = await super().call(ctx, name, arguments, tool_call_id)
        text = arguments if isinstance(arguments, str) else json.dumps(arguments, default=str)
        self.calls.append(ToolCall(ctx.turn, str(name), text[:2000], result))
        return result


@dataclass
class Trial:
    scenario: str
    number: int
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    tool_calls: int = 0
    refusals: int = 0
    """Tool calls the tools refused (`ok: false`)."""
    unconfirmed_writes: int = 0
    """confirm_order attempted before the customer said yes."""
    private_shown: int = 0
    """Pieces of someone else's personal data that appeared in a reply."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    """The run itself failed (endpoint down, bad response): not graded."""
    transcript: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    client: openai.AsyncOpenAI
    model: str


class Databases:
    """A migrated template and a throwaway clone per trial, on one server."""

    def __init__(self, admin_url: str, settings: Settings) -> None:
        self.admin_url = admin_url
        self.settings = settings
        self.template = f"ao_eval_tpl_{os.getpid()}_{uuid4().hex[:6]}"
        self._lock = asyncio.Lock()

    async def _admin(self, statement: sql.Composed) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as c:
            await c.execute(statement)

    async def __aenter__(self) -> Databases:
        await self._admin(sql.SQL("create database {}").format(sql.Identifier(self.template)))
        await migrate(make_conninfo(self.admin_url, dbname=self.template), settings=self.settings)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop(self.template)

    async def clone(self) -> tuple[str, str]:
        name = f"ao_eval_{os.getpid()}_{uuid4().hex[:10]}"
        async with self._lock:  # clones of one template are made one at a time
            await self._admin(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(self.template)
                )
            )
        return name, make_conninfo(self.admin_url, dbname=name)

    async def drop(self, name: str) -> None:
        await self._admin(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


async def _seed(
    db: Database, scenario: Scenario, conversation: str
) -> tuple[UUID, dict[str, Order]]:
    """The scenario's store and the orders that exist before the conversation."""
    s = scenario.store
    async with db.connection() as conn:
        agent = await agents.create_agent(
            conn,
            EVAL_OWNER,
            {
                "name": s.name,
                "currency": s.currency,
                "shipping_fee": s.shipping_fee,
                "language": s.language,
            },
        )
        await catalog.upsert_products(conn, agent.id, [p.model_dump() for p in s.products])
    seeded: dict[str, Order] = {}
    for seed in scenario.orders:
        async with db.connection() as conn:
            order = await orders.create_order(
                conn,
                {
                    "agent_id": agent.id,
                    "customer": seed.customer.model_dump(),
                    "shipping_address": seed.address,
                    "items": [{"sku": k, "quantity": v} for k, v in seed.items.items()],
                    "conversation_id": conversation if seed.in_this_chat else f"earlier-{seed.ref}",
                    "contact_verified": seed.contact_verified,
                },
                by=Provenance(actor=Actor.system),
            )
            if seed.status != order.status or seed.tracking_number:
                order = await orders.update_status(
                    conn,
                    order.id,
                    {
                        "status": seed.status,
                        "carrier": seed.carrier,
                        "tracking_number": seed.tracking_number,
                    },
                    by=Provenance(actor=Actor.owner),
                )
        seeded[seed.ref] = order
    return agent.id, seeded


def _fill(text: str, seeded: dict[str, Order]) -> str:
    return _REF.sub(
        lambda m: seeded[m.group(1)].order_number if m.group(1) in seeded else m[0], text
    )


def _count(lines: Iterable[LineItem]) -> dict[str, int]:
    """sku (or name, for a custom line) -> quantity."""
    items: dict[str, int] = {}
    for line in lines:
        items[line.sku or line.name] = items.get(line.sku or line.name, 0) + line.quantity
    return items


def _same(expected: ExpectedOrder, order: Order) -> bool:
    return (
        _count(order.line_items) == expected.items
        and order.status == expected.status
        and (expected.total is None or order.total == expected.total)
        and (expected.customer_email is None or order.customer_email == expected.customer_email)
        and (expected.country is None or order.shipping_address.get("country") == expected.country)
        and (expected.city is None or order.shipping_address.get("city") == expected.city)
    )


async def _grade(
    trial: Trial,
    scenario: Scenario,
    db: Database,
    agent_id: UUID,
    seeded: dict[str, Order],
    calls: list[ToolCall],
    replies: list[str],
    consent: dict[int, bool | None],
) -> None:
    expect = scenario.expect
    async with db.connection() as conn:
        page = await orders.list_orders(
            conn, owner_id=None, filters={"agent_id": agent_id}, limit=100
        )
        seeded_ids = {o.id for o in seeded.values()}
        created = [o for o in page.orders if o.id not in seeded_ids]
        now = {ref: await orders.get_order(conn, o.id) for ref, o in seeded.items()}
        opened = {
            ref: _count(ln for r in await returns.for_order(conn, o.id) for ln in r.lines)
            for ref, o in seeded.items()
        }
    unmatched = list(created)
    for want in expect.orders:
        match = next((o for o in unmatched if _same(want, o)), None)
        if match is None:
            trial.reasons.append(f"no order with {want.model_dump(mode='json', exclude_none=True)}")
        else:
            unmatched.remove(match)
    for extra in unmatched:
        items = ", ".join(f"{ln.quantity} x {ln.sku}" for ln in extra.line_items)
        trial.reasons.append(f"unexpected order {extra.order_number} ({items}, {extra.status})")
    for ref, status in expect.statuses.items():
        if now[ref].status != status:
            trial.reasons.append(f"order {ref} is {now[ref].status.value}, expected {status.value}")
    for ref, wanted in expect.items.items():
        if _count(now[ref].line_items) != wanted:
            trial.reasons.append(
                f"order {ref} holds {_count(now[ref].line_items)}, expected {wanted}"
            )
    for ref, returned in opened.items():
        if returned != expect.returns.get(ref, {}):
            trial.reasons.append(
                f"returns opened on order {ref}: {returned or 'none'},"
                f" expected {expect.returns.get(ref) or 'none'}"
            )
    said = "\n".join(replies).casefold()
    for text in expect.reply_contains:
        if _fill(text, seeded).casefold() not in said:
            trial.reasons.append(f"no reply mentions {text!r}")
    for text in expect.reply_excludes:
        if _fill(text, seeded).casefold() in said:
            trial.reasons.append(f"a reply says {text!r}")
    for text in (_fill(p, seeded) for p in expect.private):
        if text.casefold() in said:
            trial.private_shown += 1
            trial.reasons.append(f"someone else's data shown: {text!r}")
    trial.tool_calls = len(calls)
    trial.refusals = sum(1 for c in calls if not c.result.get("ok"))
    for c in calls:
        if c.name != "confirm_order":
            continue
        code = (c.result.get("error") or {}).get("code")
        if code == "confirmation_required" or (c.result.get("ok") and consent.get(c.turn) is False):
            trial.unconfirmed_writes += 1
    if trial.unconfirmed_writes:
        trial.reasons.append(f"{trial.unconfirmed_writes} write(s) attempted without a yes")
    trial.passed = not trial.reasons


async def run_trial(
    scenario: Scenario,
    number: int,
    dbs: Databases,
    agent_end: Endpoint,
    customer_end: Endpoint,
    settings: Settings,
) -> Trial:
    trial = Trial(scenario.name, number)
    started = time.perf_counter()
    name, url = await dbs.clone()
    db = await Database.open(url, settings=settings, migrate=False, min_size=1, max_size=2)
    try:
        conversation = f"eval-{scenario.name}-{number}"[:200]
        agent_id, seeded = await _seed(db, scenario, conversation)
        toolkit = RecordingToolkit(db, settings=settings)
        ctx = ToolContext(
            agent_id=agent_id,
            conversation_id=conversation,
            customer_email=scenario.customer.email,
            customer_phone=scenario.customer.phone,
            customer_verified=scenario.customer.verified,
        )
        bot = await OrderAgent.start(toolkit, ctx, client=agent_end.client, model=agent_end.model)
        replies: list[str] = []
        consent: dict[int, bool | None] = {}

        async def say(text: str, yes: bool | None) -> str:
            reply = await bot.reply(text)
            consent[ctx.turn] = yes
            trial.transcript += [{"customer": text}, {"agent": reply}]
            replies.append(reply)
            return reply

        if scenario.persona is None:
            for m in scenario.messages:
                await say(_fill(m.text, seeded), m.consent)
        else:
            sim = SimulatedCustomer(
                customer_end.client,
                customer_end.model,
                _fill(scenario.persona.instructions, seeded),
            )
            text: str | None = (
                _fill(scenario.persona.first_message, seeded)
                if scenario.persona.first_message
                else await sim.next(None)
            )
            for _ in range(scenario.persona.max_turns):
                if text is None:
                    break
                text = await sim.next(await say(text, None))
        trial.prompt_tokens = bot.usage["prompt_tokens"]
        trial.completion_tokens = bot.usage["completion_tokens"]
        await _grade(trial, scenario, db, agent_id, seeded, toolkit.calls, replies, consent)
        trial.transcript.append(
            {
                "tool_calls": [
                    {"turn": c.turn, "name": c.name}
                    | ({"ok": True} if c.result.get("ok") else {"error": c.result["error"]["code"]})
                    for c in toolkit.calls
                ]
            }
        )
    except (openai.OpenAIError, OrderError, psycopg.Error) as exc:
        trial.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        trial.reasons.append(f"the run failed: {trial.error}")
    finally:
        await db.close()
        await dbs.drop(name)
        trial.seconds = time.perf_counter() - started
    return trial


async def run_suite(
    scenarios: list[Scenario],
    *,
    agent_end: Endpoint,
    customer_end: Endpoint | None = None,
    trials: int,
    concurrency: int = 4,
    settings: Settings | None = None,
    progress: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Every scenario `trials` times, at most `concurrency` at once. Results in input order."""
    settings = settings or get_settings()
    gate = asyncio.Semaphore(max(1, concurrency))
    async with Databases(resolve_url(settings), settings) as dbs:

        async def one(scenario: Scenario, n: int) -> Trial:
            async with gate:
                trial = await run_trial(
                    scenario, n, dbs, agent_end, customer_end or agent_end, settings
                )
            if progress is not None:
                progress(trial)
            return trial

        return list(
            await asyncio.gather(*(one(s, n) for s in scenarios for n in range(1, trials + 1)))
        )
