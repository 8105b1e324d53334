"""Driving the MCP server from synchronous tests with the official MCP client.

``McpClient`` holds a ``ClientSession`` that lives in an event loop on a thread of its own (anyio's blocking
portal), so one server can serve every test of a module; ``call`` returns the tool result. Helpers read what the
tools return and find the server's sandboxes on the engine by the owner-pid label the library puts on them.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx2
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, EmbeddedResource, ImageContent, TextContent

from harness import list_containers
from llm_sandbox.labels import OWNER_PID_LABEL

SERVER = [sys.executable, "-m", "llm_sandbox.mcp"]


class McpClient:
    def __init__(self, portal: BlockingPortal, session: ClientSession) -> None:
        self.portal = portal
        self.session = session

    def call(self, tool: str, **arguments: Any) -> CallToolResult:
        result: CallToolResult = self.portal.call(lambda: self.session.call_tool(tool, arguments))
        return result

    def outcome(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """The JSON text a tool answers with first, checked to be a success."""
        result = self.call(tool, **arguments)
        assert not result.is_error, text_of(result)
        data: dict[str, Any] = json.loads(text_of(result))
        return data

    def tool_names(self) -> set[str]:
        tools = self.portal.call(self.session.list_tools)
        return {tool.name for tool in tools.tools}


def text_of(result: CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, TextContent), f"the first block is {first.type}, not text"
    return first.text


def images_of(result: CallToolResult) -> list[bytes]:
    return [base64.b64decode(block.data) for block in result.content if isinstance(block, ImageContent)]


def blobs_of(result: CallToolResult) -> dict[str, bytes]:
    found = {}
    for block in result.content:
        if isinstance(block, EmbeddedResource):
            blob = getattr(block.resource, "blob", None)
            assert blob is not None, "a file comes back as a blob"
            found[block.resource.uri] = base64.b64decode(blob)
    return found


@asynccontextmanager
async def _stdio_session(args: list[str], env: dict[str, str] | None) -> AsyncIterator[ClientSession]:
    parameters = StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], *args], env=env)
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def _http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    timeout = httpx2.Timeout(60.0, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@contextmanager
def stdio_server(*args: str, env: dict[str, str] | None = None) -> Iterator[McpClient]:
    """A server started by the client over stdio (``python -m llm_sandbox.mcp ARGS``), stopped at the end as MCP
    clients stop one: its stdin is closed."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(_stdio_session(list(args), env)) as session,
    ):
        yield McpClient(portal, session)


@contextmanager
def http_client(url: str, token: str | None) -> Iterator[McpClient]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(_http_session(url, token)) as session:
        yield McpClient(portal, session)


def server_pids() -> set[int]:
    """The pids of this process's children that run the MCP server."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and b"llm_sandbox.mcp" in command:
            found.add(int(stat.parent.name))
    return found


def sandboxes_of(client: Any, pid: int) -> list[str]:
    """The containers the library made for process ``pid`` that are still there."""
    return [container.name for container in list_containers(client, {"label": f"{OWNER_PID_LABEL}={pid}"})]


def wait_until_gone(client: Any, pid: int, seconds: float = 15.0) -> list[str]:
    """What remains of process ``pid``'s sandboxes after up to ``seconds`` (the engine removes them
    asynchronously)."""
    deadline = time.monotonic() + seconds
    left = sandboxes_of(client, pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = sandboxes_of(client, pid)
    return left
