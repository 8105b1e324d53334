"""The resident helper that runs inside every sandbox.

The host starts this program once per session (``python3 -c <loader>``, the program on stdin) over one attached
exec stream and then sends it requests; each run costs one message each way instead of several engine round trips.
It must run on any Python 3.7+ found in a container and uses the standard library only, importing as little as it
can: its start-up is on the path of every session (no json, typing, shutil or tempfile at start).

The protocol (frames, operations, fields) is ``protocol.py``; ``wire.py`` reads requests and writes replies. The
guest's modules are joined into one source by ``llm_sandbox.guest.agent_source`` (this one last). Requests are
dispatched by operation through ``Guest.handlers``.

The guest marks itself a child subreaper, so every process a run starts, even one that detaches with ``setsid``
and a double fork, stays its descendant; killing a run therefore means killing every descendant, and nothing
outside the run is touched (the container's own processes in an attached container stay alive). The processes
that outlive a run on purpose (the warm spare interpreter, long-lived children) are protected from that clean-up.

What the sandbox guarantees comes in the first request (``info``), from the host, and nothing else decides it:
``kill_all`` (kill(-1) as this uid reaches the code's processes only: used to end a run for good, and to confine
what runs) and ``own_cgroup`` (the cgroup's counters are the sandbox's: used to tell a memory or process limit hit).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

    from llm_sandbox.guest.child import CHUNK, DRAIN_GRACE_S, Child
    from llm_sandbox.guest.confine import become_subreaper
    from llm_sandbox.guest.filesystem import (
        collect_files,
        expand,
        make_temp_dir,
        put_files,
        remove_tree,
        temp_base,
        which,
        wipe_owned,
        write_files,
    )
    from llm_sandbox.guest.longlived import LongLivedChildren
    from llm_sandbox.guest.processes import (
        MY_PID,
        counters_raised,
        exit_status,
        kill_descendants,
        resource_counters,
    )
    from llm_sandbox.guest.protocol import (
        Field,
        Frame,
        Op,
        Result,
        close_reply,
        empty_reply,
        error_reply,
        exec_reply,
        feed_reply,
        info_reply,
        reset_reply,
        spawn_reply,
    )
    from llm_sandbox.guest.warm import Spares, start_warm, warm_argv_path
    from llm_sandbox.guest.wire import read_request, reply, send

    Handler = Callable[[Dict[str, Any]], Dict[str, Any]]

VENV_NAMES = (".venv", ".sandbox-venv", "venv")


class Run:
    """One request that starts a process, relays its output and enforces its limits."""

    def __init__(self, request: Dict[str, Any], guest: Guest) -> None:
        self.request = request
        self.guest = guest
        self.limit = int(request.get(Field.OUTPUT_LIMIT) or 0)
        self.sent = {Frame.STDOUT: 0, Frame.STDERR: 0}
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
            files = [dict(item, **{Field.PATH: expand(item[Field.PATH], temp_dir)}) for item in request[Field.FILES]]
            write_files(files)
            argv = [expand(arg, temp_dir) for arg in request[Field.ARGV]]
            result = self.spawn_and_wait(argv, request)
            patterns = request.get(Field.COLLECT)
            if temp_dir and patterns:
                # The run's processes are all gone: send what it left before the folder goes.
                skipped = collect_files(temp_dir, patterns, int(request.get(Field.COLLECT_BUDGET) or 0))
                result[Result.SKIPPED] = skipped
            return result
        finally:
            if temp_dir:
                remove_tree(temp_dir)

    def spawn_and_wait(self, argv: List[str], request: Dict[str, Any]) -> Dict[str, Any]:
        guest = self.guest
        env = child_environment(request)
        cwd = usable_cwd(request)
        before = resource_counters(guest.own_cgroup)
        started = time.monotonic()
        python = request.get(Field.WARM_PYTHON)
        path = warm_argv_path(argv, python) if python else None
        spare = guest.spares.take(Spares.key_for(python, cwd, env)) if python and path else None
        if python and path:
            self.warm_next = (python, cwd, env)  # ready the next interpreter once this run has answered
        try:
            if spare is not None and path is not None:
                process = spare
                start_warm(process, path)
            else:
                process = Child(argv, env, cwd, confined=guest.kill_all)
        except OSError as error:
            message = "%s: %s\n" % (argv[0], error.strerror or error)
            self.relay(Frame.STDERR, message.encode())
            code = 127 if isinstance(error, FileNotFoundError) else 126
            return exec_reply(code, time.monotonic() - started)
        timeout = request.get(Field.TIMEOUT)
        deadline = started + float(timeout) if timeout else None
        self.pump(process, deadline)
        returncode = process.wait()
        duration = time.monotonic() - started
        kill_descendants(False, protected=guest.protected())
        raised = counters_raised(before, resource_counters(guest.own_cgroup))
        return exec_reply(exit_status(returncode), duration, self.timed_out, self.truncated, raised)

    def pump(self, process: Child, deadline: Optional[float]) -> None:
        kinds = {process.stdout_fd: Frame.STDOUT, process.stderr_fd: Frame.STDERR}
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
                kill_descendants(False, keep=process.pid, protected=self.guest.protected())
                exited_at = now
        process.close()

    def stop(self, process: Child) -> None:
        self.stopped = True
        process.kill()
        kill_descendants(self.guest.kill_all, keep=process.pid, protected=self.guest.protected())


def child_environment(request: Dict[str, Any]) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(request.get(Field.ENV) or {})
    return env


def usable_cwd(request: Dict[str, Any]) -> Optional[str]:
    cwd = request.get(Field.CWD) or None
    if cwd and not os.path.isdir(cwd):
        # An attached container may lack the workdir: run where its exec starts instead.
        return None
    return cwd


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


class Guest:
    """What the helper holds across requests, and its handlers by operation."""

    def __init__(self) -> None:
        self.kill_all = False  # until the host says so (info): kill(-1) reaches the code's processes only
        self.own_cgroup = False  # until the host says so (info): the cgroup counters are the sandbox's
        self.subreaper = False
        self.spares = Spares()
        self.children = LongLivedChildren()
        self.warm_next: Optional[Tuple[str, Optional[str], Dict[str, str]]] = None
        self.handlers: Dict[str, Handler] = {
            Op.INFO: self.info,
            Op.EXEC: self.execute,
            Op.PUT: put_files,
            Op.PING: self.ping,
            Op.RESET: self.reset,
            Op.SPAWN: self.spawn,
            Op.FEED: self.feed,
            Op.CLOSE: self.close,
        }

    def protected(self) -> Set[int]:
        """The processes that outlive runs on purpose: the clean-ups leave them and theirs alone."""
        pids = self.children.pids()
        spare = self.spares.child
        if spare is not None and spare.returncode is None:
            pids.add(spare.pid)
        return pids

    def handle(self, request: Dict[str, Any]) -> Dict[str, Any]:
        op = request.get(Field.OP)
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            return error_reply("unknown request %r" % (op,))
        if op != Op.EXEC:
            self.spares.discard()  # anything else may change what a fresh interpreter would see
        return handler(request)

    def after_reply(self) -> None:
        """Ready the next interpreter after a Python run (the host reads the reply meanwhile), else drop it."""
        warm_next, self.warm_next = self.warm_next, None
        if warm_next is not None:
            python, cwd, env = warm_next
            self.spares.prepare(python, cwd, env, confined=self.kill_all)
        else:
            self.spares.discard()

    def shutdown(self) -> None:
        self.spares.discard()
        self.children.close_all()
        kill_descendants(self.kill_all)

    # Handlers ------------------------------------------------------------------------------------------------

    def info(self, request: Dict[str, Any]) -> Dict[str, Any]:
        # Never kill(-1) as root, whatever the host says: it would reach every process of the container.
        self.kill_all = bool(request.get(Field.KILL_ALL)) and os.getuid() != 0
        self.own_cgroup = bool(request.get(Field.OWN_CGROUP))
        workdir = request.get(Field.WORKDIR) or "/"
        return info_reply(
            MY_PID,
            os.getuid(),
            find_python(workdir),
            os.access(workdir, os.W_OK),
            self.subreaper,
            self.kill_all,
            self.own_cgroup,
        )

    def ping(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return empty_reply()

    def execute(self, request: Dict[str, Any]) -> Dict[str, Any]:
        if not request.get(Field.WARM_PYTHON):
            self.spares.discard()  # before the run: its clean-up kills every leftover process, a spare included
        run = Run(request, self)
        result = run.execute()
        self.warm_next = run.warm_next
        return result

    def spawn(self, request: Dict[str, Any]) -> Dict[str, Any]:
        argv = list(request[Field.ARGV])
        handle, pid = self.children.spawn(argv, child_environment(request), usable_cwd(request), self.kill_all)
        return spawn_reply(handle, pid)

    def feed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        child = self.children.get(request[Field.HANDLE])
        timeout = request.get(Field.TIMEOUT)
        ended, code = child.feed(
            request[Field.DATA], request.get(Field.MARKER) or b"", None if timeout is None else float(timeout)
        )
        return feed_reply(ended, code)

    def close(self, request: Dict[str, Any]) -> Dict[str, Any]:
        code = self.children.close(request[Field.HANDLE])
        # What it had started and abandoned moved to us: not protected any more, it goes too.
        kill_descendants(False, protected=self.protected())
        return close_reply(code)

    def reset(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Kill every process of the code (the spare and the long-lived children too), then remove what this
        uid owns in the workdir and in the temporary folder."""
        self.spares.discard()
        self.children.close_all()
        kill_descendants(self.kill_all)
        left: List[str] = []
        for folder in (request.get(Field.WORKDIR), temp_base()):
            if folder:
                left.extend(wipe_owned(folder))
        return reset_reply(left)


def main() -> None:
    guest = Guest()
    guest.subreaper = become_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    while True:
        request = read_request()
        if request is None:
            break
        try:
            result = guest.handle(request)
        except Exception as error:  # report, never die: the session depends on this process
            result = error_reply("%s: %s" % (type(error).__name__, error))
        result[Result.ID] = request.get(Field.ID)
        reply(result)
        guest.after_reply()
    guest.shutdown()


if __name__ == "__main__":
    main()
