"""Running code and commands in a new sandbox, on every backend (the contract suite: see tests/harness.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness import Harness
from llm_sandbox import (
    CommandEmptyError,
    ConsoleOutput,
    ExecutionResult,
    NotOpenSessionError,
    SandboxSession,
    SandboxTimeoutError,
)


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python") as opened:
        yield opened


def test_run_returns_stdout_and_exit_code(session: SandboxSession) -> None:
    result = session.run("print('hello')")
    assert isinstance(result, ExecutionResult)
    assert result.stdout == "hello\n"
    assert result.exit_code == 0
    assert result.success()
    assert result.duration_s > 0
    assert not result.timed_out and not result.truncated


def test_run_reports_stderr_and_the_real_exit_code(session: SandboxSession) -> None:
    result = session.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.success()


def test_syntax_error_is_a_non_zero_exit_with_the_message(session: SandboxSession) -> None:
    result = session.run("def broken(:\n    pass")
    assert result.exit_code != 0
    assert "SyntaxError" in result.stderr


def test_streaming_callbacks_receive_output_and_the_exit_code_stays_real(session: SandboxSession) -> None:
    seen_out: list[str] = []
    seen_err: list[str] = []
    result = session.run(
        "import sys\nfor i in range(3): print(i)\nsys.stderr.write('bad')\nsys.exit(5)",
        on_stdout=seen_out.append,
        on_stderr=seen_err.append,
    )
    assert "".join(seen_out) == "0\n1\n2\n" == result.stdout
    assert "".join(seen_err) == "bad" == result.stderr
    assert result.exit_code == 5


def test_invalid_utf8_output_never_raises(session: SandboxSession) -> None:
    result = session.run("import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe end')\nsys.stderr.buffer.write(b'\\x80')")
    assert result.stdout == "ok \ufffd\ufffd end"
    assert result.stderr == "\ufffd"


def test_code_runs_in_the_workdir_and_leaves_no_code_file_there(session: SandboxSession) -> None:
    result = session.run("import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))")
    cwd, listing = result.stdout.splitlines()
    assert cwd == "/sandbox"
    assert "main.py" not in listing


def test_shell_string_runs_through_sh(session: SandboxSession) -> None:
    result = session.execute_command("X=41; echo $((X + 1)) | tr 4 z && echo second")
    assert result.stdout == "z2\nsecond\n"
    assert isinstance(result, ConsoleOutput)


def test_argv_list_runs_without_a_shell(session: SandboxSession) -> None:
    result = session.execute_command(["echo", "$HOME", "a;b"])
    assert result.stdout == "$HOME a;b\n"


def test_command_workdir(session: SandboxSession) -> None:
    assert session.execute_command("pwd", workdir="/tmp").stdout == "/tmp\n"


def test_missing_program_is_exit_127(session: SandboxSession) -> None:
    result = session.execute_command(["no-such-program-here"])
    assert result.exit_code == 127
    assert "no-such-program-here" in result.stderr


@pytest.mark.parametrize("command", ["", "   ", []])
def test_empty_command_is_refused(session: SandboxSession, command: str | list[str]) -> None:
    with pytest.raises(CommandEmptyError):
        session.execute_command(command)


def test_execute_commands_stops_at_the_first_failure(session: SandboxSession) -> None:
    result = session.execute_commands(["echo one > /tmp/steps", "exit 4", "echo three >> /tmp/steps"])
    assert result.exit_code == 4
    assert session.execute_command("cat /tmp/steps").stdout == "one\n"


def test_timeout_kills_the_run_and_its_detached_children(session: SandboxSession) -> None:
    code = (
        "import subprocess, time\n"
        "subprocess.Popen(['setsid', 'sh', '-c', 'sleep 300'])\n"
        "subprocess.Popen('nohup sleep 301 >/dev/null 2>&1 &', shell=True)\n"
        "print('started', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    with pytest.raises(SandboxTimeoutError) as raised:
        session.run(code, timeout=2)
    assert raised.value.output is not None
    assert raised.value.output.stdout == "started\n"
    assert raised.value.output.timed_out
    assert isinstance(raised.value, TimeoutError)
    survivors = session.execute_command("ps -eo args | grep -c '^sleep 30[01]' || true").stdout.strip()
    assert survivors == "0"
    assert session.run("print('still usable')").stdout == "still usable\n"


def test_background_process_does_not_survive_into_the_next_run(session: SandboxSession) -> None:
    session.execute_command("sleep 200 >/dev/null 2>&1 &")
    assert session.execute_command("ps -eo args | grep -c '^sleep 200' || true").stdout.strip() == "0"


def test_output_flood_is_capped_and_flagged(session: SandboxSession) -> None:
    result = session.run("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024): sys.stdout.write(chunk)")
    assert result.truncated
    assert len(result.stdout) == 10 * 1024 * 1024
    assert session.run("print('after flood')").stdout == "after flood\n"


def test_session_must_be_open() -> None:
    session = SandboxSession(lang="python")
    with pytest.raises(NotOpenSessionError):
        session.run("print(1)")


def test_runs_look_like_plain_python_whether_warm_or_cold(session: SandboxSession) -> None:
    # After a Python run the helper keeps an interpreter started for the next one: what the code sees and what
    # a failure prints must not tell the two apart.
    code = (
        '"""doc"""\nimport sys\n'
        "print(__name__, __doc__, __file__ == sys.argv[0], sys.path[0] == __file__.rsplit('/', 1)[0])\n"
        "print(sys.stdin.read() == '', flush=True)\n"
        "def fail():\n    raise ValueError('boom')\nfail()\n"
    )
    session.execute_command("true")  # starts the next run cold
    outputs = []
    for _ in range(3):
        time.sleep(0.3)  # gives the helper time to have an interpreter waiting
        result = session.run(code)
        outputs.append(result)
        assert result.exit_code == 1
        assert result.stdout == "__main__ doc True True\nTrue\n"
        lines = result.stderr.splitlines()
        assert lines[0] == "Traceback (most recent call last):"
        assert lines[1].startswith('  File "/tmp/llm-sandbox-run-') and lines[1].endswith(
            'main.py", line 7, in <module>'
        )
        assert lines[-1] == "ValueError: boom"
        assert "<string>" not in result.stderr
    assert len({len(result.stderr.splitlines()) for result in outputs}) == 1
