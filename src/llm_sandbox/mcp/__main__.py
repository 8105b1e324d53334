"""``python -m llm_sandbox.mcp``: the MCP server, as ``llm-sandbox-mcp``."""

from llm_sandbox.mcp.command import main

main()
