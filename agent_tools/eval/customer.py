"""A simulated customer (the tau-bench idea): an LLM told who it is and what it wants, talking
to the store's agent until its goal is met or it gives up."""

from __future__ import annotations

from typing import Any, cast

import openai

DONE = "###DONE###"
INSTRUCTIONS = """You are a customer chatting with an online store's assistant. Stay in
character and follow your instructions below. Write only what the customer would type: one
short message at a time, in the customer's own words and language. Reveal details (address,
email) only when asked or when your instructions say to. Do not invent facts that your
instructions do not give. When your goal is met, or the conversation cannot go further,
reply with exactly {done}.

Your instructions:
{instructions}"""


class SimulatedCustomer:
    """One customer for one conversation; the agent's replies come in, the next message out."""

    def __init__(self, client: openai.AsyncOpenAI, model: str, instructions: str) -> None:
        self.client = client
        self.model = model
        self.messages: list[dict[str, Any]] = [
            {
                "role": "system",
                "content": INSTRUCTIONS.format(done=DONE, instructions=instructions.strip()),
            }
        ]

    async def next(self, agent_reply: str | None) -> str | None:
        """The customer's next message, or None when they are done."""
        # Roles are mirrored: to this model, the store's agent is the user.
        self.messages.append(
            {
                "role": "user",
                "content": agent_reply or "(The chat opens. Write your first message.)",
            }
        )
        completion = await self.client.chat.completions.create(
            model=self.model, messages=cast(Any, self.messages)
        )
        text = (completion.choices[0].message.content or "").strip()
        self.messages.append({"role": "assistant", "content": text})
        if not text or DONE in text:
            return None
        return text
