"""`Toolkit`: the tool definitions in each provider's shape, and `call`, which never raises for
anything the model sent."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any
from uuid import UUID

import jsonschema
import jsonschema_rs
import pydantic
from jsonschema.exceptions import best_match

from agent_tools.config import Settings, get_settings
from agent_tools.db import Database
from agent_tools.errors import (
    OrderError,
    UnknownAgent,
    ValidationFailed,
    field_path,
    from_pydantic,
)
from agent_tools.models import Agent
from agent_tools.service import agents
from agent_tools.service.drafts import DRAFT_ID
from agent_tools.tools import approval
from agent_tools.tools.approval import PendingDraft
from agent_tools.tools.context import Invocation, ToolContext
from agent_tools.tools.handlers import TOOLS, Tool

log = logging.getLogger(__name__)

MAX_ARGUMENT_CHARS = 32_000
"""Far above any honest call (a 50-line order is ~5 kB); refused before parsing."""
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
"""NUL and lone surrogates: valid in JSON, impossible to store in PostgreSQL text."""


class InvalidJson(OrderError):
    code = "invalid_json"
    status = 400


class TooLarge(OrderError):
    code = "too_large"
    status = 413


class UnknownTool(OrderError):
    code = "unknown_tool"
    status = 404


_DEFAULT_HINTS = {
    "validation": "fix that field (ask the customer if it came from them) and call the tool again",
    "not_found": "check the value with the customer",
    "unknown_sku": "call search_products to find the exact sku",
    "out_of_stock": "offer the available quantity or another product",
    "unavailable": "try again in a moment; if it keeps failing, apologise to the customer",
}
_NO_STORE = "apologise: this store cannot take or look up orders right now"
"""The host bound a context to an agent that does not exist: nothing the model can fix."""


def _short(text: object, limit: int = 40) -> str:
    s = str(text)
    return repr(s if len(s) <= limit else s[:limit] + "...")


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "object": "an object",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}


def _explain(err: jsonschema.ValidationError) -> ValidationFailed:
    """A schema failure as one sentence naming the field, without echoing the value."""
    field = field_path(err.absolute_path) or "arguments"
    rule, want, value = err.validator, err.validator_value, err.instance
    hint = "fix that field and call the tool again"
    if rule == "required":
        missing = [p for p in want if isinstance(value, dict) and p not in value]
        name = field_path([*err.absolute_path, missing[0]]) if missing else field
        message = f"{name} is missing"
        hint = "send every field of the schema; use null for unknown optional ones"
    elif rule == "additionalProperties":
        allowed = set(err.schema.get("properties", {}))
        extra = [k for k in value if k not in allowed][:5] if isinstance(value, dict) else []
        message = f"{field} has unknown field(s) {', '.join(_short(k) for k in extra)}"
        if any(w in str(k).lower() for k in extra for w in ("price", "total", "cost", "amount")):
            hint = "remove them: prices and totals come from the catalog"
        else:
            hint = f"remove them; allowed fields: {', '.join(sorted(allowed))}"
    elif rule == "type":
        kinds = want if isinstance(want, list) else [want]
        message = f"{field} must be {' or '.join(_TYPE_WORDS.get(k, str(k)) for k in kinds)}"
    elif rule in ("minimum", "exclusiveMinimum"):
        message = f"{field} must be at least {want if rule == 'minimum' else f'more than {want}'}"
    elif rule in ("maximum", "exclusiveMaximum"):
        message = f"{field} must be at most {want if rule == 'maximum' else f'less than {want}'}"
    elif rule == "enum":
        message = f"{field} must be one of {', '.join(json.dumps(v) for v in want)}"
    elif rule == "minItems":
        message = f"{field} needs at least {want} item(s)"
    elif rule == "maxItems":
        message = f"{field} takes at most {want} item(s)"
    else:
        message = f"{field} is not valid ({rule})"
    return ValidationFailed(message, field=field, hint=hint)


def _decode(arguments: str | bytes | Mapping[str, Any] | None) -> Any:
    if arguments is None:
        return {}
    if isinstance(arguments, Mapping):
        try:
            arguments = json.dumps(arguments)
        except (TypeError, ValueError, RecursionError):
            raise InvalidJson("the arguments are not plain JSON values") from None
    if isinstance(arguments, bytes | bytearray):
        try:
            arguments = arguments.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson("the arguments are not UTF-8 text") from None
    if not isinstance(arguments, str):
        raise InvalidJson("the arguments must be a JSON object")
    if len(arguments) > MAX_ARGUMENT_CHARS:
        raise TooLarge(
            f"the arguments are {len(arguments)} characters; at most {MAX_ARGUMENT_CHARS}",
            hint="send only the fields of the schema, with short values",
        )
    if not arguments.strip():
        return {}
    try:
        return json.loads(arguments)
    except (ValueError, RecursionError):
        raise InvalidJson(
            "the arguments are not valid JSON",
            hint="send one JSON object with exactly the fields of the schema",
        ) from None


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string in the arguments (keys too), with the path of the field it is in."""
    stack: list[tuple[Any, str]] = [(value, "arguments")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            yield node, path
        elif isinstance(node, dict):
            for k, v in node.items():
                stack.append((k, path))
                stack.append((v, f"{path}.{k}" if path != "arguments" else str(k)))
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))


def _check_text(value: Any) -> None:
    for text, path in _strings(value):
        if _BAD_CHARS.search(text):
            raise ValidationFailed(
                f"{path} contains a NUL or invalid character", field=path, hint="send plain text"
            )


class CardNumberRefused(ValidationFailed):
    """Card data has no place in a chat: the store would carry it (PCI DSS)."""

    code = "card_number_refused"


_DIGIT_RUN = re.compile(r"\d(?:[ .-]?\d){12,}")
"""13 or more digits, written together or grouped by spaces, dots or dashes."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card_number_in(text: str) -> bool:
    """Whether `text` holds a Luhn-valid run of 13 to 19 digits (a payment card's number),
    written whole or in groups, possibly between other digits."""
    for run in _DIGIT_RUN.finditer(text):
        groups = re.split(r"[ .-]", run.group())
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                digits = "".join(groups[i:j])
                if 13 <= len(digits) <= 19 and _luhn(digits):
                    return True
                if len(digits) > 19:
                    if j == i + 1 and any(
                        _luhn(digits[a : a + n])
                        for n in range(13, 20)
                        for a in range(len(digits) - n + 1)
                    ):
                        return True
                    break  # longer sequences of groups only grow
    return False


_ISSUED = (DRAFT_ID, re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE))
"""Ids this server hands out (a draft's, a UUID): random hex that can hold a Luhn-valid run
of digits by chance, and is never a card number."""


def _refuse_card_numbers(value: Any) -> None:
    """One rule for every tool and argument: a card number is refused before anything reads,
    stores or logs the arguments. The error names the field, never the number."""
    for text, path in _strings(value):
        if not any(issued.fullmatch(text.strip()) for issued in _ISSUED) and _card_number_in(text):
            raise CardNumberRefused(
                f"{path} looks like a payment card number; it was not saved",
                field=path,
                hint="never take card numbers in the chat: tell the customer to keep their card"
                " details private; they pay only through the payment link the store sends",
            )


def _failure(exc: OrderError) -> dict[str, Any]:
    details = {k: v for k, v in exc.to_dict().items() if k not in ("code", "message", "hint")}
    details.pop("errors", None)
    hint = exc.hint or _DEFAULT_HINTS.get(exc.code, "fix the arguments and try again")
    if isinstance(exc, UnknownAgent):
        hint = _NO_STORE
    return {
        "ok": False,
        "error": {"code": exc.code, "message": exc.message, "hint": hint, **details},
    }


class Toolkit:
    """The order tools, bound to a database. One per process; one `ToolContext` per chat."""

    def __init__(
        self,
        db: Database,
        *,
        settings: Settings | None = None,
        tools: tuple[Tool, ...] = TOOLS,
        owns_db: bool = False,
    ) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.tools = {t.name: t for t in tools}
        self._validators = {
            t.name: jsonschema.Draft202012Validator(t.schema) for t in self.tools.values()
        }
        # The same schemas compiled: a valid call (nearly every one) costs about 1 us instead
        # of 100; only an invalid one is walked again by `jsonschema` for its best error.
        self._fast = {
            t.name: jsonschema_rs.Draft202012Validator(t.schema, validate_formats=False)
            for t in self.tools.values()
        }
        self._owns_db = owns_db

    @classmethod
    async def connect(cls, url: str | None = None, *, settings: Settings | None = None) -> Toolkit:
        """Open the database (`DATABASE_URL`, or the embedded server), migrating it first."""
        settings = settings or get_settings()
        return cls(await Database.open(url, settings=settings), settings=settings, owns_db=True)

    async def close(self) -> None:
        if self._owns_db:
            await self.db.close()

    async def __aenter__(self) -> Toolkit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- definitions -------------------------------------------------------------------

    @property
    def write_tools(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools.values() if t.writes)

    def openai_tools(self) -> list[dict[str, Any]]:
        """For Chat Completions: `client.chat.completions.create(tools=...)`."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.schema,
                    "strict": True,
                },
            }
            for t in self.tools.values()
        ]

    def responses_tools(self) -> list[dict[str, Any]]:
        """For the Responses API: `client.responses.create(tools=...)`."""
        return [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.schema,
                "strict": True,
            }
            for t in self.tools.values()
        ]

    def anthropic_tools(self) -> list[dict[str, Any]]:
        """For Anthropic's Messages API: `client.messages.create(tools=...)`."""
        return [
            {"name": t.name, "description": t.description, "input_schema": t.schema}
            for t in self.tools.values()
        ]

    # ---- dispatch ----------------------------------------------------------------------

    async def call(
        self,
        ctx: ToolContext,
        name: str,
        arguments: str | bytes | Mapping[str, Any] | None,
        tool_call_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one tool call. Returns `{"ok": true, ...}` or `{"ok": false, "error": {...}}`.

        Arguments are validated against the exact published schema, then the argument model;
        the whole call is one transaction, so a refused call writes nothing.
        """
        if not isinstance(ctx, ToolContext):
            raise TypeError("ctx must be a ToolContext built by the host")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return _failure(
                UnknownTool(
                    f"no tool named {_short(name)}",
                    hint=f"call one of the available tools: {', '.join(self.tools)}",
                )
            )
        try:
            raw = _decode(arguments)
            if not self._valid(tool.name, raw):
                error = best_match(self._validators[tool.name].iter_errors(raw))
                if error is not None:
                    raise _explain(error)
            _check_text(raw)
            # After the schema, which bounds every string (so this stays cheap).
            _refuse_card_numbers(raw)
            try:
                args = tool.args.model_validate(raw)
            except pydantic.ValidationError as exc:
                raise from_pydantic(exc) from None
            call_id = tool_call_id[:200] if tool_call_id else None
            async with self.db.connection() as conn:
                inv = Invocation(conn, ctx, call_id, self.settings)
                result = await tool.run(inv, args)
            # Committed: now what had to wait for it (a payment link made at Stripe). The
            # call has succeeded whatever happens here, so nothing here may turn it into a
            # failure the model would repeat.
            for then in inv.after_commit:
                try:
                    await then(self.db, result)
                except Exception:
                    log.warning("tool %s: a step after the commit failed", tool.name, exc_info=True)
            return {"ok": True, **result}
        except OrderError as exc:
            return _failure(exc)
        except Exception:
            log.exception("tool %s failed", tool.name)
            return {
                "ok": False,
                "error": {
                    "code": "internal",
                    "message": "the tool failed unexpectedly",
                    "hint": "apologise and offer to try again in a moment",
                },
            }

    def _valid(self, name: str, raw: Any) -> bool:
        try:
            return bool(self._fast[name].is_valid(raw))
        except Exception:  # a value JSON has no type for (a host's own dict): ask jsonschema
            return False

    async def pending(self, ctx: ToolContext, draft_id: str) -> PendingDraft | None:
        """The open draft a host is about to ask the human about itself (MCP elicitation, an
        Agents SDK approval), with the question to ask; None if there is nothing to ask."""
        async with self.db.connection() as conn:
            return await approval.pending(conn, ctx, draft_id[:64])

    async def get_agent(self, agent_id: UUID | str) -> Agent:
        """The store behind a context (name, currency, shipping) for the system prompt."""
        async with self.db.connection() as conn:
            return await agents.get_agent(conn, UUID(str(agent_id)))
