"""The resident helper that runs inside every sandbox.

The host starts this file once per session (``python3 -c <source>``) over one attached exec stream and then sends
it requests; each run costs one message each way instead of several engine round trips. It must run on any
Python 3.7+ found in a container and uses the standard library only, importing as little as it can: its start-up
is on the path of every session (no json, typing, shutil or tempfile at start).

Wire format, both directions: a 5-byte header (one type byte, a big-endian 32-bit length) and the payload.
Host to guest: an ``M`` frame holding one request as ``marshal`` data (built in, so nothing to import; safe in this
direction only: the guest trusts the host, never the reverse), followed by a ``B`` frame of bytes when the request
says ``with_payload``. Guest to host: ``1``/``2`` frames with raw stdout/stderr bytes of the running request, and one
``J`` frame with the JSON reply that ends it (written by ``to_json`` below; the host parses it with ``json``).

The guest marks itself a child subreaper, so every process a run starts, even one that detaches with ``setsid``
and a double fork, stays its descendant; killing a run therefore means killing every descendant, and nothing
outside the run is touched (the container's own processes in an attached container stay alive).
"""

from __future__ import annotations

import ctypes
import marshal
import os
import select
import signal
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing would cost every session start-up
    from typing import Any, Dict, List, Optional, Tuple

HEADER = struct.Struct(">cI")
PR_SET_CHILD_SUBREAPER = 36
CHUNK = 65536
# After the main process exits, background children that still hold the output pipes get this long to finish
# writing what they buffered before they are killed.
DRAIN_GRACE_S = 0.05
VENV_NAMES = (".venv", ".sandbox-venv", "venv")

IN = sys.stdin.buffer
OUT = sys.stdout.buffer
MY_PID = os.getpid()


def send(kind: bytes, payload: bytes) -> None:
    OUT.write(HEADER.pack(kind, len(payload)))
    OUT.write(payload)
    OUT.flush()


JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    parts = []
    for char in text:
        if char in JSON_ESCAPES:
            parts.append(JSON_ESCAPES[char])
        elif char < " " or "\ud800" <= char <= "\udfff":
            parts.append("\\u%04x" % ord(char))
        else:
            parts.append(char)
    return '"' + "".join(parts) + '"'


def to_json(value: object) -> str:
    """JSON for the plain values replies hold (None, bools, numbers, strings, lists, dicts)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(quote(str(key)) + ":" + to_json(item) for key, item in value.items()) + "}"
    return quote(str(value))


def reply(message: Dict[str, Any]) -> None:
    send(b"J", to_json(message).encode())


def read_exact(size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = IN.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame() -> Optional[Tuple[bytes, bytes]]:
    header = read_exact(HEADER.size)
    if header is None:
        return None
    kind, size = HEADER.unpack(header)
    body = read_exact(size)
    if body is None:
        return None
    return kind, body


def read_request() -> Optional[Dict[str, Any]]:
    """The next request; one that says ``with_payload`` is followed by a binary frame, kept as ``payload``."""
    frame = read_frame()
    if frame is None:
        return None
    request: Dict[str, Any] = marshal.loads(frame[1])
    if request.get("with_payload"):
        payload = read_frame()
        if payload is None:
            return None
        request["payload"] = payload[1]
    return request


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# A seccomp filter stacked on the engine's own profile for user code in sandboxes the library owns: no new
# namespaces (unshare, setns, clone with namespace flags), so code cannot become "root" in a user namespace and
# reach kernel paths that need it; clone3 answers ENOSYS so that libc falls back to clone, which is checked.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {  # unshare, setns, clone, clone3
    "x86_64": (272, 308, 56, 435),
    "aarch64": (97, 268, 220, 435),
}
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
RET_ALLOW, RET_EPERM, RET_ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026
LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def namespace_filter(machine: str) -> List[Tuple[int, int, int, int]]:
    """The BPF program, as (code, jump-if-true, jump-if-false, k); empty where the architecture is unknown."""
    if machine not in SYSCALLS:
        return []
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    # Jump offsets count instructions after the jump; the three returns sit at the end: ALLOW, EPERM, ENOSYS.
    return [
        (LD_ABS, 0, 0, 4),  # 0: architecture
        (JEQ, 0, 7, AUDIT_ARCH[machine]),  # 1: another ABI: allow (8)
        (LD_ABS, 0, 0, 0),  # 2: syscall number
        (JEQ, 6, 0, unshare),  # 3: -> EPERM (10)
        (JEQ, 5, 0, setns),  # 4: -> EPERM
        (JEQ, 5, 0, clone3),  # 5: -> ENOSYS (11)
        (JEQ, 0, 2, clone),  # 6: not clone: allow
        (LD_ABS, 0, 0, 16),  # 7: clone's flags (low word of the first argument)
        (JSET, 1, 0, NAMESPACE_FLAGS),  # 8: any namespace flag -> EPERM
        (RET, 0, 0, RET_ALLOW),  # 9 (allow sits at 9; the arch jump above lands here too)
        (RET, 0, 0, RET_EPERM),  # 10
        (RET, 0, 0, RET_ENOSYS),  # 11
    ]


def confine() -> None:
    """Install the namespace filter in this (child) process; runs between fork and exec. Fails closed."""
    program = namespace_filter(os.uname().machine)
    if not program:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    filters = (SockFilter * len(program))(*[SockFilter(*item) for item in program])
    fprog = SockFprog(len(program), filters)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required to install a filter unprivileged
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "cannot install the sandbox's seccomp filter")


def parent_map() -> Dict[int, Tuple[int, str]]:
    """Map pid -> (ppid, state) for every process visible in /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                stat = handle.read().decode(errors="replace")
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 2:
            table[int(name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int) -> List[Tuple[int, str]]:
    table = parent_map()
    children: Dict[int, List[Tuple[int, str]]] = {}
    for pid, (ppid, state) in table.items():
        children.setdefault(ppid, []).append((pid, state))
    found, todo = [], [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            found.append((pid, state))
            todo.append(pid)
    return found


def reap(keep: Optional[int] = None) -> None:
    """Collect exited orphans the subreaper inherited; ``keep`` (the run's main process) is left to Popen."""
    for pid, state in descendants(MY_PID):
        if state == "Z" and pid != keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_descendants(thorough: bool, keep: Optional[int] = None) -> None:
    """SIGKILL every descendant until none is left.

    ``thorough`` (a timeout or an output flood in a sandbox the library owns, where this uid runs nothing but
    user code) also sends kill(-1) twice, which reaches every process of this uid except ourselves and PID 1.
    """
    for attempt in range(200):
        if thorough and attempt < 2:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        alive = [pid for pid, state in descendants(MY_PID) if state != "Z"]
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reap(keep)
        if not alive and (not thorough or attempt >= 1):
            return
        time.sleep(0.005)


def cgroup_counter(paths: Tuple[str, ...], key: str) -> Optional[int]:
    for path in paths:
        try:
            with open(path) as handle:
                for line in handle:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == key:
                        return int(parts[1])
        except (OSError, ValueError):
            continue
    return None


def resource_counters() -> Dict[str, Optional[int]]:
    return {
        "oom": cgroup_counter(("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"), "oom_kill"),
        "pids": cgroup_counter(("/sys/fs/cgroup/pids.events", "/sys/fs/cgroup/pids/pids.events"), "max"),
    }


def counters_raised(before: Dict[str, Optional[int]], after: Dict[str, Optional[int]]) -> List[str]:
    raised = []
    for key in ("oom", "pids"):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and new > old:
            raised.append(key)
    return raised


def exit_status(returncode: int) -> int:
    # Report signals the way a shell does (128 + signal), so a SIGKILL reads 137 on every path.
    return 128 - returncode if returncode < 0 else returncode


def write_files(files: List[Dict[str, Any]]) -> None:
    for item in files:
        path = item["path"]
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(item["content"].encode("utf-8", "surrogateescape"))
        os.chmod(path, int(item.get("mode", 0o644)))


def make_temp_dir(request: Dict[str, Any]) -> Optional[str]:
    if not request.get("tempdir"):
        return None
    base = os.environ.get("TMPDIR") or "/tmp"
    for _attempt in range(100):
        path = os.path.join(base, "llm-sandbox-run-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise OSError("cannot create a temporary folder in " + base)


def remove_tree(path: str) -> None:
    """Remove a folder the run used, never following a link the code may have planted in it."""
    for root, folders, files in os.walk(path, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in folders:
            entry = os.path.join(root, name)
            try:
                os.unlink(entry) if os.path.islink(entry) else os.rmdir(entry)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def which(name: str) -> Optional[str]:
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def expand(value: str, temp_dir: Optional[str]) -> str:
    return value.replace("{tmp}", temp_dir) if temp_dir else value


def prefer_for_oom_kill() -> None:
    """Make the run's processes the memory killer's first choice, so that a memory bomb never takes the helper."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def wait_status(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class Child:
    """A process started with fork and exec, in a session of its own, stdin from /dev/null and its output on two
    pipes. (The subprocess module would do, but importing it would cost every session's start-up.)"""

    def __init__(self, argv: List[str], env: Dict[str, str], cwd: Optional[str], confined: bool) -> None:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        check_read, check_write = os.pipe()  # close-on-exec: stays empty when exec succeeds
        pid = os.fork()
        if pid == 0:  # the child: nothing here may return into the helper's loop
            try:
                os.setsid()
                # Python ignores these two; the code it runs must get the default actions (a write past the
                # file-size limit is a SIGXFSZ death, exit 153, not an error the code may swallow).
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
                prefer_for_oom_kill()
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out_write, 1)
                os.dup2(err_write, 2)
                if cwd:
                    os.chdir(cwd)
                if confined:
                    confine()
                os.execvpe(argv[0], argv, env)
            except BaseException as error:
                number = getattr(error, "errno", None) or 0
                os.write(check_write, ("%d:%s" % (number, getattr(error, "strerror", None) or error)).encode())
            finally:
                os._exit(127)
        for fd in (out_write, err_write, check_write):
            os.close(fd)
        self.pid = pid
        self.returncode: Optional[int] = None
        self.stdout_fd, self.stderr_fd = out_read, err_read
        failure = b""
        while True:
            chunk = os.read(check_read, 4096)
            if not chunk:
                break
            failure += chunk
        os.close(check_read)
        if failure:
            self.wait()
            self.close()
            number, _, message = failure.decode(errors="replace").partition(":")
            raise OSError(int(number or 0), message)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = wait_status(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = wait_status(os.waitpid(self.pid, 0)[1])
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd):
            try:
                os.close(fd)
            except OSError:
                pass


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
        try:
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


def deepest_existing(path: str) -> str:
    while not os.path.isdir(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    return path or "/"


def put_files(request: Dict[str, Any]) -> Dict[str, Any]:
    """Unpack the host's tar into ``parent`` (created if missing), as this process's user."""
    parent = request["parent"]
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent)
        import io  # only copies need these: keep them off the helper's start-up
        import tarfile

        with tarfile.open(fileobj=io.BytesIO(request["payload"])) as archive:
            archive.extractall(parent)  # the host made this archive from the caller's files
    except OSError as error:
        return {"errno": error.errno, "reason": str(error), "ancestor": deepest_existing(parent)}
    return {}


def handle(request: Dict[str, Any], kill_all_of_uid: bool) -> Dict[str, Any]:
    op = request.get("op")
    if op == "exec":
        return Run(request, kill_all_of_uid).execute()
    if op == "put":
        return put_files(request)
    if op == "info":
        return describe(request)
    if op == "ping":
        return {}
    return {"error": "unknown request %r" % op}


def main() -> None:
    STATE["subreaper"] = become_subreaper()
    kill_all_of_uid = os.environ.get("LLM_SANDBOX_OWNED") == "1" and os.getuid() != 0
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
    kill_descendants(kill_all_of_uid)


STATE = {"subreaper": False}

if __name__ == "__main__":
    main()
