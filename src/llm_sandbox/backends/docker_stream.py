"""A duplex stream over a hijacked exec connection (Docker and Podman speak the same framing).

With ``tty=False`` the engine multiplexes the process's stdout and stderr on the connection: each piece is an
8-byte header (stream id, three zero bytes, big-endian length) and its payload. Input goes back raw. The guest
helper writes its protocol on stdout; whatever it prints on stderr (a crash trace) is logged, never mixed in.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

logger = logging.getLogger(__name__)

MUX_HEADER = struct.Struct(">BxxxI")
STDOUT, STDERR = 1, 2


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
        self._sock.sendall(data)

    def recv(self, timeout: float | None) -> bytes:
        """The next stdout bytes; stderr is logged; b"" at the end of the stream."""
        while True:
            frame = self._next_frame(timeout)
            if frame is None:
                return b""
            stream_id, payload = frame
            if stream_id == STDERR:
                self.stderr_tail = (self.stderr_tail + payload)[-4096:]
                logger.debug("guest stderr: %s", payload.decode("utf-8", "replace").rstrip())
            elif payload:
                return payload

    def read_all(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Everything the process writes until it exits, as (stdout, stderr)."""
        out, err = bytearray(), bytearray()
        try:
            while (frame := self._next_frame(timeout)) is not None:
                (err if frame[0] == STDERR else out).extend(frame[1])
        finally:
            self.close()
        return bytes(out), bytes(err)

    def _next_frame(self, timeout: float | None) -> tuple[int, bytes] | None:
        header = self._read_exact(MUX_HEADER.size, timeout)
        if not header:
            return None
        stream_id, size = MUX_HEADER.unpack(header)
        return stream_id, self._read_exact(size, timeout) if size else b""

    def _read_exact(self, size: int, timeout: float | None) -> bytes:
        self._sock.settimeout(timeout)
        while len(self._pending) < size:
            try:
                chunk = self._sock.recv(max(65536, size - len(self._pending)))
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
