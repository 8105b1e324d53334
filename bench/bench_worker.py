"""Benchmark worker: imports whichever ``llm_sandbox`` its interpreter has and times one operation per request.

Started by ``compare_reference.py`` once per side (ours or the reference), each with its own interpreter, because
both packages share the import name. Requests arrive as JSON lines on stdin, answers leave as JSON lines on the
original stdout; anything the library prints goes to stderr so it can never corrupt the protocol. Every timing
is taken here with ``time.perf_counter`` around the library call alone, so the pipe round trip is excluded.

This file must run unchanged under both libraries: it touches only the API they share (``SandboxSession`` with
``lang``/``image``/``container_id``, ``open``/``close``/context manager, ``run``, ``execute_command``;
``ArtifactSandboxSession`` with ``run(code, clear_plots=True)`` and ``result.plots``).
"""

from __future__ import annotations

import base64
import cProfile
import io
import json
import os
import pstats
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from llm_sandbox import ArtifactSandboxSession, SandboxSession

CODE = "print('hi')"
COMMAND = "echo hi"
EXPECTED = "hi\n"

# The "languages" workload: the smallest program printing exactly "hello\n" in each language both libraries know.
HELLO = {
    "python": "print('hello')\n",
    "javascript": "console.log('hello');\n",
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }\n',
    "cpp": '#include <iostream>\n\nint main() {\n    std::cout << "hello" << std::endl;\n    return 0;\n}\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello")\n}\n',
    "ruby": 'puts "hello"\n',
    "r": 'cat("hello\\n")\n',
}
HELLO_EXPECTED = "hello\n"
# The "changed source" part of it: the same program with a comment that differs at every run, so that no cache of
# built programs can answer and each run pays its compile (C++, Go) or its source launch (Java).
CHANGED_SOURCE_LANGUAGES = ("cpp", "go", "java")
# The code's user in the default images: the spare (the process kept waiting for the next run) is its only process
# between two hello worlds.
CODE_UID = "65534"
SPARE_WAIT_S = 15.0
SPARE_STABLE_READS = 4
SPARE_READ_INTERVAL_S = 0.33

# The "plot" workload: one matplotlib figure, shown.
PLOT_CODE = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('one plot')\nplt.show()\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BenchmarkError(RuntimeError):
    """A measured operation did not produce the right output: its timing would be meaningless."""

    def __init__(self, message: str, containers: list[str] | None = None) -> None:
        super().__init__(message)
        self.containers = containers or []


def check(what: str, result: Any, expected: str = EXPECTED) -> None:
    stdout = getattr(result, "stdout", None)
    exit_code = getattr(result, "exit_code", None)
    if stdout != expected or exit_code != 0:
        stderr = getattr(result, "stderr", None)
        raise BenchmarkError(
            f"{what}: expected stdout {expected!r} and exit 0, got {stdout!r} exit {exit_code!r}; stderr {stderr!r}"
        )


def check_one_png(result: Any) -> None:
    """One plot, a PNG, and exit 0 (the reference prints its own set-up line, so stdout is not compared)."""
    plots = list(getattr(result, "plots", None) or [])
    exit_code = getattr(result, "exit_code", None)
    if exit_code != 0 or len(plots) != 1 or not base64.b64decode(plots[0].content_base64).startswith(PNG_SIGNATURE):
        raise BenchmarkError(
            f"one-plot run: expected exit 0 and one PNG, got exit {exit_code!r} and {len(plots)} plot(s); "
            f"stderr {getattr(result, 'stderr', None)!r}"
        )


def settled(rows: list[list[str]], first: list[list[str]]) -> bool:
    """The same processes as ``first`` (pid and command), holding within 2 % of its memory."""
    if [(row[0], row[3]) for row in rows] != [(row[0], row[3]) for row in first]:
        return False
    memory, before = sum(int(row[2]) for row in rows), sum(int(row[2]) for row in first)
    return abs(memory - before) <= before * 0.02


class Worker:
    def __init__(self, side: str) -> None:
        self.side = side
        self.session: Any = None
        self.plot_session: Any = None
        self.lang_sessions: dict[str, Any] = {}
        self.changed_runs = 0

    def container_of(self, session: Any) -> str:
        # Ours exposes ``container_id``; the reference keeps the docker SDK container object (its artifact session
        # wraps the session that holds it).
        if self.side == "reference":
            inner = getattr(session, "_session", None) or session
            return str(inner.container.id)
        return str(session.container_id)

    # Long-lived session for the "run" and "exec" workloads -----------------------------------------------------

    def op_open(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.session is not None:
            raise BenchmarkError("a session is already open")
        started = time.perf_counter()
        session = SandboxSession(lang="python", image=request["image"])
        session.open()
        seconds = time.perf_counter() - started
        self.session = session
        return {"seconds": seconds, "containers": [self.container_of(session)]}

    def op_run(self, _request: dict[str, Any]) -> dict[str, Any]:
        session = self.require_session()
        started = time.perf_counter()
        result = session.run(CODE)
        seconds = time.perf_counter() - started
        check("run", result)
        return {"seconds": seconds}

    def op_exec(self, _request: dict[str, Any]) -> dict[str, Any]:
        session = self.require_session()
        started = time.perf_counter()
        result = session.execute_command(COMMAND)
        seconds = time.perf_counter() - started
        check("execute_command", result)
        return {"seconds": seconds}

    def op_close(self, _request: dict[str, Any]) -> dict[str, Any]:
        session = self.require_session()
        self.session = None
        started = time.perf_counter()
        session.close()
        return {"seconds": time.perf_counter() - started}

    def require_session(self) -> Any:
        if self.session is None:
            raise BenchmarkError("no session is open: send 'open' first")
        return self.session

    # An artifact session for the "plot" workload ----------------------------------------------------------------

    def op_plot_open(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.plot_session is not None:
            raise BenchmarkError("an artifact session is already open")
        started = time.perf_counter()
        session = ArtifactSandboxSession(lang="python", image=request["image"])
        session.__enter__()
        self.plot_session = session
        return {"seconds": time.perf_counter() - started, "containers": [self.container_of(session)]}

    def op_plot_run(self, _request: dict[str, Any]) -> dict[str, Any]:
        if self.plot_session is None:
            raise BenchmarkError("no artifact session is open: send 'plot_open' first")
        started = time.perf_counter()
        result = self.plot_session.run(PLOT_CODE, clear_plots=True)
        seconds = time.perf_counter() - started
        check_one_png(result)
        return {"seconds": seconds}

    def op_plot_close(self, _request: dict[str, Any]) -> dict[str, Any]:
        session, self.plot_session = self.plot_session, None
        if session is None:
            raise BenchmarkError("no artifact session is open")
        started = time.perf_counter()
        session.__exit__(None, None, None)
        return {"seconds": time.perf_counter() - started}

    # One session per language for the "languages" workload ------------------------------------------------------

    def op_lang_open(self, request: dict[str, Any]) -> dict[str, Any]:
        lang = str(request["lang"])
        if lang in self.lang_sessions:
            raise BenchmarkError(f"a {lang} session is already open")
        started = time.perf_counter()
        session = SandboxSession(lang=lang, image=request["image"])
        try:
            session.open()
        except Exception as error:
            # Report what open() had created, and try to remove it; the bench removes what is left by id.
            created = self.containers_if_any(session)
            try:
                session.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)
            raise BenchmarkError(f"{type(error).__name__}: {error}", created) from error
        seconds = time.perf_counter() - started
        self.lang_sessions[lang] = session
        return {"seconds": seconds, "containers": [self.container_of(session)]}

    def op_lang_run(self, request: dict[str, Any]) -> dict[str, Any]:
        lang = str(request["lang"])
        session = self.lang_sessions.get(lang)
        if session is None:
            raise BenchmarkError(f"no {lang} session is open: send 'lang_open' first")
        started = time.perf_counter()
        result = session.run(HELLO[lang])
        seconds = time.perf_counter() - started
        check(f"{lang} hello world", result, HELLO_EXPECTED)
        return {"seconds": seconds}

    def op_lang_run_changed(self, request: dict[str, Any]) -> dict[str, Any]:
        lang = str(request["lang"])
        session = self.lang_sessions.get(lang)
        if session is None:
            raise BenchmarkError(f"no {lang} session is open: send 'lang_open' first")
        self.changed_runs += 1
        code = f"{HELLO[lang]}// fresh source {self.changed_runs}\n"
        started = time.perf_counter()
        result = session.run(code)
        seconds = time.perf_counter() - started
        check(f"{lang} hello world with a fresh source", result, HELLO_EXPECTED)
        return {"seconds": seconds}

    def op_lang_spare_rss(self, request: dict[str, Any]) -> dict[str, Any]:
        """Ours only: the resident memory (kB) of the code user's processes while the session waits between runs,
        which is the spare alone; None when the language has no spare."""
        import docker

        from llm_sandbox.languages.registry import LANGUAGES

        lang = str(request["lang"])
        session = self.lang_sessions.get(lang)
        if session is None:
            raise BenchmarkError(f"no {lang} session is open: send 'lang_open' first")
        if getattr(LANGUAGES[lang], "spare", None) is None:
            return {"seconds": 0.0, "rss_kb": None}
        container = docker.from_env().containers.get(self.container_of(session))
        deadline = time.monotonic() + SPARE_WAIT_S
        seen: list[list[list[str]]] = []
        # The helper starts the next spare after a run; a spare may start through wrappers that exec the real
        # process (Rscript's shell script) and then load what it keeps ready (R attaches its default packages):
        # read it once the code user's processes and their memory stay the same for about a second.
        while time.monotonic() < deadline:
            table = container.top(ps_args="-eo pid,uid,rss,args")  # the engine wants the pid column
            seen.append([row for row in table["Processes"] if row[1] == CODE_UID])
            recent = seen[-SPARE_STABLE_READS:]
            if len(recent) == SPARE_STABLE_READS and recent[0] and all(settled(rows, recent[0]) for rows in recent):
                break
            time.sleep(SPARE_READ_INTERVAL_S)
        rows = seen[-1] if seen else []
        if not rows:
            raise BenchmarkError(f"no spare process of uid {CODE_UID} in the {lang} sandbox")
        return {"seconds": 0.0, "rss_kb": sum(int(row[2]) for row in rows)}

    def op_lang_close(self, request: dict[str, Any]) -> dict[str, Any]:
        session = self.lang_sessions.pop(str(request["lang"]), None)
        if session is None:
            raise BenchmarkError(f"no {request['lang']} session is open")
        started = time.perf_counter()
        session.close()
        return {"seconds": time.perf_counter() - started}

    def containers_if_any(self, session: Any) -> list[str]:
        try:
            cid = self.container_of(session)
        except Exception:
            return []
        return [] if cid in {"", "None"} else [cid]

    # Whole life cycles ------------------------------------------------------------------------------------------

    def op_new(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.cycle({"lang": "python", "image": request["image"]}, "new container")

    def op_attach(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.cycle({"container_id": request["container_id"], "lang": "python"}, "attached container")

    def cycle(self, kwargs: dict[str, Any], what: str) -> dict[str, Any]:
        containers: list[str] = []
        started = time.perf_counter()
        with SandboxSession(**kwargs) as session:
            opened = time.perf_counter()
            result = session.run(CODE)
            ran = time.perf_counter()
            containers.append(self.container_of(session))
        closed = time.perf_counter()
        check(f"run in a {what}", result)
        phases = {"open": opened - started, "run": ran - opened, "close": closed - ran}
        return {"seconds": closed - started, "phases": phases, "containers": containers}

    # Profiling (never during measured repetitions) --------------------------------------------------------------

    def op_profile(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self.handler(request["target"])
        profiler = cProfile.Profile()
        containers: list[str] = []
        for _ in range(int(request["reps"])):
            profiler.enable()
            try:
                answer = target(request)
            finally:
                profiler.disable()
            containers.extend(answer.get("containers", []))
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats(request.get("sort", "cumulative")).print_stats(int(request.get("lines", 25)))
        return {"seconds": 0.0, "profile": text.getvalue(), "containers": containers}

    def op_hello(self, _request: dict[str, Any]) -> dict[str, Any]:
        import llm_sandbox

        return {"seconds": 0.0, "module": llm_sandbox.__file__, "pid": os.getpid()}

    def handler(self, name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        method = getattr(self, f"op_{name}", None)
        if method is None:
            raise BenchmarkError(f"unknown operation {name!r}")
        return method  # type: ignore[no-any-return]

    def shutdown(self) -> None:
        sessions = [self.session, self.plot_session, *self.lang_sessions.values()]
        self.session = self.plot_session = None
        self.lang_sessions.clear()
        for session in sessions:
            if session is None:
                continue
            try:
                session.close()
            except Exception:
                traceback.print_exc(file=sys.stderr)


def serve(side: str, requests: TextIO, answers: TextIO) -> None:
    worker = Worker(side)
    try:
        for line in requests:
            if not line.strip():
                continue
            request: dict[str, Any] = json.loads(line)
            if request["op"] == "shutdown":
                break
            try:
                answer = {"ok": True, **worker.handler(request["op"])(request)}
            except Exception as error:
                traceback.print_exc(file=sys.stderr)
                containers = getattr(error, "containers", None)
                answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
                if isinstance(containers, list):
                    answer["containers"] = containers
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        worker.shutdown()


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in {"ours", "reference"}:
        raise SystemExit("usage: bench_worker.py ours|reference")
    # Keep the protocol on a private copy of stdout and send everything else (library prints) to stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    serve(sys.argv[1], sys.stdin, answers)


if __name__ == "__main__":
    main()
