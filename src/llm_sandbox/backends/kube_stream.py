"""Exec over the Kubernetes websocket channel protocol (``v4.channel.k8s.io`` / ``v5.channel.k8s.io``).

The connection is made by the official client (``kubernetes.stream.stream(..., _preload_content=False)``: its
auth, TLS and proxy handling), then its frames are read here, from the client's websocket, for three reasons:
the channel data stays bytes on every client version (older ones decode it as UTF-8, and the guest helper's
protocol is binary), nothing accumulates in the client's capture buffer over a long session, and the final
``Status`` on channel 3 is parsed for every shape a server sends (an exit code, or a start failure without one).

Channels: 0 stdin, 1 stdout, 2 stderr, 3 the final Status; in v5, ``[255, 0]`` closes stdin.
"""

from __future__ import annotations

import json
import logging
import select
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import (
    ABANDONED_EXIT,
    DEFAULT_EXEC_OUTPUT_LIMIT,
    DEFAULT_EXEC_TIMEOUT_S,
    ExecOutput,
)
from llm_sandbox.errors import ContainerError

logger = logging.getLogger(__name__)

STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255
V5_PROTOCOL = "v5.channel.k8s.io"
SEND_CHUNK = 256 * 1024
FRAME_TIMEOUT_S = 60.0  # once a frame has begun, the rest must arrive within this
# GNU tar writes 10240-byte records (-b 20): its end-of-archive marker always lies in the last 10752 bytes.
TAR_BLOCKING_FACTOR = 20
TAR_HOLD_BACK = 20 * 512 + 512
STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class ExitStatus:
    """The end of an exec: its exit code, or None when the command could not be started (``message`` says why)."""

    exit_code: int | None
    message: str = ""

    def shell_exit_code(self) -> int:
        """The exit code a shell would report (127: command not found, 126: could not be run)."""
        if self.exit_code is not None:
            return self.exit_code
        lowered = self.message.lower()
        return 127 if "not found" in lowered or "no such file" in lowered else 126


def parse_status(payload: bytes) -> ExitStatus:
    """Read the Status object of channel 3."""
    try:
        status = json.loads(payload.decode("utf-8", "replace"))
    except ValueError:
        return ExitStatus(None, payload.decode("utf-8", "replace").strip())
    if not isinstance(status, dict):
        return ExitStatus(None, str(status))
    if status.get("status") == "Success":
        return ExitStatus(0)
    message = str(status.get("message") or "")
    for cause in (status.get("details") or {}).get("causes") or []:
        if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
            try:
                return ExitStatus(int(str(cause.get("message"))), message)
            except ValueError:
                break
    return ExitStatus(None, message or "the exec failed without a message")


class ExecChannels:
    """The channel frames of one exec connection (a WSClient returned by ``kubernetes.stream.stream``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._ws = client.sock  # websocket.WebSocket
        self.protocol = str(getattr(client, "subprotocol", None) or self._ws.getsubprotocol() or "")
        self.status: ExitStatus | None = None
        self.ended = False
        self._ws.settimeout(FRAME_TIMEOUT_S)

    def send_stdin(self, data: bytes) -> None:
        from websocket import ABNF, WebSocketException

        view = memoryview(data)
        try:
            for start in range(0, len(view), SEND_CHUNK):
                self._ws.send(b"\x00" + bytes(view[start : start + SEND_CHUNK]), opcode=ABNF.OPCODE_BINARY)
        except WebSocketException as error:
            raise ConnectionError(f"the exec connection to the pod closed: {error}") from error

    def close_stdin(self) -> None:
        """End of input for the process (v5 only; a v4 server has no way to say it)."""
        if self.protocol != V5_PROTOCOL or self.ended:
            return
        from websocket import ABNF, WebSocketException

        try:
            self._ws.send(bytes([CLOSE, STDIN]), opcode=ABNF.OPCODE_BINARY)
        except (WebSocketException, OSError) as error:
            logger.debug("closing stdin of the exec failed: %s", error)

    def next_frame(self, timeout: float | None) -> tuple[int, bytes] | None:
        """The next (channel, data) of stdout or stderr; None at the end; TimeoutError when none came in time."""
        from websocket import ABNF, WebSocketException

        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._readable(remaining):
                raise TimeoutError("no output from the pod in time")
            try:
                opcode, frame = self._ws.recv_data_frame(True)
            except (WebSocketException, OSError) as error:
                logger.debug("exec connection ended: %s", error)
                self.ended = True
                break
            if opcode == ABNF.OPCODE_CLOSE:
                self.ended = True
                break
            data = frame.data if isinstance(frame.data, bytes) else str(frame.data).encode()
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not data:
                continue
            if data[0] == ERROR:
                self.status = parse_status(data[1:])
            elif data[0] in (STDOUT, STDERR):
                return data[0], data[1:]
        return None

    def _readable(self, timeout: float | None) -> bool:
        sock = self._ws.sock
        if sock is None:
            return True  # closed underneath: the read reports the end
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000) + 1))

    def close(self) -> None:
        self.ended = True
        try:
            self._ws.close(timeout=1)
        except Exception:
            logger.debug("closing the exec connection failed", exc_info=True)


def run_to_end(
    channels: ExecChannels,
    stdin: bytes | None = None,
    limit: int = DEFAULT_EXEC_OUTPUT_LIMIT,
    timeout: float = DEFAULT_EXEC_TIMEOUT_S,
    what: str = "the command",
) -> ExecOutput:
    """Feed ``stdin`` (then close it), collect stdout and stderr and the exit code, within ``timeout`` seconds.

    Past the deadline the exec is abandoned (the connection closed) and ContainerError names ``what``. Once a stream
    goes past ``limit`` bytes its output is cut there and the exec abandoned: ``truncated``, ``ABANDONED_EXIT``.
    """
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        if stdin is not None:
            channels.send_stdin(stdin)
            channels.close_stdin()
        if _collect(channels, deadline, limit, out, err):
            return ExecOutput(ABANDONED_EXIT, bytes(out), bytes(err), truncated=True)
    except TimeoutError:
        raise ContainerError(
            f"{what} did not finish within its deadline of {timeout:g} s in the pod; it was abandoned"
        ) from None
    finally:
        channels.close()
    status = channels.status
    if status is None:
        raise ContainerError("the exec connection to the pod ended before the command finished")
    if status.exit_code is None:
        err += status.message.encode() + b"\n"
    return ExecOutput(status.shell_exit_code(), bytes(out), bytes(err))


def _collect(channels: ExecChannels, deadline: float, limit: int, out: bytearray, err: bytearray) -> bool:
    """Read stdout and stderr into ``out`` and ``err`` until the end; True when one went past ``limit`` (the
    reading stops there); TimeoutError at ``deadline``."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the exec did not end in time")
        frame = channels.next_frame(remaining)
        if frame is None:
            return False
        target = out if frame[0] == STDOUT else err
        room = limit - len(target)
        if len(frame[1]) > room:
            target += frame[1][:room]
            return True
        target += frame[1]


class KubeExecStream:
    """The guest helper's stdin and stdout over one exec connection (a DuplexStream); stderr is logged."""

    def __init__(self, channels: ExecChannels) -> None:
        self._channels = channels

    def send(self, data: bytes) -> None:
        self._channels.send_stdin(data)

    def recv(self, timeout: float | None) -> bytes:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            frame = self._channels.next_frame(remaining)
            if frame is None:
                return b""
            channel, data = frame
            if channel == STDERR:
                logger.debug("guest stderr: %s", data.decode("utf-8", "replace").rstrip())
            elif data:
                return data

    def close(self) -> None:
        self._channels.close_stdin()
        self._channels.close()


class TarDownload:
    """The chunks of ``tar cf -`` run in the pod, started on first read.

    The last ``TAR_HOLD_BACK`` bytes (which hold tar's end-of-archive marker) are released only after tar has
    exited successfully, so that an extraction can never complete on the output of a tar that failed.
    """

    def __init__(self, start: Callable[[], ExecChannels], what: str, idle_timeout: float = 120.0) -> None:
        self._start = start
        self._what = what
        self._idle_timeout = idle_timeout
        self._channels: ExecChannels | None = None

    def chunks(self) -> Iterator[bytes]:
        channels = self._channels = self._start()
        held, errors = bytearray(), bytearray()
        while True:
            try:
                frame = channels.next_frame(self._idle_timeout)
            except TimeoutError as error:
                raise ContainerError(f"{self._what}: tar sent nothing for {self._idle_timeout:g} s") from error
            if frame is None:
                break
            channel, data = frame
            if channel == STDERR:
                errors += data[: max(0, STDERR_KEEP - len(errors))]
                continue
            held += data
            if len(held) > TAR_HOLD_BACK:
                cut = len(held) - TAR_HOLD_BACK
                yield bytes(held[:cut])
                del held[:cut]
        status = channels.status
        if status is None:
            raise ContainerError(f"{self._what}: the connection to the pod ended before tar finished")
        if status.exit_code != 0:
            detail = errors.decode("utf-8", "replace").strip() or status.message
            raise ContainerError(f"{self._what}: tar failed in the pod (exit {status.shell_exit_code()}): {detail}")
        if held:
            yield bytes(held)

    def close(self) -> None:
        if self._channels is not None:
            self._channels.close()
