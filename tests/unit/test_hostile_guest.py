"""The host's link against a hostile guest: a fake guest is just bytes, written by a real process on a real pipe.

Each test starts a small Python program that reads the host's requests and answers with crafted frames (a giant
frame header, an unknown kind, a reply to another request, output far past the limit, fields of the wrong type,
a collected file over the budget, frames split anywhere), wrapped in the local backend's pipe stream. The link
must break (``GuestProtocolError`` / ``GuestLinkError``) without waiting for or buffering a giant body, and the next
request on a broken link must raise instead of reading what the guest left behind.

The engine execs the library waits on are bounded too; here without an engine: the local backend's exec, and the
Docker/Podman exec stream over a real socket whose other end plays the engine.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox.backends.base import ABANDONED_EXIT, Command, ContainerSpec
from llm_sandbox.backends.docker_stream import MUX_HEADER, STDERR, STDOUT, DockerExecStream
from llm_sandbox.errors import ContainerError, OutputDecodingError
from llm_sandbox.guest.protocol import (
    FRAME_HEADER,
    Ended,
    Frame,
    Result,
    file_frame_head,
)
from llm_sandbox.guest.wire import to_json
from llm_sandbox.link import (
    FILE_FRAME_OVERHEAD,
    HOST_OUTPUT_CAP,
    MAX_OUTPUT_FRAME,
    MAX_REPLY_FRAME,
    OVERRUN_FACTOR,
    FinalReply,
    GuestLink,
    GuestLinkError,
    GuestProtocolError,
    LinkProtocol,
    OutputChunk,
    ReplyAssembler,
)
from llm_sandbox.messages import (
    CloseReply,
    ExecReply,
    ExecRequest,
    FeedReply,
    FeedRequest,
    InfoReply,
    PingRequest,
    PutReply,
    ResetReply,
    SpawnReply,
)
from llm_sandbox.testing.local import LocalBackend, LocalStream

CHUNK = 65536
GIANT = 3 * 1024**3  # what a hostile guest announces: the host must never wait for (or allocate) it

# The fake guest: serves one planned answer per request it reads, then waits for the end of its input. A step's
# "pieces" are written one by one (flushed, "pause" seconds apart); its "forever" chunk is then written without
# end by a thread, as a guest that never stops would (the process exits when the host closes its input).
FAKE_GUEST = r"""
import marshal, os, struct, sys, threading, time

plan = marshal.load(open(sys.argv[1], "rb"))
stdin, out = sys.stdin.buffer, sys.stdout.buffer


def read_exact(size):
    data = b""
    while len(data) < size:
        chunk = stdin.read(size - len(data))
        if not chunk:
            os._exit(0)
        data += chunk
    return data


def read_request():
    kind, size = struct.unpack(">cI", read_exact(5))
    message = marshal.loads(read_exact(size))
    if message["with_payload"]:
        read_exact(struct.unpack(">cI", read_exact(5))[1])


def forever(chunk):
    try:
        while True:
            out.write(chunk)
            out.flush()
    except OSError:
        pass


for step in plan:
    read_request()
    for piece in step["pieces"]:
        out.write(piece)
        out.flush()
        if step["pause"]:
            time.sleep(step["pause"])
    if step["forever"]:
        threading.Thread(target=forever, args=(step["forever"],), daemon=True).start()
    if step["exit"]:
        os._exit(0)
while stdin.read(65536):
    pass
os._exit(0)
"""


def frame(kind: bytes, body: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(body)) + body


def reply_frame(request_id: Any, fields: Mapping[str, Any]) -> bytes:
    """A reply frame exactly as the guest writes it (its own JSON writer)."""
    return frame(Frame.REPLY, to_json({**fields, Result.ID: request_id}).encode())


def file_frame(name: str, data: bytes) -> bytes:
    return frame(Frame.FILE, file_frame_head(name) + data)


@dataclass
class Step:
    """The fake guest's answer to one request."""

    pieces: Sequence[bytes] = ()
    pause: float = 0.0
    forever: bytes = b""
    exit: bool = False

    def plan(self) -> dict[str, Any]:
        return {"pieces": list(self.pieces), "pause": self.pause, "forever": self.forever, "exit": self.exit}


@dataclass
class CountingStream:
    """The pipe stream to the fake guest, counting what the host read from it."""

    stream: LocalStream
    received: int = 0
    reads: list[int] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        self.stream.send(data)

    def recv(self, timeout: float | None) -> bytes:
        data = self.stream.recv(timeout)
        self.received += len(data)
        self.reads.append(len(data))
        return data

    def close(self) -> None:
        self.stream.close()


@pytest.fixture
def fake_guest(tmp_path: Path) -> Iterator[Callable[..., tuple[GuestLink, CountingStream]]]:
    """Start a fake guest with its plan (one ``Step`` per request); the link to it and its counting stream."""
    started: list[GuestLink] = []

    def start(*steps: Step) -> tuple[GuestLink, CountingStream]:
        plan_path = tmp_path / f"plan-{len(started)}.marshal"
        plan_path.write_bytes(marshal.dumps([step.plan() for step in steps]))
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", FAKE_GUEST, str(plan_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stream = CountingStream(LocalStream(process))
        link = GuestLink(stream)
        started.append(link)
        return link, stream

    yield start
    for link in started:
        link.close()


def exec_request(output_limit: int = 1024 * 1024, collect_budget: int = 0) -> ExecRequest:
    return ExecRequest(
        argv=("true",), cwd=None, env={}, timeout=30.0, output_limit=output_limit, collect_budget=collect_budget
    )


def exec_reply_fields(**changes: Any) -> dict[str, Any]:
    return {**ExecReply(exit_code=0, duration_s=0.1).to_message(), **changes}


def assert_broken_for_good(link: GuestLink, stream: CountingStream) -> None:
    """The link is broken: the next request raises at once, reading nothing more of what the guest sent."""
    assert link.broken
    received = stream.received
    with pytest.raises(GuestLinkError):
        link.request(PingRequest(), timeout=5.0)
    assert stream.received == received


# Giant frames: refused on their header ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "size"),
    [
        (Frame.STDOUT, GIANT),
        (Frame.STDERR, MAX_OUTPUT_FRAME + 1),
        (Frame.REPLY, GIANT),
        (Frame.REPLY, MAX_REPLY_FRAME + 1),
        (Frame.FILE, GIANT),
        (Frame.FILE, 1000 + FILE_FRAME_OVERHEAD + 1),
    ],
    ids=["stdout-3GiB", "stderr-1MiB+1", "reply-3GiB", "reply-4MiB+1", "file-3GiB", "file-budget+1"],
)
def test_a_giant_frame_header_breaks_the_link_before_its_body(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]], kind: bytes, size: int
) -> None:
    """The guest announces a giant frame and then streams its body without end: the host refuses the header at
    once, having read a chunk or so, never the body."""
    link, stream = fake_guest(Step(pieces=[FRAME_HEADER.pack(kind, size)], forever=b"\0" * CHUNK))
    started = time.monotonic()
    with pytest.raises(GuestProtocolError, match=f"frame of {size} bytes"):
        link.request(exec_request(collect_budget=1000), timeout=30.0)
    assert time.monotonic() - started < 5
    assert stream.received <= FRAME_HEADER.size + 2 * CHUNK
    assert_broken_for_good(link, stream)


@pytest.mark.parametrize(
    ("kind", "bound"),
    [(Frame.STDOUT, MAX_OUTPUT_FRAME), (Frame.REPLY, MAX_REPLY_FRAME), (Frame.FILE, 5000 + FILE_FRAME_OVERHEAD)],
    ids=["output", "reply", "file"],
)
def test_a_giant_header_is_refused_with_nothing_buffered_and_the_bound_itself_is_accepted(
    kind: bytes, bound: int
) -> None:
    """On the protocol object: a header one byte over the bound fails on the header alone (nothing of the body
    is kept); a header exactly at the bound waits for its body like any other frame."""
    protocol = LinkProtocol()
    protocol.encode_request(exec_request(collect_budget=5000).to_message())
    with pytest.raises(GuestProtocolError, match="at most"):
        protocol.feed(FRAME_HEADER.pack(kind, bound + 1) + b"\0" * 1000)
    assert protocol.broken
    assert protocol.buffered == 0
    with pytest.raises(GuestLinkError):
        protocol.feed(b"\0" * CHUNK)

    at_bound = LinkProtocol()
    at_bound.encode_request(exec_request(collect_budget=5000).to_message())
    assert at_bound.feed(FRAME_HEADER.pack(kind, bound) + b"\0" * 1000) == []
    assert not at_bound.broken
    assert at_bound.buffered == FRAME_HEADER.size + 1000


def test_the_buffer_never_holds_more_than_one_bounded_frame() -> None:
    """Output frames at the bound, fed in small pieces: the buffer never holds more than one frame and a piece."""
    protocol = LinkProtocol()
    protocol.encode_request(exec_request(output_limit=8 * MAX_OUTPUT_FRAME).to_message())
    data = frame(Frame.STDOUT, b"x" * MAX_OUTPUT_FRAME) * 4
    largest = 0
    kept = 0
    for start in range(0, len(data), 50_000):
        for event in protocol.feed(data[start : start + 50_000]):
            assert isinstance(event, OutputChunk)
            kept += len(event.data)
        largest = max(largest, protocol.buffered)
    assert kept == 4 * MAX_OUTPUT_FRAME
    assert largest < MAX_OUTPUT_FRAME + FRAME_HEADER.size + 50_000


# Unknown kinds, wrong ids, bytes after the reply ---------------------------------------------------------------


def test_an_unknown_frame_kind_breaks_the_link_on_its_header(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    link, stream = fake_guest(Step(pieces=[frame(Frame.STDOUT, b"ok"), FRAME_HEADER.pack(b"X", 10)]))
    with pytest.raises(GuestProtocolError, match="unknown kind"):
        link.request(exec_request(), timeout=30.0)
    assert_broken_for_good(link, stream)


@pytest.mark.parametrize("wrong_id", [2, 0, -1, None, "1", 1.0, True, [1]])
def test_a_reply_to_another_request_breaks_the_link(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]], wrong_id: Any
) -> None:
    """The guest answers with another id, then with the right one: the link is broken at the first reply, and the
    second (the right one) is never read as this request's or the next one's."""
    link, stream = fake_guest(Step(pieces=[reply_frame(wrong_id, exec_reply_fields()) + reply_frame(1, {})]))
    with pytest.raises(GuestProtocolError, match="answered request"):
        link.request(exec_request(), timeout=30.0)
    assert_broken_for_good(link, stream)


@pytest.mark.parametrize(
    ("trailer", "message"),
    [
        (FRAME_HEADER.pack(Frame.STDOUT, 3)[:3], "after its final reply"),
        (frame(Frame.STDOUT, b"old"), "no request in flight"),
    ],
    ids=["part-of-a-header", "a-whole-frame"],
)
def test_bytes_after_the_final_reply_break_the_link(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]], trailer: bytes, message: str
) -> None:
    """Anything the guest sends with its reply after it (even less than a frame header) would be read as the
    start of the next reply: it is a protocol error at once."""
    link, stream = fake_guest(Step(pieces=[reply_frame(1, exec_reply_fields()) + trailer]))
    with pytest.raises(GuestProtocolError, match=message):
        link.request(exec_request(), timeout=30.0)
    assert_broken_for_good(link, stream)


# Output past the limit -------------------------------------------------------------------------------------------


def test_output_past_the_limit_is_dropped_and_the_reply_says_truncated(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    """A guest that ignores the limit (but stays within twice it): the host keeps exactly the limit of each
    stream and says truncated, even though the guest's own reply says it did not truncate."""
    limit = 100_000
    stdout = b"o" * CHUNK * 2  # 131072: past the limit, within twice it
    stderr = b"e" * 50_000  # within the limit: kept whole
    pieces = [frame(Frame.STDOUT, stdout[i : i + CHUNK]) for i in range(0, len(stdout), CHUNK)]
    pieces += [frame(Frame.STDERR, stderr), reply_frame(1, exec_reply_fields(truncated=False))]
    link, _ = fake_guest(Step(pieces=pieces), Step(pieces=[reply_frame(2, exec_reply_fields())]))
    reply = link.request(exec_request(output_limit=limit), timeout=30.0)
    typed = ExecReply.from_reply(reply)
    assert typed.stdout == "o" * limit
    assert typed.stderr == "e" * 50_000
    assert reply.truncated
    assert typed.truncated
    assert not link.broken
    # The next request starts with fresh counts: it is not truncated.
    again = link.request(exec_request(output_limit=limit), timeout=30.0)
    assert not again.truncated
    assert not ExecReply.from_reply(again).truncated


def test_output_far_past_the_limit_breaks_the_link(fake_guest: Callable[..., tuple[GuestLink, CountingStream]]) -> None:
    """A guest that floods its stdout without end: the link breaks once a stream goes past twice the limit, after
    the host read little more than that."""
    limit = 200_000
    link, stream = fake_guest(Step(forever=frame(Frame.STDOUT, b"x" * CHUNK)))
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(GuestProtocolError, match="far past the request's limit"):
        link.request(exec_request(output_limit=limit), timeout=30.0, on_stdout=seen.append)
    assert time.monotonic() - started < 5
    assert len("".join(seen)) == limit
    assert stream.received <= OVERRUN_FACTOR * limit + 3 * (CHUNK + FRAME_HEADER.size)
    assert_broken_for_good(link, stream)


def test_a_request_with_no_limit_keeps_the_host_cap_of_each_stream_and_stays_sound() -> None:
    """A feed names no output limit (its guest side has none): the host keeps ``HOST_OUTPUT_CAP`` bytes of each
    stream, drops the rest without breaking the link, and says truncated."""
    protocol = LinkProtocol()
    request = FeedRequest(handle=1, data=b"", marker=b"", timeout=5.0)
    protocol.encode_request(request.to_message())
    assembler = ReplyAssembler()
    block = frame(Frame.STDOUT, b"y" * MAX_OUTPUT_FRAME)
    kept = 0
    for _ in range(HOST_OUTPUT_CAP // MAX_OUTPUT_FRAME + 3):
        for event in protocol.feed(block):
            assert isinstance(event, OutputChunk)
            kept += len(event.data)
            assert assembler.add(event) is None
    assert kept == HOST_OUTPUT_CAP
    events = protocol.feed(reply_frame(1, FeedReply(Ended.EXITED, 0).to_message()))
    assert len(events) == 1
    final = events[0]
    assert isinstance(final, FinalReply)
    assert final.truncated
    reply = assembler.add(final)
    assert reply is not None
    typed = FeedReply.from_reply(reply)
    assert typed.truncated
    assert len(typed.stdout) == HOST_OUTPUT_CAP
    assert not protocol.broken


# Collected files over the budget -------------------------------------------------------------------------------


def test_collected_files_over_the_budget_break_the_link(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    """Each file fits the frame bound, but together they pass the request's budget: the link breaks."""
    budget = 100_000
    pieces = [file_frame("a", b"a" * 60_000), file_frame("b", b"b" * 40_001), reply_frame(1, exec_reply_fields())]
    link, stream = fake_guest(Step(pieces=pieces))
    with pytest.raises(GuestProtocolError, match="left of the request's budget"):
        link.request(exec_request(collect_budget=budget), timeout=30.0)
    assert_broken_for_good(link, stream)


def test_collected_files_within_the_budget_arrive_whole(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    budget = 100_000
    pieces = [file_frame("a", b"a" * 60_000), file_frame("b", b"b" * 40_000), reply_frame(1, exec_reply_fields())]
    link, _ = fake_guest(Step(pieces=pieces))
    reply = link.request(exec_request(collect_budget=budget), timeout=30.0)
    assert reply.files == {"a": b"a" * 60_000, "b": b"b" * 40_000}


def test_a_request_that_names_no_budget_accepts_no_file(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    link, stream = fake_guest(Step(pieces=[file_frame("x", b"1"), reply_frame(1, {})]))
    with pytest.raises(GuestProtocolError, match="budget"):
        link.request(PingRequest(), timeout=30.0)
    assert_broken_for_good(link, stream)


# Frames split anywhere ---------------------------------------------------------------------------------------------


def test_frames_split_at_every_byte_boundary_through_a_pipe(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    """One answer per request, each cut in two at a different byte (written apart, so that the host reads the
    halves separately): every one assembles into the same reply."""

    def answer(request_id: int) -> bytes:
        return b"".join(
            [
                frame(Frame.STDOUT, "h\u00e9".encode()),
                frame(Frame.STDERR, b"w"),
                file_frame("f", b"\x00\x01"),
                frame(Frame.STDOUT, "\u6f22".encode()),
                reply_frame(request_id, exec_reply_fields(exit_code=3)),
            ]
        )

    size = len(answer(1))
    cuts = range(1, size)
    steps = [Step(pieces=[answer(n)[:cut], answer(n)[cut:]], pause=0.002) for n, cut in enumerate(cuts, start=1)]
    link, stream = fake_guest(*steps)
    for _cut in cuts:
        reply = ExecReply.from_reply(link.request(exec_request(collect_budget=10), timeout=30.0))
        assert (reply.exit_code, reply.stdout, reply.stderr) == (3, "h\u00e9\u6f22", "w")
        assert dict(reply.files) == {"f": b"\x00\x01"}
    assert len(stream.reads) > len(cuts)  # the halves did arrive apart


# Errors while a reply is read: the link's own break it, the caller's are raised once the reply ended -----------


def test_a_decoding_error_under_strict_is_raised_after_the_whole_reply_and_the_link_goes_on(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    """The rest of the reply is read (nothing of it is left for the next request), then the error is raised; the
    next request gets its own reply."""
    pieces = [frame(Frame.STDOUT, b"\xff\xfe"), frame(Frame.STDOUT, b"more"), reply_frame(1, exec_reply_fields())]
    second = [frame(Frame.STDOUT, b"own"), reply_frame(2, exec_reply_fields())]
    link, _stream = fake_guest(Step(pieces=pieces, pause=0.05), Step(pieces=second))
    with pytest.raises(OutputDecodingError):
        link.request(exec_request(), timeout=30.0, encoding_errors="strict")
    assert not link.broken
    reply = ExecReply.from_reply(link.request(exec_request(), timeout=30.0, encoding_errors="strict"))
    assert reply.stdout == "own"


def test_a_callback_that_raises_is_raised_after_the_whole_reply_and_the_link_goes_on(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    class StopError(Exception):
        pass

    seen: list[str] = []

    def refuse(text: str) -> None:
        seen.append(text)
        raise StopError(text)

    pieces = [frame(Frame.STDERR, b"first"), frame(Frame.STDERR, b"second"), reply_frame(1, exec_reply_fields())]
    second = [frame(Frame.STDERR, b"next"), reply_frame(2, exec_reply_fields())]
    link, _stream = fake_guest(Step(pieces=pieces, pause=0.05), Step(pieces=second))
    with pytest.raises(StopError, match="first"):
        link.request(exec_request(), timeout=30.0, on_stderr=refuse)
    assert seen == ["first"]  # the callback is not called again once it failed
    assert not link.broken
    reply = ExecReply.from_reply(link.request(exec_request(), timeout=30.0))
    assert reply.stderr == "next"


def test_a_guest_that_exits_mid_reply_breaks_the_link(
    fake_guest: Callable[..., tuple[GuestLink, CountingStream]],
) -> None:
    link, stream = fake_guest(Step(pieces=[FRAME_HEADER.pack(Frame.STDOUT, 100) + b"half"], exit=True))
    with pytest.raises(GuestLinkError, match="exited"):
        link.request(exec_request(), timeout=30.0)
    assert_broken_for_good(link, stream)


@pytest.mark.parametrize(
    "body",
    [b'{"id": 1, "exit_code": NaN}', b'{"id": 1, "duration_s": Infinity}', b'{"id": 1, "x": -Infinity}'],
    ids=["nan", "infinity", "minus-infinity"],
)
def test_a_reply_with_non_json_numbers_breaks_the_link(body: bytes) -> None:
    protocol = LinkProtocol()
    protocol.encode_request(exec_request().to_message())
    with pytest.raises(GuestProtocolError, match="not JSON"):
        protocol.feed(frame(Frame.REPLY, body))
    assert protocol.broken


# Every field of every reply type rejects a wrong type ------------------------------------------------------------

INT = "int"
OPTIONAL_INT = "optional int"
NUMBER = "number"
BOOL = "bool"
STR = "str"
OPTIONAL_STR = "optional str"
STRINGS = "list of strings"
ENDED = "an Ended value"

WRONG: dict[str, list[Any]] = {
    INT: [None, True, False, 1.5, 2.0, "1", [], {}, [1]],
    OPTIONAL_INT: [True, 1.5, "1", [], {}],
    NUMBER: [None, True, "1.5", [], {}, [1.5]],
    BOOL: [None, 0, 1, "true", [], {}, [True]],
    STR: [None, 1, True, 1.5, [], {}, ["a"]],
    OPTIONAL_STR: [1, True, 1.5, [], {}, ["a"]],
    STRINGS: [None, "a", 1, True, {}, [1], [None], [["a"]], {"a": "b"}],
    ENDED: [None, 1, True, [], "marker ", "MARKER", "killed"],
}

# Each reply type: a valid sample and the type of each of its fields (every field of its message).
REPLY_TYPES: list[tuple[Callable[[Mapping[str, Any]], Any], Any, dict[str, str]]] = [
    (
        InfoReply.from_fields,
        InfoReply(
            pid=7,
            uid=65534,
            python="/usr/bin/python3",
            workdir_writable=True,
            subreaper=True,
            kill_all=False,
            own_cgroup=True,
            separated=True,
            can_confine=True,
        ),
        {
            Result.PID: INT,
            Result.UID: INT,
            Result.PYTHON: STR,
            Result.WORKDIR_WRITABLE: BOOL,
            Result.SUBREAPER: BOOL,
            Result.KILL_ALL: BOOL,
            Result.OWN_CGROUP: BOOL,
            Result.SEPARATED: BOOL,
            Result.CAN_CONFINE: BOOL,
        },
    ),
    (
        ExecReply.from_fields,
        ExecReply(
            exit_code=1, duration_s=0.5, timed_out=True, truncated=True, limits=("oom",), skipped=("a",), cancelled=True
        ),
        {
            Result.EXIT_CODE: INT,
            Result.DURATION_S: NUMBER,
            Result.TIMED_OUT: BOOL,
            Result.TRUNCATED: BOOL,
            Result.LIMITS: STRINGS,
            Result.SKIPPED: STRINGS,
            Result.CANCELLED: BOOL,
        },
    ),
    (
        PutReply.from_fields,
        PutReply(failed=True, errno=2, reason="no such folder", ancestor="/"),
        {Result.ERRNO: OPTIONAL_INT, Result.REASON: STR, Result.ANCESTOR: STR},
    ),
    (
        ResetReply.from_fields,
        ResetReply(left=("a", "b"), changed=("c",), now=1.5),
        {Result.LEFT: STRINGS, Result.CHANGED: STRINGS, Result.NOW: NUMBER},
    ),
    (SpawnReply.from_fields, SpawnReply(handle=1, pid=42), {Result.HANDLE: INT, Result.PID: INT}),
    (
        FeedReply.from_fields,
        FeedReply(
            Ended.MARKER, None, trailer="0", timed_out_flag=True, interrupted=True, skipped=("a",), truncated=True
        ),
        {
            Result.ENDED: ENDED,
            Result.EXIT_CODE: OPTIONAL_INT,
            Result.TRAILER: OPTIONAL_STR,
            Result.TIMED_OUT: BOOL,
            Result.INTERRUPTED: BOOL,
            Result.TRUNCATED: BOOL,
            Result.SKIPPED: STRINGS,
        },
    ),
    (CloseReply.from_fields, CloseReply(137), {Result.EXIT_CODE: INT}),
]


def _through_the_link(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields as the host reads them off the wire (the guest's JSON writer, the host's reader)."""
    protocol = LinkProtocol()
    protocol.encode_request(PingRequest().to_message())
    data = json.dumps({**fields, Result.ID: 1}).encode()
    (final,) = protocol.feed(frame(Frame.REPLY, data))
    assert isinstance(final, FinalReply)
    return final.fields


def _cases() -> Iterator[Any]:
    for read, sample, types in REPLY_TYPES:
        name = type(sample).__name__
        for field_name, kind in types.items():
            for value in WRONG[kind]:
                yield pytest.param(read, sample, field_name, value, id=f"{name}.{field_name}={value!r}")


@pytest.mark.parametrize(("read", "sample", "types"), REPLY_TYPES, ids=[type(item[1]).__name__ for item in REPLY_TYPES])
def test_the_table_covers_every_field_of_every_reply_type(
    read: Callable[[Mapping[str, Any]], Any], sample: Any, types: dict[str, str]
) -> None:
    """The table below names every field each reply's message has, and the sample itself is read back whole."""
    message = sample.to_message()
    assert set(types) == set(message)
    assert read(_through_the_link(message)) == sample


@pytest.mark.parametrize(("read", "sample", "field_name", "value"), list(_cases()))
def test_every_reply_field_rejects_a_wrong_type(
    read: Callable[[Mapping[str, Any]], Any], sample: Any, field_name: str, value: Any
) -> None:
    fields = _through_the_link({**sample.to_message(), field_name: value})
    with pytest.raises(GuestProtocolError, match=field_name):
        read(fields)


@pytest.mark.parametrize(
    ("read", "sample", "field_name"),
    [
        pytest.param(read, sample, name, id=f"{type(sample).__name__}.{name}")
        for read, sample, types in REPLY_TYPES
        for name in types
        if not (isinstance(sample, PutReply) and name == Result.ERRNO)  # no errno: the put worked
    ],
)
def test_every_reply_field_is_required(read: Callable[[Mapping[str, Any]], Any], sample: Any, field_name: str) -> None:
    fields = _through_the_link({key: value for key, value in sample.to_message().items() if key != field_name})
    with pytest.raises(GuestProtocolError, match=field_name):
        read(fields)


def test_a_huge_integer_in_a_reply_is_a_protocol_error() -> None:
    """More digits than Python converts (a ValueError inside the JSON reader) break the link like bad JSON."""
    protocol = LinkProtocol()
    protocol.encode_request(PingRequest().to_message())
    digits = "9" * 5000
    with pytest.raises(GuestProtocolError):
        protocol.feed(frame(Frame.REPLY, ('{"id": 1, "exit_code": ' + digits + "}").encode()))
    assert protocol.broken


# Engine execs are bounded: the local backend's exec and the Docker/Podman exec stream, without an engine -----------


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[LocalBackend]:
    backend = LocalBackend()
    backend.create(ContainerSpec(image="none", command=[], workdir=str(tmp_path), code_user="", labels={}))
    yield backend
    backend.remove()


@pytest.mark.parametrize(
    "argv",
    [["sleep", "1000"], ["/bin/sh", "-c", "exec >&- 2>&-; sleep 1000"]],
    ids=["silent", "closes-its-pipes-and-lingers"],
)
def test_a_local_exec_past_its_deadline_is_killed_and_named(local_backend: LocalBackend, argv: list[str]) -> None:
    started = time.monotonic()
    with pytest.raises(ContainerError, match=rf"{argv[0]!r} did not finish within its deadline of 0\.5 s"):
        local_backend.exec(Command(argv, timeout=0.5))
    assert time.monotonic() - started < 5


def test_a_local_exec_past_its_byte_cap_is_cut_and_abandoned(local_backend: LocalBackend) -> None:
    flood = [sys.executable, "-c", "import sys\nwhile True: sys.stderr.buffer.write(b'z' * 65536)"]
    started = time.monotonic()
    output = local_backend.exec(Command(flood, timeout=30, output_limit=100_000))
    assert time.monotonic() - started < 10
    assert (output.stdout, output.stderr, output.truncated) == (b"", b"z" * 100_000, True)
    assert output.exit_code == ABANDONED_EXIT
    exact = local_backend.exec(Command(["/bin/sh", "-c", "printf 12345; exit 4"], output_limit=5))
    assert (exact.exit_code, exact.stdout, exact.truncated) == (4, b"12345", False)


def _mux(stream_id: int, data: bytes) -> bytes:
    return MUX_HEADER.pack(stream_id, len(data)) + data


@pytest.fixture
def engine_socket() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Both ends of a socket: the exec stream's side, and the side that plays the engine."""
    ours, engine = socket.socketpair()
    yield ours, engine
    ours.close()
    engine.close()


def test_an_exec_stream_that_dribbles_is_abandoned_at_its_deadline(
    engine_socket: tuple[socket.socket, socket.socket],
) -> None:
    """One byte every 50 ms keeps every single read alive: the deadline is for the whole exec, not per read."""
    ours, engine = engine_socket
    stream = DockerExecStream(ours)
    stop = threading.Event()

    def dribble() -> None:
        data = _mux(STDOUT, b"x" * 1000)
        with contextlib.suppress(OSError):
            for byte in data:
                if stop.is_set():
                    return
                engine.send(bytes([byte]))
                time.sleep(0.05)

    writer = threading.Thread(target=dribble, daemon=True)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            stream.read_all(1.0, 1024)
    finally:
        stop.set()
    assert time.monotonic() - started < 3
    writer.join(5)


def test_an_exec_stream_is_cut_at_its_byte_cap(engine_socket: tuple[socket.socket, socket.socket]) -> None:
    ours, engine = engine_socket
    engine.sendall(_mux(STDERR, b"e" * 10) + _mux(STDOUT, b"a" * 600) + _mux(STDOUT, b"b" * 600))
    stdout, stderr, truncated = DockerExecStream(ours).read_all(5.0, 1000)
    assert (stdout, stderr, truncated) == (b"a" * 600 + b"b" * 400, b"e" * 10, True)


def test_an_exec_stream_under_its_cap_is_read_to_its_end(engine_socket: tuple[socket.socket, socket.socket]) -> None:
    ours, engine = engine_socket
    engine.sendall(_mux(STDOUT, b"a" * 600) + _mux(STDERR, b"e" * 1000))
    engine.shutdown(socket.SHUT_WR)
    stdout, stderr, truncated = DockerExecStream(ours).read_all(5.0, 1000)
    assert (stdout, stderr, truncated) == (b"a" * 600, b"e" * 1000, False)


def test_a_guest_stream_flooding_stderr_cannot_hold_a_receive_past_its_wait(
    engine_socket: tuple[socket.socket, socket.socket],
) -> None:
    """The helper's own stderr is logged, not returned: an endless flood of it still ends ``recv`` on time."""
    ours, engine = engine_socket
    stream = DockerExecStream(ours)
    stop = threading.Event()

    def flood() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                engine.sendall(_mux(STDERR, b"noise\n" * 100))
                time.sleep(0.01)

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            stream.recv(0.5)
    finally:
        stop.set()
    assert time.monotonic() - started < 3
    writer.join(5)
    assert stream.stderr_tail.endswith(b"noise\n")
