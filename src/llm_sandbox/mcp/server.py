"""The MCP server: its tools and resource, on the official SDK's ``MCPServer``.

The reference's tools keep their names, arguments and output (``execute_code``, ``get_supported_languages``,
``get_language_details``, the resource ``sandbox://languages``), so a client written for it works unchanged.
``execute_code`` returns every plot of the run (the reference: only the last). The session tools are this
server's own. Tools are plain functions: the SDK runs each call in a worker thread, so calls run side by side.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from llm_sandbox._version import __version__
from llm_sandbox.errors import LanguageNotSupportedError, SandboxError, ValidationError
from llm_sandbox.languages.registry import LANGUAGES, get_language
from llm_sandbox.mcp.content import error_content, file_content, json_content, result_content
from llm_sandbox.mcp.executor import PooledExecutor
from llm_sandbox.mcp.languages import all_language_details, language_details
from llm_sandbox.mcp.sessions import SessionRegistry
from llm_sandbox.mcp.settings import ServerSettings

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Runs code in isolated, network-less sandboxes. execute_code runs one program in a fresh sandbox. To build on "
    "earlier work, create_session, then run_in_session: in Python, JavaScript, Ruby and R every call is a cell of "
    "one interpreter that keeps its variables; upload_file and download_file move files in and out; close_session "
    "when done. Files a run writes into the workdir's outputs/ folder come back with its result."
)


class Sandboxes:
    """Everything the server's tools hold: the pools behind ``execute_code`` and the open sessions."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.executor = PooledExecutor(settings)
        self.sessions = SessionRegistry(settings)

    def start(self) -> None:
        self.executor.warm(self.settings.warm)

    def close(self) -> None:
        """Remove every sandbox the server made: the sessions', then the pools'."""
        self.sessions.close_all()
        self.executor.close()


def build_server(sandboxes: Sandboxes) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("llm-sandbox", version=__version__, instructions=INSTRUCTIONS)
    _add_reference_tools(server, sandboxes)
    _add_session_tools(server, sandboxes)
    return server


def _guarded(call: Callable[[], CallToolResult]) -> CallToolResult:
    """The call's result, or the library's error as a tool error the client can read and act on."""
    try:
        return call()
    except (SandboxError, ValueError, TypeError, LookupError, RuntimeError) as error:
        logger.info("tool call failed: %s: %s", type(error).__name__, error)
        return error_content(error)


def _add_reference_tools(server: MCPServer[Any], sandboxes: Sandboxes) -> None:
    @server.tool(structured_output=False, annotations=ToolAnnotations(open_world_hint=False))
    def execute_code(
        code: str, language: str = "python", libraries: list[str] | None = None, timeout: int = 30
    ) -> CallToolResult:
        """Execute code in a fresh, isolated sandbox (no network) and return its result as JSON (exit_code,
        stdout, stderr, timed_out, ...), then every plot it drew as an image (Python: matplotlib, seaborn; R).

        Args:
            code: The code to execute
            language: Programming language (python, javascript, java, cpp, go, ruby, r)
            libraries: Libraries to install first (pip, npm, gem, ... names)
            timeout: Execution timeout in seconds (default: 30)
        """

        def execute() -> CallToolResult:
            result, extra = sandboxes.executor.execute(code, language, libraries, timeout)
            return result_content(result, **extra)

        return _guarded(execute)

    @server.tool(structured_output=False)
    def get_supported_languages() -> TextContent:
        """Get the list of supported languages."""
        return TextContent(text=json.dumps(list(LANGUAGES), indent=2))

    @server.tool(structured_output=False)
    def get_language_details(language: str) -> TextContent:
        """Get the details of a language: version, package manager, preinstalled libraries, whether plots come
        back and whether sessions keep the interpreter's state, and an example.

        Args:
            language: The language to get the details of
        """
        try:
            name = get_language(language).name
        except LanguageNotSupportedError:
            return TextContent(text=json.dumps({"error": f"Unsupported language: {language}"}))
        return TextContent(text=json.dumps(language_details(name), indent=2))

    @server.resource("sandbox://languages", mime_type="application/json")
    def languages() -> str:
        """Details of every supported language."""
        return json.dumps(all_language_details(), indent=2)


def _add_session_tools(server: MCPServer[Any], sandboxes: Sandboxes) -> None:
    registry = sandboxes.sessions

    @server.tool(structured_output=False)
    def create_session(language: str = "python", libraries: list[str] | None = None) -> CallToolResult:
        """Open a sandbox that stays for later calls and return its session_id. In python, javascript, ruby and r
        every run_in_session call is a cell of one interpreter, so variables, functions and imports carry over;
        in java, cpp and go each call is a new program while files carry over. Idle sessions expire.

        Args:
            language: Programming language (python, javascript, java, cpp, go, ruby, r)
            libraries: Libraries to install when the session opens
        """
        return _guarded(lambda: json_content(registry.create(language, libraries).describe()))

    @server.tool(structured_output=False)
    def run_in_session(session_id: str, code: str, timeout: int = 30) -> CallToolResult:
        """Run code in an open session, after everything run there before. Returns the result as JSON, then its
        plots as images. A cell past its timeout is interrupted and the state is kept.

        Args:
            session_id: The session's id (from create_session)
            code: The code to run
            timeout: Time limit in seconds (default: 30)
        """
        return _guarded(lambda: result_content(registry.run(session_id, code, timeout), session_id=session_id))

    @server.tool(structured_output=False)
    def upload_file(
        session_id: str, path: str, content: str, encoding: Literal["text", "base64"] = "text"
    ) -> CallToolResult:
        """Write a file into a session's sandbox (parent folders are made).

        Args:
            session_id: The session's id
            path: Where to write it: relative to the workdir (/sandbox), or absolute
            content: The file's content: text, or base64 when encoding is "base64"
            encoding: "text" (UTF-8) or "base64" (binary files)
        """

        def upload() -> CallToolResult:
            data = _decode(content, encoding)
            written = registry.upload(session_id, path, data)
            return json_content({"path": written, "size": len(data)})

        return _guarded(upload)

    @server.tool(structured_output=False)
    def download_file(session_id: str, path: str) -> CallToolResult:
        """Read a file from a session's sandbox; its bytes come back as an embedded resource (base64 blob).

        Args:
            session_id: The session's id
            path: The file: relative to the workdir (/sandbox), or absolute
        """

        def download() -> CallToolResult:
            source, data = registry.download(session_id, path)
            return file_content(source, f"sandbox://sessions/{session_id}{source}", data)

        return _guarded(download)

    @server.tool(structured_output=False)
    def list_sessions() -> CallToolResult:
        """The open sessions: id, language, whether the interpreter keeps state, calls made, seconds idle."""
        return json_content({"sessions": registry.describe_all(), "max_sessions": sandboxes.settings.max_sessions})

    @server.tool(structured_output=False)
    def close_session(session_id: str) -> CallToolResult:
        """Close a session and remove its sandbox.

        Args:
            session_id: The session's id
        """

        def close() -> CallToolResult:
            registry.close(session_id)
            return json_content({"closed": session_id})

        return _guarded(close)


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "text":
        return content.encode("utf-8")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except binascii.Error as error:
            raise ValidationError(f"content is not valid base64: {error}") from None
    raise ValidationError(f"encoding must be 'text' or 'base64', not {encoding!r}")
