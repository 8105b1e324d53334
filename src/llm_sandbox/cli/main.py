"""``llm-sandbox``: the command group."""

from __future__ import annotations

import click

from llm_sandbox._version import __version__
from llm_sandbox.cli.cleanup import cleanup
from llm_sandbox.cli.images import images
from llm_sandbox.cli.run import exec_command, run
from llm_sandbox.mcp.command import mcp_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="llm-sandbox")
def cli() -> None:
    """Run untrusted code in sandboxes: programs, shell commands, and an MCP server for assistants."""


for command in (run, exec_command, images, cleanup, mcp_command):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="llm-sandbox")
