"""What Docker and Podman share: one container, driven through an engine of the Docker API family.

New containers get the hardened defaults of SECURITY.md: no network for user code, no capabilities,
no-new-privileges, process / memory / CPU / file-size limits, an init as PID 1, no engine log, and code run as an
unprivileged uid by the session. Attached containers are used as their owner configured them.

Subclasses supply the engine's dialect: the default client, the create options, and the few raw endpoints the
SDKs do not wrap the way we need (exec with a hijacked stdin stream, archives with their stat header, networks).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from llm_sandbox.backends.base import (
    ABANDONED_EXIT,
    ArchiveStream,
    Backend,
    Command,
    ContainerSpec,
    DuplexStream,
    ExecOutput,
    ImageStore,
)
from llm_sandbox.backends.disk import DiskVolume, disk_volumes
from llm_sandbox.backends.docker_stream import DockerExecStream
from llm_sandbox.backends.engine_errors import (
    engine_errors,
    is_gone_or_going,
    is_image_missing,
    is_missing,
    status_code,
)
from llm_sandbox.errors import (
    ContainerError,
    ImageBuildError,
    ImageNotFoundError,
    ImagePullError,
    SandboxError,
    SandboxFileNotFoundError,
)
from llm_sandbox.labels import (
    DISK_VOLUME_LABEL,
    LABEL_PREFIX,
    MANAGED_LABEL,
    SANDBOX_LABEL,
    is_orphan,
    sandbox_labels,
)

logger = logging.getLogger(__name__)

ARCHIVE_CHUNK = 1024 * 1024
INSTALL_NETWORK_PREFIX = "llm-sandbox-install-"
INSTALL_NETWORK_LABEL = f"{LABEL_PREFIX}.install-window"  # on an install network: the container it was made for
VOLUME_IN_USE_WAIT_S = 10.0
GO_MODE_DIR = 1 << 31  # the directory bit of Go's os.FileMode, as the stat header reports it


_shared_clients: dict[tuple[int, tuple[str, str]], Any] = {}
_shared_lock = threading.Lock()


def shared_client(key: tuple[str, str], make: Callable[[], Any]) -> Any:
    """One default client per engine address and process (a forked child makes its own: sockets do not fork)."""
    full_key = (os.getpid(), key)
    with _shared_lock:
        client = _shared_clients.get(full_key)
        if client is None:
            client = _shared_clients[full_key] = make()
        return client


class OciBackend(Backend, ImageStore):
    """One container on a Docker-API-family engine; the engine's image store too."""

    sdk = "docker"

    @property
    def images(self) -> ImageStore:
        return self

    @property
    def engine(self) -> str:  # type: ignore[override]
        return self.sdk

    def __init__(self, client: Any | None = None) -> None:
        self._client = client
        self._container: Any = None
        self._install_network: str | None = None  # the network of an open install window
        self._disk_volumes: list[DiskVolume] = []  # the disk cap's volumes of a container this backend created

    # The engine's dialect ------------------------------------------------------------------------------------

    @abstractmethod
    def _default_client(self) -> Any:
        """A client from the environment."""

    @abstractmethod
    def _create_options(self, spec: ContainerSpec) -> dict[str, Any]:
        """``containers.create`` keyword arguments for this engine's SDK."""

    @abstractmethod
    def _exec_create(self, command: Command, stdin: bool) -> str:
        """Create an exec instance; return its id."""

    @abstractmethod
    def _exec_connection(self, exec_id: str) -> DockerExecStream:
        """Start an exec instance on a hijacked connection and return the stream over its socket."""

    @abstractmethod
    def _exec_exit_code(self, exec_id: str) -> int:
        """The exit code of a finished exec instance."""

    @abstractmethod
    def _put_archive(self, path: str, data: bytes, keep_owner: bool) -> None:
        """Send a tar archive to be extracted into ``path`` (``keep_owner``: keep the headers' uid/gid)."""

    @abstractmethod
    def _get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any], Callable[[], None]]:
        """A tar stream of ``path``: its chunks, the engine's stat of the path, and how to end it early."""

    @abstractmethod
    def _prepare(self, spec: ContainerSpec) -> None:
        """Engine-specific work between create and start (workdir ownership, network)."""

    def _after_start(self, spec: ContainerSpec) -> None:
        """Engine-specific work once the container runs."""

    # Plumbing ------------------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._default_client()
        return self._client

    @property
    def container_id(self) -> str:
        if self._container is None:
            raise ContainerError("no container is bound to this backend yet")
        return str(self._container.id)

    def _errors(self, action: str, missing: type[SandboxError] = ContainerError) -> AbstractContextManager[None]:
        return engine_errors(action, sdk=self.sdk, missing=missing)

    # Lifecycle -----------------------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> None:
        options = self._create_options(spec)
        self._create_disk_volumes(disk_volumes(spec, engine=self.sdk))
        try:
            self._create_container(spec, options)
        except BaseException:
            self._remove_disk_volumes()
            raise

    def _create_container(self, spec: ContainerSpec, options: dict[str, Any]) -> None:
        with self._errors(f"creating a container from {spec.image}"):
            try:
                self._container = self.client.containers.create(**options)
            except Exception as error:
                if not is_image_missing(self.sdk, error):
                    raise
                self.ensure_image(spec.image)
                try:
                    self._container = self.client.containers.create(**options)
                except Exception as again:
                    if is_image_missing(self.sdk, again):
                        raise ImagePullError(
                            f"image {spec.image!r} is not available locally and cannot be pulled"
                        ) from again
                    raise
        self.owned = True
        try:
            self._prepare(spec)
            with self._errors("starting the container"):
                self._container.start()
            self._after_start(spec)
        except BaseException:
            self.remove()
            raise

    def attach(self, container_id: str) -> None:
        with self._errors(f"finding container {container_id!r}"):
            container = self.client.containers.get(container_id)
        self._container = container
        self.owned = False
        if container.status != "running":
            logger.info("starting stopped container %s", container_id)
            with self._errors(f"starting container {container_id!r}"):
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
        with self._errors("removing the container"):
            try:
                container.remove(force=True, v=True)
            except Exception as error:
                if not is_gone_or_going(self.sdk, error):
                    raise
        network, self._install_network = self._install_network, None
        if network is not None:  # an install window that could not be closed: its network goes with the container
            try:
                with self._errors(f"removing the install network {network}"):
                    self._remove_network(network)
            except ContainerError as error:
                logger.warning("%s (the sweep removes it by its labels)", error)
        self._remove_disk_volumes()

    def _create_disk_volumes(self, volumes: list[DiskVolume]) -> None:
        for volume in volumes:
            with self._errors(f"creating the disk-cap volume {volume.name}"):
                self.client.volumes.create(
                    name=volume.name, driver="local", driver_opts=volume.driver_opts, labels=volume.labels
                )
            self._disk_volumes.append(volume)

    def _remove_disk_volumes(self) -> None:
        volumes, self._disk_volumes = self._disk_volumes, []
        for volume in volumes:
            try:
                with self._errors(f"removing the disk-cap volume {volume.name}"):
                    remove_volume(self.client, volume.name, self.sdk)
            except ContainerError as error:
                logger.warning("%s (the sweep removes it by its labels)", error)

    def is_running(self) -> bool:
        if self._container is None:
            return False
        with self._errors("inspecting the container"):
            try:
                self._container.reload()
            except Exception as error:
                if is_missing(self.sdk, error):
                    return False
                raise
        return bool(self._container.status == "running")

    def commit(self, repository: str, tag: str) -> str:
        with self._errors("committing the container"):
            self._container.commit(repository=repository, tag=tag)
        return f"{repository}:{tag}"

    def close(self) -> None:
        # The caller's client stays the caller's, and the shared default client outlives sessions: nothing to do.
        self._client = None

    # Exec ----------------------------------------------------------------------------------------------------

    def exec(self, command: Command) -> ExecOutput:
        with self._errors(f"running {command.describe()} in the container"):
            exec_id = self._exec_create(command, stdin=False)
            connection = self._exec_connection(exec_id)
            try:
                stdout, stderr, truncated = connection.read_all(command.timeout, command.output_limit)
            except TimeoutError:
                raise ContainerError(
                    f"{command.describe()} did not finish within its deadline of {command.timeout:g} s in the "
                    "container; it was abandoned"
                ) from None
            if truncated:
                logger.warning(
                    "%s wrote more than its limit of %d bytes on a stream; its output was cut and it was abandoned",
                    command.describe(),
                    command.output_limit,
                )
                return ExecOutput(ABANDONED_EXIT, stdout, stderr, truncated=True)
            return ExecOutput(self._exec_exit_code(exec_id), stdout, stderr)

    def open_stream(self, command: Command) -> DuplexStream:
        with self._errors("starting the guest helper"):
            exec_id = self._exec_create(command, stdin=True)
            return self._exec_connection(exec_id)

    # Files ---------------------------------------------------------------------------------------------------

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        with self._errors(f"copying into {path}", missing=SandboxFileNotFoundError):
            self._put_archive(path, data, keep_owner)

    def get_archive(self, path: str) -> ArchiveStream:
        with self._errors(f"copying {path} out of the container", missing=SandboxFileNotFoundError):
            chunks, stat, close = self._get_archive(path)
        return ArchiveStream(
            chunks=chunks,
            size=int(stat.get("size", 0)),
            is_dir=bool(int(stat.get("mode", 0)) & GO_MODE_DIR),
            close=close,
        )

    # Network -------------------------------------------------------------------------------------------------

    def set_network(self, enabled: bool) -> None:
        """Open an install window (``enabled``) or close it.

        The window is a bridge network made for this container alone (``install_network``: labelled as the
        library's, with its owner, for the sweep; traffic between containers off), so no other container is
        reachable from it; closing the window disconnects the container, cuts it off again and removes the
        network."""
        if not self.owned:
            raise ContainerError("the network of an attached container is its owner's to change")
        with self._errors("switching the container's network"):
            self._switch_network(enabled)

    @abstractmethod
    def _switch_network(self, enabled: bool) -> None:
        """Connect the container to a new install network of its own, or cut it off (and remove that network)."""

    @abstractmethod
    def _remove_network(self, name: str) -> None:
        """Remove a network (gone already is fine)."""

    def install_network(self) -> tuple[str, dict[str, str]]:
        """The name and labels of a new install network for this container."""
        labels = dict(getattr(self._container, "labels", None) or {})
        sandbox_id = labels.get(SANDBOX_LABEL) or self.container_id
        name = f"{INSTALL_NETWORK_PREFIX}{self.container_id[:12]}-{secrets.token_hex(4)}"
        return name, {**sandbox_labels(sandbox_id), INSTALL_NETWORK_LABEL: self.container_id}

    @property
    def install_network_name(self) -> str | None:
        """The network of the open install window, if one is open."""
        return self._install_network

    # Images --------------------------------------------------------------------------------------------------

    def ensure_image(self, image: str) -> None:
        with self._errors(f"looking up image {image}"):
            try:
                self.client.images.get(image)
                return
            except Exception as error:
                if not is_missing(self.sdk, error):
                    raise
        logger.info("image %s is not local; pulling it", image)
        try:
            with self._errors(f"pulling image {image}"):
                self.client.images.pull(image)
        except (ContainerError, ImageNotFoundError) as error:
            raise ImagePullError(f"image {image!r} is not available locally and pulling it failed: {error}") from error

    def build_image(self, dockerfile: str, tag: str) -> None:
        context = os.path.dirname(os.path.abspath(dockerfile))
        try:
            with self._errors(f"building {dockerfile}"):
                self.client.images.build(
                    path=context, dockerfile=os.path.basename(dockerfile), tag=tag, rm=True, forcerm=True
                )
        except ContainerError as error:
            raise ImageBuildError(f"building the image from {dockerfile} failed: {error}") from error

    def remove_image(self, image: str) -> None:
        with self._errors(f"removing image {image}"):
            try:
                self.client.images.remove(image, force=True)
            except Exception as error:
                if not is_missing(self.sdk, error):
                    raise


def sweep_install_networks(client: Any, *, sdk: str, older_than: float | None = None) -> list[str]:
    """Remove the install-window networks whose owner process is gone (``labels.is_orphan``; or every one older
    than ``older_than`` seconds); return their names. Run it after the orphaned containers are removed: a network
    a container still uses stays (and is reported in the log)."""
    removed: list[str] = []
    with engine_errors("listing the library's install networks", sdk=sdk):
        networks = client.networks.list(filters={"label": INSTALL_NETWORK_LABEL})
    for network in networks:
        attrs = network.attrs or {}
        labels = dict(attrs.get("Labels") or attrs.get("labels") or {})
        if labels.get(MANAGED_LABEL) != "true" or not is_orphan(labels, older_than=older_than):
            continue
        try:
            with engine_errors(f"removing the install network {network.name}", sdk=sdk):
                network.remove()
        except ContainerError as error:
            logger.warning("%s", error)
            continue
        removed.append(str(network.name))
    return removed


def remove_volume(client: Any, name: str, sdk: str) -> None:
    """Remove a volume (gone already is fine). A volume still in use, because the engine is still removing a
    container that ended by itself, is tried again for a few seconds."""
    deadline = time.monotonic() + VOLUME_IN_USE_WAIT_S
    while True:
        try:
            client.volumes.get(name).remove(force=True)
            return
        except Exception as error:
            if is_missing(sdk, error):
                return
            if status_code(error) != 409 or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def sweep_disk_volumes(client: Any, *, sdk: str, older_than: float | None = None) -> list[str]:
    """Remove the disk-cap volumes whose owner process is gone (or every one older than ``older_than`` seconds);
    return their names. Run it after the orphaned containers are removed: a volume still in use stays."""
    removed: list[str] = []
    with engine_errors("listing the library's disk-cap volumes", sdk=sdk):
        volumes = client.volumes.list(filters={"label": DISK_VOLUME_LABEL})
    for volume in volumes:
        attrs = volume.attrs or {}
        labels = dict(attrs.get("Labels") or attrs.get("labels") or {})
        if labels.get(MANAGED_LABEL) != "true" or not is_orphan(labels, older_than=older_than):
            continue
        try:
            with engine_errors(f"removing the disk-cap volume {volume.name}", sdk=sdk):
                remove_volume(client, str(volume.name), sdk)
        except ContainerError as error:
            logger.warning("%s", error)
            continue
        removed.append(str(volume.name))
    return removed


def decode_path_stat(header: str | None) -> dict[str, Any]:
    """The engine's ``X-Docker-Container-Path-Stat`` header: base64 of a JSON object (name, size, mode, ...)."""
    if not header:
        return {}
    try:
        value = json.loads(base64.b64decode(header))
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}
