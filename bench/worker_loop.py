"""The request loop every side-by-side benchmark worker shares (standard library only: it runs in either venv).

A worker reads JSON lines on stdin, answers each with a JSON line on the original stdout (``{"ok": true, ...}`` or
``{"ok": false, "error": ...}``) and stops at ``{"op": "shutdown"}`` or the end of its input. Whatever the library
under test prints goes to stderr, so it can never be taken for an answer.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def serve(handle: Handler, shutdown: Callable[[], None], requests: TextIO, answers: TextIO) -> None:
    try:
        for line in requests:
            if not line.strip():
                continue
            request: dict[str, Any] = json.loads(line)
            if request["op"] == "shutdown":
                break
            try:
                answer = {"ok": True, **handle(request)}
            except Exception as error:
                traceback.print_exc(file=sys.stderr)
                answer = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        shutdown()


def run_worker(handle: Handler, shutdown: Callable[[], None]) -> None:
    """Serve stdin, answering on a private copy of stdout; the library's own prints go to stderr."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(handle, shutdown, sys.stdin, answers)
