"""The Podman backend: the Podman API service through the podman SDK.

Podman differs from Docker in ways the caller never sees: containers start on the ``podman`` bridge and are cut
off from it before they start (Podman cannot connect a container created with ``--network none``); the init is
catatonit; ulimits are given in full (an explicit list replaces the engine's defaults, which may exceed the
host's hard limits); and the workdir is made writable from inside, since Podman ignores copyUIDGID.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from llm_sandbox.backends.base import Command, ContainerSpec
from llm_sandbox.backends.docker_stream import DockerExecStream
from llm_sandbox.backends.engine_errors import engine_errors
from llm_sandbox.backends.oci import ARCHIVE_CHUNK, OciBackend, decode_path_stat, shared_client
from llm_sandbox.backends.runtime_options import podman_create_options
from llm_sandbox.backends.sdk import import_sdk

ROOT_SOCKET = "/run/podman/podman.sock"
NETWORK = "podman"
EXEC_HANDSHAKE_TIMEOUT_S = 60.0
# An install window's network. netavark 1.4 (Podman 4.3) keeps isolated networks apart from each other: a window
# cannot reach another sandbox's window (sandboxes are on no other network), but it can still reach containers on
# a non-isolated network such as the default "podman" (its "isolate=strict" arrived in later versions).
ISOLATED_BRIDGE = {"isolate": "true"}


def default_podman_socket() -> str:
    """CONTAINER_HOST, else the root service socket, else the user's ($XDG_RUNTIME_DIR/podman/podman.sock)."""
    host = os.environ.get("CONTAINER_HOST")
    if host:
        return host
    if os.path.exists(ROOT_SOCKET):
        return f"unix://{ROOT_SOCKET}"
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return f"unix://{runtime_dir}/podman/podman.sock"


def default_podman_client() -> Any:
    podman = import_sdk("podman", extra="podman")
    with engine_errors("connecting to the Podman service", sdk="podman"):
        client = podman.PodmanClient(base_url=default_podman_socket())
        client.ping()
        return client


def shared_podman_client() -> Any:
    """The process's default client for the default socket, made once."""
    return shared_client(("podman", default_podman_socket()), default_podman_client)


class PodmanBackend(OciBackend):
    """One container on a Podman service."""

    sdk = "podman"

    def _default_client(self) -> Any:
        return shared_podman_client()

    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
        return podman_create_options(spec)

    def _prepare(self, spec: ContainerSpec) -> None:
        if not spec.network_enabled:
            self._switch_network(False)

    def _after_start(self, spec: ContainerSpec) -> None:
        # Root in the container has no capabilities: it can neither chown nor create a folder under a read-only
        # one (Podman's / is 0555). The engine can: a missing workdir arrives as a folder entry of a tar, open to
        # the code user (sticky, like /tmp), since Podman ignores copyUIDGID. An image that already has the
        # workdir is untouched.
        probe = Command(["/bin/sh", "-c", 'test -d "$1"', "sh", spec.workdir], user="0")
        if self.exec(probe).exit_code == 0:
            return
        self.put_archive("/", _folders_archive(spec.workdir))

    def _checked(self, response: Any) -> Any:
        response.raise_for_status()
        return response

    def _put_archive(self, path: str, data: bytes, keep_owner: bool) -> None:
        # Podman ignores copyUIDGID (see _after_start), but it is harmless to say what we mean.
        params = {"path": path, "copyUIDGID": "1" if keep_owner else "0"}
        self._checked(self.client.api.put(f"/containers/{self.container_id}/archive", params=params, data=data))

    def _get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any], Callable[[], None]]:
        response = self._checked(
            self.client.api.get(f"/containers/{self.container_id}/archive", params={"path": path}, stream=True)
        )
        stat = decode_path_stat(response.headers.get("x-docker-container-path-stat"))
        return response.iter_content(ARCHIVE_CHUNK), stat, response.close

    def _exec_create(self, command: Command, stdin: bool) -> str:
        body: dict[str, Any] = {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Cmd": list(command.argv),
            "Env": [f"{key}={value}" for key, value in command.environment.items()],
            "Tty": False,
        }
        if command.user:
            body["User"] = command.user
        if command.workdir:
            body["WorkingDir"] = command.workdir
        response = self._checked(self.client.api.post(f"/containers/{self.container_id}/exec", data=json.dumps(body)))
        return str(response.json()["Id"])

    def _exec_connection(self, exec_id: str) -> DockerExecStream:
        response = self._checked(
            self.client.api.post(
                f"/exec/{exec_id}/start",
                data=json.dumps({"Detach": False, "Tty": False}),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                stream=True,
                # The default client waits forever; the stream sets its own deadlines once it is hijacked.
                timeout=EXEC_HANDSHAKE_TIMEOUT_S,
            )
        )
        # podman-py has no call that returns the hijacked socket: it is the connection under the HTTP response
        # (urllib3's file object); the response is kept alive with the stream, since collecting it closes it.
        return DockerExecStream(response.raw._fp.fp.raw, keep_alive=response)

    def _exec_exit_code(self, exec_id: str) -> int:
        return int(self._checked(self.client.api.get(f"/exec/{exec_id}/json")).json().get("ExitCode") or 0)

    def _switch_network(self, enabled: bool) -> None:
        api = self.client.api
        if enabled:
            name, labels = self.install_network()
            body = {
                "name": name,
                "driver": "bridge",
                "labels": labels,
                "options": ISOLATED_BRIDGE,
                "dns_enabled": False,
            }
            self._checked(api.post("/networks/create", data=json.dumps(body)))
            self._install_network = name
            try:
                self._connection(name, "connect")
            except Exception:
                self._close_window(name)
                raise
            return
        window = self._install_network
        if window is None:
            # Before the container starts: it leaves the engine's default network it was created on.
            self._connection(NETWORK, "disconnect")
            return
        self._close_window(window)

    def _connection(self, network: str, action: str) -> None:
        body = json.dumps({"Container": self.container_id})
        self._checked(self.client.api.post(f"/networks/{network}/{action}", data=body))

    def _close_window(self, name: str) -> None:
        """Disconnect the container from the install network and remove the network."""
        details = self._checked(self.client.api.get(f"/containers/{self.container_id}/json")).json()
        if name in ((details.get("NetworkSettings") or {}).get("Networks") or {}):
            self._connection(name, "disconnect")
        self._remove_network(name)
        self._install_network = None

    def _remove_network(self, name: str) -> None:
        response = self.client.api.delete(f"/networks/{name}", params={"force": "true"})
        if response.status_code != 404:
            response.raise_for_status()


def _folders_archive(path: str) -> bytes:
    """A tar holding the folder ``path`` alone, open to everyone and sticky (mode 1777). Its missing parents are
    made by the engine as it extracts; a parent that exists (``/tmp``, say) is left exactly as it is."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entry = tarfile.TarInfo(path.strip("/"))
        entry.type = tarfile.DIRTYPE
        entry.mode = 0o1777
        archive.addfile(entry)
    return buffer.getvalue()
