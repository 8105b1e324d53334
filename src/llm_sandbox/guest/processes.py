"""The process tree under the helper: find, kill and reap a run's descendants; read the cgroup's limit counters.

Some descendants outlive runs on purpose (the warm spare interpreter, long-lived children): the clean-ups here take
the set of those ``protected`` pids and leave them, and everything under them, alone.
"""

from __future__ import annotations

import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import AbstractSet, Dict, List, Optional, Tuple

    from llm_sandbox.guest.protocol import Limit

MY_PID = os.getpid()
NOTHING_PROTECTED: AbstractSet[int] = frozenset()
STOPPED_STATES = ("T", "t")  # stopped by a signal, or by a tracer


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


def descendants(root: int, protected: AbstractSet[int] = NOTHING_PROTECTED) -> List[Tuple[int, str]]:
    """(pid, state) of every process under ``root``, less the ``protected`` ones and what runs under them."""
    table = parent_map()
    children: Dict[int, List[Tuple[int, str]]] = {}
    for pid, (ppid, state) in table.items():
        children.setdefault(ppid, []).append((pid, state))
    found, todo = [], [root]
    while todo:
        for pid, state in children.get(todo.pop(), []):
            if pid in protected:
                continue
            found.append((pid, state))
            todo.append(pid)
    return found


def reap(keep: Optional[int] = None, protected: AbstractSet[int] = NOTHING_PROTECTED) -> None:
    """Collect exited orphans the subreaper inherited; ``keep`` (the run's main process) is left to its Child,
    and so are the protected processes (their owners wait for them)."""
    for pid, state in descendants(MY_PID, protected):
        if state == "Z" and pid != keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def signal_all(pids: List[int], number: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, number)
        except OSError:
            pass


def freeze(root: int, protected: AbstractSet[int], include_root: bool = False) -> None:
    """SIGSTOP every process under ``root`` (and ``root`` itself with ``include_root``) until none is left
    running: a stopped process cannot fork, so a fork bomb stops growing and the SIGKILLs that follow end it."""
    for _attempt in range(200):
        running = [pid for pid, state in descendants(root, protected) if state not in STOPPED_STATES and state != "Z"]
        if include_root:
            running.append(root)
            include_root = False
        if not running:
            return
        signal_all(running, signal.SIGSTOP)


def kill_descendants(
    thorough: bool, keep: Optional[int] = None, protected: AbstractSet[int] = NOTHING_PROTECTED
) -> None:
    """SIGKILL every descendant but the ``protected`` ones (and theirs) until none is left.

    ``thorough`` (a timeout, an output flood or a reset in a sandbox where this uid runs nothing but the code)
    also makes sure a fork bomb cannot outrun the walk through /proc. With nothing protected it sends kill(-1)
    twice, which reaches every process of this uid at once except ourselves and PID 1. kill(-1) would also take
    the protected processes (they run as this uid too), so while there are some the run's processes are frozen
    with SIGSTOP first and killed once they can no longer fork. Never as root: kill(-1) would reach everything.
    """
    use_kill_all = thorough and not protected and os.getuid() != 0
    if thorough and not use_kill_all:
        freeze(MY_PID, protected)
    for attempt in range(200):
        if use_kill_all and attempt < 2:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        alive = [pid for pid, state in descendants(MY_PID, protected) if state != "Z"]
        signal_all(alive, signal.SIGKILL)
        reap(keep, protected)
        if not alive and (not use_kill_all or attempt >= 1):
            return
        time.sleep(0.005)


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` (a child of ours) and every process under it. They are frozen first, then killed in one
    pass: once ``root`` dies its orphans move to us and a walk from ``root`` would no longer find them."""
    freeze(root, NOTHING_PROTECTED, include_root=True)
    signal_all([pid for pid, _state in descendants(root)] + [root], signal.SIGKILL)


def real_uid(pid: int) -> Optional[int]:
    """The real uid of a process (its status file's ``Uid:`` line: readable whatever the process did to its
    dumpable flag, which would make /proc/<pid> itself root's)."""
    try:
        with open("/proc/%d/status" % pid, "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def processes_of(
    uid: int, protected: AbstractSet[int], alone: AbstractSet[int] = NOTHING_PROTECTED
) -> List[Tuple[int, str]]:
    """(pid, state) of every process of ``uid`` in the sandbox but the ``protected`` ones and what runs under
    them, and the ``alone`` ones (what runs under those is not spared)."""
    table = parent_map()
    children: Dict[int, List[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    spared, todo = set(alone), list(protected)
    while todo:
        pid = todo.pop()
        if pid in table and pid not in spared:
            spared.add(pid)
            todo.extend(children.get(pid, []))
    return [
        (pid, state)
        for pid, (_ppid, state) in table.items()
        if pid not in spared and pid not in (1, MY_PID) and real_uid(pid) == uid
    ]


def kill_processes_of(
    uid: int, protected: AbstractSet[int], keep: Optional[int] = None, alone: AbstractSet[int] = NOTHING_PROTECTED
) -> None:
    """End every process of the code's ``uid`` but the protected ones (and theirs) and the ``alone`` ones (not
    theirs), wherever it sits in the tree: a helper running as root finds them in /proc, freezes them (SIGSTOP,
    until none runs: a fork bomb stops growing) and kills them, until none is left; the zombies among its own
    children are reaped (``keep``, the run's main process, is left to its Child)."""
    found = processes_of(uid, protected, alone)
    if not found:  # the common case after a run: one look through /proc
        return
    for _attempt in range(200):
        running = [pid for pid, state in found if state not in STOPPED_STATES and state != "Z"]
        if not running:
            break
        signal_all(running, signal.SIGSTOP)
        found = processes_of(uid, protected, alone)
    for attempt in range(200):
        if attempt:
            found = processes_of(uid, protected, alone)
        alive = [pid for pid, state in found if state != "Z"]
        signal_all(alive, signal.SIGKILL)
        for pid, state in found:
            if pid != keep and (state == "Z" or pid in alive):
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        if not alive:
            return
        time.sleep(0.001 if attempt < 10 else 0.005)


def end_sandbox() -> None:
    """End the sandbox from inside, as a separated helper whose lease ended: as root in the sandbox's pid namespace,
    kill(-1) reaches every process but PID 1 and this one; the keep-alive command among them, so the init exits
    and the engine stops the container. Then this process ends too."""
    try:
        os.kill(-1, signal.SIGKILL)
    finally:
        os._exit(0)


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


def resource_counters(own_cgroup: bool) -> Dict[str, Optional[int]]:
    """The cgroup's limit counters, when the cgroup is the sandbox's own (else they would count others too)."""
    if not own_cgroup:
        return {}
    return {
        Limit.OOM: cgroup_counter(
            ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"), "oom_kill"
        ),
        Limit.PIDS: cgroup_counter(("/sys/fs/cgroup/pids.events", "/sys/fs/cgroup/pids/pids.events"), "max"),
    }


def counters_raised(before: Dict[str, Optional[int]], after: Dict[str, Optional[int]]) -> List[str]:
    raised = []
    for key in (Limit.OOM, Limit.PIDS):
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and new > old:
            raised.append(key)
    return raised


def exit_status(returncode: int) -> int:
    # Report signals the way a shell does (128 + signal), so a SIGKILL reads 137 on every path.
    return 128 - returncode if returncode < 0 else returncode


def wait_status(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
