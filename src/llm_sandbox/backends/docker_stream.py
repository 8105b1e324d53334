"""A duplex stream over a hijacked Docker exec connection.

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
    """The guest helper's stdin and stdout, carried by one exec connection."""

    def __init__(self, raw: Any, response: Any = None) -> None:
        # docker-py hands back the SocketIO (unix, tcp) or the socket itself (TLS); both lead to a real socket.
        self._sock: socket.socket = getattr(raw, "_sock", raw)
        self._raw = raw
        self._response = response  # kept alive: collecting it would close the connection
        self._pending = b""
        self._closed = False

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def recv(self, timeout: float | None) -> bytes:
        while True:
            header = self._read_exact(MUX_HEADER.size, timeout)
            if not header:
                return b""
            stream_id, size = MUX_HEADER.unpack(header)
            payload = self._read_exact(size, timeout) if size else b""
            if stream_id == STDERR:
                logger.debug("guest stderr: %s", payload.decode("utf-8", "replace").rstrip())
                continue
            if payload:
                return payload

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
        data, self._pending = self._pending[:size], self._pending[size:]
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
            close = getattr(closable, "close", None)
            if close is not None:
                try:
                    close()
                except (OSError, ValueError):  # already closed underneath: nothing left to release
                    pass
