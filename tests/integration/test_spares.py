"""The spare process of JavaScript, Ruby and R (started ahead of the next run): a run it serves looks exactly like the
plain command on the same file, and starts clean whatever the run before it left. Docker only: the spare lives in
the sandbox's helper, the same on every backend."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import SandboxSession, SandboxTimeoutError

pytestmark = pytest.mark.backends("docker")

RUN_DIR = re.compile(r"/tmp/llm-sandbox-run-[0-9a-f]{12}")
# As long as a run's folder: R lays out what it prints by the width of the strings (the file's path among them).
PLAIN_DIR = "/tmp/spare-plain-".ljust(len("/tmp/llm-sandbox-run-") + 12, "x")


@dataclass(frozen=True)
class Case:
    """One language's programs. ``probe`` prints whether it runs in a spare (its own command line is the stub's,
    not the plain run's; Ruby's spare shows the plain run's words as one process title), whether a global the
    ``dirty`` program set is still there, and how many ``sleep 300`` processes are alive; ``dirty`` sets that
    global and starts such a process (and, for Ruby, a thread), then does what ``{end}`` says."""

    command: str
    file_name: str
    hello: str
    error: str
    exit_code: str
    names: str
    stdin: str
    probe: str
    dirty: str
    crash: str
    fail: str
    hang: str


CASES = {
    "javascript": Case(
        command="node",
        file_name="main.js",
        hello="console.log('hello'); console.error('to stderr');",
        error="function inner() { throw new TypeError('boom'); }\nfunction outer() { inner(); }\nouter();\n",
        exit_code="console.log('leaving'); process.exitCode = 3;",
        names=(
            "console.log(process.argv, process.execArgv, __filename, __dirname, require.main === module,\n"
            "  module.id, typeof globalThis.require, typeof globalThis.fs, process._eval);"
        ),
        stdin="console.log(JSON.stringify(require('fs').readFileSync(0, 'utf8')));",
        probe=(
            "const fs = require('fs');\n"
            "const own = fs.readFileSync('/proc/self/cmdline', 'utf8').split('\\0');\n"
            "const sleepers = fs.readdirSync('/proc').filter((pid) => /^\\d+$/.test(pid)).filter((pid) => {\n"
            "  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') === 'sleep\\x00300\\x00'; }\n"
            "  catch { return false; } }).length;\n"
            "console.log(own[1] === '-e', typeof globalThis.leftover, sleepers);"
        ),
        dirty=(
            "globalThis.leftover = 1;\n"
            "require('child_process').spawn('sleep', ['300'], { detached: true, stdio: 'ignore' }).unref();\n"
            "{end}\n"
        ),
        crash="throw new Error('crash');",
        fail="process.exit(5);",
        hang="for (;;) {}",
    ),
    "ruby": Case(
        command="ruby",
        file_name="main.rb",
        hello="puts 'hello'\n$stderr.puts 'to stderr'\n",
        error="def inner\n  raise ArgumentError, 'boom'\nend\ndef outer = inner\nouter\n",
        exit_code="puts 'leaving'\nexit 3\n",
        names="p [$0, __FILE__, $PROGRAM_NAME, ARGV, __dir__, __method__, self.to_s, local_variables]\n",
        stdin="p $stdin.read\n",
        probe=(
            "own = File.read('/proc/self/cmdline').split(\"\\0\")\n"
            "sleepers = Dir['/proc/[0-9]*/cmdline'].count do |path|\n"
            "  (File.read(path) rescue '') == \"sleep\\0300\\0\"\n"
            "end\n"
            "puts [own.size == 1, defined?($leftover).inspect, Thread.list.size, sleepers].join(' ')\n"
        ),
        dirty="$leftover = 1\nThread.new { sleep }\nProcess.detach(spawn('sleep', '300'))\n{end}\n",
        crash="raise 'crash'",
        fail="exit 5",
        hang="loop {}",
    ),
    "r": Case(
        command="Rscript",
        file_name="main.R",
        hello='cat("hello\\n")\nmessage("to stderr")\n1:3\n',
        error=(
            'inner <- function() stop("boom")\nouter <- function() inner()\nwarning("first")\n'
            'outer()\ncat("not reached\\n")\n'
        ),
        exit_code='cat("leaving\\n")\nquit(status = 3)\n',
        names="print(commandArgs())\nprint(commandArgs(trailingOnly = TRUE))\nprint(ls(all.names = TRUE))\n",
        stdin='print(readLines(file("stdin")))\n',
        probe=(
            'cmd <- rawToChar(readBin("/proc/self/cmdline", "raw", 4096), multiple = TRUE)\n'
            'arguments <- paste(ifelse(cmd == "", " ", cmd), collapse = "")\n'
            "pids <- list.files('/proc', pattern = '^[0-9]+$')\n"
            "sleepers <- sum(vapply(pids, function(pid) {\n"
            "  raw <- tryCatch(readBin(file.path('/proc', pid, 'cmdline'), 'raw', 64), error = function(e) raw(0))\n"
            "  identical(raw, c(charToRaw('sleep'), as.raw(0), charToRaw('300'), as.raw(0)))\n"
            "}, logical(1)))\n"
            'cat(grepl("--file=/dev/fd/3", arguments, fixed = TRUE), exists("leftover"), sleepers, "\\n")\n'
        ),
        dirty='leftover <- 1\nsystem("sleep 300", wait = FALSE)\n{end}\n',
        crash='stop("crash")',
        fail="quit(status = 5)",
        hang="repeat {}",
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def language(request: pytest.FixtureRequest, backend: Harness) -> Iterator[tuple[Case, SandboxSession]]:
    with backend.session(lang=request.param) as session:
        yield CASES[request.param], session


def plain_and_spare(case: Case, session: SandboxSession, code: str) -> tuple[tuple[int, str, str], ...]:
    """The plain command's outcome on the file, then a cold run's and a spare's of the same code, with the file's
    folder written the same way in each."""
    with tempfile.TemporaryDirectory() as local:
        path = Path(local, case.file_name)
        path.write_text(code, encoding="utf-8")
        session.copy_to_runtime(str(path), f"{PLAIN_DIR}/{case.file_name}")
    plain = session.execute_command(f"{case.command} {PLAIN_DIR}/{case.file_name}")
    outcomes = [(plain.exit_code, plain.stdout, plain.stderr)]
    for _ in range(2):  # the first starts cold (the command threw the spare away) and readies the spare
        result = session.run(code)
        outcomes.append((result.exit_code, RUN_DIR.sub(PLAIN_DIR, result.stdout), result.stderr))
    return tuple((code, out, RUN_DIR.sub(PLAIN_DIR, err)) for code, out, err in outcomes)


def below_the_entry_point(stderr: str) -> str:
    """A Node stack trace less the frames below the CommonJS loader's entry point (the stub's in a spare, Node's
    main in a plain run: the only part of an uncaught error that tells them apart)."""
    kept, skipping = [], False
    for line in stderr.splitlines(keepends=True):
        if skipping and line.startswith("    at "):
            continue
        skipping = "executeUserEntryPoint" in line
        kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize("program", ["hello", "error", "exit_code", "names", "stdin"])
def test_a_run_in_the_spare_looks_like_the_plain_command(language: tuple[Case, SandboxSession], program: str) -> None:
    case, session = language
    plain, cold, warm = plain_and_spare(case, session, getattr(case, program))
    if case.command == "node":
        plain, cold, warm = ((code, out, below_the_entry_point(err)) for code, out, err in (plain, cold, warm))
    assert warm == plain
    assert cold == plain
    if program != "hello":
        return
    assert plain[0] == 0 and "hello" in plain[1] and "to stderr" in plain[2]


def test_the_next_run_is_served_by_the_spare(language: tuple[Case, SandboxSession]) -> None:
    case, session = language
    session.execute_command("true")  # throws any spare away
    cold = session.run(case.probe).stdout.split()
    warm = session.run(case.probe).stdout.split()
    assert cold[0] == "FALSE" if case.command == "Rscript" else cold[0] == "false"
    assert warm[0] == "TRUE" if case.command == "Rscript" else warm[0] == "true"


@pytest.mark.parametrize("ending", ["crash", "fail", "hang"])
def test_a_run_after_a_dirty_one_starts_clean(language: tuple[Case, SandboxSession], ending: str) -> None:
    case, session = language
    session.run(case.probe)  # readies the spare
    dirty = case.dirty.replace("{end}", getattr(case, ending))
    if ending == "hang":
        with pytest.raises(SandboxTimeoutError):
            session.run(dirty, timeout=3)
    else:
        result = session.run(dirty)
        assert result.exit_code != 0
    probe = session.run(case.probe).stdout.split()
    fresh = {
        "node": ["true", "undefined", "0"],
        "ruby": ["true", "nil", "1", "0"],
        "Rscript": ["TRUE", "FALSE", "0"],
    }[case.command]
    assert probe == fresh


def code_processes(engine_client: Any, session: SandboxSession) -> list[str]:
    """The command lines of the code user's processes, read by the engine (not through the helper, whose next
    request would throw the spare away)."""
    listed = engine_client.containers.get(session.container_id).top(ps_args="-eo pid,uid,args")
    return [" ".join(row[2:]) for row in listed["Processes"] if row[1] == "65534"]


def a_spare_waits(engine_client: Any, session: SandboxSession) -> bool:
    """Whether the spare shows up (it starts once the last run's reply is out), within a few seconds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if code_processes(engine_client, session):
            return True
        time.sleep(0.05)
    return False


def test_what_opens_an_install_window_and_a_reset_end_the_spare(
    language: tuple[Case, SandboxSession], engine_client: Any
) -> None:
    case, session = language
    sandbox = session.sandbox
    assert sandbox is not None
    true, false = ("TRUE", "FALSE") if case.command == "Rscript" else ("true", "false")
    for end in (sandbox.end_code_processes, sandbox.reset):
        session.run(case.hello)
        assert a_spare_waits(engine_client, session)
        end()
        assert code_processes(engine_client, session) == []
        # A spare killed under the helper is not trusted: the next run starts cold, the one after from a new spare.
        assert session.run(case.probe).stdout.split()[0] == false
        assert session.run(case.probe).stdout.split()[0] == true
