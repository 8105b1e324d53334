"""The exec websocket of the fake API server, bridged to a Docker exec in the pod's backing container.

Channel protocol (``v4.channel.k8s.io`` and ``v5.channel.k8s.io``): every binary message starts with a channel
byte. 0 is the process's stdin (client to server), 1 stdout, 2 stderr, 3 the error channel that carries one
``Status`` JSON when the process ends (``Success``, or ``Failure`` with reason ``NonZeroExitCode`` and the exit
code in ``details.causes``, or a plain ``Failure`` when the command could not be started). In v5 the client may
send ``[255, 0]`` to close stdin (the process then reads end of file). The server then closes the websocket with a
normal close frame.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from typing import Any

from llm_sandbox.testing.websocket import OP_BINARY, OP_TEXT, ServerWebSocket, WebSocketProtocolError

logger = logging.getLogger(__name__)

V4, V5 = "v4.channel.k8s.io", "v5.channel.k8s.io"
SUPPORTED_PROTOCOLS = (V5, V4)  # preference order when a client offers both
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255
DOCKER_HEADER = struct.Struct(">BxxxI")
RUNTIME_FAILURE = b"OCI runtime exec failed"
CLOSE_WAIT_S = 2.0


def exit_status(argv: list[str], exit_code: int) -> dict[str, Any]:
    """The error-channel Status for a process that ended with ``exit_code``."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            f"command terminated with non-zero exit code: error executing command {argv}, exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def start_failure(message: str) -> dict[str, Any]:
    """The error-channel Status when the runtime could not start the command (no exit code)."""
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500}


class ExecBridge:
    """One exec: the websocket on one side, the Docker exec's hijacked connection on the other."""

    def __init__(self, ws: ServerWebSocket, docker_api: Any, container_id: str, argv: list[str], protocol: str) -> None:
        self._ws = ws
        self._api = docker_api
        self._container_id = container_id
        self._argv = argv
        self._protocol = protocol
        self._done = threading.Event()

    def run(self, *, stdin: bool, stdout: bool, stderr: bool) -> None:
        exec_id = self._api.exec_create(
            self._container_id, self._argv, stdin=stdin, stdout=stdout, stderr=stderr, tty=False
        )["Id"]
        raw = self._api.exec_start(exec_id, socket=True)
        sock: socket.socket = getattr(raw, "_sock", raw)
        pump = threading.Thread(target=self._pump, args=(sock, exec_id), name="fake-kube-exec-out", daemon=True)
        pump.start()
        try:
            self._relay_input(sock, stdin)
        finally:
            self._done.set()
            # The client left (or finished): the process loses its stdin and, at its next write, its stdout.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            pump.join(timeout=10)
            sock.close()
            getattr(raw, "close", lambda: None)()

    def _relay_input(self, sock: socket.socket, stdin: bool) -> None:
        while True:
            try:
                message = self._ws.receive()
            except (OSError, WebSocketProtocolError) as error:
                logger.debug("exec websocket ended: %s", error)
                return
            if message is None:
                return
            opcode, payload = message
            if opcode not in (OP_BINARY, OP_TEXT) or not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel == STDIN and stdin and data:
                try:
                    sock.sendall(data)
                except OSError:
                    pass  # the process is gone or closed its stdin: like a kubelet, drop the input
            elif channel == CLOSE and self._protocol == V5 and data[:1] == bytes([STDIN]):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def _pump(self, sock: socket.socket, exec_id: str) -> None:
        """Docker's multiplexed output to channels 1 and 2; then the Status on channel 3 and the close frame."""
        first = True
        failure = b""
        buffer = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while len(buffer) >= DOCKER_HEADER.size:
                    stream, size = DOCKER_HEADER.unpack_from(buffer)
                    if len(buffer) < DOCKER_HEADER.size + size:
                        break
                    data = buffer[DOCKER_HEADER.size : DOCKER_HEADER.size + size]
                    buffer = buffer[DOCKER_HEADER.size + size :]
                    if first and data.startswith(RUNTIME_FAILURE):
                        failure = data
                        continue
                    first = False
                    self._ws.send_binary(bytes([STDOUT if stream == 1 else STDERR]) + data)
        except (OSError, ConnectionError):
            pass  # the client went away
        try:
            status = self._final_status(exec_id, failure)
            self._ws.send_binary(bytes([ERROR]) + json.dumps(status).encode())
            self._ws.close()
        except (OSError, ConnectionError):
            pass
        if not self._done.wait(CLOSE_WAIT_S):
            self._ws.abort()

    def _final_status(self, exec_id: str, failure: bytes) -> dict[str, Any]:
        if failure:
            return start_failure(failure.decode("utf-8", "replace").strip())
        deadline = time.monotonic() + 5
        while True:
            inspected = self._api.exec_inspect(exec_id)
            if not inspected.get("Running") or time.monotonic() > deadline:
                return exit_status(self._argv, int(inspected.get("ExitCode") or 0))
            time.sleep(0.01)
