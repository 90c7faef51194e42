"""System prompts: Markdown templates in `prompts/` with `{{name}}` placeholders."""

from __future__ import annotations

import re

from agent_tools.migrate import resource_dir

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def load_prompt(name: str) -> str:
    """The raw template `prompts/<name>.md`, from the wheel or the source checkout."""
    return (resource_dir("prompts") / f"{name}.md").read_text("utf-8")


def render_prompt(name: str, **values: object) -> str:
    """The template with every `{{key}}` replaced; a missing value is a developer's error."""
    template = load_prompt(name)
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise KeyError(f"prompt {name!r} needs values for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
