"""The host side of the guest helper's protocol (see ``guest/wire.py`` for the wire format).

One request is in flight at a time. Output frames are handed to callbacks as they arrive and collected; the final
JSON frame ends the request. If the guest stays silent well past the request's own time limit (the guest enforces
that limit itself), the link is declared broken.
"""

from __future__ import annotations

import codecs
import json
import marshal
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import DuplexStream
from llm_sandbox.errors import SandboxDiedError

HEADER = struct.Struct(">cI")
MARSHAL_VERSION = 2  # plain values only; every Python 3 reads it
# How long past a request's own limit the host waits for the guest before giving up on it.
BACKSTOP_GRACE_S = 15.0

OutputCallback = Callable[[str], None]


class GuestLinkError(SandboxDiedError):
    """The guest helper stopped answering or its stream ended."""


@dataclass
class Reply:
    """The guest's final answer to a request, with the decoded output collected on the way."""

    fields: dict[str, Any]
    stdout: str = ""
    stderr: str = ""


class _Decoder:
    """Decode one output stream incrementally (a character split across frames stays whole)."""

    def __init__(self, errors: str, callback: OutputCallback | None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        self._parts: list[str] = []
        self._callback = callback

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        if text:
            self._parts.append(text)
            if self._callback is not None:
                self._callback(text)

    def text(self) -> str:
        return "".join(self._parts)


class GuestLink:
    """Requests and replies over a duplex stream to the guest helper."""

    def __init__(self, stream: DuplexStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._next_id = 0
        self.broken = False

    def request(
        self,
        message: dict[str, Any],
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        payload: bytes | None = None,
        encoding_errors: str = "replace",
    ) -> Reply:
        """Send one request (and its binary ``payload``) and wait for the reply; output goes to the callbacks."""
        with self._lock:
            if self.broken:
                raise GuestLinkError("the sandbox's helper is no longer reachable")
            self._next_id += 1
            message = {**message, "id": self._next_id, "with_payload": payload is not None}
            # marshal: the guest reads it with no import at all (it trusts us; we never unmarshal its data).
            body = marshal.dumps(message, MARSHAL_VERSION)
            frames = HEADER.pack(b"M", len(body)) + body
            if payload is not None:
                frames += HEADER.pack(b"B", len(payload)) + payload
            try:
                self._stream.send(frames)
                return self._collect(timeout, on_stdout, on_stderr, encoding_errors)
            except (OSError, TimeoutError, GuestLinkError) as error:
                self.broken = True
                if isinstance(error, GuestLinkError):
                    raise
                raise GuestLinkError(f"lost the sandbox's helper: {error}") from error

    def _collect(
        self,
        timeout: float | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
        encoding_errors: str,
    ) -> Reply:
        streams = {
            b"1": _Decoder(encoding_errors, on_stdout),
            b"2": _Decoder(encoding_errors, on_stderr),
        }
        deadline = None if timeout is None else time.monotonic() + timeout + BACKSTOP_GRACE_S
        while True:
            kind, payload = self._next_frame(deadline)
            if kind == b"J":
                for decoder in streams.values():
                    decoder.feed(b"", final=True)
                fields = json.loads(payload.decode())
                return Reply(fields=fields, stdout=streams[b"1"].text(), stderr=streams[b"2"].text())
            stream = streams.get(kind)
            if stream is not None:
                stream.feed(payload)

    def _next_frame(self, deadline: float | None) -> tuple[bytes, bytes]:
        while True:
            if len(self._buffer) >= HEADER.size:
                kind, size = HEADER.unpack_from(self._buffer)
                end = HEADER.size + size
                if len(self._buffer) >= end:
                    payload = bytes(self._buffer[HEADER.size : end])
                    del self._buffer[:end]
                    return kind, payload
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TimeoutError("the sandbox's helper did not answer in time")
            chunk = self._stream.recv(wait)
            if not chunk:
                raise GuestLinkError("the sandbox's helper exited")
            self._buffer += chunk

    def close(self) -> None:
        self.broken = True
        self._stream.close()
