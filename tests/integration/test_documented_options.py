"""Every documented session option, exercised on a real engine: contract-style where the option means the same on
every backend (tests/harness.py), on Docker and Podman where it is about the engine's own container settings."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ABOVE_THE_COMMAND_PATH, Harness
from llm_sandbox import (
    FileTooLargeError,
    LibraryInstallationError,
    MemoryLimitError,
    SandboxSession,
    SandboxTimeoutError,
)
from llm_sandbox.cleanup import sweep
from llm_sandbox.errors import OutputDecodingError
from llm_sandbox.labels import (
    CREATED_AT_LABEL,
    MANAGED_LABEL,
    OWNER_HOST_LABEL,
    OWNER_PID_LABEL,
    SANDBOX_LABEL,
)

pytestmark = ABOVE_THE_COMMAND_PATH

ENGINE_BACKENDS = pytest.mark.backends("docker", "podman")
# A writer that floods, then leaves a mark if it is still alive a moment later: a killed writer leaves none.
FLOOD_THEN_MARK = (
    "import sys, time\n"
    "sys.{stream}.write('x' * 5000)\nsys.{stream}.flush()\n"
    "time.sleep(1)\n"
    "open('/tmp/{marker}', 'w').write('alive')\n"
)
PIP_EGRESS = (
    "import subprocess, sys\n"
    "r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-cache-dir', '-d', '/tmp/dl',"
    " '--timeout', '5', '--retries', '0', 'six==1.16.0'], capture_output=True, text=True)\n"
    "print('EGRESS', r.returncode)\n"
)


@pytest.fixture(scope="module")
def limited(backend: Harness) -> Iterator[SandboxSession]:
    """A session that keeps 1000 bytes of each stream."""
    with backend.session(lang="python", output_limit=1000) as opened:
        yield opened


def _exists(session: SandboxSession, path: str) -> bool:
    return session.execute_command(["test", "-e", path]).exit_code == 0


# --- output_limit ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_limit_keeps_exactly_that_many_bytes_and_kills_the_writer(limited: SandboxSession, stream: str) -> None:
    marker = f"mark-{uuid.uuid4().hex[:8]}"
    result = limited.run(FLOOD_THEN_MARK.format(stream=stream, marker=marker))
    assert result.truncated
    kept = getattr(result, stream)
    other = result.stderr if stream == "stdout" else result.stdout
    assert kept == "x" * 1000
    assert other == ""
    assert result.exit_code == 137  # SIGKILL: the writer did not get to finish
    assert not _exists(limited, f"/tmp/{marker}")  # ... and never wrote its mark
    assert limited.run("print('after')").stdout == "after\n"


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_limit_applies_to_commands_too(limited: SandboxSession, stream: str) -> None:
    marker = f"/tmp/mark-{uuid.uuid4().hex[:8]}"
    redirect = " >&2" if stream == "stderr" else ""
    result = limited.execute_command(f"head -c 5000 /dev/zero | tr '\\0' y{redirect}; sleep 1; touch {marker}")
    assert result.truncated
    assert getattr(result, stream) == "y" * 1000
    assert result.exit_code == 137
    assert not _exists(limited, marker)
    small = limited.execute_command("head -c 1000 /dev/zero | tr '\\0' z")  # exactly the limit: nothing cut
    assert (small.stdout, small.truncated, small.exit_code) == ("z" * 1000, False, 0)


def test_default_output_limit_caps_stderr_and_commands_at_10_mib(backend: Harness) -> None:
    with backend.session(lang="python") as session:
        flood = "import sys\nchunk = 'e' * (1 << 20)\nfor _ in range(64): sys.stderr.write(chunk)\nprint('done')"
        result = session.run(flood)
        assert result.truncated
        assert len(result.stderr) == 10 * 1024 * 1024
        assert "done" not in result.stdout
        command = session.execute_command("head -c 20M /dev/zero | tr '\\0' c; echo done")
        assert command.truncated
        assert len(command.stdout) == 10 * 1024 * 1024
        assert set(command.stdout) == {"c"}


# --- streaming callbacks and stream=True ---------------------------------------------------------------------


def test_callbacks_arrive_while_the_code_still_runs(backend: Harness) -> None:
    # The code prints on both streams, then sleeps: the early output must be handed over during the sleep, not
    # when the run ends (the engine-side variant below makes the code wait for the callback itself).
    seen = {"out": "", "err": ""}
    complete: dict[str, float] = {}
    started = time.monotonic()

    def record(stream: str, line: str) -> Any:
        def callback(text: str) -> None:
            seen[stream] += text
            if line in seen[stream] and stream not in complete:
                complete[stream] = time.monotonic() - started

        return callback

    with backend.session(lang="python") as session:
        started = time.monotonic()
        result = session.run(
            "import sys, time\nprint('early', flush=True)\nsys.stderr.write('err-early\\n'); sys.stderr.flush()\n"
            "time.sleep(3)\nprint('late')",
            on_stdout=record("out", "early\n"),
            on_stderr=record("err", "err-early\n"),
        )
        ended = time.monotonic() - started
    assert result.stdout == seen["out"] == "early\nlate\n"
    assert result.stderr == seen["err"] == "err-early\n"
    assert set(complete) == {"out", "err"}
    assert max(complete.values()) < ended - 2.5, (complete, ended)  # both came while the code still slept


@ENGINE_BACKENDS
def test_a_callback_can_unblock_the_running_code_through_the_engine(backend: Harness, engine_client: Any) -> None:
    # The code waits for a file the callback creates through the engine (not through the session, which is busy):
    # it could not finish unless the first chunk arrived while it was running.
    with backend.session(lang="python") as session:
        container = engine_client.containers.get(session.container_id)
        created: list[float] = []
        started = time.monotonic()

        def on_stdout(text: str) -> None:
            if "waiting" in text and not created:
                container.exec_run(["touch", "/tmp/go"], user="65534")
                created.append(time.monotonic() - started)

        result = session.run(
            "import os, time\nprint('waiting', flush=True)\n"
            "for _ in range(200):\n    if os.path.exists('/tmp/go'):\n        break\n    time.sleep(0.05)\n"
            "else:\n    raise SystemExit('never unblocked')\nprint('unblocked')",
            on_stdout=on_stdout,
            timeout=30,
        )
    assert (result.exit_code, result.stdout) == (0, "waiting\nunblocked\n"), result.stderr
    assert len(created) == 1  # the callback ran once, during the run (the code could not end otherwise)


def test_stream_true_logs_the_output_to_the_output_loggers(backend: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="llm_sandbox.output"),
        backend.session(lang="python", stream=True) as session,
    ):
        result = session.run("import sys\nprint('to-stdout')\nprint('to-stderr', file=sys.stderr)")
        command = session.execute_command("echo command-out")
    assert (result.stdout, result.stderr) == ("to-stdout\n", "to-stderr\n")  # the result still has it all
    assert command.stdout == "command-out\n"
    records = [
        (record.name, record.getMessage()) for record in caplog.records if record.name.startswith("llm_sandbox.output")
    ]
    assert ("llm_sandbox.output.stdout", "to-stdout") in records
    assert ("llm_sandbox.output.stderr", "to-stderr") in records
    assert ("llm_sandbox.output.stdout", "command-out") in records


def test_without_stream_nothing_is_logged_to_the_output_loggers(
    backend: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="llm_sandbox.output"), backend.session(lang="python") as session:
        session.run("print('quiet')")
    assert not [record for record in caplog.records if record.name.startswith("llm_sandbox.output")]


# --- encoding_errors ---------------------------------------------------------------------------------------


def test_encoding_errors_replace_gives_the_replacement_character(backend: Harness) -> None:
    with backend.session(lang="python", encoding_errors="replace") as session:
        result = session.run("import sys\nsys.stdout.buffer.write(b'a\\xffb')\nsys.stderr.buffer.write(b'\\xfe')")
        assert (result.stdout, result.stderr) == ("a\ufffdb", "\ufffd")


def test_encoding_errors_strict_raises_and_the_next_call_gets_its_own_output(backend: Harness) -> None:
    with backend.session(lang="python", encoding_errors="strict") as session:
        container = session.container_id
        # The library's error (still a UnicodeDecodeError), raised once the reply was read to its end.
        with pytest.raises(OutputDecodingError):
            session.run("import sys, time\nsys.stdout.buffer.write(b'bad \\xff')\nsys.stdout.flush()\nprint('tail')")
        after = session.run("print('fresh')")
        assert session.container_id == container  # the same sandbox: nothing was lost
        assert (after.exit_code, after.stdout, after.stderr) == (0, "fresh\n", "")
        command = session.execute_command("echo own")
        assert command.stdout == "own\n"
        assert session.run("print('valid é')").stdout == "valid é\n"


# --- timeouts: execute_command(timeout=), default_timeout, execution_timeout ---------------------------------


def test_execute_command_timeout_keeps_partial_output_and_the_session_goes_on(backend: Harness) -> None:
    with backend.session(lang="python") as session:
        started = time.monotonic()
        with pytest.raises(SandboxTimeoutError) as raised:
            session.execute_command("echo partial; sleep 30; echo never", timeout=2)
        elapsed = time.monotonic() - started
        assert 2 <= elapsed < 10
        output = raised.value.output
        assert output is not None
        assert output.stdout == "partial\n"
        assert output.timed_out
        assert session.execute_command("ps -eo args | grep -c '^sleep 30' || true").stdout.strip() == "0"
        assert session.execute_command("echo after").stdout == "after\n"


def _times_out(call: Any, seconds: float) -> SandboxTimeoutError:
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as raised:
        call()
    elapsed = time.monotonic() - started
    assert seconds <= elapsed < seconds + 6, elapsed
    assert raised.value.timeout == seconds
    return raised.value


def test_default_timeout_bounds_runs_and_commands(backend: Harness) -> None:
    with backend.session(lang="python", default_timeout=2) as session:
        error = _times_out(lambda: session.run("import time\nprint('begun', flush=True)\ntime.sleep(60)"), 2)
        assert error.output is not None and error.output.stdout == "begun\n"
        _times_out(lambda: session.execute_command("sleep 60"), 2)
        # A call's own timeout wins over the default.
        assert session.execute_command("sleep 3; echo slow", timeout=20).stdout == "slow\n"
        assert session.run("print('after')").stdout == "after\n"


def test_execution_timeout_bounds_runs_only(backend: Harness) -> None:
    with backend.session(lang="python", default_timeout=30, execution_timeout=1) as session:
        _times_out(lambda: session.run("import time\ntime.sleep(60)"), 1)
        # Commands keep the default timeout: 3 s is fine under 30 s.
        assert session.execute_command("sleep 3; echo command").stdout == "command\n"
        assert session.run("import time\ntime.sleep(3)\nprint('own')", timeout=20).stdout == "own\n"


# --- workdir, skip_environment_setup ---------------------------------------------------------------------------


def test_workdir_is_where_code_and_commands_run(backend: Harness) -> None:
    with backend.session(lang="python", workdir="/work/x") as session:
        result = session.run("import os\nprint(os.getcwd())\nopen('made-here', 'w').write('1')")
        assert (result.exit_code, result.stdout) == (0, "/work/x\n"), result.stderr
        assert session.execute_command("pwd").stdout == "/work/x\n"
        assert session.execute_command(["cat", "/work/x/made-here"]).stdout == "1"


def test_skip_environment_setup_installs_nothing_at_open(backend: Harness) -> None:
    probe = "import importlib.util\nprint(importlib.util.find_spec('termcolor') is not None)"
    with backend.session(lang="python", libraries=["termcolor==2.4.0"], skip_environment_setup=True) as session:
        assert session.run(probe).stdout == "False\n"
        # The same name installs fine when asked: it was the option that skipped it.
        session.install(["termcolor==2.4.0"])
        assert session.run(probe).stdout == "True\n"


# --- network="none" -------------------------------------------------------------------------------------------


@pytest.mark.requires("network_switch")
def test_network_none_refuses_installs_with_the_package_managers_output(backend: Harness) -> None:
    with backend.session(lang="python", network="none") as session:
        with pytest.raises(LibraryInstallationError) as raised:
            session.install(["termcolor==2.4.0"])
        output = raised.value.output
        assert output is not None
        text = output.stdout + output.stderr
        assert "termcolor" in text and "ERROR" in text, text  # pip's own words
        assert "termcolor" in str(raised.value)
        egress = session.run(PIP_EGRESS, timeout=60).stdout
        assert "EGRESS" in egress and "EGRESS 0" not in egress
        probe = "import importlib.util\nprint(importlib.util.find_spec('termcolor') is not None)"
        assert session.run(probe).stdout == "False\n"


# --- verbose ------------------------------------------------------------------------------------------------


def _run_script(code: str, *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, check=False
    )


@ENGINE_BACKENDS
def test_verbose_logs_the_librarys_progress_to_the_console(backend: Harness) -> None:
    script = """
        from llm_sandbox import SandboxSession
        with SandboxSession(backend={name!r}, lang="python", verbose={verbose}) as session:
            print(session.run("print(42)").stdout, end="")
    """
    loud = _run_script(script.format(name=backend.name, verbose=True))
    quiet = _run_script(script.format(name=backend.name, verbose=False))
    assert (loud.returncode, loud.stdout) == (0, "42\n"), loud.stderr
    assert (quiet.returncode, quiet.stdout) == (0, "42\n"), quiet.stderr
    lines = [line for line in loud.stderr.splitlines() if " llm_sandbox." in line]
    assert lines, loud.stderr
    assert any(" DEBUG " in line or " INFO " in line for line in lines), lines
    assert " llm_sandbox." not in quiet.stderr


# --- copy_limit -------------------------------------------------------------------------------------------------


def test_copy_limit_refuses_a_larger_copy_and_allows_a_smaller_one(backend: Harness, tmp_path: Path) -> None:
    with backend.session(lang="python", copy_limit=4096) as session:
        session.execute_command("head -c 1000 /dev/zero > /sandbox/small; head -c 10000 /dev/zero > /sandbox/big")
        session.copy_from_runtime("/sandbox/small", str(tmp_path / "small"))
        assert (tmp_path / "small").read_bytes() == b"\0" * 1000
        with pytest.raises(FileTooLargeError, match="copy limit of 4096"):
            session.copy_from_runtime("/sandbox/big", str(tmp_path / "big"))
        assert not (tmp_path / "big").exists()
        assert session.run("print('after')").stdout == "after\n"


# --- runtime_configs: user, volumes, mem_limit, pids_limit -----------------------------------------------------


@ENGINE_BACKENDS
def test_runtime_user_is_the_codes_uid(backend: Harness) -> None:
    with backend.session(lang="python", workdir="/tmp/w", runtime_configs={"user": "1000:1000"}) as session:
        assert session.execute_command("id -u; id -g").stdout == "1000\n1000\n"
        assert session.run("import os\nprint(os.getuid(), os.getgid())").stdout == "1000 1000\n"


@ENGINE_BACKENDS
def test_volumes_bind_a_host_folder_read_only_and_read_write(backend: Harness, tmp_path: Path) -> None:
    read_only = tmp_path / "ro"
    read_write = tmp_path / "rw"
    for folder in (read_only, read_write):
        folder.mkdir()
        folder.chmod(0o777)
    (read_only / "in.txt").write_text("from the host\n")
    (read_only / "in.txt").chmod(0o644)
    volumes = {
        str(read_only): {"bind": "/data/ro", "mode": "ro"},
        str(read_write): {"bind": "/data/rw", "mode": "rw"},
    }
    with backend.session(lang="python", runtime_configs={"volumes": volumes}) as session:
        assert session.run("print(open('/data/ro/in.txt').read(), end='')").stdout == "from the host\n"
        refused = session.run("open('/data/ro/out.txt', 'w')")
        assert refused.exit_code != 0 and "Read-only file system" in refused.stderr
        written = session.run("open('/data/rw/out.txt', 'w').write('from the sandbox')")
        assert written.exit_code == 0, written.stderr
    assert (read_write / "out.txt").read_text() == "from the sandbox"
    assert not (read_only / "out.txt").exists()


@ENGINE_BACKENDS
@pytest.mark.requires("own_cgroup")
def test_mem_limit_is_set_on_the_engine_and_a_bomb_above_it_is_reported(backend: Harness, engine_client: Any) -> None:
    options = {"runtime_configs": {"mem_limit": "256m"}, "disk_limit": "64m"}
    with backend.session(lang="python", **options) as session:
        config = engine_client.containers.get(session.container_id).attrs["HostConfig"]
        # The disk cap's files live in memory too: the cgroup's limit is the caller's plus the cap.
        assert config["Memory"] == (256 + 64) * 1024 * 1024
        # 200 MiB fits (well under the 1 GiB default, and under 256 MiB): the limit is not hit by less.
        assert session.run("b = bytearray(150 * 1024 * 1024)\nprint('ok')").stdout == "ok\n"
        with pytest.raises(MemoryLimitError) as raised:
            session.run("blocks = []\nwhile True:\n    blocks.append(bytearray(32 * 1024 * 1024))\n", timeout=60)
        assert raised.value.output is not None and raised.value.output.exit_code == 137
        assert session.run("print('after')").stdout == "after\n"


@ENGINE_BACKENDS
@pytest.mark.requires("process_limit")
def test_pids_limit_is_set_on_the_engine_and_holds(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python", runtime_configs={"pids_limit": 64}) as session:
        config = engine_client.containers.get(session.container_id).attrs["HostConfig"]
        assert config["PidsLimit"] == 64
        code = (
            "import subprocess\nchildren = []\n"
            "try:\n    for _ in range(200):\n        children.append(subprocess.Popen(['sleep', '60']))\n"
            "except OSError:\n    pass\nprint(len(children))\n"
            "for child in children:\n    child.kill()\n"
        )
        started = int(session.run(code, timeout=60).stdout)
        assert 40 <= started < 64  # the container's other processes (init, helper, the run) count too


# --- client= ------------------------------------------------------------------------------------------------


@ENGINE_BACKENDS
def test_client_is_used_and_left_open(backend: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend.name == "docker":
        import docker

        client: Any = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
        variable = "DOCKER_HOST"
    else:
        import podman

        client = podman.PodmanClient(base_url=os.environ.get("CONTAINER_HOST", "unix:///run/podman/podman.sock"))
        variable = "CONTAINER_HOST"
    try:
        # Without the client, the session would reach for the environment's engine: make that one unreachable.
        monkeypatch.setenv(variable, f"unix:///nonexistent-{uuid.uuid4().hex[:8]}/engine.sock")
        with pytest.raises(Exception):  # noqa: B017 - whichever error the unreachable default gives
            backend.session(lang="python").open()
        with backend.session(lang="python", client=client) as session:
            assert session.run("print('via my client')").stdout == "via my client\n"
            container_id = session.container_id
            assert client.containers.get(container_id).status == "running"
        with backend.session(lang="python", client=client) as again:  # still usable by the caller and the library
            assert again.run("print(2)").stdout == "2\n"
        assert client.ping()
        assert container_id not in {container.id for container in client.containers.list(all=True)}
    finally:
        client.close()


# --- cleanup: sweep(), python -m llm_sandbox.cleanup, closing at interpreter exit -----------------------------


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _labelled(make_container: Any, owner_pid: int) -> Any:
    return make_container(
        labels={
            MANAGED_LABEL: "true",
            SANDBOX_LABEL: uuid.uuid4().hex,
            CREATED_AT_LABEL: str(int(time.time())),
            OWNER_PID_LABEL: str(owner_pid),
            OWNER_HOST_LABEL: socket.gethostname(),
        }
    )


def _ids(client: Any) -> set[str]:
    for _attempt in range(5):
        try:
            return {container.id for container in client.containers.list(all=True)}
        except Exception:  # a container vanished while listing
            time.sleep(0.1)
    return {container.id for container in client.containers.list(all=True)}


@ENGINE_BACKENDS
def test_sweep_removes_orphans_and_leaves_live_sessions(
    backend: Harness, engine_client: Any, make_container: Any
) -> None:
    orphan = _labelled(make_container, _dead_pid())
    mine = _labelled(make_container, os.getpid())
    with backend.session(lang="python") as live:
        removed = sweep(engine_client)
        assert orphan.id in removed
        present = _ids(engine_client)
        assert orphan.id not in present
        assert mine.id in present and live.container_id in present
        assert mine.id not in removed and live.container_id not in removed
        assert live.run("print('alive')").stdout == "alive\n"


@ENGINE_BACKENDS
def test_cleanup_command_removes_orphans_and_leaves_live_sessions(
    backend: Harness, engine_client: Any, make_container: Any
) -> None:
    # A container the library labelled for a process that is gone (a process SIGKILLed while its sandbox could
    # not end itself: the sandbox now ends with its host's link, so the labels are what is left to go by).
    orphan = _labelled(make_container, _dead_pid())
    mine = _labelled(make_container, os.getpid())
    with backend.session(lang="python") as live:
        done = subprocess.run(
            [sys.executable, "-m", "llm_sandbox.cleanup", "--engine", backend.name],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert re.search(r"removed [1-9][0-9]* orphaned sandbox container", done.stdout), done.stdout
        assert orphan.short_id in done.stderr  # logged: "removing orphaned sandbox <short id>"
        present = _ids(engine_client)
        assert orphan.id not in present
        assert mine.id in present and live.container_id in present
        assert live.run("print('alive')").stdout == "alive\n"


ENGINE_CLIENT = {
    "docker": "import docker\nclient = docker.from_env()\n",
    "podman": "import os, podman\n"
    "client = podman.PodmanClient(base_url=os.environ.get('CONTAINER_HOST', 'unix:///run/podman/podman.sock'))\n",
}


@ENGINE_BACKENDS
def test_sessions_left_open_are_closed_at_interpreter_exit(backend: Harness, engine_client: Any) -> None:
    # The check is registered before the library is imported, so it runs after the library's own exit hook: the
    # container must already be gone then (the sandbox also ends by itself once its host is gone; that would
    # come later, after the process has exited).
    assert backend.engine is not None
    done = _run_script(
        ENGINE_CLIENT[backend.engine]
        + textwrap.dedent(
            f"""
            import atexit
            opened = []

            def check():
                present = {{container.id for container in client.containers.list(all=True)}}
                print("present after the exit hooks:", opened[0] in present, flush=True)

            atexit.register(check)
            from llm_sandbox import SandboxSession
            session = SandboxSession(backend={backend.name!r}, lang="python").open()
            opened.append(session.container_id)
            print(session.container_id, flush=True)
            assert session.run("print(1)").stdout == "1\\n"
            """
        )
    )
    assert done.returncode == 0, done.stderr
    container_id, verdict = done.stdout.splitlines()
    assert verdict == "present after the exit hooks: False"
    assert container_id not in _ids(engine_client)
