"""The resident helper that runs inside every sandbox.

The host starts this file once per session (``python3 -c <source>``) over one attached exec stream and then sends
it requests; each run costs one message each way instead of several engine round trips. It must run on any
Python 3.6+ found in a container and uses the standard library only.

Wire format, both directions: a 5-byte header (one type byte, a big-endian 32-bit length) and the payload.
Host to guest: ``J`` frames holding one JSON request. Guest to host: ``1``/``2`` frames with raw stdout/stderr bytes
of the running request, and one ``J`` frame with the JSON reply that ends the request.

The guest marks itself a child subreaper, so every process a run starts, even one that detaches with ``setsid``
and a double fork, stays its descendant; killing a run therefore means killing every descendant, and nothing
outside the run is touched (the container's own processes in an attached container stay alive).
"""

import ctypes
import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple, cast

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


def reply(message: Dict[str, Any]) -> None:
    send(b"J", json.dumps(message).encode())


def read_exact(size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = IN.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_request() -> Optional[Dict[str, Any]]:
    header = read_exact(HEADER.size)
    if header is None:
        return None
    _kind, size = HEADER.unpack(header)
    body = read_exact(size)
    if body is None:
        return None
    return cast(Dict[str, Any], json.loads(body.decode()))


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


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
    children = {}  # type: Dict[int, List[Tuple[int, str]]]
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
    return tempfile.mkdtemp(prefix="llm-sandbox-run-")


def expand(value: str, temp_dir: Optional[str]) -> str:
    return value.replace("{tmp}", temp_dir) if temp_dir else value


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
                shutil.rmtree(temp_dir, ignore_errors=True)

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
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if request.get("stdin") is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as error:
            message = "%s: %s\n" % (argv[0], error.strerror or error)
            self.relay(b"2", message.encode())
            code = 127 if isinstance(error, FileNotFoundError) else 126
            return {"exit_code": code, "duration_s": time.monotonic() - started}
        if process.stdin is not None:
            try:
                process.stdin.write(request["stdin"].encode("utf-8", "surrogateescape"))
                process.stdin.close()
            except OSError:
                pass
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

    def pump(self, process: "subprocess.Popen[bytes]", deadline: Optional[float]) -> None:
        assert process.stdout is not None
        assert process.stderr is not None
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ, b"1")
        selector.register(process.stderr, selectors.EVENT_READ, b"2")
        exited_at = None
        while selector.get_map():
            now = time.monotonic()
            wait = 0.5
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + DRAIN_GRACE_S - now))
            for key, _events in selector.select(wait):
                data = os.read(key.fd, CHUNK)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                self.relay(key.data, data)
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
        selector.close()
        process.stdout.close()
        process.stderr.close()

    def stop(self, process: "subprocess.Popen[bytes]") -> None:
        self.stopped = True
        try:
            process.kill()
        except OSError:
            pass
        kill_descendants(self.kill_all_of_uid, keep=process.pid)


def find_python(workdir: str) -> str:
    for name in VENV_NAMES:
        candidate = os.path.join(workdir, name, "bin", "python")
        if os.path.exists(os.path.join(workdir, name, "pyvenv.cfg")) and os.access(candidate, os.X_OK):
            return candidate
    for name in ("python3", "python"):
        found = shutil.which(name)
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
        return Run(request, kill_all_of_uid).execute()
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
