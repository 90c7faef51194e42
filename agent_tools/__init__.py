"""agent-orders: order capture and tracking tools for conversational sales agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_tools.tools import ToolContext, Toolkit

__all__ = ["ToolContext", "Toolkit"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import agent_tools.config` (the API, the CLI) does not load the tools.
    if name in __all__:
        from agent_tools import tools

        return getattr(tools, name)
    raise AttributeError(f"module 'agent_tools' has no attribute {name!r}")
