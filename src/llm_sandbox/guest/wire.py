"""The guest's wire format: 5-byte frame headers (type byte, big-endian length), requests in, replies out.

Requests arrive as ``marshal`` data (built in: nothing to import; safe in this direction only, since the guest
trusts the host and the host never unmarshals guest data). Replies leave as JSON written by ``to_json``: the
``json`` module would cost every session's start-up its import of ``re`` and friends.
"""

from __future__ import annotations

import marshal
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, Optional, Tuple

HEADER = struct.Struct(">cI")
IN = sys.stdin.buffer
OUT = sys.stdout.buffer


def send(kind: bytes, payload: bytes) -> None:
    OUT.write(HEADER.pack(kind, len(payload)))
    OUT.write(payload)
    OUT.flush()


JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    parts = []
    for char in text:
        if char in JSON_ESCAPES:
            parts.append(JSON_ESCAPES[char])
        elif char < " " or "\ud800" <= char <= "\udfff":
            parts.append("\\u%04x" % ord(char))
        else:
            parts.append(char)
    return '"' + "".join(parts) + '"'


def to_json(value: object) -> str:
    """JSON for the plain values replies hold (None, bools, numbers, strings, lists, dicts)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(quote(str(key)) + ":" + to_json(item) for key, item in value.items()) + "}"
    return quote(str(value))


def reply(message: Dict[str, Any]) -> None:
    send(b"J", to_json(message).encode())


def read_exact(size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = IN.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame() -> Optional[Tuple[bytes, bytes]]:
    header = read_exact(HEADER.size)
    if header is None:
        return None
    kind, size = HEADER.unpack(header)
    body = read_exact(size)
    if body is None:
        return None
    return kind, body


def read_request() -> Optional[Dict[str, Any]]:
    """The next request; one that says ``with_payload`` is followed by a binary frame, kept as ``payload``."""
    frame = read_frame()
    if frame is None:
        return None
    request: Dict[str, Any] = marshal.loads(frame[1])
    if request.get("with_payload"):
        payload = read_frame()
        if payload is None:
            return None
        request["payload"] = payload[1]
    return request
