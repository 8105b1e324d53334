"""A duplex stream over a hijacked exec connection (Docker and Podman speak the same framing).

With ``tty=False`` the engine multiplexes the process's stdout and stderr on the connection: each piece is an
8-byte header (stream id, three zero bytes, big-endian length) and its payload. Input goes back raw. The guest
helper writes its protocol on stdout; whatever it prints on stderr (a crash trace) is logged, never mixed in.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import struct
import time
from typing import Any

logger = logging.getLogger(__name__)

MUX_HEADER = struct.Struct(">BxxxI")
STDOUT, STDERR = 1, 2
MAX_READ = 1024 * 1024  # one read of the socket, whatever length a frame header announces
SEND_TIMEOUT_S = 300.0  # one write to the process's stdin, in all (a request and its payload)


class DockerExecStream:
    """The stdin and the demultiplexed output of one exec instance, carried by its hijacked HTTP response."""

    def __init__(self, connection: Any, keep_alive: Any = None) -> None:
        # The hijacked connection: a socket file object (unix, tcp; its socket is `_sock`) or the socket itself (TLS).
        self._sock: socket.socket = getattr(connection, "_sock", connection)
        self._raw = connection
        self._response = keep_alive  # whatever must outlive the stream for the connection to stay open
        self._pending = bytearray()
        self._closed = False
        self._ended = False  # the engine closed the connection (seen by the loop-driven view)
        self.stderr_tail = b""  # the end of what the process wrote on stderr, for error messages

    def send(self, data: bytes) -> None:
        """Write to the process's stdin; TimeoutError when it takes in nothing for ``SEND_TIMEOUT_S`` in all;
        BrokenPipeError when the process's output ends (it exited) before it took all of ``data``.

        The engine may keep the connection's input side open after the process is gone (seen on Docker about one
        time in eight when the helper cannot start), so a blocking write of more than the socket buffers would
        wait out the whole timeout: the output side is watched while writing, and what arrives is kept for recv.
        """
        if isinstance(self._sock, ssl.SSLSocket):  # select cannot see into TLS buffers: the plain blocking write
            self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendall(data)
            return
        deadline = time.monotonic() + SEND_TIMEOUT_S
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the sandbox took in nothing in time")
            readable, writable, _ = select.select([self._sock], [self._sock], [], remaining)
            if readable:
                self._read_available()
                if self._ended:
                    raise BrokenPipeError("the sandbox's process ended before it took its input")
            if writable:
                self._sock.setblocking(False)
                try:
                    view = view[self._sock.send(view[:MAX_READ]) :]
                except (BlockingIOError, InterruptedError):
                    continue

    def recv(self, timeout: float | None) -> bytes:
        """The next stdout bytes; stderr is logged; b"" at the end of the stream; TimeoutError when none came
        within ``timeout`` (stderr does not count: a flood of it cannot hold the caller past its wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                return b""
            stream_id, payload = frame
            if stream_id == STDERR:
                self._note_stderr(payload)
            elif payload:
                return payload

    def asynchronous(self) -> LoopDrivenExecStream | None:
        """This stream driven by the running event loop; None over TLS (the loop's socket calls take plain
        sockets only)."""
        return None if isinstance(self._sock, ssl.SSLSocket) else LoopDrivenExecStream(self)

    def _note_stderr(self, payload: bytes) -> None:
        self.stderr_tail = (self.stderr_tail + payload)[-4096:]
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("guest stderr: %s", payload.decode("utf-8", "replace").rstrip())

    def _buffered_frame(self) -> tuple[int, bytes] | None:
        """A whole frame from what was read already, or None (a partial one stays whole in the buffer)."""
        if len(self._pending) < MUX_HEADER.size:
            return None
        stream_id, size = MUX_HEADER.unpack_from(self._pending)
        end = MUX_HEADER.size + size
        if len(self._pending) < end:
            return None
        payload = bytes(self._pending[MUX_HEADER.size : end])
        del self._pending[:end]
        return stream_id, payload

    def _read_available(self) -> None:
        """Take in what the socket holds now, without waiting (the loop said it is readable)."""
        self._sock.setblocking(False)
        try:
            chunk = self._sock.recv(MAX_READ)
        except (BlockingIOError, InterruptedError):
            return
        if chunk:
            self._pending += chunk
        else:
            self._ended = True

    def read_all(self, timeout: float, limit: int) -> tuple[bytes, bytes, bool]:
        """What the process writes until it exits, as (stdout, stderr, truncated); the stream is closed after.

        Each stream keeps at most ``limit`` bytes: once one reaches it, the rest is cut and the exec abandoned
        (``truncated``). TimeoutError when the process has not ended ``timeout`` seconds from now.
        """
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        truncated = False
        try:
            while (frame := self._next_frame(deadline)) is not None:
                target = err if frame[0] == STDERR else out
                room = limit - len(target)
                if len(frame[1]) > room:
                    target += frame[1][:room]
                    truncated = True
                    break
                target += frame[1]
        finally:
            self.close()
        return bytes(out), bytes(err), truncated

    def _next_frame(self, deadline: float | None) -> tuple[int, bytes] | None:
        header = self._read_exact(MUX_HEADER.size, deadline)
        if not header:
            return None
        stream_id, size = MUX_HEADER.unpack(header)
        return stream_id, self._read_exact(size, deadline) if size else b""

    def _read_exact(self, size: int, deadline: float | None) -> bytes:
        while len(self._pending) < size:
            if deadline is None:
                self._sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no answer from the sandbox in time")
                self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(max(65536, min(size - len(self._pending), MAX_READ)))
            except TimeoutError as error:
                raise TimeoutError("no answer from the sandbox in time") from error
            if not chunk:
                return b""
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for closable in (self._raw, self._response):
            if closable is None:
                continue
            try:
                closable.close()
            except (OSError, ValueError):  # already closed underneath: nothing left to release
                pass


class LoopDrivenExecStream:
    """A ``DockerExecStream`` driven by the running event loop (an ``AsyncDuplexStream``).

    It waits for the socket with the loop's selector and reads only once the socket is readable, straight into the
    stream's own buffer, in the same step: a wait that is cancelled has read nothing, so no byte is ever lost, and
    the blocking methods can take the stream over afterwards (they read the same buffer first).
    """

    def __init__(self, stream: DockerExecStream) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        sock = self._stream._sock
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_sendall(sock, data)

    async def recv(self, timeout: float | None) -> bytes:
        stream = self._stream
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            frame = stream._buffered_frame()
            if frame is not None:
                stream_id, payload = frame
                if stream_id == STDERR:
                    stream._note_stderr(payload)
                elif payload:
                    return payload
                continue
            if stream._ended or stream._closed:
                return b""
            await _readable(loop, stream._sock, deadline)
            stream._read_available()


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float | None) -> None:
    """Wait until ``sock`` has something to read (or its end); TimeoutError at ``deadline`` (the loop's clock)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    def expire() -> None:
        if not ready.done():
            ready.set_exception(TimeoutError("no answer from the sandbox in time"))

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    timer = None if deadline is None else loop.call_at(deadline, expire)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
        if timer is not None:
            timer.cancel()
