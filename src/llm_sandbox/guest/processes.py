"""The process tree under the helper: find, kill and reap a run's descendants; read the cgroup's limit counters."""

from __future__ import annotations

import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Dict, List, Optional, Tuple

MY_PID = os.getpid()


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
    """Collect exited orphans the subreaper inherited; ``keep`` (the run's main process) is left to its Child."""
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


def wait_status(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
