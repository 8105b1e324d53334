"""Long-lived children: processes that outlive the request that started them (an interpreter kept between calls).

``spawn`` starts one with a stdin pipe, confined like a run's process and in a session of its own; ``feed`` writes
to its stdin and relays its output until a marker shows on its stdout, it exits, or a time limit passes; ``close``
kills it with everything under it. While one lives, its pid is protected: the clean-up after each run leaves it,
and what runs under it, alone. (What it starts and then abandons moves to the helper, the subreaper: such orphans
are no longer under it, and the next clean-up kills them.)

A feed may ask for more, for interpreters that run one piece of code per feed (an interactive session's cells):
the line after the marker (the interpreter's word on how the piece ended), an interrupt at its time limit or past
its output limit (everything under the child killed, SIGINT to the child, a grace period for it to come back to
its marker: its state survives), and the files the piece left in a folder (its plots), sent back at the marker.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, List, Optional, Set, Tuple

    from llm_sandbox.guest.child import CHUNK, DRAIN_GRACE_S, Child, write_to_child
    from llm_sandbox.guest.confine import ActingAsCode
    from llm_sandbox.guest.filesystem import collect_files, remove_tree
    from llm_sandbox.guest.processes import (
        NOTHING_PROTECTED,
        descendants,
        end_sandbox,
        exit_status,
        freeze,
        kill_tree,
        signal_all,
    )
    from llm_sandbox.guest.protocol import Ended, Field, Frame, Result, feed_reply
    from llm_sandbox.guest.wire import IN, input_ended, input_waiting, read_frame, send

POLL_IDLE_S = 0.5
STDIN_CHUNK = 65536
TRAILER_LIMIT = 4096  # the line after a marker is a short status: past this it is taken as it is


class LongLived:
    """One long-lived child and the stdout it has written past the marker that ended the last feed."""

    def __init__(self, child: Child) -> None:
        self.child = child
        assert child.stdin_fd is not None
        os.set_blocking(child.stdin_fd, False)
        self.open_fds = {child.stdout_fd: Frame.STDOUT, child.stderr_fd: Frame.STDERR}
        self.pending = b""  # read past the last marker: the start of the next feed's output
        self.held = b""  # the end of the output read so far that may be the start of the marker: not relayed yet
        self.limit = 0  # the feed's output limit per stream (0: none)
        self.sent = {Frame.STDOUT: 0, Frame.STDERR: 0}
        self.truncated = False

    def relay(self, kind: bytes, data: bytes) -> None:
        """Send output, up to the feed's limit per stream (what is past it is dropped and the feed truncated)."""
        if self.limit and self.sent[kind] + len(data) > self.limit:
            data = data[: max(0, self.limit - self.sent[kind])]
            self.truncated = True
        if data:
            self.sent[kind] += len(data)
            send(kind, data)

    def take_stdout(self, data: bytes, marker: bytes) -> bool:
        """Relay stdout up to the marker; True once the marker has shown (what follows it is kept for later)."""
        if not marker:
            self.relay(Frame.STDOUT, data)
            return False
        data = self.held + data
        self.held = b""
        found = data.find(marker)
        if found >= 0:
            if found:
                self.relay(Frame.STDOUT, data[:found])
            self.pending = data[found + len(marker) :]
            return True
        keep = 0
        for size in range(min(len(marker) - 1, len(data)), 0, -1):
            if data.endswith(marker[:size]):
                keep = size
                break
        if len(data) > keep:
            self.relay(Frame.STDOUT, data[: len(data) - keep])
        self.held = data[len(data) - keep :]
        return False

    def read(self, fd: int, marker: bytes, found: bool) -> bool:
        """Read one chunk of ``fd`` and relay it; returns whether the marker has shown."""
        data = os.read(fd, CHUNK)
        if not data:
            del self.open_fds[fd]
            return found
        if self.open_fds[fd] == Frame.STDERR:
            self.relay(Frame.STDERR, data)
        elif found:
            self.pending += data
        else:
            found = self.take_stdout(data, marker)
        return found

    def trailer_read(self) -> bool:
        """Whether the line after the marker has come whole (or is too long to wait for)."""
        return b"\n" in self.pending or len(self.pending) >= TRAILER_LIMIT or self.child.stdout_fd not in self.open_fds

    def take_trailer(self) -> str:
        line, _newline, rest = self.pending[:TRAILER_LIMIT].partition(b"\n")
        self.pending = rest + self.pending[TRAILER_LIMIT:]
        return line.decode("utf-8", "replace")

    def interrupt(self) -> None:
        """Stop what the child is doing without ending it: every process under it is killed (frozen first, so
        that a fork bomb cannot outrun the walk), then the child gets SIGINT (its language's own interrupt)."""
        pid = self.child.pid
        for _attempt in range(200):
            freeze(pid, NOTHING_PROTECTED)
            under = [found for found, state in descendants(pid) if state != "Z"]
            if not under:
                break
            signal_all(under, signal.SIGKILL)
            time.sleep(0.001)
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass

    def feed(
        self,
        data: bytes,
        marker: bytes,
        timeout: Optional[float],
        watch_input: bool = False,
        trailer: bool = False,
        interrupt: bool = False,
        grace: float = 0.0,
        limit: int = 0,
    ) -> Dict[str, Any]:
        """Write ``data``, then relay output until the marker (and with ``trailer`` the line after it), the
        child's exit or ``timeout``; returns the feed's reply. With ``interrupt``, the time limit (or output past
        ``limit`` bytes on a stream) interrupts the child, which then gets ``grace`` seconds to show its marker.
        ``watch_input``: the end of the helper's input meanwhile ends the sandbox at once (its lease; the host
        sends nothing while a request runs). The host's ``CANCEL`` ends the feed as its time limit would (with
        ``interrupt``, the child is interrupted and keeps its state)."""
        child = self.child
        self.limit, self.sent, self.truncated = limit, {Frame.STDOUT: 0, Frame.STDERR: 0}, False
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = interrupted = False
        pending, self.pending = self.pending, b""
        found = self.take_stdout(pending, marker) if pending else False
        todo = data
        stdin_fd = child.stdin_fd
        exited_at: Optional[float] = None
        # The host's input is read while the feed runs (its CANCEL, or its end); what came with the request sits in
        # the reader's buffer, where polling the pipe would not see it.
        watching, cancelled = True, False
        if input_waiting():
            watching, cancelled = host_input(watch_input)
        while True:
            if found and not todo and (not trailer or self.trailer_read()):
                self.drain_stderr()
                ended = Ended.MARKER
                break
            now = time.monotonic()
            if exited_at is not None and (not self.open_fds or now >= exited_at + DRAIN_GRACE_S):
                ended = Ended.EXITED
                break
            if deadline is not None and now >= deadline:
                timed_out = True
                if interrupted or not interrupt:
                    ended = Ended.TIMEOUT
                    break
            if cancelled and not interrupt:
                ended = Ended.TIMEOUT
                break
            if interrupt and not interrupted and (self.truncated or timed_out or cancelled):
                self.interrupt()
                interrupted, todo = True, b""
                deadline = time.monotonic() + grace
                continue
            poller = select.poll()
            for fd in self.open_fds:
                poller.register(fd, select.POLLIN)
            if todo and stdin_fd is not None:
                poller.register(stdin_fd, select.POLLOUT)
            if watching:
                poller.register(IN.fileno(), select.POLLIN)
            wait = POLL_IDLE_S if self.open_fds or todo else 0.01
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + DRAIN_GRACE_S - now))
            for fd, _event in poller.poll(int(wait * 1000)):
                if watching and fd == IN.fileno():
                    watching, cancel = host_input(watch_input)
                    cancelled = cancelled or cancel
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
            self.relay(Frame.STDOUT, self.held)
        self.held = b""
        said = self.take_trailer() if trailer and ended == Ended.MARKER else None
        code = child.poll()
        return feed_reply(
            ended,
            None if code is None else exit_status(code),
            said,
            timed_out,
            interrupted,
            self.truncated,
        )

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
            self.relay(Frame.STDERR, data)


def host_input(lease: bool) -> Tuple[bool, bool]:
    """Take what the host sent while a feed runs (it has something to read): (whether to keep watching the input,
    whether it was a ``CANCEL``). The end of the input ends the sandbox under a ``lease``."""
    if input_ended():
        if lease:
            end_sandbox()
        return False, False
    frame = read_frame()
    return frame is not None, frame is not None and frame[0] == Frame.CANCEL


def serve_feed(item: LongLived, request: Dict[str, Any], watch_input: bool, as_code: ActingAsCode) -> Dict[str, Any]:
    """A feed request to ``item``, and the files it asks for once the marker shows (read and removed as the
    code's user: the folder is the code's, and nothing in it is followed)."""
    timeout = request.get(Field.TIMEOUT)
    result = item.feed(
        request[Field.DATA],
        request.get(Field.MARKER) or b"",
        None if timeout is None else float(timeout),
        watch_input=watch_input,
        trailer=bool(request.get(Field.TRAILER)),
        interrupt=bool(request.get(Field.INTERRUPT)),
        grace=float(request.get(Field.GRACE) or 0.0),
        limit=int(request.get(Field.OUTPUT_LIMIT) or 0),
    )
    folder = request.get(Field.COLLECT_FROM)
    if folder and result[Result.ENDED] == Ended.MARKER:
        with as_code:
            try:
                is_folder = stat.S_ISDIR(os.lstat(folder).st_mode)
            except OSError:
                is_folder = False
            if is_folder:
                budget = int(request.get(Field.COLLECT_BUDGET) or 0)
                result[Result.SKIPPED] = collect_files(folder, request.get(Field.COLLECT) or [], budget)
                remove_tree(folder)
    return result


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
