"""Interactive sessions through the whole hot path (session -> kernel -> runner -> link -> guest helper -> kernel
program) without an engine, on the test-only local backend: the cells' protocol, the interrupt, the replacement of
a lost interpreter and the output limit, for the plain Python kernel (the real engines: tests/integration)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_sandbox import InteractiveSandboxSession, KernelType, SandboxTimeoutError, ValidationError
from llm_sandbox.testing.local import LOCAL_BACKEND


@pytest.fixture
def session(tmp_path: Path) -> Iterator[InteractiveSandboxSession]:
    with InteractiveSandboxSession(
        backend=LOCAL_BACKEND, lang="python", kernel_type=KernelType.PLAIN, workdir=str(tmp_path), output_limit=50_000
    ) as opened:
        yield opened


def test_cells_share_state_show_values_and_report_errors(session: InteractiveSandboxSession) -> None:
    assert session.kernel == "python"
    assert session.run("x = 20\ndef f(n):\n    return n + 1").stdout == ""
    assert session.run("f(x) * 2").stdout == "42\n"
    failed = session.run("import sys\nprint('before')\nf(None)")
    assert (failed.exit_code, failed.stdout) == (1, "before\n")
    assert "TypeError" in failed.stderr and 'File "<cell-' in failed.stderr
    assert session.run("print(x)").stdout == "20\n"
    assert session.run("input()").exit_code == 1  # the cells' stdin is empty: the requests cannot be read by them
    assert session.run("def broken(:").exit_code == 1
    assert session.run("raise SystemExit(4)").exit_code == 4
    assert session.run("print(x)").stdout == "20\n"


def test_a_marker_like_output_does_not_end_a_cell(session: InteractiveSandboxSession) -> None:
    result = session.run("print('\\x1e' + 'abc' + '\\x1e0')\nprint('after')")
    assert result.stdout == "\x1eabc\x1e0\nafter\n"


def test_a_timed_out_cell_is_interrupted_and_the_state_stays(session: InteractiveSandboxSession) -> None:
    session.run("kept = 'yes'")
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as raised:
        session.run("import time\nprint('going', flush=True)\nwhile True:\n    time.sleep(0.01)", timeout=0.5)
    assert time.monotonic() - started < 2.5
    output = raised.value.output
    assert output is not None and output.stdout == "going\n"
    assert "KeyboardInterrupt" in output.stderr
    assert session.run("print(kept)").stdout == "yes\n"


def test_an_interpreter_that_ignores_the_interrupt_is_replaced(session: InteractiveSandboxSession) -> None:
    session.run("kept = 'yes'")
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)"
    with pytest.raises(SandboxTimeoutError, match="lost its state") as raised:
        session.run(stubborn, timeout=0.5)
    output = raised.value.output
    assert output is not None and getattr(output, "state_lost", None) is True
    assert "earlier state is gone" in output.stderr
    after = session.run("print('kept' in globals())")
    assert (after.stdout, after.state_lost) == ("False\n", False)
    assert session.is_kernel_alive()


def test_an_interpreter_that_exits_is_replaced(session: InteractiveSandboxSession) -> None:
    ended = session.run("import os\nos._exit(9)")
    assert (ended.exit_code, ended.state_lost) == (9, True)
    assert session.run("print(2)").stdout == "2\n"
    # Killed between cells: the question says so, and the next cell's result too.
    session.run("import os, subprocess\nsubprocess.Popen(['sh', '-c', f'sleep 0.2; kill -9 {os.getpid()}'])")
    time.sleep(1)
    assert not session.is_kernel_alive()
    after = session.run("print(3)")
    assert (after.stdout, after.state_lost) == ("3\n", True)
    assert "the interpreter had exited" in after.stderr


def test_output_past_the_limit_is_cut_and_the_cell_interrupted(session: InteractiveSandboxSession) -> None:
    session.run("kept = 1")
    flood = session.run("while True:\n    print('y' * 99)")
    assert flood.truncated and len(flood.stdout) == 50_000 and flood.exit_code == 1
    assert session.run("print(kept)").stdout == "1\n"


def test_restart_forgets_and_streaming_reaches_the_callbacks(session: InteractiveSandboxSession) -> None:
    session.run("kept = 1")
    session.restart()
    assert "NameError" in session.run("kept").stderr
    chunks: list[str] = []
    session.run("print('a', flush=True)\nimport sys\nprint('b', file=sys.stderr)", on_stdout=chunks.append)
    assert "".join(chunks) == "a\n"


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError, match="kernel_type"):
        InteractiveSandboxSession(backend=LOCAL_BACKEND, kernel_type="jupyter")
    with pytest.raises(ValidationError, match="history_size"):
        InteractiveSandboxSession(backend=LOCAL_BACKEND, history_size=-1)
    with pytest.raises(ValidationError, match="max_memory"):
        InteractiveSandboxSession(max_memory="lots")
    assert InteractiveSandboxSession(max_memory="1GB").options.sandbox.runtime_configs["mem_limit"] == 1024**3
    kube = InteractiveSandboxSession(backend="kubernetes", max_memory="512m")
    assert kube.options.sandbox.runtime_configs["resources"] == {"limits": {"memory": str(512 * 1024**2)}}
