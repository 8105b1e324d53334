"""The MCP server over streamable HTTP on loopback, driven by the official MCP client on Docker: the bearer token
is required on every request, the server refuses to listen beyond loopback without one, a session keeps its
state across requests, and SIGTERM stops the server with every sandbox removed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import MCPError

from mcp_client import SERVER, McpClient, http_client, images_of, sandboxes_of, wait_until_gone

TOKEN = "test-token-" + "x" * 24
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(*args: str, token: str | None = TOKEN) -> RunningServer:
    port = free_port()
    env = {**os.environ, "LLM_SANDBOX_MCP_TOKEN": token} if token else dict(os.environ)
    if not token:
        env.pop("LLM_SANDBOX_MCP_TOKEN", None)
    command = [*SERVER, "--transport", "http", "--port", str(port), "--warm", "python", "--pool-size", "1", *args]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return RunningServer(process, f"http://127.0.0.1:{port}/mcp")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the server did not start: {process.communicate()[1].decode()[-2000:]}")


def stop(server: RunningServer) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    finally:
        if server.process.poll() is None:
            server.process.kill()


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start()
    yield running
    if running.process.poll() is None:
        stop(running)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[McpClient]:
    with http_client(server.url, TOKEN) as connected:
        yield connected


def post(url: str, authorization: str | None, **extra_headers: str) -> int:
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **extra_headers}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=json.dumps(INITIALIZE).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_request_needs_the_token(server: RunningServer) -> None:
    assert post(server.url, None) == 401
    assert post(server.url, "Bearer wrong-token-of-the-same-size-0000") == 401
    assert post(server.url, TOKEN) == 401  # the scheme is part of it
    assert post(server.url, f"Bearer {TOKEN}") == 200


def test_on_loopback_a_foreign_host_or_origin_is_refused_even_with_the_token(server: RunningServer) -> None:
    # What a web page would send after rebinding a name of its own to 127.0.0.1.
    assert post(server.url, f"Bearer {TOKEN}", Host="attacker.example") == 421
    assert post(server.url, f"Bearer {TOKEN}", Origin="http://attacker.example") == 403


def test_a_client_without_the_token_cannot_connect(server: RunningServer) -> None:
    with pytest.raises(Exception) as refused, http_client(server.url, None):
        pass
    # The client reports the 401 to its caller as an error response to initialize.
    assert refused.group_contains(MCPError, match="error response")


def test_tools_run_python_and_javascript_over_http(client: McpClient) -> None:
    assert {"execute_code", "create_session", "run_in_session"} <= client.tool_names()
    assert client.outcome("execute_code", code="print(sum(range(10)))")["stdout"] == "45\n"
    js = client.outcome("execute_code", code="console.log(typeof require)", language="javascript")
    assert js["stdout"] == "function\n"
    plotted = client.call("execute_code", code="import matplotlib.pyplot as plt\nplt.plot([0, 1]); plt.show()")
    assert len(images_of(plotted)) == 1


def test_a_session_keeps_its_state_across_requests(client: McpClient) -> None:
    session_id = client.outcome("create_session", language="python")["session_id"]
    try:
        client.outcome("run_in_session", session_id=session_id, code="seen = ['first']")
        client.outcome("run_in_session", session_id=session_id, code="seen.append('second')")
        assert client.outcome("run_in_session", session_id=session_id, code="print(seen)")["stdout"] == (
            "['first', 'second']\n"
        )
    finally:
        client.call("close_session", session_id=session_id)


def test_sigterm_stops_the_server_and_removes_its_sandboxes(docker_client: Any) -> None:
    running = start()
    with http_client(running.url, TOKEN) as connected:
        session_id = connected.outcome("create_session", language="python")["session_id"]
        assert connected.outcome("run_in_session", session_id=session_id, code="print(2)")["stdout"] == "2\n"
    assert sandboxes_of(docker_client, running.process.pid), "the server's sandboxes carry its pid"
    assert stop(running) == 0
    assert wait_until_gone(docker_client, running.process.pid) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_it_refuses_to_listen_beyond_loopback_without_a_token(host: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "LLM_SANDBOX_MCP_TOKEN"}
    command = [*SERVER, "--transport", "http", "--host", host, "--port", str(free_port())]
    finished = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "without a bearer token" in finished.stderr
    assert "LLM_SANDBOX_MCP_TOKEN" in finished.stderr


def test_a_short_token_is_refused() -> None:
    command = [*SERVER, "--transport", "http", "--port", str(free_port()), "--token", "short"]
    finished = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "at least 16 characters" in finished.stderr


def test_beyond_loopback_with_a_token_it_serves_and_checks_it() -> None:
    running = start("--host", "0.0.0.0")
    try:
        assert post(running.url, None) == 401
        assert post(running.url, f"Bearer {TOKEN}") == 200
    finally:
        assert stop(running) == 0


def test_the_text_of_a_refusal_names_the_header(server: RunningServer) -> None:
    request = urllib.request.Request(server.url, data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in json.loads(refused.value.read())["error"]
