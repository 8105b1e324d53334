"""``llm-sandbox-mcp`` (also ``python -m llm_sandbox.mcp`` and ``llm-sandbox mcp``): start the MCP server.

Every option can come from the environment: the reference server's variables (``BACKEND``, ``NAMESPACE``,
``COMMIT_CONTAINER``, ``KEEP_TEMPLATE``, ``SANDBOX_NETWORK_MODE`` and the other ``SANDBOX_*`` container settings)
and this server's own ``LLM_SANDBOX_MCP_*``. This module imports the MCP SDK only when the server starts, so the
``llm-sandbox`` command works without it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

import click

from llm_sandbox.errors import SandboxError
from llm_sandbox.languages.registry import LANGUAGES

MISSING_SDK = "the MCP server needs the MCP SDK: pip install 'llm-sandbox[mcp]'"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the sandboxes are removed before the process ends.
    raise KeyboardInterrupt


def _languages(_context: click.Context, _parameter: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(name.strip().lower() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in LANGUAGES]
    if unknown:
        raise click.BadParameter(f"unknown language(s) {', '.join(unknown)}; known: {', '.join(LANGUAGES)}")
    return names


@click.command(name="mcp", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP: address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="HTTP: port")
@click.option("--path", "http_path", default="/mcp", show_default=True, help="HTTP: the endpoint's path")
@click.option(
    "--token",
    envvar="LLM_SANDBOX_MCP_TOKEN",
    help="HTTP: bearer token every request must carry (needed to listen beyond loopback) [env LLM_SANDBOX_MCP_TOKEN]",
)
@click.option("--backend", envvar="BACKEND", default="docker", show_default=True, help="[env BACKEND]")
@click.option(
    "--namespace", envvar="NAMESPACE", default="default", show_default=True, help="Kubernetes [env NAMESPACE]"
)
@click.option(
    "--network",
    envvar="SANDBOX_NETWORK_MODE",
    default="install-only",
    show_default=True,
    help="the code's network: install-only (only library installs), none, full [env SANDBOX_NETWORK_MODE]",
)
@click.option(
    "--commit-container/--no-commit-container",
    envvar="COMMIT_CONTAINER",
    default=False,
    help="save each execute_code sandbox as a new image (no pool then) [env COMMIT_CONTAINER]",
)
@click.option(
    "--keep-template/--no-keep-template",
    envvar="KEEP_TEMPLATE",
    default=True,
    help="keep images built for sessions [env KEEP_TEMPLATE]",
)
@click.option(
    "--pool-size", envvar="LLM_SANDBOX_MCP_POOL_SIZE", type=click.IntRange(min=1), default=4, show_default=True
)
@click.option(
    "--warm",
    envvar="LLM_SANDBOX_MCP_WARM",
    default="python",
    show_default=True,
    callback=_languages,
    help="languages whose pool starts at once (comma-separated; '' for none)",
)
@click.option(
    "--max-sessions", envvar="LLM_SANDBOX_MCP_MAX_SESSIONS", type=click.IntRange(min=1), default=8, show_default=True
)
@click.option(
    "--session-idle-timeout",
    envvar="LLM_SANDBOX_MCP_SESSION_IDLE_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    default=600.0,
    show_default=True,
    help="seconds before an unused session is closed",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
def mcp_command(**options: Any) -> None:
    """Serve llm-sandbox's tools to MCP clients (Claude Desktop, IDE agents, agent frameworks) over stdio (the
    default) or streamable HTTP."""
    from llm_sandbox.mcp.settings import ServerSettings, network_from, runtime_configs_from

    _configure_logging(options["log_level"])
    try:
        settings = ServerSettings(
            backend=options["backend"],
            namespace=options["namespace"],
            network=network_from("--network / SANDBOX_NETWORK_MODE", options["network"]),
            runtime_configs=runtime_configs_from(os.environ),
            commit_container=options["commit_container"],
            keep_template=options["keep_template"],
            pool_size=options["pool_size"],
            warm=options["warm"],
            max_sessions=options["max_sessions"],
            session_idle_timeout=options["session_idle_timeout"],
        )
        _serve(settings, options)
    except SandboxError as error:
        raise click.UsageError(str(error)) from None


def _serve(settings: Any, options: dict[str, Any]) -> None:
    try:
        import anyio

        from llm_sandbox.mcp.http import check_exposure, serve_http
        from llm_sandbox.mcp.server import Sandboxes, build_server
    except ImportError:
        raise click.ClickException(MISSING_SDK) from None
    transport, host, token = options["transport"], options["host"], options["token"] or None
    if transport == "http":
        check_exposure(host, token)  # before any sandbox is made
    sandboxes = Sandboxes(settings)
    server = build_server(sandboxes)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sandboxes.start()
        if transport == "stdio":
            anyio.run(server.run_stdio_async)
        else:
            app = server.streamable_http_app(streamable_http_path=options["http_path"], host=host)
            anyio.run(serve_http, app, host, options["port"], token)
    except KeyboardInterrupt:
        pass
    finally:
        sandboxes.close()
        logging.getLogger(__name__).info("MCP server stopped; its sandboxes are removed")


def _configure_logging(level: str) -> None:
    # stdout carries the protocol over stdio: everything else goes to stderr.
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("llm_sandbox").setLevel(level.upper())


def main() -> None:
    mcp_command(prog_name="llm-sandbox-mcp")
