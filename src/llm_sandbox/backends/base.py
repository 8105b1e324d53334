"""The backend contract: where a sandbox runs, and the few primitives the sandbox above it needs.

Everything language-aware or policy-aware lives above this line, written once. The contract has three parts:

- ``Provisioner``: create or attach to a container, tell whether it still runs, switch its network, remove it;
- ``Channel``: run argv lists in it (once, or as one long-lived duplex stream that carries the guest helper) and
  move tar archives in and out;
- ``ImageStore`` (optional): local images, building from a Dockerfile, saving a container as an image.

A ``Backend`` is a provisioner and a channel for one sandbox; ``images`` is its image store, or None for a backend
that has none (Kubernetes: the cluster's nodes pull images). Each backend's entry in the registry declares its
``BackendCapabilities``: the guest helper's behaviour and the contract tests follow that declaration, never a guess
from the backend's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from llm_sandbox.errors import ContainerError, ValidationError


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend guarantees for a sandbox it creates (``for_attached`` gives what holds for an attached one)."""

    #: The sandbox's processes live in a pid namespace of their own: nothing outside the sandbox is visible there.
    pid_namespace: bool = False
    #: No process but the code's runs under the code's uid in the sandbox, so "every process of this uid" is the
    #: code's (the guest may then kill them all with kill(-1)). Never true without ``pid_namespace``.
    own_uid: bool = False
    #: The cgroup counters under /sys/fs/cgroup (out-of-memory kills, process-limit hits) count this sandbox alone.
    own_cgroup: bool = False
    #: The library can connect and cut the sandbox's network while it runs (installs with network="install-only").
    network_switch: bool = False
    #: A local image store: images checked, pulled and built from a Dockerfile (``Backend.images``).
    images: bool = False
    #: A running sandbox can be saved as a new image (commit_container).
    commit: bool = False
    #: PID 1 is an init that reaps orphans, out of the code's reach.
    init: bool = False
    #: A one-shot exec can run as a chosen user (root, for system package managers).
    user_switch: bool = False
    #: The number of processes is capped (a fork bomb stops at the cap).
    process_limit: bool = False
    #: The size of one file is capped (a larger write ends in SIGXFSZ).
    file_size_limit: bool = False
    #: What the code writes into the sandbox is capped in total (``Limits.disk_bytes``; over it: DiskLimitError).
    disk_limit: bool = False
    #: A sandbox can be a container or pod its owner already runs (``container_id=``).
    attach: bool = False
    #: Memory and CPU limits hold for a created sandbox (``runtime_configs`` mem_limit, cpu_count, ... are honoured).
    resource_limits: bool = False
    #: Sandboxes can be pooled and reset between users (``create_pool_manager``).
    pooling: bool = False
    #: Stateful interactive sessions run on it (``InteractiveSandboxSession``).
    interactive: bool = False

    def for_attached(self) -> BackendCapabilities:
        """What still holds in a container its owner runs: only what the container has whoever made it."""
        return replace(
            self,
            own_uid=False,
            network_switch=False,
            commit=False,
            init=False,
            process_limit=False,
            file_size_limit=False,
            disk_limit=False,
            resource_limits=False,
        )

    def missing(self, *names: str) -> list[str]:
        """The capabilities among ``names`` this declaration does not have."""
        for name in names:
            if name not in self.__dataclass_fields__:
                raise ValidationError(
                    f"{name!r} is not a backend capability; known: {', '.join(self.__dataclass_fields__)}"
                )
        return [name for name in names if not getattr(self, name)]


@dataclass(frozen=True)
class Limits:
    """Resource limits for a container the library creates (None: the engine's default, unlimited)."""

    memory_bytes: int | None = 1024**3
    cpus: float | None = 1.0
    pids: int | None = 256
    file_size_bytes: int | None = 1024**3
    #: The total the code may write into the sandbox (each place it can write is a tmpfs of this size, counted
    #: against the memory limit, which is raised by as much: see ``backends/disk.py``).
    disk_bytes: int | None = 2 * 1024**3


@dataclass(frozen=True)
class DiskPlan:
    """The disk cap of a container the library creates: each place the code can write is a tmpfs as large as
    ``limit``, and the guest holds them together to ``limit``; ``owner`` (uid, gid) owns the ``owned`` places (the
    workdir and the code's library prefix; the temporary folders are root's, sticky and open to all)."""

    places: tuple[str, ...]
    limit: int
    owner: tuple[int, int] | None
    owned: tuple[str, ...]


@dataclass(frozen=True)
class ContainerSpec:
    """What the session asks for when it creates a sandbox."""

    image: str
    command: list[str]
    workdir: str
    code_user: str
    labels: Mapping[str, str]
    network_enabled: bool = False
    limits: Limits = field(default_factory=Limits)
    environment: Mapping[str, str] = field(default_factory=dict)
    runtime_configs: Mapping[str, Any] = field(default_factory=dict)
    #: Hardened defaults the caller took away by name (``relax_hardening``).
    relaxed: frozenset[str] = frozenset()
    #: The disk cap (None: none; Kubernetes and a relaxed ``disk_limit`` have none).
    disk: DiskPlan | None = None
    #: The image is the library's default one for the language, whose capped places hold nothing to copy up.
    default_image: bool = False


#: How long a one-shot exec may run before it is abandoned, unless its ``Command`` says otherwise.
DEFAULT_EXEC_TIMEOUT_S = 120.0
#: How many bytes of each of a one-shot exec's streams are read before it is abandoned, unless its ``Command`` says.
DEFAULT_EXEC_OUTPUT_LIMIT = 64 * 1024 * 1024
#: The exit code of an exec abandoned at its byte cap: its real end is unknown.
ABANDONED_EXIT = -1


@dataclass(frozen=True)
class Command:
    """A process to start in the sandbox: an argv (never a shell string), and as whom, where and with what.

    ``timeout`` and ``output_limit`` bound a one-shot exec (``Channel.exec``): past ``timeout`` seconds it is
    abandoned and ContainerError raised; past ``output_limit`` bytes on either stream its output is cut there and
    it is abandoned (``ExecOutput.truncated``). A long-lived stream (``open_stream``) ignores both.
    """

    argv: Sequence[str]
    user: str | None = None
    workdir: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_EXEC_TIMEOUT_S
    output_limit: int = DEFAULT_EXEC_OUTPUT_LIMIT

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValidationError(f"an exec's timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.output_limit <= 0:
            raise ValidationError(f"an exec's output limit must be a positive number of bytes, not {self.output_limit}")

    def describe(self) -> str:
        """The command's program, for error messages."""
        return repr(self.argv[0]) if self.argv else "an empty command"

    def wrapped(self, prefix: Sequence[str]) -> Command:
        """The same command run through ``prefix`` (an environment wrapper such as ``micromamba run -n env``)."""
        return replace(self, argv=[*prefix, *self.argv])


@dataclass(frozen=True)
class ExecOutput:
    """Result of a one-shot exec: raw bytes, decoded by the caller.

    ``truncated``: a stream reached the command's ``output_limit``; the output is cut there, the exec was abandoned
    and ``exit_code`` is ``ABANDONED_EXIT`` (its real end is unknown)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    truncated: bool = False


@dataclass(frozen=True)
class ArchiveStream:
    """A tar archive coming out of the sandbox, with the size the engine reported for the path."""

    chunks: Iterator[bytes]
    size: int
    is_dir: bool
    # Ends the transfer early; an unread archive left open can keep the engine busy with the container.
    close: Callable[[], None] = lambda: None


class DuplexStream(Protocol):
    """A long-lived bidirectional byte stream to a process inside the sandbox (its stdin and stdout)."""

    def send(self, data: bytes) -> None:
        """Write bytes to the process's stdin."""

    def recv(self, timeout: float | None) -> bytes:
        """The next bytes of the process's stdout; b"" at end of stream; TimeoutError when none came in time."""

    def close(self) -> None:
        """Close the stream; the process sees end of input."""


class AsyncDuplexStream(Protocol):
    """A duplex stream driven by the running event loop: a wait for output blocks no thread, and a cancelled wait
    loses no byte (the next ``recv`` returns it)."""

    async def send(self, data: bytes) -> None:
        """Write bytes to the process's stdin."""

    async def recv(self, timeout: float | None) -> bytes:
        """The next bytes of the process's stdout; b"" at end of stream; TimeoutError when none came in time."""


@runtime_checkable
class LoopDrivable(Protocol):
    """A ``DuplexStream`` that an event loop can drive without a thread (Docker's and Podman's hijacked sockets)."""

    def asynchronous(self) -> AsyncDuplexStream | None:
        """The same stream for the running loop (same buffer, same process), or None when its connection cannot be
        driven by the loop (a TLS socket)."""


class Provisioner(ABC):
    """Where one sandbox runs: created, or attached to, then removed. Created unbound."""

    #: True when the container was created by this backend (it may then be reconfigured and removed).
    owned: bool = False

    @property
    @abstractmethod
    def container_id(self) -> str:
        """The engine's id of the bound container."""

    @abstractmethod
    def create(self, spec: ContainerSpec) -> None:
        """Create and start a new container; on failure remove whatever was created, then raise."""

    @abstractmethod
    def attach(self, container_id: str) -> None:
        """Bind to an existing container (id or name), starting it when it is stopped."""

    @abstractmethod
    def is_running(self) -> bool:
        """Whether the bound container is still running."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the bound container at once (no stop grace) if this backend created it. Idempotent."""

    def set_network(self, enabled: bool) -> None:
        """Connect (True) or disconnect (False) the network of a created container (``network_switch``)."""
        raise ContainerError(
            f"{type(self).__name__} cannot switch a sandbox's network (it does not declare network_switch)"
        )

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing beyond the client
        """Release client resources held by the backend."""


class Channel(ABC):
    """Processes and files in the bound sandbox."""

    @abstractmethod
    def exec(self, command: Command) -> ExecOutput:
        """Run a command to completion and return its output (setup work; runs use the guest stream).

        Bounded by ``command.timeout`` (ContainerError naming the command once it passes; the exec is abandoned)
        and ``command.output_limit`` per stream (the output cut there, the exec abandoned, ``truncated`` set)."""

    @abstractmethod
    def open_stream(self, command: Command) -> DuplexStream:
        """Start a command with stdin attached and return the duplex stream to it."""

    @abstractmethod
    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        """Extract a tar archive into the existing directory ``path``; ``keep_owner`` keeps the headers' uid/gid."""

    @abstractmethod
    def get_archive(self, path: str) -> ArchiveStream:
        """A tar stream of ``path``; SandboxFileNotFoundError when it does not exist."""


class ImageStore(ABC):
    """Images on the engine: only backends that declare ``images`` (and ``commit``) have one."""

    #: The engine whose images these are, as the image builder names it (``--engine docker`` or ``podman``).
    engine: str

    @abstractmethod
    def ensure_image(self, image: str) -> None:
        """Make ``image`` available locally: present, else pulled, else ImageNotFoundError."""

    @abstractmethod
    def build_image(self, dockerfile: str, tag: str) -> None:
        """Build ``tag`` from a Dockerfile, with its folder as the context."""

    @abstractmethod
    def remove_image(self, image: str) -> None:
        """Remove an image the session built. Idempotent."""

    @abstractmethod
    def commit(self, repository: str, tag: str) -> str:
        """Save the bound container's filesystem as a new image and return its reference."""


class Backend(Provisioner, Channel):
    """One sandbox on one engine: a provisioner and a channel, with an optional image store."""

    @property
    def images(self) -> ImageStore | None:
        """The engine's image store, or None when the backend has none."""
        return None
