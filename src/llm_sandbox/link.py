"""The host's end of the guest's protocol (``guest/protocol.py``): an I/O-free protocol object and a blocking driver.

``LinkProtocol`` turns requests into bytes and bytes into events (output chunks, collected files, the final reply);
it does no I/O, so a driver of any kind (blocking here, asyncio in ``async_link``) only moves bytes.
``ReplyAssembler`` turns one request's events into its ``Reply``, decoding output incrementally for the callbacks.
``GuestLink`` drives both over a ``DuplexStream``.

One request is in flight at a time; while a run is in flight the host may send one ``CANCEL`` (``cancel_frame``):
the guest stops the run and still sends its reply, which is read to its end as any other. Anything the guest sends
that the protocol does not allow (an unknown frame
kind, a frame with no request in flight, a reply to another request) is a ``GuestProtocolError``, and any error
while a reply is read breaks the link: the rest of that reply is never mistaken for the next one's. If the guest
stays silent well past the request's own time limit (the guest enforces that limit itself), the link is declared
broken too.

Every byte from the guest is hostile, so the host bounds what it keeps, whatever the guest was asked to do:

- a frame's size is checked on its header, before its body is waited for: output frames (the guest relays output
  in 64 KiB chunks) and replies up to ``MAX_OUTPUT_FRAME`` / ``MAX_REPLY_FRAME``, a collected file up to what is
  left of the request's ``collect_budget`` plus its name; more is a ``GuestProtocolError``;
- output: the request's ``output_limit`` (per stream) is enforced here too: bytes past it are dropped and the
  reply says ``truncated``. An honest guest never sends more than the limit (it cuts at it itself), so a stream
  past ``OVERRUN_FACTOR`` times the limit is a ``GuestProtocolError``. A request that names no limit (a feed) keeps
  ``HOST_OUTPUT_CAP`` bytes per stream and drops the rest, without breaking the link (its guest side has no cap);
- collected files: their bytes in all never exceed the request's ``collect_budget`` (0 when it names none), and
  their number its ``collect_count`` (when it names one);
- a reply is JSON of plain values: NaN and Infinity are refused; bytes after the final reply break the link.
"""

from __future__ import annotations

import codecs
import json
import marshal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import DuplexStream
from llm_sandbox.errors import OutputDecodingError
from llm_sandbox.guest.protocol import (
    FILE_NAME_HEADER,
    FRAME_HEADER,
    MARSHAL_VERSION,
    Field,
    Frame,
    Result,
    split_file_frame,
)
from llm_sandbox.messages import GuestLinkError, GuestProtocolError, Reply, Request

__all__ = [
    "BACKSTOP_GRACE_S",
    "HOST_OUTPUT_CAP",
    "MAX_OUTPUT_FRAME",
    "MAX_REPLY_FRAME",
    "OVERRUN_FACTOR",
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
# The largest output frame accepted: the guest relays output in chunks of 64 KiB.
MAX_OUTPUT_FRAME = 1024 * 1024
# The largest reply frame accepted: replies are small JSON objects (lists of skipped or left-over paths at most).
MAX_REPLY_FRAME = 4 * 1024 * 1024
# What a collected file's frame holds besides the file's bytes: its name's length and its name (at most 64 KiB).
FILE_FRAME_OVERHEAD = FILE_NAME_HEADER.size + 0xFFFF
# A stream past this many times the request's output limit breaks the link (an honest guest stops at the limit).
OVERRUN_FACTOR = 2
# What is kept of each stream for a request that names no output limit (a feed); the rest is dropped.
HOST_OUTPUT_CAP = 64 * 1024 * 1024
_OUTPUT_KINDS = (Frame.STDOUT, Frame.STDERR)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# A reply's JSON: plain values only (json.loads would take NaN and Infinity).
_REPLY_DECODER = json.JSONDecoder(parse_constant=_no_constants)

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
    """The reply that ends the request (``Frame.REPLY``), its id checked; ``truncated``: the host dropped output
    past the request's limit."""

    fields: dict[str, Any]
    truncated: bool = False


Event = OutputChunk | CollectedFile | FinalReply


class LinkProtocol:
    """The link's state without its I/O: request ids, the frame buffer, the bounds of the request in flight, and
    whether the link is still sound."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._last_id = 0
        self._pending: int | None = None
        self.broken = False
        self._keep = HOST_OUTPUT_CAP
        self._overrun: int | None = None
        self._received = {Frame.STDOUT: 0, Frame.STDERR: 0}
        self._truncated = False
        self._files_left = 0
        self._file_count_left: int | None = None
        self._cancel_sent = False

    @property
    def pending(self) -> int | None:
        """The id of the request in flight, or None."""
        return self._pending

    @property
    def buffered(self) -> int:
        """How many received bytes wait for the rest of their frame."""
        return len(self._buffer)

    def encode_request(self, message: Mapping[str, Any], payload: bytes | None = None) -> bytes:
        """The frames of one request (and its binary ``payload``), with the next id; it is now in flight, bounded
        by its own ``output_limit`` and ``collect_budget``."""
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
        limit = _count(message.get(Field.OUTPUT_LIMIT))
        self._keep = limit or HOST_OUTPUT_CAP
        self._overrun = OVERRUN_FACTOR * limit if limit else None
        self._received = {Frame.STDOUT: 0, Frame.STDERR: 0}
        self._truncated = False
        self._files_left = _count(message.get(Field.COLLECT_BUDGET))
        self._file_count_left = _count(message.get(Field.COLLECT_COUNT)) or None
        self._pending = self._last_id
        self._cancel_sent = False
        return frames

    def cancel_frame(self) -> bytes:
        """The frame that asks the guest to stop the request in flight; empty when there is none, when the link is
        broken, or when it was asked once already."""
        if self._pending is None or self.broken or self._cancel_sent:
            return b""
        self._cancel_sent = True
        return FRAME_HEADER.pack(Frame.CANCEL, 0)

    def feed(self, data: bytes) -> list[Event]:
        """The events in the bytes received so far; the final reply, when it came, is the last one."""
        if self.broken:
            raise GuestLinkError("the sandbox's helper is no longer reachable")
        self._buffer += data
        try:
            return self._events()
        except BaseException:
            self.fail()
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
                if self._pending is None:
                    raise GuestProtocolError(f"the guest sent a {kind!r} frame with no request in flight")
                bound = self._frame_bound(kind)
                if size > bound:
                    raise GuestProtocolError(
                        f"the guest announced a {kind!r} frame of {size} bytes; at most {bound} are accepted"
                    )
                end = start + header + size
                if len(buffer) < end:
                    break
                body = bytes(buffer[start + header : end])
                start = end
                event = self._event(kind, body)
                if event is not None:
                    events.append(event)
        finally:
            del buffer[:start]
        if buffer and self._pending is None:
            raise GuestProtocolError("the guest sent bytes after its final reply")
        return events

    def _frame_bound(self, kind: bytes) -> int:
        if kind in _OUTPUT_KINDS:
            return MAX_OUTPUT_FRAME
        if kind == Frame.REPLY:
            return MAX_REPLY_FRAME
        if kind == Frame.FILE:
            return self._files_left + FILE_FRAME_OVERHEAD
        raise GuestProtocolError(f"the guest sent a frame of unknown kind {kind!r}")

    def _event(self, kind: bytes, body: bytes) -> Event | None:
        if kind in _OUTPUT_KINDS:
            return self._output(kind, body)
        if kind == Frame.FILE:
            try:
                name, data = split_file_frame(body)
            except ValueError as error:
                raise GuestProtocolError(f"the guest sent a malformed file frame: {error}") from None
            if len(data) > self._files_left:
                raise GuestProtocolError(
                    f"the guest sent a collected file of {len(data)} bytes with {self._files_left} left of the "
                    "request's budget"
                )
            if self._file_count_left is not None:
                if self._file_count_left == 0:
                    raise GuestProtocolError("the guest sent more collected files than the request's count allows")
                self._file_count_left -= 1
            self._files_left -= len(data)
            return CollectedFile(name, data)
        return FinalReply(self._reply_fields(body), self._truncated)

    def _output(self, kind: bytes, body: bytes) -> OutputChunk | None:
        before = self._received[kind]
        received = self._received[kind] = before + len(body)
        if received > self._keep:
            if self._overrun is not None and received > self._overrun:
                raise GuestProtocolError(
                    f"the guest sent {received} bytes on one stream, far past the request's limit of {self._keep}"
                )
            self._truncated = True
            body = body[: max(0, self._keep - before)]
            if not body:
                return None
        return OutputChunk(kind, body)

    def _reply_fields(self, body: bytes) -> dict[str, Any]:
        try:
            fields = _REPLY_DECODER.decode(body.decode("utf-8"))
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError included
            raise GuestProtocolError(f"the guest's reply is not JSON: {error}") from None
        if not isinstance(fields, dict):
            raise GuestProtocolError(f"the guest's reply is not an object: {fields!r}")
        reply_id = fields.get(Result.ID)
        if type(reply_id) is not int or reply_id != self._pending:  # neither True nor 1.0 stands for 1
            raise GuestProtocolError(f"the guest answered request {reply_id!r} while {self._pending} was in flight")
        message = fields.get(Result.ERROR)
        if message is not None and not isinstance(message, str):
            raise GuestProtocolError(f"the guest's reply has {Result.ERROR!r} = {message!r}, not a string")
        self._pending = None
        return fields


def _count(value: Any) -> int:
    """A request's byte count (an output limit, a collect budget): 0 when it names none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _Decoder:
    """Decode one output stream incrementally (a character split across frames stays whole).

    The first error while decoding or in the callback is kept, not raised: the reply is still read to its end
    (so the link holds no stale frames and stays usable), and the error is raised once it is complete.
    """

    def __init__(self, errors: str, callback: OutputCallback | None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
        self._parts: list[str] = []
        self._callback = callback
        self.failure: Exception | None = None

    def feed(self, data: bytes, final: bool = False) -> None:
        if self.failure is not None:
            return
        try:
            text = self._decoder.decode(data, final)
            if text:
                self._parts.append(text)
                if self._callback is not None:
                    self._callback(text)
        except UnicodeDecodeError as error:
            self.failure = OutputDecodingError(error.encoding, error.object, error.start, error.end, error.reason)
        except Exception as error:  # noqa: BLE001 - the caller's callback: its error is raised when the reply ends
            self.failure = error

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
        for decoder in self._streams.values():
            if decoder.failure is not None:
                raise ReplyHandOverError(decoder.failure)
        return Reply(
            fields=event.fields,
            stdout=self._streams[Frame.STDOUT].text(),
            stderr=self._streams[Frame.STDERR].text(),
            files=self._files,
            truncated=event.truncated,
        )


class ReplyHandOverError(Exception):
    """A reply was read whole, but decoding its output or a callback failed: the link itself is fine."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class GuestLink:
    """Requests and replies over a duplex stream to the guest helper (blocking; thread-safe, one at a time)."""

    def __init__(self, stream: DuplexStream) -> None:
        self._stream = stream
        self._protocol = LinkProtocol()
        self._lock = threading.Lock()
        # Writes are whole: a CANCEL from another thread never lands inside a request (a large payload, say).
        self._send_lock = threading.Lock()
        self._request_sent = False

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

        A lost stream, a silent guest or a protocol error raise ``GuestLinkError`` and break the link. A decoding
        error under ``encoding_errors="strict"`` (``OutputDecodingError``) or a callback's own error is raised once
        the reply has been read to its end: the link stays usable, with nothing of that reply left on it.
        """
        with self._lock:
            frames = self._protocol.encode_request(message.to_message(), payload)
            assembler = ReplyAssembler(on_stdout, on_stderr, encoding_errors)
            deadline = None if timeout is None else time.monotonic() + timeout + BACKSTOP_GRACE_S
            try:
                with self._send_lock:
                    self._stream.send(frames)
                    self._request_sent = True
                return self._receive(assembler, deadline)
            except ReplyHandOverError as handed:
                raise handed.error from None
            except BaseException as error:
                self._protocol.fail()
                if isinstance(error, OSError):  # TimeoutError included
                    raise GuestLinkError(f"lost the sandbox's helper: {error}") from error
                raise
            finally:
                self._request_sent = False

    def cancel(self) -> bool:
        """Ask the guest to stop the run in flight, from another thread than the one that waits for its reply (that
        one still gets the reply, marked ``cancelled``). False when nothing is in flight or it was asked already."""
        with self._send_lock:
            frame = self._protocol.cancel_frame() if self._request_sent else b""
            if frame:
                self._stream.send(frame)
        return bool(frame)

    @contextmanager
    def borrowed(self) -> Iterator[tuple[LinkProtocol, DuplexStream]]:
        """The link's protocol and stream, for one request driven by another driver (``async_link``); no request
        of this driver can start meanwhile. GuestProtocolError when one is in flight."""
        if not self._lock.acquire(blocking=False):
            raise GuestProtocolError("another request is in flight on this link")
        try:
            yield self._protocol, self._stream
        finally:
            self._lock.release()

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
