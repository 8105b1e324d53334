"""The ``llm-sandbox`` command, run for real in a subprocess on Docker: output, exit codes, JSON, languages guessed
from file extensions, libraries, the network option, images and cleanup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.cli.output import SANDBOX_FAILED, TIMED_OUT

COMMAND = [str(Path(sys.executable).with_name("llm-sandbox"))]


def llm_sandbox(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], check=False, input=stdin, capture_output=True, text=True, timeout=timeout)


def test_the_command_is_installed_with_its_commands() -> None:
    assert shutil.which("llm-sandbox", path=str(Path(COMMAND[0]).parent))
    finished = llm_sandbox("--help")
    assert finished.returncode == 0
    for command in ("run", "exec", "images", "cleanup", "mcp"):
        assert f"  {command} " in finished.stdout


def test_run_code_streams_both_outputs_and_exits_with_the_programs_code() -> None:
    finished = llm_sandbox("run", "-c", "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(7)")
    assert (finished.returncode, finished.stdout, finished.stderr) == (7, "out\n", "err\n")


def test_run_a_file_whose_extension_names_the_language(tmp_path: Path) -> None:
    program = tmp_path / "double.js"
    program.write_text("console.log([1, 2].map(x => x * 2).join(' '))\n")
    finished = llm_sandbox("run", str(program))
    assert (finished.returncode, finished.stdout) == (0, "2 4\n")


def test_run_from_stdin_needs_the_language() -> None:
    assert llm_sandbox("run", "-", stdin="print(1)").returncode == 2
    finished = llm_sandbox("run", "-", "--lang", "ruby", stdin="puts 6 * 7\n")
    assert (finished.returncode, finished.stdout) == (0, "42\n")


def test_json_output_is_the_result() -> None:
    finished = llm_sandbox("run", "--json", "-c", "print('hi'); raise SystemExit(4)")
    result = json.loads(finished.stdout)
    assert finished.returncode == 4
    assert (result["exit_code"], result["stdout"], result["timed_out"]) == (4, "hi\n", False)


def test_a_timeout_stops_the_program_with_exit_124() -> None:
    finished = llm_sandbox("run", "--timeout", "1", "-c", "print('started', flush=True)\nwhile True: pass")
    assert finished.returncode == TIMED_OUT
    assert finished.stdout == "started\n"
    assert "time limit" in finished.stderr


def test_a_library_is_installed_first() -> None:
    finished = llm_sandbox("run", "--lib", "termcolor==2.4.0", "-c", "import termcolor; print(termcolor.__name__)")
    assert (finished.returncode, finished.stdout) == (0, "termcolor\n"), finished.stderr


def test_the_network_option_reaches_the_sandbox() -> None:
    probe = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('pypi.org', 443), timeout=5); print('online')\n"
        "except OSError: print('offline')"
    )
    assert llm_sandbox("run", "-c", probe).stdout == "offline\n"
    assert llm_sandbox("run", "--network", "full", "-c", probe).stdout == "online\n"


def test_exec_runs_a_shell_command_or_an_argv() -> None:
    shell = llm_sandbox("exec", "echo $((6 * 7)) && exit 5")
    assert (shell.returncode, shell.stdout) == (5, "42\n")
    argv = llm_sandbox("exec", "--", "echo", "$HOME")
    assert (argv.returncode, argv.stdout) == (0, "$HOME\n")
    missing = llm_sandbox("exec", "--json", "--", "ls", "/nowhere")
    assert missing.returncode == 2
    assert "/nowhere" in json.loads(missing.stdout)["stderr"]


def test_a_sandbox_that_cannot_start_exits_125() -> None:
    finished = llm_sandbox("run", "--image", "llm-sandbox-test/no-such-image:none", "-c", "print(1)")
    assert finished.returncode == SANDBOX_FAILED
    assert "ImagePullError" in finished.stderr
    assert "no-such-image" in finished.stderr


def test_images_list_reports_each_image() -> None:
    listed = llm_sandbox("images", "list", "--json")
    assert listed.returncode == 0
    states = {row["image"]: row["state"] for row in json.loads(listed.stdout)}
    assert states["llm-sandbox/python:bookworm"] == "present"
    table = llm_sandbox("images", "list")
    assert table.stdout.startswith("IMAGE")


def test_images_build_of_a_current_image_is_up_to_date_and_quiet_off_a_terminal() -> None:
    finished = llm_sandbox("images", "build", "python", "--json")
    assert finished.returncode == 0
    rows = json.loads(finished.stdout)
    assert {row["action"] for row in rows} == {"up to date"}
    assert "llm-sandbox/python:bookworm" in {row["image"] for row in rows}
    assert finished.stderr == ""  # no progress lines in a pipe


def test_cleanup_removes_an_orphan_and_reports_it(docker_client: Any, python_image_on_docker: str) -> None:
    labels = {
        "io.llm-sandbox.managed": "true",
        "io.llm-sandbox.owner-pid": "999999999",  # no such process: an orphan
        "io.llm-sandbox.owner-host": os.uname().nodename,
        "io.llm-sandbox.created-at": "0",
    }
    orphan = docker_client.containers.run(python_image_on_docker, ["sleep", "infinity"], detach=True, labels=labels)
    try:
        finished = llm_sandbox("cleanup", "--json")
        assert finished.returncode == 0
        assert orphan.id in json.loads(finished.stdout)["removed"]
    finally:
        try:
            orphan.remove(force=True)
        except Exception:
            pass


def test_mcp_command_is_the_server() -> None:
    finished = llm_sandbox("mcp", "--help")
    assert finished.returncode == 0
    assert "--transport [stdio|http]" in finished.stdout


@pytest.fixture
def python_image_on_docker(docker_client: Any) -> str:
    image = "llm-sandbox/python:bookworm"
    docker_client.images.get(image)
    return image
