"""Long-lived children: processes that outlive the request that started them (an interpreter kept between calls).

``spawn`` starts one with a stdin pipe, confined like a run's process and in a session of its own; ``feed`` writes
to its stdin and relays its output until a marker shows on its stdout, it exits, or a time limit passes; ``close``
kills it with everything under it. While one lives, its pid is protected: the clean-up after each run leaves it,
and what runs under it, alone. (What it starts and then abandons moves to the helper, the subreaper: such orphans
are no longer under it, and the next clean-up kills them.)
"""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Dict, List, Optional, Set, Tuple

    from llm_sandbox.guest.child import CHUNK, DRAIN_GRACE_S, Child, write_to_child
    from llm_sandbox.guest.processes import end_sandbox, exit_status, kill_tree
    from llm_sandbox.guest.protocol import Ended, Frame
    from llm_sandbox.guest.wire import IN, input_ended, send

POLL_IDLE_S = 0.5
STDIN_CHUNK = 65536


class LongLived:
    """One long-lived child and the stdout it has written past the marker that ended the last feed."""

    def __init__(self, child: Child) -> None:
        self.child = child
        assert child.stdin_fd is not None
        os.set_blocking(child.stdin_fd, False)
        self.open_fds = {child.stdout_fd: Frame.STDOUT, child.stderr_fd: Frame.STDERR}
        self.pending = b""  # read past the last marker: the start of the next feed's output
        self.held = b""  # the end of the output read so far that may be the start of the marker: not relayed yet

    def take_stdout(self, data: bytes, marker: bytes) -> bool:
        """Relay stdout up to the marker; True once the marker has shown (what follows it is kept for later)."""
        if not marker:
            send(Frame.STDOUT, data)
            return False
        data = self.held + data
        self.held = b""
        found = data.find(marker)
        if found >= 0:
            if found:
                send(Frame.STDOUT, data[:found])
            self.pending = data[found + len(marker) :]
            return True
        keep = 0
        for size in range(min(len(marker) - 1, len(data)), 0, -1):
            if data.endswith(marker[:size]):
                keep = size
                break
        if len(data) > keep:
            send(Frame.STDOUT, data[: len(data) - keep])
        self.held = data[len(data) - keep :]
        return False

    def read(self, fd: int, marker: bytes, found: bool) -> bool:
        """Read one chunk of ``fd`` and relay it; returns whether the marker has shown."""
        data = os.read(fd, CHUNK)
        if not data:
            del self.open_fds[fd]
            return found
        if self.open_fds[fd] == Frame.STDERR:
            send(Frame.STDERR, data)
        elif found:
            self.pending += data
        else:
            found = self.take_stdout(data, marker)
        return found

    def feed(
        self, data: bytes, marker: bytes, timeout: Optional[float], watch_input: bool = False
    ) -> Tuple[str, Optional[int]]:
        """Write ``data``, then relay output until the marker, the child's exit or ``timeout``. Returns why it
        ended (``Ended``) and the exit status once the child has exited. ``watch_input``: the end of the helper's
        input meanwhile ends the sandbox at once (its lease; the host sends nothing while a request runs)."""
        child = self.child
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, self.pending = self.pending, b""
        found = self.take_stdout(pending, marker) if pending else False
        todo = data
        stdin_fd = child.stdin_fd
        exited_at: Optional[float] = None
        while True:
            if found and not todo:
                self.drain_stderr()
                ended = Ended.MARKER
                break
            now = time.monotonic()
            if exited_at is not None and (not self.open_fds or now >= exited_at + DRAIN_GRACE_S):
                ended = Ended.EXITED
                break
            if deadline is not None and now >= deadline:
                ended = Ended.TIMEOUT
                break
            poller = select.poll()
            for fd in self.open_fds:
                poller.register(fd, select.POLLIN)
            if todo and stdin_fd is not None:
                poller.register(stdin_fd, select.POLLOUT)
            if watch_input:
                poller.register(IN.fileno(), select.POLLIN)
            wait = POLL_IDLE_S if self.open_fds or todo else 0.01
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + DRAIN_GRACE_S - now))
            for fd, _event in poller.poll(int(wait * 1000)):
                if watch_input and fd == IN.fileno():
                    if input_ended():
                        end_sandbox()
                    watch_input = False
                elif fd == stdin_fd:
                    try:
                        todo = todo[write_to_child(fd, todo[:STDIN_CHUNK]) :]
                    except BlockingIOError:
                        pass
                    except OSError:  # it closed its stdin or exited: what is left cannot be written
                        todo = b""
                elif fd in self.open_fds:
                    found = self.read(fd, marker, found)
            if exited_at is None and child.poll() is not None:
                exited_at = time.monotonic()
                todo = b""
        if ended != Ended.MARKER and self.held:
            send(Frame.STDOUT, self.held)
        self.held = b""
        code = child.poll()
        return ended, None if code is None else exit_status(code)

    def drain_stderr(self) -> None:
        """Relay the stderr already written: what the child printed before its marker may lag on its own pipe."""
        fd = self.child.stderr_fd
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        until = time.monotonic() + DRAIN_GRACE_S  # a child that never stops writing does not hold the reply
        while fd in self.open_fds and poller.poll(0) and time.monotonic() < until:
            data = os.read(fd, CHUNK)
            if not data:
                del self.open_fds[fd]
                break
            send(Frame.STDERR, data)


class LongLivedChildren:
    """The long-lived children by handle."""

    def __init__(self) -> None:
        self.by_handle: Dict[int, LongLived] = {}
        self.last_handle = 0

    def pids(self) -> Set[int]:
        """The pids to protect: children not reaped yet (a reaped child's pid may be reused by anything)."""
        return {item.child.pid for item in self.by_handle.values() if item.child.returncode is None}

    def spawn(
        self,
        argv: List[str],
        env: Dict[str, str],
        cwd: Optional[str],
        confined: bool,
        user: Optional[Tuple[int, int]] = None,
    ) -> Tuple[int, int]:
        child = Child(argv, env, cwd, confined, stdin_pipe=True, user=user)
        self.last_handle += 1
        self.by_handle[self.last_handle] = LongLived(child)
        return self.last_handle, child.pid

    def get(self, handle: int) -> LongLived:
        item = self.by_handle.get(handle)
        if item is None:
            raise ValueError("no long-lived process has the handle %r" % (handle,))
        return item

    def close(self, handle: int) -> int:
        """Kill the child and everything under it; its exit status (its own, when it had exited already)."""
        child = self.get(handle).child
        del self.by_handle[handle]
        if child.poll() is None:
            kill_tree(child.pid)
        code = child.wait()
        child.close()
        return exit_status(code)

    def close_all(self) -> None:
        for handle in list(self.by_handle):
            self.close(handle)
