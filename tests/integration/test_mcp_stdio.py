"""The MCP server over stdio, driven by the official MCP client on Docker: the reference's tools with their
arguments and output, every plot as an image, sessions that keep state and move files, their bound and expiry,
and no sandbox left once the server stops."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_client import McpClient, blobs_of, images_of, sandboxes_of, server_pids, stdio_server, text_of, wait_until_gone

REFERENCE_TOOLS = {"execute_code", "get_supported_languages", "get_language_details"}
SESSION_TOOLS = {"create_session", "run_in_session", "upload_file", "download_file", "list_sessions", "close_session"}
PNG = b"\x89PNG\r\n\x1a\n"
MAX_SESSIONS = 2


@pytest.fixture(scope="module")
def server() -> Iterator[McpClient]:
    args = ["--warm", "python,javascript", "--pool-size", "2", "--max-sessions", str(MAX_SESSIONS)]
    with stdio_server(*args) as client:
        yield client


@pytest.fixture
def session_id(server: McpClient) -> Iterator[str]:
    opened = server.outcome("create_session", language="python")
    yield opened["session_id"]
    server.call("close_session", session_id=opened["session_id"])


def test_the_tools_and_the_resource_are_listed(server: McpClient) -> None:
    assert server.tool_names() == REFERENCE_TOOLS | SESSION_TOOLS
    resources = server.portal.call(server.session.list_resources)
    assert [str(item.uri) for item in resources.resources] == ["sandbox://languages"]
    read = server.portal.call(lambda: server.session.read_resource("sandbox://languages"))
    details = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert sorted(details) == sorted(["python", "javascript", "java", "cpp", "go", "ruby", "r"])
    assert details["python"]["visualization_support"] is True
    assert details["java"]["stateful_sessions"] is False


def test_languages_and_their_details(server: McpClient) -> None:
    languages = json.loads(text_of(server.call("get_supported_languages")))
    assert languages == ["python", "javascript", "java", "cpp", "go", "ruby", "r"]
    ruby = json.loads(text_of(server.call("get_language_details", language="Ruby")))
    assert (ruby["name"], ruby["package_manager"], ruby["stateful_sessions"]) == ("ruby", "gem", True)
    unknown = json.loads(text_of(server.call("get_language_details", language="cobol")))
    assert unknown == {"error": "Unsupported language: cobol"}


def test_python_runs_with_its_exit_code_and_both_streams(server: McpClient) -> None:
    code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)"
    result = server.outcome("execute_code", code=code)
    assert (result["exit_code"], result["stdout"], result["stderr"]) == (3, "to stdout\n", "to stderr\n")
    assert result["timed_out"] is False


def test_javascript_runs(server: McpClient) -> None:
    result = server.outcome(
        "execute_code", code="console.log([1, 2, 3].map(x => x * 2).join(','))", language="javascript"
    )
    assert (result["exit_code"], result["stdout"]) == (0, "2,4,6\n")


def test_every_plot_of_a_run_comes_back_as_an_image(server: McpClient) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 3, 2]); plt.show()\n"
        "plt.figure(figsize=(3, 2)); plt.bar(['a', 'b'], [2, 5]); plt.show()\n"
    )
    result = server.call("execute_code", code=code)
    images = images_of(result)
    assert json.loads(text_of(result))["plots"] == 2
    assert len(images) == 2
    assert all(image.startswith(PNG) for image in images)
    assert images[0] != images[1]


def test_each_call_gets_a_fresh_sandbox(server: McpClient) -> None:
    listing = "import os; print(sorted(os.listdir('.')))"
    first = server.outcome("execute_code", code=f"open('left.txt', 'w').write('x'); {listing}")
    assert "left.txt" in first["stdout"]
    for _ in range(3):  # whichever pooled sandbox the next calls get, none has the file
        assert "left.txt" not in server.outcome("execute_code", code=listing)["stdout"]


def test_a_run_past_its_timeout_is_stopped(server: McpClient) -> None:
    started = time.monotonic()
    result = server.outcome("execute_code", code="print('begun', flush=True)\nwhile True: pass", timeout=1)
    assert result["timed_out"] is True
    assert result["stdout"] == "begun\n"
    assert time.monotonic() - started < 15


def test_a_library_error_is_a_tool_error(server: McpClient) -> None:
    result = server.call("execute_code", code="print(1)", language="cobol")
    assert result.is_error
    assert "LanguageNotSupportedError" in json.loads(text_of(result))["error"]


def test_a_python_session_keeps_its_state_across_calls(server: McpClient, session_id: str) -> None:
    assert server.outcome("run_in_session", session_id=session_id, code="import math\nradius = 2")["exit_code"] == 0
    result = server.outcome("run_in_session", session_id=session_id, code="print(round(math.pi * radius ** 2, 2))")
    assert (result["stdout"], result["state_lost"]) == ("12.57\n", False)
    failed = server.outcome("run_in_session", session_id=session_id, code="1 / 0")
    assert failed["exit_code"] != 0
    assert "ZeroDivisionError" in failed["stderr"]
    assert server.outcome("run_in_session", session_id=session_id, code="print(radius)")["stdout"] == "2\n"


def test_a_javascript_session_keeps_its_state(server: McpClient) -> None:
    opened = server.outcome("create_session", language="javascript")
    try:
        assert opened["stateful"] is True
        server.outcome(
            "run_in_session", session_id=opened["session_id"], code="var total = 40; function add(n) { total += n }"
        )
        server.outcome("run_in_session", session_id=opened["session_id"], code="add(2)")
        result = server.outcome("run_in_session", session_id=opened["session_id"], code="console.log(total)")
        assert result["stdout"] == "42\n"
    finally:
        server.call("close_session", session_id=opened["session_id"])


def test_a_session_plot_comes_back_as_an_image(server: McpClient, session_id: str) -> None:
    result = server.call(
        "run_in_session", session_id=session_id, code="import matplotlib.pyplot as plt\nplt.plot([2, 1])"
    )
    images = images_of(result)
    assert len(images) == 1
    assert images[0].startswith(PNG)


def test_files_go_in_and_come_out(server: McpClient, session_id: str) -> None:
    data = bytes(range(256)) * 4
    sent = server.outcome(
        "upload_file",
        session_id=session_id,
        path="in/data.bin",
        content=base64.b64encode(data).decode(),
        encoding="base64",
    )
    assert sent == {"path": "/sandbox/in/data.bin", "size": len(data)}
    server.outcome("upload_file", session_id=session_id, path="/sandbox/in/note.txt", content="héllo")
    code = (
        "data = open('in/data.bin', 'rb').read()\n"
        "note = open('in/note.txt', encoding='utf-8').read()\n"
        "open('reversed.bin', 'wb').write(data[::-1] + note.upper().encode())"
    )
    assert server.outcome("run_in_session", session_id=session_id, code=code)["exit_code"] == 0
    result = server.call("download_file", session_id=session_id, path="reversed.bin")
    assert not result.is_error, text_of(result)
    assert json.loads(text_of(result))["path"] == "/sandbox/reversed.bin"
    assert list(blobs_of(result).values()) == [data[::-1] + "HÉLLO".encode()]


def test_a_missing_file_and_an_unknown_session_are_tool_errors(server: McpClient, session_id: str) -> None:
    missing = server.call("download_file", session_id=session_id, path="nothing-here.txt")
    assert missing.is_error
    unknown = server.call("run_in_session", session_id="no-such-session", code="print(1)")
    assert unknown.is_error
    assert "SessionNotFoundError" in text_of(unknown)


def test_sessions_are_bounded_listed_and_closed(server: McpClient) -> None:
    opened = [server.outcome("create_session", language="ruby")["session_id"] for _ in range(MAX_SESSIONS)]
    try:
        refused = server.call("create_session", language="python")
        assert refused.is_error
        assert "TooManySessionsError" in text_of(refused)
        listed = server.outcome("list_sessions")
        assert sorted(item["session_id"] for item in listed["sessions"]) == sorted(opened)
        assert listed["max_sessions"] == MAX_SESSIONS
    finally:
        for session_id in opened:
            assert server.outcome("close_session", session_id=session_id) == {"closed": session_id}
    assert server.outcome("list_sessions")["sessions"] == []
    assert server.call("run_in_session", session_id=opened[0], code="1").is_error


def test_idle_sessions_expire_and_nothing_is_left_once_the_server_stops(docker_client: Any) -> None:
    before = server_pids()
    with stdio_server("--warm", "python", "--pool-size", "1", "--session-idle-timeout", "2") as client:
        (pid,) = server_pids() - before
        kept = client.outcome("create_session", language="python")["session_id"]
        expiring = client.outcome("create_session", language="python")["session_id"]
        assert client.outcome("execute_code", code="print(1)")["stdout"] == "1\n"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # one is kept in use; the other is left idle
            client.outcome("run_in_session", session_id=kept, code="x = 1")
            listed = {item["session_id"] for item in client.outcome("list_sessions")["sessions"]}
            if expiring not in listed:
                break
            time.sleep(0.5)
        assert listed == {kept}
        assert client.call("run_in_session", session_id=expiring, code="1").is_error
        assert sandboxes_of(docker_client, pid), "the server's sandboxes carry its pid"
    assert wait_until_gone(docker_client, pid) == []


def test_the_references_environment_variables_configure_the_server(podman_client: Any) -> None:
    before = server_pids()
    # The engine's "bridge" gives the code the network (by default it has none).
    environment = {"BACKEND": "podman", "SANDBOX_NETWORK_MODE": "bridge", "LLM_SANDBOX_MCP_WARM": ""}
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=5); print('online')\n"
        "except OSError: print('offline')"
    )
    with stdio_server(env=environment) as client:
        (pid,) = server_pids() - before
        assert client.outcome("execute_code", code=probe)["stdout"] == "online\n"
        assert sandboxes_of(podman_client, pid), "the sandbox is a Podman container"
    assert wait_until_gone(podman_client, pid) == []


def test_commit_container_saves_each_run_as_a_new_image(docker_client: Any) -> None:
    environment = {"COMMIT_CONTAINER": "true", "LLM_SANDBOX_MCP_WARM": ""}
    with stdio_server(env=environment) as client:
        result = client.outcome("execute_code", code="open('kept.txt', 'w').write('saved'); print('done')")
    tag = result["committed_image"]
    try:
        assert result["stdout"] == "done\n"
        assert tag.startswith("llm-sandbox-commit/python:")
        saved = docker_client.containers.run(tag, ["cat", "/sandbox/kept.txt"], remove=True, network_mode="none")
        assert saved == b"saved"
    finally:
        docker_client.images.remove(tag, force=True)
