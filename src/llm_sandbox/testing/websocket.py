"""The server side of RFC 6455 (websockets), just what the fake API server needs, written out in full.

A hand-written framing layer gives the fake full control over what real API servers do on the wire: binary
frames prefixed by a channel byte, close frames with a status code, and the v5 "close channel" message.
Client frames must be masked (section 5.1); server frames never are.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Protocol

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
MAX_MESSAGE = 64 * 1024 * 1024


class Reader(Protocol):
    """A buffered binary stream (a socket's ``makefile("rb")``, an HTTP handler's ``rfile``)."""

    def read(self, size: int = -1, /) -> bytes: ...


class WebSocketProtocolError(Exception):
    """The peer broke the framing rules."""


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1((key.strip() + GUID).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def apply_mask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` (masking and unmasking are the same operation)."""
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def encode_frame(opcode: int, payload: bytes, *, mask: bytes | None = None, fin: bool = True) -> bytes:
    """One frame; ``mask`` is for clients (tests use it to play one), servers send unmasked frames."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask is not None else 0
    size = len(payload)
    if size < 126:
        header = struct.pack(">BB", first, mask_bit | size)
    elif size < 1 << 16:
        header = struct.pack(">BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack(">BBQ", first, mask_bit | 127, size)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def _read_exact(stream: Reader, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(stream: Reader, *, require_mask: bool = True) -> tuple[bool, int, bytes] | None:
    """(fin, opcode, unmasked payload) of the next frame; None when the stream ends first."""
    head = _read_exact(stream, 2)
    if head is None:
        return None
    fin, opcode = bool(head[0] & 0x80), head[0] & 0x0F
    if head[0] & 0x70:
        raise WebSocketProtocolError("reserved bits set without a negotiated extension")
    masked, size = bool(head[1] & 0x80), head[1] & 0x7F
    if require_mask and not masked:
        raise WebSocketProtocolError("client frames must be masked")
    if size >= 126:
        extended = _read_exact(stream, 2 if size == 126 else 8)
        if extended is None:
            return None
        size = int.from_bytes(extended, "big")
    if size > MAX_MESSAGE:
        raise WebSocketProtocolError(f"frame of {size} bytes is larger than allowed")
    if opcode >= OP_CLOSE and (size > 125 or not fin):
        raise WebSocketProtocolError("control frames must be short and unfragmented")
    mask = _read_exact(stream, 4) if masked else b""
    payload = _read_exact(stream, size)
    if mask is None or payload is None:
        return None
    return fin, opcode, apply_mask(payload, mask) if masked else payload


class ServerWebSocket:
    """A websocket connection accepted by the server: whole messages in, frames out (thread-safe sends)."""

    def __init__(self, rfile: Reader, sock: socket.socket) -> None:
        self._rfile = rfile
        self._sock = sock
        self._send_lock = threading.Lock()
        self.close_sent = False
        self.close_received = False

    def send(self, opcode: int, payload: bytes) -> None:
        with self._send_lock:
            if self.close_sent:
                raise ConnectionError("the websocket is closing")
            if opcode == OP_CLOSE:
                self.close_sent = True
            self._sock.sendall(encode_frame(opcode, payload))

    def send_binary(self, payload: bytes) -> None:
        self.send(OP_BINARY, payload)

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (once); the caller then waits for the peer's close or gives up."""
        try:
            self.send(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120])
        except OSError:
            pass

    def abort(self) -> None:
        """Drop the connection without the closing handshake (a peer that never answers a close frame)."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Answer a control frame; False when the connection is ending (a close frame, or a failed pong)."""
        if opcode == OP_CLOSE:
            self.close_received = True
            if not self.close_sent:
                self.close(struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL)
            return False
        if opcode == OP_PING:
            try:
                self.send(OP_PONG, payload)
            except (OSError, ConnectionError):
                return False
        return True

    def receive(self) -> tuple[int, bytes] | None:
        """The next data message (opcode, payload); None on a close frame or the end of the stream."""
        parts: list[bytes] = []
        message_opcode = None
        while True:
            frame = read_frame(self._rfile)
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode >= OP_CLOSE:
                if not self._control(opcode, payload):
                    return None
                continue
            if opcode == OP_CONTINUATION:
                if message_opcode is None:
                    raise WebSocketProtocolError("continuation frame without a message to continue")
            elif message_opcode is not None:
                raise WebSocketProtocolError("new message before the previous one ended")
            else:
                message_opcode = opcode
            parts.append(payload)
            if sum(len(part) for part in parts) > MAX_MESSAGE:
                raise WebSocketProtocolError("message larger than allowed")
            if fin:
                return message_opcode, b"".join(parts)
