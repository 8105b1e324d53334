"""The whole hot path (session -> runner -> link -> guest helper) without an engine, on the test-only local backend.

``llm_sandbox.testing.local`` runs the helper and every command as plain subprocesses of this host, in a temporary
folder as the workdir: what is checked here is the library's own machinery, not any isolation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession, SandboxTimeoutError, UnknownOptionError
from llm_sandbox.backends.base import BackendCapabilities
from llm_sandbox.testing.local import LOCAL_BACKEND


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone_soon(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _helper_pid(session: SandboxSession) -> int:
    assert session.sandbox is not None
    return int(session.sandbox.runner.info["pid"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-workdir")


@pytest.fixture(scope="module")
def session(workdir: Path) -> Iterator[SandboxSession]:
    with SandboxSession(backend=LOCAL_BACKEND, lang="python", workdir=str(workdir)) as opened:
        yield opened


def test_the_entry_declares_no_guarantee_of_isolation() -> None:
    # What keeps the helper from kill(-1) and from reading the host's cgroup counters as a sandbox's: nothing but
    # interactive sessions, which need no isolation of their own, is declared.
    assert LOCAL_BACKEND.capabilities == BackendCapabilities(interactive=True)


def test_run_returns_stdout_stderr_and_the_real_exit_code(session: SandboxSession, workdir: Path) -> None:
    ok = session.run("import os\nprint('hello')\nprint(os.getcwd())")
    assert (ok.exit_code, ok.stdout) == (0, f"hello\n{workdir}\n")
    failed = session.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert (failed.exit_code, failed.stdout, failed.stderr) == (3, "out\n", "err\n")


def test_syntax_error_is_a_non_zero_exit_with_the_message(session: SandboxSession) -> None:
    result = session.run("def broken(:\n    pass")
    assert result.exit_code != 0
    assert "SyntaxError" in result.stderr


def test_streaming_callbacks_receive_output_as_it_comes(session: SandboxSession) -> None:
    seen_out: list[str] = []
    seen_err: list[str] = []
    result = session.run(
        "import sys\nfor i in range(3): print(i, flush=True)\nsys.stderr.write('bad')\nsys.exit(5)",
        on_stdout=seen_out.append,
        on_stderr=seen_err.append,
    )
    assert "".join(seen_out) == "0\n1\n2\n" == result.stdout
    assert "".join(seen_err) == "bad" == result.stderr
    assert result.exit_code == 5


def test_timeout_kills_the_run_and_its_detached_child_and_the_session_goes_on(session: SandboxSession) -> None:
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['setsid', 'sleep', '300'])\n"
        "print(child.pid, flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as raised:
        session.run(code, timeout=1)
    assert time.monotonic() - started < 10
    output = raised.value.output
    assert output is not None
    assert output.timed_out
    child = int(output.stdout.split()[0])
    assert _gone_soon(child), f"the setsid child {child} outlived the run's timeout"
    assert session.run("print('still usable')").stdout == "still usable\n"


def test_output_over_the_limit_is_truncated(workdir: Path) -> None:
    with SandboxSession(backend=LOCAL_BACKEND, lang="python", workdir=str(workdir), output_limit=1000) as session:
        result = session.run("import sys\nfor _ in range(1000): sys.stdout.write('x' * 1000)")
        assert result.truncated
        assert result.stdout == "x" * 1000
        assert session.run("print('after')").stdout == "after\n"


def test_a_command_string_goes_through_sh_and_an_argv_does_not(session: SandboxSession, workdir: Path) -> None:
    assert session.execute_command("X=41; echo $((X + 1)) | tr 4 z").stdout == "z2\n"
    assert session.execute_command(["echo", "$HOME", "a;b"]).stdout == "$HOME a;b\n"
    assert session.execute_command("pwd").stdout == f"{workdir}\n"
    assert session.execute_command(["sh", "-c", "exit 7"]).exit_code == 7
    assert session.execute_command(["no-such-program-here"]).exit_code == 127


def test_copy_to_and_from_the_runtime_round_trip(session: SandboxSession, workdir: Path, tmp_path: Path) -> None:
    local = tmp_path / "tree"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("A")
    (local / "sub" / "b.bin").write_bytes(bytes(range(256)))
    session.copy_to_runtime(str(local), "copied/tree")
    assert (workdir / "copied" / "tree" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert session.run("print(open('copied/tree/a.txt').read())").stdout == "A\n"

    session.execute_command("echo made inside > copied/tree/new.txt")
    back = tmp_path / "back"
    session.copy_from_runtime("copied/tree", str(back))
    assert (back / "tree" / "a.txt").read_text() == "A"
    assert (back / "tree" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (back / "tree" / "new.txt").read_text() == "made inside\n"
    session.copy_from_runtime("copied/tree/a.txt", str(tmp_path / "single.txt"))
    assert (tmp_path / "single.txt").read_text() == "A"
    with pytest.raises(FileNotFoundError):
        session.copy_from_runtime("copied/not-there", str(tmp_path / "nothing"))


def test_open_and_close_leave_no_helper_running(workdir: Path) -> None:
    session = SandboxSession(backend=LOCAL_BACKEND, lang="python", workdir=str(workdir / "fresh"))
    session.open()
    pid = _helper_pid(session)
    assert _alive(pid)
    assert (workdir / "fresh").is_dir()  # made by create
    session.close()
    assert not _alive(pid)
    assert (workdir / "fresh").is_dir()  # the caller's folder: never removed


def test_attaching_is_refused_with_a_clear_error(workdir: Path) -> None:
    # The entry does not declare ``attach``: the option is refused before anything runs, naming the backend.
    with pytest.raises(UnknownOptionError, match="container_id means nothing for the local backend"):
        SandboxSession(backend=LOCAL_BACKEND, lang="python", workdir=str(workdir), container_id="anything")
