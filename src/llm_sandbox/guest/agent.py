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
``kill_all`` (kill(-1) as this uid reaches the code's processes only: used to end a run for good), ``own_cgroup``
(the cgroup's counters are the sandbox's: used to tell a memory or process limit hit), ``seccomp`` (confine what
runs), ``code_user`` and ``lease``. With ``code_user`` the guest runs as root and separated from the code
(``confine.py`` says how): every process of the code runs under the code's uid, and after every run each process
of that uid is found in /proc and killed, wherever it sits in the tree, but the protected ones. With ``lease`` the
end of the guest's input (the host closed the link, or its process died) ends the sandbox: as root, kill(-1)
reaches every process of the container but PID 1 and the guest, so the keep-alive command dies, the init exits
and the engine stops (and removes) the container.
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
    from llm_sandbox.guest.confine import (
        INHERITED_ENVIRONMENT,
        ActingAsCode,
        become_subreaper,
        can_confine,
        namespace_filter,
        separate_helper,
    )
    from llm_sandbox.guest.disk import CHECK_EVERY_S, DiskCap, changed_entries, run_limit_names
    from llm_sandbox.guest.filesystem import (
        change_clock,
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
    from llm_sandbox.guest.longlived import LongLivedChildren, serve_feed
    from llm_sandbox.guest.processes import (
        MY_PID,
        counters_raised,
        end_sandbox,
        exit_status,
        kill_descendants,
        kill_processes_of,
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
        info_reply,
        reset_reply,
        spawn_reply,
    )
    from llm_sandbox.guest.warm import WARM_IMPORTS, Spares, discard, handoff, run_path, start_warm
    from llm_sandbox.guest.wire import IN, input_ended, input_waiting, read_frame, read_request, reply, send

    Handler = Callable[[Dict[str, Any]], Dict[str, Any]]
    WarmNext = Tuple[Dict[str, Any], Optional[str], Dict[str, str]]  # a spare's recipe, folder and environment

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
        self.over_disk = False  # stopped because the places the code writes passed the disk cap
        self.cancelled = False  # stopped by the host's CANCEL
        self.warm_next: Optional[WarmNext] = None

    def relay(self, kind: bytes, data: bytes) -> None:
        if self.limit and self.sent[kind] + len(data) > self.limit:
            data = data[: max(0, self.limit - self.sent[kind])]
            self.truncated = True
        if data:
            self.sent[kind] += len(data)
            send(kind, data)

    def execute(self) -> Dict[str, Any]:
        request = self.request
        as_code = self.guest.as_code  # the files and the folder are the code's: made and removed as the code
        with as_code:
            temp_dir = make_temp_dir(request)
        try:
            files = [dict(item, **{Field.PATH: expand(item[Field.PATH], temp_dir)}) for item in request[Field.FILES]]
            with as_code:
                write_files(files)
            argv = [expand(arg, temp_dir) for arg in request[Field.ARGV]]
            patterns = request.get(Field.COLLECT)
            # Files outside the run's folder come back only when the run changed them: note when it started.
            started = change_clock() if any(pattern.startswith("/") for pattern in patterns or ()) else None
            result = self.spawn_and_wait(argv, request)
            if temp_dir and patterns:
                # The run's processes are all gone: send what it left before the folder goes (outside the folder,
                # only what the run changed).
                budget = int(request.get(Field.COLLECT_BUDGET) or 0)
                count = int(request.get(Field.COLLECT_COUNT) or 0)
                with as_code:
                    skipped = collect_files(temp_dir, patterns, budget, count, started)
                result[Result.SKIPPED] = skipped
            return result
        finally:
            if temp_dir:
                with as_code:
                    remove_tree(temp_dir)

    def spawn_and_wait(self, argv: List[str], request: Dict[str, Any]) -> Dict[str, Any]:
        guest = self.guest
        env = child_environment(request, self.guest.code_path)
        with guest.as_code:
            cwd = usable_cwd(request)
        before = resource_counters(guest.own_cgroup)
        started_at = time.time()
        started = time.monotonic()
        recipe = request.get(Field.SPARE)
        path = run_path(argv, recipe) if recipe else None
        spare = None
        if recipe and path:
            with guest.as_code:  # the code's file, read with the code's rights
                handed = handoff(recipe, path)
            spare = guest.spares.take(Spares.key_for(recipe, cwd, env)) if handed is not None else None
            if spare is not None and handed is not None and not hand_over(spare, handed):
                spare = None  # it died as it was handed the file: the run starts cold
            self.warm_next = (recipe, cwd, env)  # ready the next spare once this run has answered
        try:
            process = spare if spare is not None else Child(argv, env, cwd, guest.seccomp, user=guest.code_ids)
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
        guest.clean_up(False)
        raised = counters_raised(before, resource_counters(guest.own_cgroup))
        with guest.as_code:  # a run over the cap loses what it wrote, removed as the code
            raised += run_limit_names(guest.disk, started_at, self.over_disk)
        return exec_reply(
            exit_status(returncode), duration, self.timed_out, self.truncated, raised, cancelled=self.cancelled
        )

    def pump(self, process: Child, deadline: Optional[float]) -> None:
        kinds = {process.stdout_fd: Frame.STDOUT, process.stderr_fd: Frame.STDERR}
        poller = select.poll()
        for fd in kinds:
            poller.register(fd, select.POLLIN)
        # The host sends nothing else while a run is in flight: input now is its CANCEL, or the end of its input.
        # What came with the request sits in the reader's buffer, where polling the pipe would not see it.
        if not input_waiting() or self.host_input(process):
            poller.register(IN.fileno(), select.POLLIN)
        exited_at = None
        disk = self.guest.disk
        while kinds:
            now = time.monotonic()
            wait = CHECK_EVERY_S if disk.active else 0.5
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + DRAIN_GRACE_S - now))
            for fd, _event in poller.poll(int(wait * 1000)):
                if fd not in kinds:
                    if not self.host_input(process):
                        poller.unregister(fd)
                    continue
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
            elif not self.stopped and disk.passed_during_run(now):
                self.over_disk = True
                self.stop(process)
            elif exited_at is None and process.poll() is not None:
                exited_at = now
            elif exited_at is not None and now >= exited_at + DRAIN_GRACE_S:
                # The main process is gone but a background child keeps the pipes open: end it.
                kill_descendants(False, keep=process.pid, protected=self.guest.protected())
                exited_at = now
        process.close()

    def host_input(self, process: Child) -> bool:
        """Take what the host sent during the run (it has something to read): a ``CANCEL`` stops the run as its
        time limit would; the end of the input means the host is gone, so the run stops too (with a lease the
        sandbox ends now, not after the run). Returns whether the input is still worth watching."""
        if input_ended():
            if self.guest.lease:
                self.guest.end_lease()
            if not self.stopped:
                self.stop(process)
            return False
        frame = read_frame()
        if frame is not None and frame[0] == Frame.CANCEL and not self.stopped:
            self.cancelled = True
            self.stop(process)
        return frame is not None

    def stop(self, process: Child) -> None:
        self.stopped = True
        process.kill()
        self.guest.clean_up(self.guest.kill_all, keep=process.pid)


def hand_over(spare: Child, data: bytes) -> bool:
    """Hand a spare its run; False (and it is thrown away) when it is gone."""
    try:
        start_warm(spare, data)
    except OSError:
        discard(spare)
        return False
    return True


def child_environment(request: Dict[str, Any], code_path: List[str]) -> Dict[str, str]:
    """The code's environment: the container's, the request's on top, and the code's own folders last on PATH (its
    installed programs are found, but never in place of the image's own tools or the sandbox's command wrapper;
    a request that sets PATH itself, as an install does, gets it as it is)."""
    env = dict(INHERITED_ENVIRONMENT)
    asked = request.get(Field.ENV) or {}
    env.update(asked)
    if code_path and "PATH" not in asked:
        env["PATH"] = os.pathsep.join([env.get("PATH") or os.defpath, *code_path])
    return env


def usable_cwd(request: Dict[str, Any]) -> Optional[str]:
    cwd = request.get(Field.CWD) or None
    if cwd and not os.path.isdir(cwd):
        # An attached container may lack the workdir: run where its exec starts instead.
        return None
    return cwd


def find_python(workdir: str, prefix: List[str], guest: Guest) -> str:
    """The code's interpreter: a virtual environment in the workdir, else what ``prefix`` (an environment wrapper
    the helper does not run under) or the code's PATH finds. Looked up as the code's user."""
    with guest.as_code:
        for name in VENV_NAMES:
            candidate = os.path.join(workdir, name, "bin", "python")
            if os.path.exists(os.path.join(workdir, name, "pyvenv.cfg")) and os.access(
                candidate, os.X_OK, effective_ids=True
            ):
                return candidate
        if not prefix:
            for name in ("python3", "python"):
                found = which(name)
                if found:
                    return found
            return sys.executable
    lookup = [*prefix, "/bin/sh", "-c", "command -v python3 || command -v python"]
    try:
        child = Child(lookup, dict(INHERITED_ENVIRONMENT), None, guest.seccomp, user=guest.code_ids)
    except OSError as error:
        raise OSError("cannot run %s: %s" % (prefix[0], error.strerror or error)) from None
    output = {child.stdout_fd: b"", child.stderr_fd: b""}
    poller = select.poll()
    for fd in output:
        poller.register(fd, select.POLLIN)
    remaining = len(output)
    while remaining:
        for fd, _event in poller.poll():
            chunk = os.read(fd, CHUNK)
            if chunk:
                output[fd] += chunk
            else:
                poller.unregister(fd)
                remaining -= 1
    code = child.wait()
    child.close()
    lines = output[child.stdout_fd].decode(errors="replace").strip().splitlines()
    if code == 0 and lines and lines[-1].startswith("/"):
        return lines[-1]
    said = output[child.stderr_fd].decode(errors="replace").strip()[-2000:]
    # The wrapper itself failed (missing, or an environment it does not know): the sandbox cannot run anything.
    raise OSError("%s found no python3 or python (exit %d)%s" % (" ".join(prefix), code, ": " + said if said else ""))


class Guest:
    """What the helper holds across requests, and its handlers by operation."""

    def __init__(self) -> None:
        self.kill_all = False  # until the host says so (info): kill(-1) reaches the code's processes only
        self.own_cgroup = False  # until the host says so (info): the cgroup counters are the sandbox's
        self.seccomp = False  # until the host says so (info): the code runs under the library's seccomp filter
        self.code_ids: Optional[Tuple[int, int]] = None  # separated (root, the code under these ids); from info
        self.lease = False  # the end of the input ends the sandbox (separated only); from info
        self.code_path: List[str] = []  # folders at the end of the code's PATH (its library prefix); from info
        self.disk = DiskCap()  # the capped places the code writes and their total; from info
        self.as_code = ActingAsCode()
        self.subreaper = False
        self.spares = Spares()
        self.children = LongLivedChildren()
        self.warm_next: Optional[WarmNext] = None
        self.last_warm: Optional[WarmNext] = None  # what the last spare was like
        self.handlers: Dict[str, Handler] = {
            Op.INFO: self.info,
            Op.EXEC: self.execute,
            Op.PUT: self.put,
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
        """Ready the next spare after a run that named a recipe (the host reads the reply meanwhile), else drop it:
        the helper keeps one ready for the language of the last run."""
        warm_next, self.warm_next = self.warm_next, None
        if warm_next is not None:
            recipe, cwd, env = warm_next
            self.spares.prepare(recipe, cwd, env, self.seccomp, self.code_ids)
        else:
            self.spares.discard()

    def clean_up(self, thorough: bool, keep: Optional[int] = None) -> None:
        """End what a run (or a closed child) left. Separated: every process of the code's uid, wherever it is,
        but the protected ones (the warm spare and the long-lived children exist by design between runs, and so
        does what runs under them); else the helper's descendants (``kill_descendants``)."""
        if self.code_ids is not None:
            # The spare runs nothing of its own while it waits: whatever sits under it was put there, and goes.
            spare = self.spares.child
            alone = {spare.pid} if spare is not None and spare.returncode is None else set()
            kill_processes_of(self.code_ids[0], self.children.pids(), keep, alone)
        else:
            kill_descendants(thorough, keep, protected=self.protected())

    def shutdown(self) -> None:
        if self.lease:
            self.end_lease()
        self.spares.discard()
        self.children.close_all()
        self.clean_up(self.kill_all)

    def end_lease(self) -> None:
        """The host is gone or let go: end the sandbox (``end_sandbox``)."""
        end_sandbox()

    # Handlers ------------------------------------------------------------------------------------------------

    def info(self, request: Dict[str, Any]) -> Dict[str, Any]:
        # Never kill(-1) as root, whatever the host says: it would reach every process of the container.
        self.kill_all = bool(request.get(Field.KILL_ALL)) and os.getuid() != 0
        self.own_cgroup = bool(request.get(Field.OWN_CGROUP))
        ids = request.get(Field.CODE_USER)
        if ids and self.code_ids is None and os.getuid() == 0:  # separated once, for good
            separate_helper()
            self.code_ids = (int(ids[0]), int(ids[1]))
            self.as_code.ids = self.code_ids
        self.lease = bool(request.get(Field.LEASE)) and self.code_ids is not None
        if self.lease:  # a write to a host that is gone must end in the lease's end, not in SIGPIPE's death
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.seccomp = bool(request.get(Field.CONFINE))
        self.code_path = [str(folder) for folder in request.get(Field.CODE_PATH) or []]
        self.disk.configure(list(request.get(Field.DISK_PATHS) or []), int(request.get(Field.DISK_LIMIT) or 0))
        confinable = can_confine(self.code_ids) if self.seccomp else bool(namespace_filter(os.uname().machine))
        workdir = request.get(Field.WORKDIR) or "/"
        # Where the code cannot be confined as asked, nothing of it runs (the host refuses the sandbox).
        prefix = list(request.get(Field.PREFIX) or []) if confinable or not self.seccomp else []
        python = find_python(workdir, prefix, self)
        with self.as_code:
            writable = os.access(workdir, os.W_OK, effective_ids=True)
        return info_reply(
            MY_PID,
            os.getuid(),
            python,
            writable,
            self.subreaper,
            self.kill_all,
            self.own_cgroup,
            self.code_ids is not None,
            confinable,
        )

    def ping(self, request: Dict[str, Any]) -> Dict[str, Any]:
        return empty_reply()

    def execute(self, request: Dict[str, Any]) -> Dict[str, Any]:
        if not request.get(Field.SPARE):
            self.spares.discard()  # before the run: its clean-up kills every leftover process, a spare included
        run = Run(request, self)
        result = run.execute()
        self.warm_next = run.warm_next
        if run.warm_next is not None:
            self.last_warm = run.warm_next
        return result

    def put(self, request: Dict[str, Any]) -> Dict[str, Any]:
        with self.as_code:  # unpacked as the code's user: its files, its rights on the way
            return put_files(request)

    def spawn(self, request: Dict[str, Any]) -> Dict[str, Any]:
        argv = list(request[Field.ARGV])
        with self.as_code:
            cwd = usable_cwd(request)
        handle, pid = self.children.spawn(
            argv, child_environment(request, self.code_path), cwd, self.seccomp, self.code_ids
        )
        return spawn_reply(handle, pid)

    def feed(self, request: Dict[str, Any]) -> Dict[str, Any]:
        result = serve_feed(self.children.get(request[Field.HANDLE]), request, self.lease, self.as_code)
        if result[Result.INTERRUPTED]:
            # What the interrupted work left outside the child's tree (moved to us, the subreaper) goes too.
            self.clean_up(False)
        return result

    def close(self, request: Dict[str, Any]) -> Dict[str, Any]:
        code = self.children.close(request[Field.HANDLE])
        # What it had started and abandoned moved to us: not protected any more, it goes too.
        self.clean_up(False)
        return close_reply(code)

    def reset(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Kill every process of the code (the spare and the long-lived children too), then remove what this
        uid owns in the workdir and in the temporary folder."""
        self.spares.discard()
        self.children.close_all()
        self.clean_up(self.kill_all)
        left: List[str] = []
        changed: List[str] = []
        since = request.get(Field.SINCE)
        with self.as_code:
            for folder in [request.get(Field.WORKDIR), temp_base(), *(request.get(Field.FOLDERS) or [])]:
                if folder:
                    left.extend(wipe_owned(folder))
            if since is not None:
                for folder in request.get(Field.KEEP) or []:
                    changed.extend(changed_entries(str(folder), float(since)))
        if request.get(Field.WARM) and self.last_warm is not None:
            # Started once the reply is out (after_reply), in the clean sandbox; without the last session's preload
            # (a plotting library writes its caches into HOME, the workdir, which the next user must find empty).
            recipe, cwd, env = self.last_warm
            self.warm_next = (recipe, cwd, {name: value for name, value in env.items() if name != WARM_IMPORTS})
        return reset_reply(left, changed, time.time())


def main() -> None:
    guest = Guest()
    guest.subreaper = become_subreaper()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
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
    finally:  # the end of the input, or a host gone while a reply was written
        guest.shutdown()


if __name__ == "__main__":
    main()
