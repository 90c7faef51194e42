"""Turn a pydantic JSON schema into an OpenAI strict-mode schema, and check one.

Strict mode accepts a subset of JSON Schema: every object closed, every property required,
optional values as a nullable type, no defaults, no `allOf`/`not`/`if`, no free-form objects,
and only a few constraint keywords. Length limits (`maxLength`...) are not among them: they
are dropped from the published schema and enforced by the pydantic model after it.
"""

from __future__ import annotations

import copy
from typing import Any

ALLOWED = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)
"""The keywords OpenAI's strict mode accepts."""

FORBIDDEN = frozenset({"allOf", "oneOf", "not", "if", "then", "else", "default", "$ref"})
_DROPPED = frozenset({"title", "default", "minLength", "maxLength", "examples"})


class SchemaError(ValueError):
    """A tool's argument model cannot be published in strict mode: a developer's mistake."""


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A strict-mode copy of `schema` (as from `Model.model_json_schema()`), refs inlined."""
    defs = schema.get("$defs", {})
    root = {k: v for k, v in copy.deepcopy(schema).items() if k != "$defs"}
    if "anyOf" in root or root.get("type") != "object":
        raise SchemaError("the root of a tool schema must be an object, not a union")
    out: dict[str, Any] = _tidy(_strict(root, defs, "$"))
    problems = check_strict(out)
    if problems:
        raise SchemaError("; ".join(problems))
    return out


def _strict(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**copy.deepcopy(defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
    for key in ("allOf", "oneOf", "not", "if", "then", "else"):
        if key in node:
            raise SchemaError(f"{path}: '{key}' is not allowed in strict mode")
    node = {k: v for k, v in node.items() if k not in _DROPPED}
    if "anyOf" in node:
        branches = [_strict(b, defs, f"{path}.anyOf") for b in node.pop("anyOf")]
        real = [b for b in branches if b != {"type": "null"}]
        if len(real) == 1 and len(branches) == 2 and isinstance(real[0].get("type"), str):
            # `T | None` -> a nullable T, the shape strict mode documents for optional values.
            merged = {**real[0], **node, "type": [real[0]["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            return merged
        node["anyOf"] = branches
        return node
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        if not props or node.get("additionalProperties") not in (None, False):
            raise SchemaError(f"{path}: free-form objects are not allowed in strict mode")
        node["properties"] = {k: _strict(v, defs, f"{path}.{k}") for k, v in props.items()}
        node["required"] = list(props)
        node["additionalProperties"] = False
    elif kind == "array":
        if not isinstance(node.get("items"), dict):
            raise SchemaError(f"{path}: arrays need an item schema")
        node["items"] = _strict(node["items"], defs, f"{path}[]")
    return node


def _tidy(node: Any) -> Any:
    """Keys in reading order (type, description, the rest), recursively."""
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    if not isinstance(node, dict):
        return node
    first = [k for k in ("type", "description") if k in node]
    keys = first + [k for k in node if k not in first]
    out = {k: node[k] if k in ("enum", "required") else _tidy(node[k]) for k in keys}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {name: _tidy(sub) for name, sub in node["properties"].items()}
    return out


def check_strict(schema: dict[str, Any]) -> list[str]:
    """Every strict-mode rule `schema` breaks, as readable strings (empty when it is fine)."""
    problems: list[str] = []
    if "anyOf" in schema or schema.get("type") != "object":
        problems.append("$: the root must be an object")

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            problems.append(f"{path}: not a schema object")
            return
        for key in node:
            if key in FORBIDDEN or key not in ALLOWED:
                problems.append(f"{path}: keyword '{key}' is not allowed")
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if "object" in types:
            props = node.get("properties") or {}
            if not props:
                problems.append(f"{path}: free-form object")
            if node.get("additionalProperties") is not False:
                problems.append(f"{path}: additionalProperties must be false")
            if sorted(node.get("required", [])) != sorted(props):
                problems.append(f"{path}: every property must be required")
            for name, sub in props.items():
                walk(sub, f"{path}.{name}")
        if "array" in types:
            walk(node.get("items"), f"{path}[]")
        for i, branch in enumerate(node.get("anyOf", [])):
            walk(branch, f"{path}.anyOf[{i}]")

    walk(schema, "$")
    return problems
