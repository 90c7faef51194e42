"""The tools in the OpenAI Agents SDK: its `Runner` against the scripted OpenAI-compatible
server, through an order, the human's approval, and a refusal."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent as SdkAgent
from agents import OpenAIChatCompletionsModel, RunConfig, Runner

from agent_tools.db import Database
from agent_tools.integrations.openai_agents import function_tools
from agent_tools.models import Agent
from agent_tools.service import agents
from agent_tools.tools import Toolkit
from tests.conftest import census
from tests.scripted_openai import ScriptedOpenAI, calls, latest, say, scripted
from tests.tools_support import context, place_args

llm = pytest.fixture(scripted)
NO_TRACING = RunConfig(tracing_disabled=True)


async def run(agent: SdkAgent[Any], given: Any, decide: list[bool]) -> Any:
    """One turn of the host's loop: run, and answer each approval request as `decide` says."""
    result = await Runner.run(agent, given, run_config=NO_TRACING)
    while result.interruptions:
        state = result.to_state()
        for item in result.interruptions:
            assert item.name in ("place_order", "confirm_order")
            if decide.pop(0):
                state.approve(item)
            else:
                state.reject(item)
        result = await Runner.run(agent, state, run_config=NO_TRACING)
    return result


async def test_order_approval_and_refusal(db: Database, store: Agent, llm: ScriptedOpenAI) -> None:
    async with db.connection() as conn:
        # The turn counter never moves here: the approval is the only yes.
        await agents.update_agent(conn, store.id, {"confirmation": "elicitation"})
    toolkit = Toolkit(db)
    tools = function_tools(toolkit, context(store, "sdk-1"))
    assert [t.name for t in tools] == list(toolkit.tools)
    writes = {"place_order", "confirm_order", "cancel_order"}
    assert {t.name for t in tools if t.needs_approval} == toolkit.write_tools >= writes
    model = OpenAIChatCompletionsModel(model="scripted", openai_client=llm.client())
    shop = SdkAgent(name="shop", instructions="Sell mugs.", model=model, tools=tools)  # type: ignore[arg-type]

    llm.script(
        calls(("place_order", place_args())),
        say(lambda req: f"That is {latest(req, 'summary')['total']}. Shall I place it?"),
        calls(("confirm_order", lambda req: {"draft_id": latest(req, "draft_id")})),
        say(lambda req: f"Placed {latest(req, 'order')['order_number']}."),
    )
    first = await run(shop, "Two blue mugs to 1 Main St, Portland please.", [True])
    assert first.final_output == "That is 30.00 USD. Shall I place it?"
    before = await census(db)
    second = await run(shop, [*first.to_input_list(), {"role": "user", "content": "Yes"}], [True])
    assert second.final_output.startswith("Placed ORD-")
    assert (await census(db))["orders"] == before["orders"] + 1

    # What the SDK sent the model: the toolkit's own strict definitions.
    sent = {t["function"]["name"]: t["function"] for t in llm.requests[0]["tools"]}
    for published in toolkit.openai_tools():
        fn = published["function"]
        assert sent[fn["name"]]["parameters"] == fn["parameters"]
        assert sent[fn["name"]].get("strict") is True

    # The human refuses the next confirmation: nothing is placed, the model is told.
    llm.script(
        calls(("place_order", place_args(payment_method="cash"))),
        calls(("confirm_order", lambda req: {"draft_id": latest(req, "draft_id")})),
        say("Understood, I did not place it."),
    )
    before = await census(db)
    third = await run(
        shop, [*second.to_input_list(), {"role": "user", "content": "And pay cash"}], [True, False]
    )
    assert third.final_output == "Understood, I did not place it."
    after = await census(db)
    assert after["orders"] == before["orders"] and after["confirmed"] == before["confirmed"]
    refusal = [m for m in llm.requests[-1]["messages"] if m["role"] == "tool"][-1]
    assert "order_number" not in refusal["content"]
