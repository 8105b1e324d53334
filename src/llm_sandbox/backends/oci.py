"""The Docker backend (Docker Engine API through the docker SDK).

New containers get the hardened defaults of SECURITY.md: no network for user code, no capabilities,
no-new-privileges, process / memory / CPU / file-size limits, an init as PID 1, no engine log, and code run as an
unprivileged uid by the session. Attached containers are used as their owner configured them.
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

from llm_sandbox.backends.base import ArchiveStream, Backend, ContainerSpec, DuplexStream, ExecOutput
from llm_sandbox.backends.docker_errors import engine_errors
from llm_sandbox.backends.docker_stream import DockerExecStream
from llm_sandbox.backends.runtime_options import docker_create_options
from llm_sandbox.errors import (
    ContainerError,
    ImageBuildError,
    ImageNotFoundError,
    ImagePullError,
    SandboxFileNotFoundError,
)

logger = logging.getLogger(__name__)

ARCHIVE_CHUNK = 1024 * 1024


def default_docker_client() -> Any:
    """A client from the environment (DOCKER_HOST and friends), or a clear error when the SDK is missing."""
    from llm_sandbox.backends.sdk import import_sdk

    docker = import_sdk("docker", extra="docker")
    with engine_errors("connecting to the Docker engine"):
        return docker.from_env()


class DockerBackend(Backend):
    """One container on a Docker engine."""

    engine_name = "docker"

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._container: Any = None
        self._own_client = client is None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = default_docker_client()
        return self._client

    @property
    def api(self) -> Any:
        return self.client.api

    @property
    def container_id(self) -> str:
        if self._container is None:
            raise ContainerError("no container is bound to this backend yet")
        return str(self._container.id)

    # Lifecycle -----------------------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> None:
        options = docker_create_options(spec)
        with engine_errors(f"creating a container from {spec.image}"):
            try:
                self._container = self.client.containers.create(**options)
            except Exception as error:
                if not _is_image_missing(error):
                    raise
                self.ensure_image(spec.image)
                self._container = self.client.containers.create(**options)
        self.owned = True
        try:
            self._prepare_workdir(spec.workdir, spec.code_user)
            with engine_errors("starting the container"):
                self._container.start()
        except BaseException:
            self.remove()
            raise

    def _prepare_workdir(self, workdir: str, user: str) -> None:
        # The code user must own the workdir. Without CAP_CHOWN nothing inside the container can arrange that,
        # so the engine writes the directory entry, keeping the uid/gid of the tar header (copyUIDGID).
        uid, _, gid = user.partition(":")
        if not uid.isdigit():
            return
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            entry = tarfile.TarInfo(workdir.strip("/"))
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            entry.uid = int(uid)
            entry.gid = int(gid) if gid.isdigit() else int(uid)
            archive.addfile(entry)
        self.put_archive("/", buffer.getvalue(), keep_owner=True)

    def attach(self, container_id: str) -> None:
        with engine_errors(f"finding container {container_id!r}"):
            container = self.client.containers.get(container_id)
        self._container = container
        self.owned = False
        if container.status != "running":
            logger.info("starting stopped container %s", container_id)
            with engine_errors(f"starting container {container_id!r}"):
                container.start()
                container.reload()
            if container.status != "running":
                raise ContainerError(
                    f"container {container_id!r} did not stay running after start (status {container.status!r}); "
                    "check its command and logs"
                )

    def remove(self) -> None:
        if self._container is None or not self.owned:
            return
        container, self._container = self._container, None
        with engine_errors("removing the container"):
            try:
                container.remove(force=True, v=True)
            except Exception as error:
                # Gone already, or the engine is removing it itself (auto-remove after the keep-alive ended).
                if not (_is_missing(error) or _is_removal_in_progress(error)):
                    raise

    def is_running(self) -> bool:
        if self._container is None:
            return False
        with engine_errors("inspecting the container"):
            try:
                state = self.api.inspect_container(self.container_id)["State"]
            except Exception as error:
                if _is_missing(error):
                    return False
                raise
        return bool(state.get("Running"))

    def commit(self, repository: str, tag: str) -> str:
        with engine_errors("committing the container"):
            self._container.commit(repository=repository, tag=tag)
        return f"{repository}:{tag}"

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    # Exec ----------------------------------------------------------------------------------------------------

    def exec(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> ExecOutput:
        with engine_errors(f"running {argv[0]!r} in the container"):
            exec_id = self.api.exec_create(
                self.container_id,
                list(argv),
                user=user or "",
                workdir=workdir,
                environment=dict(environment or {}),
            )["Id"]
            stdout, stderr = self.api.exec_start(exec_id, demux=True)
            exit_code = self.api.exec_inspect(exec_id)["ExitCode"]
        return ExecOutput(int(exit_code or 0), stdout or b"", stderr or b"")

    def open_stream(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> DuplexStream:
        with engine_errors("starting the guest helper"):
            exec_id = self.api.exec_create(
                self.container_id,
                list(argv),
                stdin=True,
                user=user or "",
                workdir=workdir,
                environment=dict(environment or {}),
            )["Id"]
            raw = self.api.exec_start(exec_id, socket=True)
        return DockerExecStream(raw, getattr(raw, "_response", None))

    # Files ---------------------------------------------------------------------------------------------------

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        params = {"path": path, "copyUIDGID": "1" if keep_owner else "0"}
        url = self.api._url("/containers/{0}/archive", self.container_id)
        with engine_errors(f"copying into {path}", missing=SandboxFileNotFoundError):
            self.api._raise_for_status(self.api._put(url, params=params, data=data))

    def get_archive(self, path: str) -> ArchiveStream:
        from docker.utils import decode_json_header

        url = self.api._url("/containers/{0}/archive", self.container_id)
        with engine_errors(f"copying {path} out of the container", missing=SandboxFileNotFoundError):
            response = self.api._get(url, params={"path": path}, stream=True, headers={"Accept-Encoding": "identity"})
            self.api._raise_for_status(response)
        header = response.headers.get("x-docker-container-path-stat")
        stat = decode_json_header(header) if header else {}
        is_dir = bool(int(stat.get("mode", 0)) & (1 << 31))  # Go's os.ModeDir bit
        return ArchiveStream(
            chunks=response.iter_content(ARCHIVE_CHUNK),
            size=int(stat.get("size", 0)),
            is_dir=is_dir,
            close=response.close,
        )

    # Network -------------------------------------------------------------------------------------------------

    def set_network(self, enabled: bool) -> None:
        if not self.owned:
            raise ContainerError("the network of an attached container is its owner's to change")
        detach, attach = ("none", "bridge") if enabled else ("bridge", "none")
        with engine_errors("switching the container's network"):
            self.api.disconnect_container_from_network(self.container_id, detach)
            self.api.connect_container_to_network(self.container_id, attach)

    # Images --------------------------------------------------------------------------------------------------

    def ensure_image(self, image: str) -> None:
        with engine_errors(f"looking up image {image}"):
            try:
                self.client.images.get(image)
                return
            except Exception as error:
                if not _is_missing(error):
                    raise
        logger.info("image %s is not local; pulling it", image)
        try:
            with engine_errors(f"pulling image {image}"):
                self.client.images.pull(image)
        except (ContainerError, ImageNotFoundError) as error:
            raise ImagePullError(f"image {image!r} is not available locally and pulling it failed: {error}") from error

    def build_image(self, dockerfile: str, tag: str) -> None:
        import os

        context = os.path.dirname(os.path.abspath(dockerfile))
        try:
            with engine_errors(f"building {dockerfile}"):
                self.client.images.build(
                    path=context, dockerfile=os.path.basename(dockerfile), tag=tag, rm=True, forcerm=True
                )
        except ContainerError as error:
            raise ImageBuildError(f"building the image from {dockerfile} failed: {error}") from error

    def remove_image(self, image: str) -> None:
        with engine_errors(f"removing image {image}"):
            try:
                self.client.images.remove(image, force=True)
            except Exception as error:
                if not _is_missing(error):
                    raise


def _is_missing(error: BaseException) -> bool:
    import docker.errors

    return isinstance(error, docker.errors.NotFound)


def _is_removal_in_progress(error: BaseException) -> bool:
    import docker.errors

    return isinstance(error, docker.errors.APIError) and error.status_code == 409 and "in progress" in str(error)


def _is_image_missing(error: BaseException) -> bool:
    import docker.errors

    return isinstance(error, docker.errors.ImageNotFound)
