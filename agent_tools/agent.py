"""The reference agent loop: any OpenAI-compatible chat completions endpoint driving the tools.

A host with its own loop needs only `Toolkit`; this module shows the whole round trip and
backs `agent-orders chat`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from openai import AsyncOpenAI, omit
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from agent_tools.config import Settings, get_settings
from agent_tools.prompts import render_prompt
from agent_tools.tools import ToolContext, Toolkit
from agent_tools.tools.handlers.common import language_name

log = logging.getLogger(__name__)

MAX_ROUNDS = 8
"""Model calls per customer message before the loop gives up (a model stuck calling tools)."""
GIVE_UP = "Sorry, I could not finish that just now. Could you say it again?"


def make_client(settings: Settings | None = None) -> AsyncOpenAI:
    """A client for `OPENAI_BASE_URL` (or api.openai.com) with `OPENAI_API_KEY`.

    A local server usually needs no key, so one is only required for the default endpoint.
    """
    settings = settings or get_settings()
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key is None and not settings.openai_base_url:
        raise RuntimeError("set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server")
    return AsyncOpenAI(api_key=key or "unused", base_url=settings.openai_base_url or None)


async def system_prompt(toolkit: Toolkit, ctx: ToolContext) -> str:
    """`prompts/order_agent.md` filled in with the store behind `ctx`."""
    agent = await toolkit.get_agent(ctx.agent_id)
    return render_prompt(
        "order_agent",
        store_name=agent.name,
        currency=agent.currency,
        shipping_fee=f"{agent.shipping_fee} {agent.currency}",
        tracking_base=toolkit.settings.public_url.rstrip("/"),
        catalog_language=language_name(agent.language),
    )


class OrderAgent:
    """One conversation: the message history, the bound context and the model."""

    def __init__(
        self,
        toolkit: Toolkit,
        ctx: ToolContext,
        *,
        client: AsyncOpenAI,
        prompt: str,
        model: str | None = None,
        max_rounds: int = MAX_ROUNDS,
    ) -> None:
        self.toolkit = toolkit
        self.ctx = ctx
        self.client = client
        self.model = model or toolkit.settings.model
        self.max_rounds = max_rounds
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": prompt}]
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0}
        """Tokens the endpoint reported for this conversation so far."""
        self.tools = toolkit.openai_tools()
        # Strict mode does not hold for parallel calls, so turn them off while writes are offered.
        self._parallel = False if toolkit.write_tools else omit

    @classmethod
    async def start(
        cls,
        toolkit: Toolkit,
        ctx: ToolContext,
        *,
        client: AsyncOpenAI | None = None,
        model: str | None = None,
        max_rounds: int = MAX_ROUNDS,
    ) -> OrderAgent:
        """An agent with the store's system prompt and a client from the settings."""
        return cls(
            toolkit,
            ctx,
            client=client or make_client(toolkit.settings),
            prompt=await system_prompt(toolkit, ctx),
            model=model,
            max_rounds=max_rounds,
        )

    async def reply(self, text: str) -> str:
        """Take one customer message, run the tool calls it leads to, return the answer."""
        self.ctx.turn += 1  # a new customer turn: drafts from earlier turns may be confirmed
        self.messages.append({"role": "user", "content": text})
        for _ in range(self.max_rounds):
            completion = await self.client.chat.completions.create(
                model=self.model,
                messages=cast(Any, self.messages),
                tools=cast(Any, self.tools),
                parallel_tool_calls=self._parallel,
            )
            if completion.usage is not None:
                self.usage["prompt_tokens"] += completion.usage.prompt_tokens
                self.usage["completion_tokens"] += completion.usage.completion_tokens
            message = completion.choices[0].message
            calls = [
                c
                for c in message.tool_calls or []
                if isinstance(c, ChatCompletionMessageFunctionToolCall)
            ]
            entry: dict[str, Any] = {"role": "assistant", "content": message.content}
            if calls:
                entry["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments},
                    }
                    for c in calls
                ]
            self.messages.append(entry)
            if not calls:
                return message.content or ""
            # One after another, in the model's order: a repeated write finds the first one.
            for c in calls:
                result = await self.toolkit.call(
                    self.ctx, c.function.name, c.function.arguments, tool_call_id=c.id
                )
                self.messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": c.id,
                        "content": json.dumps(result, ensure_ascii=False, default=str),
                    }
                )
        log.warning(
            "conversation %s: no answer after %d rounds", self.ctx.conversation_id, self.max_rounds
        )
        self.messages.append({"role": "assistant", "content": GIVE_UP})
        return GIVE_UP
