"""The ``llm-sandbox`` command: run a program or a shell command in a sandbox, build and list the images, sweep
what crashed processes left, and start the MCP server. ``main.py`` is the command group; each command lives in
the module named after it; ``output.py`` holds what they share (progress lines, JSON, exit codes)."""

from llm_sandbox.cli.main import cli, main

__all__ = ["cli", "main"]
