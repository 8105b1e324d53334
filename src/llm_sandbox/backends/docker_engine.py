"""The Docker backend: the Docker Engine API through the docker SDK."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from llm_sandbox.backends.base import Command, ContainerSpec
from llm_sandbox.backends.docker_stream import DockerExecStream
from llm_sandbox.backends.engine_errors import engine_errors
from llm_sandbox.backends.oci import ARCHIVE_CHUNK, OciBackend, shared_client
from llm_sandbox.backends.runtime_options import docker_create_options
from llm_sandbox.backends.sdk import import_sdk


def default_docker_client() -> Any:
    """A client from the environment (DOCKER_HOST and friends), or a clear error when the SDK is missing."""
    docker = import_sdk("docker", extra="docker")
    with engine_errors("connecting to the Docker engine", sdk="docker"):
        return docker.from_env()


def shared_docker_client() -> Any:
    """The process's default client, made once (its API-version handshake is a round trip every session saves)."""
    return shared_client(("docker", os.environ.get("DOCKER_HOST", "")), default_docker_client)


class DockerBackend(OciBackend):
    """One container on a Docker engine."""

    sdk = "docker"

    def _default_client(self) -> Any:
        return shared_docker_client()

    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
        return docker_create_options(spec)

    def _prepare(self, spec: ContainerSpec) -> None:
        # The code user must own the workdir. Without CAP_CHOWN nothing inside the container can arrange that,
        # so the engine writes the directory entry, keeping the uid/gid of the tar header (copyUIDGID).
        uid, _, gid = spec.code_user.partition(":")
        if not uid.isdigit():
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            entry = tarfile.TarInfo(spec.workdir.strip("/"))
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            entry.uid = int(uid)
            entry.gid = int(gid) if gid.isdigit() else int(uid)
            archive.addfile(entry)
        self.put_archive("/", buffer.getvalue(), keep_owner=True)

    def _put_archive(self, path: str, data: bytes, keep_owner: bool) -> None:
        api = self.client.api
        if not keep_owner:
            api.put_archive(self.container_id, path, data)
            return
        # The engine's copyUIDGID (keep the tar headers' owner) has no docker-py call: the one raw request left.
        response = api._put(
            api._url("/containers/{0}/archive", self.container_id), params={"path": path, "copyUIDGID": "1"}, data=data
        )
        api._raise_for_status(response)

    def _get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any], Callable[[], None]]:
        chunks, stat = self.client.api.get_archive(self.container_id, path, chunk_size=ARCHIVE_CHUNK)
        return chunks, dict(stat or {}), chunks.close

    def _exec_create(self, command: Command, stdin: bool) -> str:
        created = self.client.api.exec_create(
            self.container_id,
            list(command.argv),
            stdin=stdin,
            user=command.user or "",
            workdir=command.workdir,
            environment=dict(command.environment),
        )
        return str(created["Id"])

    def _exec_connection(self, exec_id: str) -> DockerExecStream:
        # socket=True: the engine hijacks the connection (Connection: Upgrade) and docker-py hands us its socket.
        return DockerExecStream(self.client.api.exec_start(exec_id, socket=True))

    def _exec_exit_code(self, exec_id: str) -> int:
        return int(self.client.api.exec_inspect(exec_id)["ExitCode"] or 0)

    def _switch_network(self, enabled: bool) -> None:
        detach, attach = ("none", "bridge") if enabled else ("bridge", "none")
        self.client.api.disconnect_container_from_network(self.container_id, detach)
        self.client.api.connect_container_to_network(self.container_id, attach)
