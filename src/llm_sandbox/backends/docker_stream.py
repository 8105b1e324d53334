"""A duplex stream over a hijacked exec connection (Docker and Podman speak the same framing).

With ``tty=False`` the engine multiplexes the process's stdout and stderr on the connection: each piece is an
8-byte header (stream id, three zero bytes, big-endian length) and its payload. Input goes back raw. The guest
helper writes its protocol on stdout; whatever it prints on stderr (a crash trace) is logged, never mixed in.
"""

from __future__ import annotations

import logging
import socket
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
        self.stderr_tail = b""  # the end of what the process wrote on stderr, for error messages

    def send(self, data: bytes) -> None:
        """Write to the process's stdin; TimeoutError when it takes in nothing for ``SEND_TIMEOUT_S`` in all."""
        self._sock.settimeout(SEND_TIMEOUT_S)
        self._sock.sendall(data)

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
                self.stderr_tail = (self.stderr_tail + payload)[-4096:]
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("guest stderr: %s", payload.decode("utf-8", "replace").rstrip())
            elif payload:
                return payload

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
