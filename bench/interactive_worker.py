"""Interactive benchmark worker: imports whichever ``llm_sandbox`` its interpreter has and times one cell per request.

Started by ``compare_interactive.py`` once per side (ours, the reference), each with its own interpreter, because
both packages share the import name. It touches only the API they share: ``InteractiveSandboxSession(lang=...,
image=...)``, the context manager, ``run(code)`` and ``stdout``/``exit_code``. Requests come as JSON lines on stdin
and answers leave as JSON lines on the original stdout; whatever the library prints goes to stderr. The timing is
taken here around ``run`` alone.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

from llm_sandbox import InteractiveSandboxSession

# The worker runs as a script in either venv: the shared loop comes from this repository's bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.worker_loop import run_worker

# The trivial cell of each language: prints exactly "hi\n".
CELLS = {
    "python": "print('hi')",
    "javascript": "console.log('hi')",
    "ruby": "puts 'hi'",
    "r": "cat('hi\\n')",
}
EXPECTED = "hi\n"


class Worker:
    def __init__(self) -> None:
        self.sessions: dict[str, Any] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op, lang = request["op"], str(request.get("lang", "python"))
        if op == "open":
            started = time.perf_counter()
            session = InteractiveSandboxSession(lang=lang, image=request["image"])
            session.__enter__()
            self.sessions[lang] = session
            return {"seconds": time.perf_counter() - started}
        if op == "cell":
            session = self.sessions[lang]
            started = time.perf_counter()
            result = session.run(CELLS[lang])
            seconds = time.perf_counter() - started
            if result.stdout != EXPECTED or result.exit_code != 0:
                raise RuntimeError(f"{lang} cell: stdout {result.stdout!r}, exit {result.exit_code}: {result.stderr!r}")
            return {"seconds": seconds}
        if op == "close":
            session = self.sessions.pop(lang)
            started = time.perf_counter()
            session.__exit__(None, None, None)
            return {"seconds": time.perf_counter() - started}
        if op == "hello":
            import llm_sandbox

            return {"seconds": 0.0, "module": llm_sandbox.__file__}
        raise ValueError(f"unknown operation {op!r}")

    def shutdown(self) -> None:
        for session in self.sessions.values():
            try:
                session.__exit__(None, None, None)
            except Exception:
                traceback.print_exc(file=sys.stderr)
        self.sessions.clear()


def main() -> None:
    worker = Worker()
    run_worker(worker.handle, worker.shutdown)


if __name__ == "__main__":
    main()
