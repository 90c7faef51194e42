"""The tools, by domain: ordering (search, draft, confirm), tracking (status, my orders),
changes (cancel) and problems (report one). Each module declares its own `Tool`s next to their
handlers; `TOOLS` is all of them in the order the model sees them."""

from agent_tools.tools.handlers import changes, ordering, problems, tracking
from agent_tools.tools.handlers.common import Result, Tool

TOOLS: tuple[Tool, ...] = (*ordering.TOOLS, *tracking.TOOLS, *changes.TOOLS, *problems.TOOLS)

__all__ = ["TOOLS", "Result", "Tool"]
