"""The guest's end of the wire (``protocol.py`` has the format): requests in, output, files and replies out.

Replies leave as JSON written by ``to_json``: the ``json`` module would cost every session's start-up its import of
``re`` and friends.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, Optional, Tuple

    from llm_sandbox.guest.protocol import FRAME_HEADER, Field, Frame, file_frame_head

IN = sys.stdin.buffer
OUT = sys.stdout.buffer


def send(kind: bytes, payload: bytes) -> None:
    OUT.write(FRAME_HEADER.pack(kind, len(payload)))
    OUT.write(payload)
    OUT.flush()


def send_file(name: str, data: bytes) -> None:
    """One collected file as a ``FILE`` frame (written in parts: the file's bytes are not copied)."""
    head = file_frame_head(name)
    OUT.write(FRAME_HEADER.pack(Frame.FILE, len(head) + len(data)))
    OUT.write(head)
    OUT.write(data)
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
    send(Frame.REPLY, to_json(message).encode())


def input_ended() -> bool:
    """Whether the host closed its end of the input; only asked when the input is readable while the host sends
    nothing (a request in flight), and reads nothing."""
    reader: Any = IN  # a buffered reader: peek returns b"" at the end only
    return not reader.peek(1)


def input_waiting() -> bool:
    """Whether bytes from the host wait to be read, in the reader's buffer or on the pipe; never blocks. (Polling
    the pipe alone would miss what the buffered reader already took in with the request.)"""
    fd = IN.fileno()
    os.set_blocking(fd, False)
    try:
        reader: Any = IN
        return bool(reader.peek(1))  # b"" (or None on old versions) when nothing is there yet, and at the end
    except BlockingIOError:
        return False
    finally:
        os.set_blocking(fd, True)


def read_exact(size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = IN.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame() -> Optional[Tuple[bytes, bytes]]:
    header = read_exact(FRAME_HEADER.size)
    if header is None:
        return None
    kind, size = FRAME_HEADER.unpack(header)
    body = read_exact(size)
    if body is None:
        return None
    return kind, body


def read_request() -> Optional[Dict[str, Any]]:
    """The next request; one that says ``with_payload`` is followed by a binary frame, kept under ``payload``.
    A frame of another kind than a request is answered as a request with no operation (an error reply), but a
    ``CANCEL`` is skipped: it came for a run that had ended by the time it was read."""
    frame = read_frame()
    while frame is not None and frame[0] == Frame.CANCEL:
        frame = read_frame()
    if frame is None:
        return None
    if frame[0] != Frame.REQUEST:
        return {}
    request: Dict[str, Any] = marshal.loads(frame[1])
    if request.get(Field.WITH_PAYLOAD):
        payload = read_frame()
        if payload is None:
            return None
        request[Field.PAYLOAD] = payload[1]
    return request
