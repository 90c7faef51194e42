"""Other agent hosts: the same tools as an MCP server and as OpenAI Agents SDK tools."""
