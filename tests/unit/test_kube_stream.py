"""The exec channel logic and the fake API server's pure parts: Status parsing, tar hold-back, websocket framing,
label selectors, quantities, admission."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm_sandbox import ContainerError
from llm_sandbox.backends.kube_stream import STDERR, STDOUT, TAR_HOLD_BACK, ExitStatus, TarDownload, parse_status
from llm_sandbox.testing.fake_kube_admission import ApiError, label_changes, restricted_violations, validate_pod
from llm_sandbox.testing.fake_kube_exec import exit_status, start_failure
from llm_sandbox.testing.fake_kube_node import quantity
from llm_sandbox.testing.fake_kube_status import pod_phase, selector_matches
from llm_sandbox.testing.websocket import (
    OP_BINARY,
    OP_PING,
    WebSocketProtocolError,
    accept_key,
    apply_mask,
    encode_frame,
    read_frame,
)


def test_status_objects_give_the_real_exit_code() -> None:
    assert parse_status(json.dumps(exit_status(["x"], 0)).encode()) == ExitStatus(0)
    assert parse_status(json.dumps(exit_status(["x"], 42)).encode()).exit_code == 42
    failed = parse_status(json.dumps(start_failure('exec: "nope": executable file not found in $PATH')).encode())
    assert failed.exit_code is None and failed.shell_exit_code() == 127
    assert ExitStatus(None, "permission denied").shell_exit_code() == 126
    assert parse_status(b"not json").message == "not json"


class _Channels:
    """Plays the exec channels of one ``tar cf -``: frames, then a final status."""

    def __init__(self, frames: list[tuple[int, bytes]], status: ExitStatus | None) -> None:
        self._frames: Iterator[tuple[int, bytes]] = iter(frames)
        self._final = status
        self.status: ExitStatus | None = None
        self.closed = False

    def next_frame(self, timeout: float | None) -> tuple[int, bytes] | None:
        frame = next(self._frames, None)
        if frame is None:
            self.status = self._final
        return frame

    def close(self) -> None:
        self.closed = True


def _download(frames: list[tuple[int, bytes]], status: ExitStatus | None) -> tuple[TarDownload, _Channels]:
    channels = _Channels(frames, status)
    return TarDownload(lambda: channels, "copying x"), channels  # type: ignore[arg-type,return-value]


def test_the_end_of_the_archive_is_released_only_after_tar_succeeded() -> None:
    data = bytes(range(256)) * 100
    download, _ = _download([(STDOUT, data[:9000]), (STDERR, b"warning"), (STDOUT, data[9000:])], ExitStatus(0))
    chunks = download.chunks()
    first = next(chunks)
    assert len(first) == len(data) - TAR_HOLD_BACK
    assert first + b"".join(chunks) == data


def test_a_failed_tar_never_yields_its_last_bytes() -> None:
    download, channels = _download([(STDOUT, b"x" * 20000), (STDERR, b"tar: cannot open")], ExitStatus(2, "exit 2"))
    chunks = download.chunks()
    assert len(next(chunks)) == 20000 - TAR_HOLD_BACK
    with pytest.raises(ContainerError, match="tar failed in the pod \\(exit 2\\): tar: cannot open"):
        next(chunks)
    download.close()
    assert channels.closed
    lost, _ = _download([(STDOUT, b"x")], None)
    with pytest.raises(ContainerError, match="ended before tar finished"):
        list(lost.chunks())


def test_websocket_frames_round_trip_masked_and_of_every_length_class() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3
    for size in (0, 125, 126, 65535, 65536):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        wire = encode_frame(OP_BINARY, payload, mask=b"\x01\x02\x03\x04")
        assert read_frame(io.BytesIO(wire)) == (True, OP_BINARY, payload)
    assert apply_mask(apply_mask(b"hello", b"abcd"), b"abcd") == b"hello"
    with pytest.raises(WebSocketProtocolError, match="masked"):
        read_frame(io.BytesIO(encode_frame(OP_BINARY, b"x")))
    with pytest.raises(WebSocketProtocolError, match="control"):
        read_frame(io.BytesIO(encode_frame(OP_PING, b"x" * 126, mask=b"abcd")))
    assert read_frame(io.BytesIO(encode_frame(OP_BINARY, b"abc", mask=b"abcd")[:5])) is None


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("a=1", True),
        ("a==1,b", True),
        ("a!=1", False),
        ("!b", False),
        ("c in (x, y)", False),
        ("a in (1,2),b notin (x)", True),
        ("missing", False),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert selector_matches(selector, {"a": "1", "b": "2"}) is matches


def test_pod_phases_follow_the_containers() -> None:
    assert pod_phase([("waiting", None), ("running", None)]) == "Pending"
    assert pod_phase([("running", None), ("terminated", 0)]) == "Running"
    assert pod_phase([("terminated", 0), ("terminated", 0)]) == "Succeeded"
    assert pod_phase([("terminated", 0), ("terminated", 1)]) == "Failed"


def test_quantities() -> None:
    assert quantity("512Mi") == 512 * 1024**2
    assert quantity("500m") == 0.5
    assert quantity("2") == 2
    with pytest.raises(ValueError, match="quantity"):
        quantity("lots")


def _invalid_causes(body: dict[str, Any], name: str = "p") -> list[str]:
    with pytest.raises(ApiError) as raised:
        validate_pod(body, name)
    assert raised.value.code == 422
    return [cause["field"] for cause in (raised.value.details or {})["causes"]]


def test_the_fake_validates_pods_like_the_api_server() -> None:
    assert _invalid_causes({"metadata": {}, "spec": {"containers": []}}) == ["spec.containers"]
    fields = _invalid_causes(
        {"metadata": {"labels": {"ok": "bad value"}}, "spec": {"containers": [{"name": "A_b"}, {"name": "c"}]}}, "Bad"
    )
    assert fields == [
        "metadata.name",
        "metadata.labels",
        "spec.containers[0].name",
        "spec.containers[0].image",
        "spec.containers[1].image",
    ]
    assert restricted_violations({"containers": [{"name": "c"}]})  # nothing set: not restricted
    with pytest.raises(ApiError, match="jsonpatch"):
        label_changes({"metadata": {}}, "application/json-patch+json")
    patch = [
        {"op": "add", "path": "/metadata/labels/a~1b", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/c"},
    ]
    assert label_changes(patch, "application/json-patch+json") == {("labels", "a/b"): "1", ("labels", "c"): None}
    assert label_changes({"metadata": {"labels": {"x": None}}}, "application/merge-patch+json") == {
        ("labels", "x"): None
    }
