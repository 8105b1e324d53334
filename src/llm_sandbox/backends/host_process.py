"""Host subprocesses as the backend contract needs them: a duplex stream over a process's pipes, and the bounded
read of a one-shot command's output. Shared by the backends whose sandbox processes are started from this host
(the test-only local backend, Bubblewrap)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import threading
import time
from typing import IO

READ_CHUNK = 65536
STDERR_KEEP = 4096
# How long a process gets to exit on its own once its input is closed (a helper kills its runs first) before it is
# killed.
EXIT_GRACE_S = 10.0


class HostProcessStream:
    """Stdin and stdout of a host subprocess as a ``DuplexStream``; its stderr is kept in ``stderr_tail``."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise ValueError("the process needs stdin, stdout and stderr pipes")
        self.process = process
        self._stdin: IO[bytes] = process.stdin
        self._stdout_fd = process.stdout.fileno()
        self._closed = False
        self.stderr_tail = b""  # the end of what the process wrote on stderr, for error messages
        self._stderr_reader = threading.Thread(
            target=self._collect_stderr, args=(process.stderr,), name="host-stream-stderr", daemon=True
        )
        self._stderr_reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _collect_stderr(self, stderr: IO[bytes]) -> None:
        fd = stderr.fileno()
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            self.stderr_tail = (self.stderr_tail + data)[-STDERR_KEEP:]

    def send(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def recv(self, timeout: float | None) -> bytes:
        """The next stdout bytes; b"" at the end of the stream; TimeoutError when none came within ``timeout``."""
        if self._closed:
            return b""
        readable, _, _ = select.select([self._stdout_fd], [], [], None if timeout is None else max(0.0, timeout))
        if not readable:
            raise TimeoutError("no answer from the process in time")
        return os.read(self._stdout_fd, READ_CHUNK)

    def asynchronous(self) -> LoopDrivenProcessStream:
        """This stream driven by the running event loop (the pipes are plain file descriptors it can wait on)."""
        return LoopDrivenProcessStream(self)

    def close(self) -> None:
        """Close stdin (the process sees end of input), wait for it to exit (kill it after a grace), reap it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr_reader.join(timeout=EXIT_GRACE_S)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class LoopDrivenProcessStream:
    """A ``HostProcessStream`` driven by the running event loop (an ``AsyncDuplexStream``): it waits for the pipes
    with the loop's selector and reads only once stdout is readable, in the same step, so a cancelled wait has read
    nothing and loses no byte; no thread is involved."""

    def __init__(self, stream: HostProcessStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        fd = self._stream._stdin.fileno()
        view = memoryview(data)
        os.set_blocking(fd, False)
        try:
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await _ready(loop, fd, None, writing=True)
        finally:
            os.set_blocking(fd, True)  # the blocking ``send`` writes through a buffered file

    async def recv(self, timeout: float | None) -> bytes:
        stream = self._stream
        if stream._closed:
            return b""
        loop = asyncio.get_running_loop()
        await _ready(loop, stream._stdout_fd, None if timeout is None else loop.time() + timeout, writing=False)
        return os.read(stream._stdout_fd, READ_CHUNK)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, deadline: float | None, *, writing: bool) -> None:
    """Wait until ``fd`` can be read (or written); TimeoutError at ``deadline`` (the loop's clock)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    def expire() -> None:
        if not ready.done():
            ready.set_exception(TimeoutError("no answer from the process in time"))

    (loop.add_writer if writing else loop.add_reader)(fd, wake)
    timer = None if deadline is None else loop.call_at(deadline, expire)
    try:
        await ready
    finally:
        (loop.remove_writer if writing else loop.remove_reader)(fd)
        if timer is not None:
            timer.cancel()


def read_bounded(process: subprocess.Popen[bytes], timeout: float, limit: int) -> tuple[bytes, bytes, bool]:
    """Both pipes of ``process`` until they end and it exits: (stdout, stderr, truncated once one went past
    ``limit``, which ends the reading at once); TimeoutError when that did not happen within ``timeout`` seconds."""
    assert process.stdout is not None
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    buffers = {process.stdout.fileno(): out, process.stderr.fileno(): err}
    open_fds = list(buffers)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        readable, _, _ = select.select(open_fds, [], [], remaining)
        for fd in readable:
            data = os.read(fd, READ_CHUNK)
            if not data:
                open_fds.remove(fd)
                continue
            target = buffers[fd]
            room = limit - len(target)
            if len(data) > room:
                target += data[:room]
                return bytes(out), bytes(err), True
            target += data
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    return bytes(out), bytes(err), False
