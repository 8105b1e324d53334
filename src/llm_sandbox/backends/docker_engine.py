"""The Docker backend: the Docker Engine API through the docker SDK."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from llm_sandbox.backends.base import Command, ContainerSpec
from llm_sandbox.backends.docker_stream import DockerExecStream
from llm_sandbox.backends.engine_errors import engine_errors, is_missing
from llm_sandbox.backends.oci import ARCHIVE_CHUNK, OciBackend, shared_client
from llm_sandbox.backends.runtime_options import docker_create_options
from llm_sandbox.backends.sdk import import_sdk
from llm_sandbox.errors import DiskLimitError, SandboxFileNotFoundError

# An install window's bridge: no traffic between the containers on it (there is only the sandbox, and Docker keeps
# bridge networks apart from each other).
ISOLATED_BRIDGE = {"com.docker.network.bridge.enable_icc": "false"}


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
        # so the engine writes the directory entry, keeping the uid/gid of the tar header (copyUIDGID). A workdir
        # that is a volume of the disk cap is owned by the code user already (the volume's mount options).
        uid, _, gid = spec.code_user.partition(":")
        if not uid.isdigit() or (spec.disk is not None and spec.workdir in spec.disk.places):
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

    def _after_start(self, spec: ContainerSpec) -> None:
        if self._disk_volumes and not spec.default_image:
            self._copy_up_image_files(spec)

    def _copy_up_image_files(self, spec: ContainerSpec) -> None:
        """Docker fills a new volume with what the image holds at its place, but a tmpfs volume loses it (it is
        unmounted after the copy): the image's files at each capped place are copied in here instead, read from
        a container of the image that never starts. The library's default images hold nothing there."""
        limit = spec.disk.limit if spec.disk is not None else 0
        with self._errors(f"reading the files of {spec.image} at the disk cap's places"):
            probe = self.client.containers.create(spec.image, ["true"], labels=dict(spec.labels), network_disabled=True)
        try:
            for volume in self._disk_volumes:
                image_files = self._image_files(probe.id, spec.image, volume.target, limit)
                if image_files is not None:
                    self.put_archive(posixpath.dirname(volume.target), image_files, keep_owner=True)
        finally:
            with self._errors("removing the container that read the image's files"):
                probe.remove(force=True)

    def _image_files(self, probe_id: str, image: str, place: str, limit: int) -> bytes | None:
        """The tar of the image's files at ``place`` (None: the image has nothing there)."""
        try:
            with self._errors(f"reading {place} of the image", missing=SandboxFileNotFoundError):
                chunks, _stat = self.client.api.get_archive(probe_id, place, chunk_size=ARCHIVE_CHUNK)
        except SandboxFileNotFoundError:
            return None
        data = bytearray()
        try:
            for chunk in chunks:
                data += chunk
                if len(data) > limit + ARCHIVE_CHUNK:  # headers and padding aside, more than the cap holds
                    raise DiskLimitError(
                        f"the image {image} holds more at {place} than disk_limit ({limit} bytes) "
                        "allows: raise disk_limit, or pass relax_hardening=['disk_limit']"
                    )
        finally:
            chunks.close()
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
            if len(archive.getmembers()) <= 1:  # the folder alone: nothing to copy
                return None
        return bytes(data)

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
        api = self.client.api
        if enabled:
            name, labels = self.install_network()
            api.create_network(
                name, driver="bridge", options=ISOLATED_BRIDGE, labels=labels, check_duplicate=True, attachable=False
            )
            self._install_network = name
            try:
                api.disconnect_container_from_network(self.container_id, "none")
                api.connect_container_to_network(self.container_id, name)
            except Exception:
                self._close_window(name)
                raise
            return
        window = self._install_network
        if window is None:
            return
        self._close_window(window)

    def _close_window(self, name: str) -> None:
        """Disconnect the container from the install network, back to "none", and remove the network."""
        api = self.client.api
        attached = self._networks()
        if name in attached:
            api.disconnect_container_from_network(self.container_id, name, force=True)
        if "none" not in attached:
            api.connect_container_to_network(self.container_id, "none")
        self._remove_network(name)
        self._install_network = None

    def _networks(self) -> set[str]:
        details = self.client.api.inspect_container(self.container_id)
        return set((details.get("NetworkSettings") or {}).get("Networks") or {})

    def _remove_network(self, name: str) -> None:
        try:
            self.client.api.remove_network(name)
        except Exception as error:
            if not is_missing(self.sdk, error):
                raise
