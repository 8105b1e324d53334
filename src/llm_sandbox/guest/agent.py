"""The resident helper that runs inside every sandbox.

The host starts this file once per session (``python3 -c <source>``) over one attached exec stream and then sends
it requests; each run costs one message each way instead of several engine round trips. It must run on any
Python 3.7+ found in a container and uses the standard library only, importing as little as it can: its start-up
is on the path of every session (no json, typing, shutil or tempfile at start).

Wire format (``wire.py``): the host sends one request at a time; the guest answers with ``1``/``2`` frames of
the running request's raw stdout/stderr bytes and one ``J`` frame with the JSON reply that ends it. The guest's
modules are joined into one source by ``llm_sandbox.guest.agent_source`` (this one last).

The guest marks itself a child subreaper, so every process a run starts, even one that detaches with ``setsid``
and a double fork, stays its descendant; killing a run therefore means killing every descendant, and nothing
outside the run is touched (the container's own processes in an attached container stay alive).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, List, Optional, Tuple

    from llm_sandbox.guest.child import Child
    from llm_sandbox.guest.confine import become_subreaper
    from llm_sandbox.guest.files import expand, make_temp_dir, put_files, remove_tree, which, write_files
    from llm_sandbox.guest.processes import (
        MY_PID,
        counters_raised,
        exit_status,
        kill_descendants,
        resource_counters,
    )
    from llm_sandbox.guest.warm import Spares, start_warm, warm_argv_path
    from llm_sandbox.guest.wire import read_request, reply, send

CHUNK = 65536
# After the main process exits, background children that still hold the output pipes get this long to finish
# writing what they buffered before they are killed.
DRAIN_GRACE_S = 0.05
VENV_NAMES = (".venv", ".sandbox-venv", "venv")


class Run:
    """One request that starts a process, relays its output and enforces its limits."""

    def __init__(self, request: Dict[str, Any], kill_all_of_uid: bool) -> None:
        self.request = request
        self.kill_all_of_uid = kill_all_of_uid
        self.limit = int(request.get("output_limit") or 0)
        self.sent = {b"1": 0, b"2": 0}
        self.truncated = False
        self.timed_out = False
        self.stopped = False
        self.warm_next: Optional[Tuple[str, Optional[str], Dict[str, str]]] = None

    def relay(self, kind: bytes, data: bytes) -> None:
        if self.limit and self.sent[kind] + len(data) > self.limit:
            data = data[: max(0, self.limit - self.sent[kind])]
            self.truncated = True
        if data:
            self.sent[kind] += len(data)
            send(kind, data)

    def execute(self) -> Dict[str, Any]:
        request = self.request
        temp_dir = make_temp_dir(request)
        try:
            files = [dict(item, path=expand(item["path"], temp_dir)) for item in request.get("files", [])]
            write_files(files)
            argv = [expand(arg, temp_dir) for arg in request["argv"]]
            return self.spawn_and_wait(argv, request)
        finally:
            if temp_dir:
                remove_tree(temp_dir)

    def spawn_and_wait(self, argv: List[str], request: Dict[str, Any]) -> Dict[str, Any]:
        env = dict(os.environ)
        env.update(request.get("env") or {})
        cwd = request.get("cwd") or None
        if cwd and not os.path.isdir(cwd):
            # An attached container may lack the workdir: run where its exec starts instead.
            cwd = None
        before = resource_counters()
        started = time.monotonic()
        python = request.get("warm_python")
        path = warm_argv_path(argv, python) if python else None
        spare = SPARES.take(Spares.key_for(python, cwd, env)) if python and path else None
        if python and path:
            self.warm_next = (python, cwd, env)  # ready the next interpreter once this run has answered
        try:
            if spare is not None and path is not None:
                process = spare
                start_warm(process, path)
            else:
                process = Child(argv, env, cwd, confined=self.kill_all_of_uid)
        except OSError as error:
            message = "%s: %s\n" % (argv[0], error.strerror or error)
            self.relay(b"2", message.encode())
            code = 127 if isinstance(error, FileNotFoundError) else 126
            return {"exit_code": code, "duration_s": time.monotonic() - started}
        timeout = request.get("timeout")
        deadline = started + float(timeout) if timeout else None
        self.pump(process, deadline)
        returncode = process.wait()
        duration = time.monotonic() - started
        kill_descendants(False)
        raised = counters_raised(before, resource_counters())
        return {
            "exit_code": exit_status(returncode),
            "duration_s": duration,
            "timed_out": self.timed_out,
            "truncated": self.truncated,
            "limits": raised,
        }

    def pump(self, process: Child, deadline: Optional[float]) -> None:
        kinds = {process.stdout_fd: b"1", process.stderr_fd: b"2"}
        poller = select.poll()
        for fd in kinds:
            poller.register(fd, select.POLLIN)
        exited_at = None
        while kinds:
            now = time.monotonic()
            wait = 0.5
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + DRAIN_GRACE_S - now))
            for fd, _event in poller.poll(int(wait * 1000)):
                data = os.read(fd, CHUNK)
                if not data:
                    poller.unregister(fd)
                    del kinds[fd]
                    continue
                self.relay(kinds[fd], data)
            now = time.monotonic()
            if self.truncated and not self.stopped:
                self.stop(process)
            elif deadline is not None and now >= deadline and not self.stopped and process.poll() is None:
                self.timed_out = True
                self.stop(process)
            elif exited_at is None and process.poll() is not None:
                exited_at = now
            elif exited_at is not None and now >= exited_at + DRAIN_GRACE_S:
                # The main process is gone but a background child keeps the pipes open: end it.
                kill_descendants(False, keep=process.pid)
                exited_at = now
        process.close()

    def stop(self, process: Child) -> None:
        self.stopped = True
        process.kill()
        kill_descendants(self.kill_all_of_uid, keep=process.pid)


def find_python(workdir: str) -> str:
    for name in VENV_NAMES:
        candidate = os.path.join(workdir, name, "bin", "python")
        if os.path.exists(os.path.join(workdir, name, "pyvenv.cfg")) and os.access(candidate, os.X_OK):
            return candidate
    for name in ("python3", "python"):
        found = which(name)
        if found:
            return found
    return sys.executable


def describe(request: Dict[str, Any]) -> Dict[str, Any]:
    workdir = request.get("workdir") or "/"
    return {
        "pid": MY_PID,
        "uid": os.getuid(),
        "python": find_python(workdir),
        "workdir_writable": os.access(workdir, os.W_OK),
        "subreaper": STATE["subreaper"],
    }


def handle(request: Dict[str, Any], kill_all_of_uid: bool) -> Dict[str, Any]:
    op = request.get("op")
    if op == "exec":
        if not request.get("warm_python"):
            SPARES.discard()  # before the run: its clean-up kills every leftover process, a spare included
        run = Run(request, kill_all_of_uid)
        result = run.execute()
        STATE["warm_next"] = run.warm_next
        return result
    SPARES.discard()  # anything else may change what a fresh interpreter would see
    if op == "put":
        return put_files(request)
    if op == "info":
        return describe(request)
    if op == "ping":
        return {}
    return {"error": "unknown request %r" % op}


def main() -> None:
    kill_all_of_uid = os.environ.get("LLM_SANDBOX_OWNED") == "1" and os.getuid() != 0
    STATE["subreaper"] = become_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    while True:
        request = read_request()
        if request is None:
            break
        try:
            result = handle(request, kill_all_of_uid)
        except Exception as error:  # report, never die: the session depends on this process
            result = {"error": "%s: %s" % (type(error).__name__, error)}
        result["id"] = request.get("id")
        reply(result)
        warm_next = STATE.pop("warm_next", None)
        if warm_next is not None:
            python, cwd, env = warm_next
            SPARES.prepare(python, cwd, env, confined=kill_all_of_uid)
        else:
            SPARES.discard()
    SPARES.discard()
    kill_descendants(kill_all_of_uid)


STATE: Dict[str, Any] = {"subreaper": False}
SPARES = Spares()

if __name__ == "__main__":
    main()
