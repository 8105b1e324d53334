"""The host's end of the guest's protocol (``guest/protocol.py``): an I/O-free protocol object and a blocking driver.

``LinkProtocol`` turns requests into bytes and bytes into events (output chunks, collected files, the final reply);
it does no I/O, so a driver of any kind (blocking here, asyncio later) only moves bytes. ``ReplyAssembler`` turns
one request's events into its ``Reply``, decoding output incrementally for the callbacks. ``GuestLink`` drives both
over a ``DuplexStream``.

One request is in flight at a time. Anything the guest sends that the protocol does not allow (an unknown frame
kind, a frame with no request in flight, a reply to another request) is a ``GuestProtocolError``, and any error
while a reply is read breaks the link: the rest of that reply is never mistaken for the next one's. If the guest
stays silent well past the request's own time limit (the guest enforces that limit itself), the link is declared
broken too.
"""

from __future__ import annotations

import codecs
import json
import marshal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import DuplexStream
from llm_sandbox.guest.protocol import FRAME_HEADER, MARSHAL_VERSION, Field, Frame, Result, split_file_frame
from llm_sandbox.messages import GuestLinkError, GuestProtocolError, Reply, Request

__all__ = [
    "BACKSTOP_GRACE_S",
    "CollectedFile",
    "Event",
    "FinalReply",
    "GuestLink",
    "GuestLinkError",
    "GuestProtocolError",
    "LinkProtocol",
    "OutputCallback",
    "OutputChunk",
    "Reply",
    "ReplyAssembler",
]

# How long past a request's own limit the host waits for the guest before giving up on it.
BACKSTOP_GRACE_S = 15.0

OutputCallback = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Raw bytes the running request wrote on its stdout (``Frame.STDOUT``) or stderr (``Frame.STDERR``)."""

    stream: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class CollectedFile:
    """A file the request sent back (``Frame.FILE``)."""

    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FinalReply:
    """The reply that ends the request (``Frame.REPLY``), its id checked."""

    fields: dict[str, Any]


Event = OutputChunk | CollectedFile | FinalReply


class LinkProtocol:
    """The link's state without its I/O: request ids, the frame buffer, and whether the link is still sound."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._last_id = 0
        self._pending: int | None = None
        self.broken = False

    @property
    def pending(self) -> int | None:
        """The id of the request in flight, or None."""
        return self._pending

    def encode_request(self, message: Mapping[str, Any], payload: bytes | None = None) -> bytes:
        """The frames of one request (and its binary ``payload``), with the next id; it is now in flight."""
        if self.broken:
            raise GuestLinkError("the sandbox's helper is no longer reachable")
        if self._pending is not None:
            raise GuestProtocolError(f"request {self._pending} is still in flight")
        self._last_id += 1
        body = marshal.dumps(
            {**message, Field.ID: self._last_id, Field.WITH_PAYLOAD: payload is not None}, MARSHAL_VERSION
        )
        frames = FRAME_HEADER.pack(Frame.REQUEST, len(body)) + body
        if payload is not None:
            frames += FRAME_HEADER.pack(Frame.PAYLOAD, len(payload)) + payload
        self._pending = self._last_id
        return frames

    def feed(self, data: bytes) -> list[Event]:
        """The events in the bytes received so far; the final reply, when it came, is the last one."""
        if self.broken:
            raise GuestLinkError("the sandbox's helper is no longer reachable")
        self._buffer += data
        try:
            return self._events()
        except GuestProtocolError:
            self.broken = True
            raise

    def fail(self) -> None:
        """Declare the link broken (the driver hit an error while a reply was read)."""
        self.broken = True
        self._buffer.clear()

    def _events(self) -> list[Event]:
        events: list[Event] = []
        buffer = self._buffer
        start = 0
        header = FRAME_HEADER.size
        try:
            while len(buffer) - start >= header:
                kind, size = FRAME_HEADER.unpack_from(buffer, start)
                end = start + header + size
                if len(buffer) < end:
                    break
                body = bytes(buffer[start + header : end])
                start = end
                if self._pending is None:
                    raise GuestProtocolError(f"the guest sent a {kind!r} frame with no request in flight")
                events.append(self._event(kind, body))
        finally:
            del buffer[:start]
        return events

    def _event(self, kind: bytes, body: bytes) -> Event:
        if kind in (Frame.STDOUT, Frame.STDERR):
            return OutputChunk(kind, body)
        if kind == Frame.FILE:
            try:
                name, data = split_file_frame(body)
            except ValueError as error:
                raise GuestProtocolError(f"the guest sent a malformed file frame: {error}") from None
            return CollectedFile(name, data)
        if kind == Frame.REPLY:
            return FinalReply(self._reply_fields(body))
        raise GuestProtocolError(f"the guest sent a frame of unknown kind {kind!r}")

    def _reply_fields(self, body: bytes) -> dict[str, Any]:
        try:
            fields = json.loads(body.decode("utf-8"))
        except ValueError as error:
            raise GuestProtocolError(f"the guest's reply is not JSON: {error}") from None
        if not isinstance(fields, dict):
            raise GuestProtocolError(f"the guest's reply is not an object: {fields!r}")
        reply_id = fields.get(Result.ID)
        if reply_id != self._pending or isinstance(reply_id, bool):
            raise GuestProtocolError(f"the guest answered request {reply_id!r} while {self._pending} was in flight")
        message = fields.get(Result.ERROR)
        if message is not None and not isinstance(message, str):
            raise GuestProtocolError(f"the guest's reply has {Result.ERROR!r} = {message!r}, not a string")
        self._pending = None
        return fields


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


class ReplyAssembler:
    """One request's events made into its ``Reply``: output decoded and handed to the callbacks as it arrives."""

    def __init__(
        self,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        encoding_errors: str = "replace",
    ) -> None:
        self._streams = {
            Frame.STDOUT: _Decoder(encoding_errors, on_stdout),
            Frame.STDERR: _Decoder(encoding_errors, on_stderr),
        }
        self._files: dict[str, bytes] = {}

    def add(self, event: Event) -> Reply | None:
        """Take one event; the reply once the final one came (decoding errors and callbacks' errors propagate)."""
        if isinstance(event, OutputChunk):
            self._streams[event.stream].feed(event.data)
            return None
        if isinstance(event, CollectedFile):
            self._files[event.name] = event.data
            return None
        for decoder in self._streams.values():
            decoder.feed(b"", final=True)
        return Reply(
            fields=event.fields,
            stdout=self._streams[Frame.STDOUT].text(),
            stderr=self._streams[Frame.STDERR].text(),
            files=self._files,
        )


class GuestLink:
    """Requests and replies over a duplex stream to the guest helper (blocking; thread-safe, one at a time)."""

    def __init__(self, stream: DuplexStream) -> None:
        self._stream = stream
        self._protocol = LinkProtocol()
        self._lock = threading.Lock()

    @property
    def broken(self) -> bool:
        return self._protocol.broken

    def request(
        self,
        message: Request,
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        payload: bytes | None = None,
        encoding_errors: str = "replace",
    ) -> Reply:
        """Send one request (and its binary ``payload``) and wait for the reply; output goes to the callbacks.

        A lost stream, a silent guest or a protocol error raise ``GuestLinkError``. Any other error while the
        reply is read (a decoding error under ``encoding_errors="strict"``, a callback's own) propagates as it is.
        Either way the link is broken from then on.
        """
        with self._lock:
            frames = self._protocol.encode_request(message.to_message(), payload)
            assembler = ReplyAssembler(on_stdout, on_stderr, encoding_errors)
            deadline = None if timeout is None else time.monotonic() + timeout + BACKSTOP_GRACE_S
            try:
                self._stream.send(frames)
                return self._receive(assembler, deadline)
            except BaseException as error:
                self._protocol.fail()
                if isinstance(error, OSError):  # TimeoutError included
                    raise GuestLinkError(f"lost the sandbox's helper: {error}") from error
                raise

    def _receive(self, assembler: ReplyAssembler, deadline: float | None) -> Reply:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise TimeoutError("the sandbox's helper did not answer in time")
            chunk = self._stream.recv(wait)
            if not chunk:
                raise GuestLinkError("the sandbox's helper exited")
            for event in self._protocol.feed(chunk):
                reply = assembler.add(event)
                if reply is not None:
                    return reply

    def close(self) -> None:
        self._protocol.fail()
        self._stream.close()
