"""The tools as OpenAI Agents SDK `FunctionTool`s (`pip install agent-orders[agents]`).

Each is built from the `Toolkit`'s own definition (its strict schema, sent with
`strict_json_schema=True`) and runs through `Toolkit.call`. The writes carry `needs_approval`:
the SDK interrupts the run and the host asks the human, and an approved `confirm_order` is
that human's yes to the draft (`ToolContext.approved_draft_id`), so it places the order under
the `turns` and `elicitation` settings. A rejected call never runs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from typing import Any

from agents import FunctionTool
from agents.tool_context import ToolContext as RunToolContext

from agent_tools.tools.context import ToolContext
from agent_tools.tools.handlers import Tool
from agent_tools.tools.toolkit import Toolkit


def _draft_id(arguments: str) -> str | None:
    try:
        value = json.loads(arguments).get("draft_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def function_tools(
    toolkit: Toolkit, ctx: ToolContext, *, approve: Collection[str] | None = None
) -> list[FunctionTool]:
    """The toolkit's tools for one conversation (`ctx`, bound by the host).

    `approve`: the tools that need the human's approval; default every write
    (`place_order`, `confirm_order`, `cancel_order`, and any write added later).
    """
    needs = set(toolkit.write_tools if approve is None else approve)

    def invoker(tool: Tool) -> Callable[[RunToolContext[Any], str], Awaitable[str]]:
        approved = tool.name in needs and tool.name == "confirm_order"

        async def invoke(run: RunToolContext[Any], arguments: str) -> str:
            who = ctx
            if approved:
                # The SDK runs a tool that needs approval only once the human approved it.
                who = replace(ctx, approved_draft_id=_draft_id(arguments))
            result = await toolkit.call(who, tool.name, arguments, run.tool_call_id)
            return json.dumps(result, ensure_ascii=False)

        return invoke

    return [
        FunctionTool(
            name=t.name,
            description=t.description,
            params_json_schema=copy.deepcopy(t.schema),  # the SDK may adjust its copy
            on_invoke_tool=invoker(t),
            strict_json_schema=True,
            needs_approval=t.name in needs,
        )
        for t in toolkit.tools.values()
    ]
