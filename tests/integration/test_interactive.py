"""Interactive sessions on the real engines: Python, JavaScript, Ruby and R keep their state across cells, a cell
that raises or times out leaves it intact, restart forgets it, output streams while a cell runs, a Python cell's
plots come back with it; on Docker, Podman and Kubernetes (the fake API server backed by real containers), and in
Python on Micromamba (its stand-in image)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import (
    FileType,
    InteractiveSandboxSession,
    KernelType,
    LanguageNotSupportedError,
    SandboxTimeoutError,
)

pytestmark = pytest.mark.backends("docker", "podman", "kubernetes", "micromamba", "bubblewrap")

PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Language:
    name: str
    kernel: str  # what the session's kernel says it is
    define: str  # defines `base` (41), a function `twice`, and a class or structure, and loads a library
    use: str  # prints "82 ok" from what `define` made
    raises: str  # fails with an error whose name the traceback shows
    error_name: str
    endless: str  # a busy loop that only the interrupt ends
    stream: str  # prints "first", waits 1.5 s, prints "second"
    show_base: str  # prints base on a line of its own
    last_value: str  # how the value of the expression `base + 1` is shown


LANGUAGES = {
    "python": Language(
        "python",
        "ipython",
        "import json\nbase = 41\ndef twice(n):\n    return 2 * n\nclass Box:\n    ok = 'ok'",
        "print(twice(base), json.loads('\"' + Box.ok + '\"'))",
        "def fail():\n    raise ValueError('bad value')\nfail()",
        "ValueError",
        "while True:\n    pass",
        "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')",
        "print(base)",
        "Out[",
    ),
    "javascript": Language(
        "javascript",
        "node",
        # `var`: node's REPL refuses a second `let`, `const` or `class` of the same name, as a script would
        "var path = require('path')\nvar base = 41\nfunction twice(n) { return 2 * n }\n"
        "var Box = class { static ok = 'ok' }",
        "console.log(twice(base), path.basename('/x/' + Box.ok))",
        "function fail() { throw new RangeError('bad value') }\nfail()",
        "RangeError",
        "while (true) {}",
        "console.log('first')\nawait new Promise((done) => setTimeout(done, 1500))\nconsole.log('second')",
        "console.log(base)",
        "42",
    ),
    "ruby": Language(
        "ruby",
        "ruby",
        "require 'set'\nbase = 41\ndef twice(n) = 2 * n\nclass Box; OK = 'ok'; end",
        'puts "#{twice(base)} #{Set.new([Box::OK]).first}"',
        "def fail = raise(ArgumentError, 'bad value')\nfail",
        "ArgumentError",
        "loop {}",
        "puts 'first'\nsleep 1.5\nputs 'second'",
        "puts base",
        "=> 42",
    ),
    "r": Language(
        "r",
        "r",
        "library(stats)\nbase <- 41\ntwice <- function(n) 2 * n\nbox <- list(ok = 'ok')",
        "cat(twice(base), box$ok, '\\n')",
        "fail <- function() stop('bad value')\nfail()",
        "Error in fail()",
        "repeat {}",
        "cat('first\\n')\nSys.sleep(1.5)\ncat('second\\n')",
        "cat(base, '\\n')",
        "[1] 42",
    ),
}


@pytest.fixture(scope="module", params=list(LANGUAGES))
def language(request: pytest.FixtureRequest) -> Language:
    return LANGUAGES[request.param]


def interactive(backend: Harness, **options: Any) -> InteractiveSandboxSession:
    return InteractiveSandboxSession(**{**backend.session_defaults, **options})


@pytest.fixture(scope="module")
def session(backend: Harness, language: Language) -> Iterator[InteractiveSandboxSession]:
    if backend.name == "micromamba" and language.name != "python":
        pytest.skip("the micromamba stand-in image holds Python only")
    with interactive(backend, lang=language.name) as opened:
        yield opened


@pytest.fixture
def defined(session: InteractiveSandboxSession, language: Language) -> InteractiveSandboxSession:
    """The session with ``language.define`` run (again: a test before may have restarted it)."""
    result = session.run(language.define)
    assert result.exit_code == 0, result.stderr
    return session


def test_state_carries_across_cells(defined: InteractiveSandboxSession, language: Language) -> None:
    assert defined.kernel == language.kernel
    used = defined.run(language.use)
    assert (used.exit_code, used.stdout.split(), used.state_lost) == (0, ["82", "ok"], False), used.stderr
    shown = defined.run("base + 1")
    assert language.last_value in shown.stdout and "42" in shown.stdout


def test_a_cell_that_raises_fails_and_the_state_before_it_stays(
    defined: InteractiveSandboxSession, language: Language
) -> None:
    failed = defined.run(language.raises)
    assert failed.exit_code != 0
    assert language.error_name in failed.stderr and "bad value" in failed.stderr
    after = defined.run(language.show_base)
    assert (after.exit_code, after.stdout.strip(), after.state_lost) == (0, "41", False)


def test_a_timed_out_cell_is_interrupted_and_the_next_cell_sees_the_earlier_state(
    defined: InteractiveSandboxSession, language: Language
) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxTimeoutError) as raised:
        defined.run(language.endless, timeout=1)
    assert time.monotonic() - started < 4  # interrupted at once, not after the grace period
    output: Any = raised.value.output
    assert output.timed_out and not output.state_lost
    after = defined.run(language.show_base)
    assert (after.exit_code, after.stdout.strip(), after.state_lost) == (0, "41", False), after.stderr


def test_output_streams_while_the_cell_runs(session: InteractiveSandboxSession, language: Language) -> None:
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    result = session.run(language.stream, on_stdout=lambda text: seen.append((time.monotonic() - started, text)))
    ended = time.monotonic() - started
    assert result.stdout.split() == ["first", "second"]
    assert "".join(text for _at, text in seen) == result.stdout
    first_at = next(at for at, text in seen if "first" in text)
    assert first_at < ended - 1.0, seen  # the first line came while the cell was still sleeping


def test_restart_forgets_the_state_and_the_kernel_answers(
    defined: InteractiveSandboxSession, language: Language
) -> None:
    assert defined.is_kernel_alive()
    defined.restart()
    assert defined.is_kernel_alive()
    gone = defined.run(language.show_base)
    assert gone.exit_code != 0 and gone.stdout == ""
    assert not gone.state_lost  # asked for: not a loss to report


# Python: IPython's semantics and plots ----------------------------------------------------------------------------

PLOT = (
    "import matplotlib.pyplot as plt\n"
    "plt.figure(figsize=(4, 3), dpi=100)\n"
    "plt.plot([1, 2, 3], [1, 4, 9])\n"
    "plt.show()\n"
    "fig2 = plt.figure(figsize=(2, 2), dpi=100)\n"
    "print('drawn')"
)


@pytest.fixture(scope="module")
def python_session(backend: Harness) -> Iterator[InteractiveSandboxSession]:
    with interactive(backend, lang="python") as opened:
        yield opened


def test_plots_drawn_in_a_cell_come_back_with_that_cell(python_session: InteractiveSandboxSession) -> None:
    result = python_session.run(PLOT)
    assert (result.exit_code, result.stdout) == (0, "drawn\n"), result.stderr
    assert [(plot.format, plot.width, plot.height) for plot in result.plots] == [
        (FileType.PNG, 400, 300),
        (FileType.PNG, 200, 200),
    ]
    assert base64.b64decode(result.plots[0].content_base64).startswith(PNG)
    assert python_session.run("print(len(plt.get_fignums()))").plots == []  # shown once, then closed


def test_plots_drawn_in_an_r_cell_come_back_with_that_cell(backend: Harness) -> None:
    if backend.name == "micromamba":
        pytest.skip("the micromamba stand-in image holds Python only")
    with interactive(backend, lang="r") as session:
        drawn = session.run("x <- 1:10\nplot(x, x^2)\nhist(x)\ncat('drawn\\n')")
        assert (drawn.exit_code, drawn.stdout) == (0, "drawn\n"), drawn.stderr
        assert [(plot.format, plot.width, plot.height) for plot in drawn.plots] == [(FileType.PNG, 700, 500)] * 2
        chart = session.run("library(ggplot2)\nggplot(data.frame(a = x, b = x), aes(a, b)) + geom_point()")
        assert len(chart.plots) == 1 and base64.b64decode(chart.plots[0].content_base64).startswith(PNG)
        assert session.run("cat(sum(x), '\\n')").plots == []


def test_ipython_magics_and_shell_escapes_work(python_session: InteractiveSandboxSession) -> None:
    shell = python_session.run("!echo from-the-shell")
    # IPython runs `!cmd` on a pseudo-terminal where it can open one: its lines may end in \r\n.
    assert shell.stdout.replace("\r\n", "\n") == "from-the-shell\n", shell.stderr
    magic = python_session.run("%timeit -n 1 -r 1 sum(range(10))")
    assert magic.exit_code == 0 and "loop" in magic.stdout, magic.stderr


def test_the_plain_kernel_shows_values_as_the_python_repl_does(backend: Harness) -> None:
    with interactive(backend, lang="python", kernel_type=KernelType.PLAIN) as session:
        assert session.kernel == "python"
        assert session.run("x = 6\nx * 7").stdout == "42\n"
        failed = session.run("x / 0")
        assert failed.exit_code == 1 and "ZeroDivisionError" in failed.stderr
        assert session.run("print(x)").stdout == "6\n"


def test_a_cell_that_will_not_stop_costs_the_state_and_the_result_says_so(
    python_session: InteractiveSandboxSession,
) -> None:
    python_session.run("kept = 1")
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass"
    with pytest.raises(SandboxTimeoutError) as raised:
        python_session.run(stubborn, timeout=1)
    output: Any = raised.value.output
    assert output.state_lost and "state is gone" in output.stderr
    assert "lost its state" in str(raised.value)
    after = python_session.run("print('kept' in globals())")
    assert (after.stdout, after.state_lost) == ("False\n", False)


def test_a_kernel_that_exits_is_replaced_and_the_result_says_so(python_session: InteractiveSandboxSession) -> None:
    python_session.run("kept = 1")
    ended = python_session.run("import os\nos._exit(7)")
    assert (ended.exit_code, ended.state_lost) == (7, True)
    assert "exited (status 7)" in ended.stderr
    assert python_session.run("print(1 + 1)").stdout == "2\n"


def test_what_a_timed_out_cell_started_is_killed(python_session: InteractiveSandboxSession) -> None:
    with pytest.raises(SandboxTimeoutError):
        python_session.run(
            "import subprocess\nchild = subprocess.Popen(['sleep', '1000'])\nwhile True:\n    pass", timeout=1
        )
    listed = python_session.run("!ps -eo args")
    assert "sleep 1000" not in listed.stdout, listed.stdout


def test_a_cell_that_floods_its_output_is_cut_and_interrupted(backend: Harness) -> None:
    with interactive(backend, lang="python", output_limit=100_000) as session:
        session.run("kept = 1")
        flood = session.run("while True:\n    print('x' * 999)")
        assert flood.truncated and flood.exit_code != 0 and not flood.state_lost
        assert len(flood.stdout) == 100_000
        assert session.run("print(kept)").stdout == "1\n"


@pytest.mark.requires("user_switch", "own_uid")
def test_the_kernel_runs_as_the_codes_user_out_of_the_helpers_reach(
    python_session: InteractiveSandboxSession,
) -> None:
    result = python_session.run("import os\nprint(os.getuid(), os.geteuid())")
    assert result.stdout == "65534 65534\n"
    helper = python_session.run("import os, signal\nos.kill(1, signal.SIGKILL)")
    assert "PermissionError" in helper.stderr or "ProcessLookupError" in helper.stderr


@pytest.mark.requires("network_switch", "user_switch")
def test_an_install_restarts_the_kernel_and_the_next_result_says_so(backend: Harness) -> None:
    with interactive(backend, lang="python") as session:
        session.run("kept = 1")
        session.install(["six==1.16.0"])
        result = session.run("import six\nprint(six.__version__, 'kept' in globals())")
        assert result.stdout == "1.16.0 False\n", result.stderr
        assert result.state_lost and "libraries were installed" in result.stderr
        assert not session.run("print(1)").state_lost
        # IPython's %pip at the top of a cell goes through the same install (the code itself has no network).
        piped = session.run("%pip install -q termcolor==2.4.0\nimport termcolor\ntermcolor.__name__")
        assert piped.exit_code == 0 and piped.stdout.endswith("Out[1]: 'termcolor'\n"), piped.stderr
        assert piped.state_lost


@pytest.mark.requires("attach")
def test_an_attached_container_keeps_state_and_is_only_let_go(backend: Harness, make_container: Any) -> None:
    image = backend.session_defaults.get("image")  # the micromamba stand-in's, where the harness has one
    container = make_container(image) if image else make_container()
    with interactive(backend, container_id=container.id, lang="python") as session:
        session.run("kept = 6")
        assert session.run("kept * 7").stdout == "Out[2]: 42\n"
        with pytest.raises(SandboxTimeoutError):
            session.run("while True: pass", timeout=1)
        assert session.run("print(kept)").stdout == "6\n"
    container.reload()
    assert container.status == "running"
    listed = container.exec_run(["ls", "-a", "/tmp"])[1]  # docker's ExecResult and podman's tuple: (code, output)
    assert b"llm-sandbox" not in listed, listed  # the kernel's folder went with the session


def test_code_written_for_the_reference_runs_and_max_memory_is_the_sandboxs_limit(
    backend: Harness, engine_client: Any
) -> None:
    with interactive(
        backend, lang="python", kernel_type="ipython", max_memory="600m", history_size=500, timeout=300.0
    ) as session:
        result = session.run("values = [1, 2, 3]\nprint(sum(values))")
        assert (result.exit_code, result.stdout) == (0, "6\n")
        assert session.container_id is not None
        limited = engine_client.containers.get(session.container_id).attrs["HostConfig"]["Memory"]
    # Against a sandbox with the default limit (1 GiB): whatever else the engine's figure counts is the same in both.
    with backend.session(lang="python") as plain:
        assert plain.container_id is not None
        default = engine_client.containers.get(plain.container_id).attrs["HostConfig"]["Memory"]
    assert limited - default == 600 * 1024**2 - 1024**3


def test_a_language_without_a_kernel_is_refused() -> None:
    with pytest.raises(LanguageNotSupportedError, match="python, javascript, ruby, r"):
        InteractiveSandboxSession(lang="go")
