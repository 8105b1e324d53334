"""The host's protocol object (bytes in, events out) and the reply assembler, fed with frames as the guest writes
them: split anywhere, out of order, of unknown kinds, with wrong ids, after a broken reply."""

from __future__ import annotations

import json
import marshal
from typing import Any

import pytest

from llm_sandbox.errors import OutputDecodingError
from llm_sandbox.guest.protocol import (
    FRAME_HEADER,
    Field,
    Frame,
    Result,
    exec_reply,
    file_frame_head,
    info_request,
    ping_request,
)
from llm_sandbox.guest.wire import to_json
from llm_sandbox.link import (
    CollectedFile,
    Event,
    FinalReply,
    GuestLinkError,
    GuestProtocolError,
    LinkProtocol,
    OutputChunk,
    ReplyAssembler,
    ReplyHandOverError,
)


def frame(kind: bytes, body: bytes) -> bytes:
    return FRAME_HEADER.pack(kind, len(body)) + body


def reply_frame(request_id: Any, fields: dict[str, Any]) -> bytes:
    """A reply frame exactly as the guest writes it (its own JSON writer)."""
    return frame(Frame.REPLY, to_json({**fields, Result.ID: request_id}).encode())


def file_frame(name: str, data: bytes) -> bytes:
    return frame(Frame.FILE, file_frame_head(name) + data)


def in_flight(protocol: LinkProtocol) -> int:
    """A request in flight that may collect files (a request that names no budget gets none)."""
    protocol.encode_request({**ping_request(), Field.COLLECT_BUDGET: 1024})
    assert protocol.pending is not None
    return protocol.pending


def full_reply(request_id: int) -> bytes:
    return b"".join(
        [
            frame(Frame.STDOUT, "héllo ".encode()),
            frame(Frame.STDERR, b"warn\n"),
            file_frame("out/r\u00e9sult.txt", b"\x00\x01binary"),
            frame(Frame.STDOUT, "wörld\n".encode()),
            file_frame("empty", b""),
            reply_frame(request_id, exec_reply(3, 0.5, limits=["oom"])),
        ]
    )


EXPECTED_EVENTS: list[Event] = [
    OutputChunk(Frame.STDOUT, "héllo ".encode()),
    OutputChunk(Frame.STDERR, b"warn\n"),
    CollectedFile("out/r\u00e9sult.txt", b"\x00\x01binary"),
    OutputChunk(Frame.STDOUT, "wörld\n".encode()),
    CollectedFile("empty", b""),
]


def test_a_request_is_a_marshalled_message_with_its_id_and_its_payload_frame() -> None:
    protocol = LinkProtocol()
    data = protocol.encode_request(info_request("/w", kill_all=False, own_cgroup=True), payload=b"tar")
    kind, size = FRAME_HEADER.unpack_from(data)
    assert kind == Frame.REQUEST
    message = marshal.loads(data[FRAME_HEADER.size : FRAME_HEADER.size + size])
    assert message[Field.ID] == protocol.pending == 1
    assert message[Field.WITH_PAYLOAD] is True
    assert message[Field.WORKDIR] == "/w"
    assert data[FRAME_HEADER.size + size :] == frame(Frame.PAYLOAD, b"tar")


def test_one_request_at_a_time() -> None:
    protocol = LinkProtocol()
    in_flight(protocol)
    with pytest.raises(GuestProtocolError, match="in flight"):
        protocol.encode_request(ping_request())


def test_the_whole_reply_in_one_piece() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    events = protocol.feed(full_reply(request_id))
    assert events[:-1] == EXPECTED_EVENTS
    final = events[-1]
    assert isinstance(final, FinalReply)
    assert final.fields[Result.EXIT_CODE] == 3
    assert final.fields[Result.LIMITS] == ["oom"]
    assert protocol.pending is None


def test_frames_split_at_every_byte_boundary() -> None:
    data = full_reply(1)
    for cut in range(len(data) + 1):
        protocol = LinkProtocol()
        assert in_flight(protocol) == 1
        events = protocol.feed(data[:cut]) + protocol.feed(data[cut:])
        assert events[:-1] == EXPECTED_EVENTS, cut
        assert isinstance(events[-1], FinalReply)
        assert protocol.pending is None


def test_frames_fed_one_byte_at_a_time_assemble_into_the_reply() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    seen: list[str] = []
    assembler = ReplyAssembler(on_stdout=seen.append)
    reply = None
    for byte in full_reply(request_id):
        for event in protocol.feed(bytes([byte])):
            reply = assembler.add(event)
    assert reply is not None
    assert reply.stdout == "héllo wörld\n" == "".join(seen)
    assert reply.stderr == "warn\n"
    assert reply.files == {"out/r\u00e9sult.txt": b"\x00\x01binary", "empty": b""}
    assert list(reply.files) == ["out/r\u00e9sult.txt", "empty"]
    assert reply.error is None


def test_a_character_split_across_output_frames_stays_whole() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    text = "漢字".encode()
    data = frame(Frame.STDOUT, text[:2]) + frame(Frame.STDOUT, text[2:]) + reply_frame(request_id, {})
    assembler = ReplyAssembler(encoding_errors="strict")
    replies = [assembler.add(event) for event in protocol.feed(data)]
    assert replies[-1] is not None
    assert replies[-1].stdout == "漢字"


@pytest.mark.parametrize("wrong_id", [2, 0, None, "1", True])
def test_a_reply_to_another_request_is_a_protocol_error_and_breaks_the_link(wrong_id: Any) -> None:
    protocol = LinkProtocol()
    assert in_flight(protocol) == 1
    with pytest.raises(GuestProtocolError, match="answered request"):
        protocol.feed(reply_frame(wrong_id, {}))
    assert protocol.broken
    with pytest.raises(GuestLinkError):
        protocol.encode_request(ping_request())


def test_an_unknown_frame_kind_is_a_protocol_error_never_dropped() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    with pytest.raises(GuestProtocolError, match="unknown kind"):
        protocol.feed(frame(Frame.STDOUT, b"ok") + frame(b"X", b"?") + reply_frame(request_id, {}))
    assert protocol.broken
    with pytest.raises(GuestLinkError):
        protocol.feed(b"")


def test_a_frame_with_no_request_in_flight_is_a_protocol_error() -> None:
    protocol = LinkProtocol()
    with pytest.raises(GuestProtocolError, match="no request in flight"):
        protocol.feed(frame(Frame.STDOUT, b"stale"))
    assert protocol.broken


def test_frames_after_the_final_reply_are_a_protocol_error() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    with pytest.raises(GuestProtocolError, match="no request in flight"):
        protocol.feed(reply_frame(request_id, {}) + frame(Frame.STDOUT, b"late"))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"id": 1, "error": 5}', b"\xff"],
    ids=["not-json", "not-an-object", "error-not-a-string", "not-utf8"],
)
def test_a_malformed_reply_is_a_protocol_error(body: bytes) -> None:
    protocol = LinkProtocol()
    assert in_flight(protocol) == 1
    with pytest.raises(GuestProtocolError):
        protocol.feed(frame(Frame.REPLY, body))
    assert protocol.broken


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x05abc"], ids=["empty", "half-a-length", "short-name"])
def test_a_malformed_file_frame_is_a_protocol_error(body: bytes) -> None:
    protocol = LinkProtocol()
    in_flight(protocol)
    with pytest.raises(GuestProtocolError, match="file frame"):
        protocol.feed(frame(Frame.FILE, body))


def test_more_files_than_the_request_counts_is_a_protocol_error() -> None:
    protocol = LinkProtocol()
    protocol.encode_request({**ping_request(), Field.COLLECT_BUDGET: 1024, Field.COLLECT_COUNT: 2})
    events = protocol.feed(file_frame("a", b"") + file_frame("b", b""))
    assert [event.name for event in events if isinstance(event, CollectedFile)] == ["a", "b"]
    with pytest.raises(GuestProtocolError, match="more collected files"):
        protocol.feed(file_frame("c", b""))
    assert protocol.broken


def test_an_error_reply_is_a_reply() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    events = protocol.feed(reply_frame(request_id, {Result.ERROR: "boom"}))
    reply = ReplyAssembler().add(events[-1])
    assert reply is not None
    assert reply.error == "boom"


def test_a_reply_that_cannot_be_decoded_is_read_to_its_end_and_the_link_goes_on() -> None:
    """A decoding error in the middle of a reply (strict decoding): the rest of the reply is still read, the error
    is raised once it ended, and the next request's reply is its own (nothing stale is left on the link)."""
    protocol = LinkProtocol()
    request_id = in_flight(protocol)
    assembler = ReplyAssembler(encoding_errors="strict")
    data = frame(Frame.STDOUT, b"\xff\xfe") + frame(Frame.STDOUT, b"more") + reply_frame(request_id, {})
    events = protocol.feed(data)
    assert [assembler.add(event) for event in events[:-1]] == [None, None]
    with pytest.raises(ReplyHandOverError) as raised:
        assembler.add(events[-1])
    assert isinstance(raised.value.error, OutputDecodingError)
    assert isinstance(raised.value.error, UnicodeDecodeError)
    assert not protocol.broken
    next_id = in_flight(protocol)
    reply = ReplyAssembler().add(protocol.feed(frame(Frame.STDOUT, b"own") + reply_frame(next_id, {}))[-1])
    assert reply is None or reply.stdout == ""  # the final event alone: output went to another assembler
    assert protocol.pending is None


def test_a_callbacks_error_is_raised_after_the_reply_and_the_link_goes_on() -> None:
    protocol = LinkProtocol()
    request_id = in_flight(protocol)

    def refuse(text: str) -> None:
        raise RuntimeError("the caller's own bug")

    assembler = ReplyAssembler(on_stdout=refuse)
    events = protocol.feed(frame(Frame.STDOUT, b"a") + frame(Frame.STDOUT, b"b") + reply_frame(request_id, {}))
    assert [assembler.add(event) for event in events[:-1]] == [None, None]  # kept, not raised, mid-reply
    with pytest.raises(ReplyHandOverError) as raised:
        assembler.add(events[-1])
    assert isinstance(raised.value.error, RuntimeError)
    assert not protocol.broken


def test_the_guest_json_writer_and_the_host_reader_agree_on_a_reply() -> None:
    fields = exec_reply(0, 1.25, skipped=["a\udcff", 'q"uote'])
    assert json.loads(to_json(fields)) == fields
