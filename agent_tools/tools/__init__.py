"""The function-calling tools: strict schemas, identity from the host, server-side confirmation."""

from agent_tools.tools.context import ToolContext
from agent_tools.tools.handlers import TOOLS, Tool
from agent_tools.tools.toolkit import Toolkit

__all__ = ["TOOLS", "Tool", "ToolContext", "Toolkit"]
