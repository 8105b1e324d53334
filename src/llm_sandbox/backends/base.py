"""The backend contract: where a sandbox runs, and the few primitives the session needs from it.

Everything language-aware or policy-aware lives above this line, in the session, written once. A backend only
creates or attaches to a container, runs argv lists in it (once, or as one long-lived duplex stream that carries
the guest helper), moves tar archives in and out, switches the network, and removes what it created.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class Limits:
    """Resource limits for a container the library creates (None: the engine's default, unlimited)."""

    memory_bytes: int | None = 1024**3
    cpus: float | None = 1.0
    pids: int | None = 256
    file_size_bytes: int | None = 1024**3


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


@dataclass(frozen=True)
class Command:
    """A process to start in the sandbox: an argv (never a shell string), and as whom, where and with what."""

    argv: Sequence[str]
    user: str | None = None
    workdir: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)

    def wrapped(self, prefix: Sequence[str]) -> Command:
        """The same command run through ``prefix`` (an environment wrapper such as ``micromamba run -n env``)."""
        return replace(self, argv=[*prefix, *self.argv])


@dataclass(frozen=True)
class ExecOutput:
    """Result of a one-shot exec: raw bytes, decoded by the caller."""

    exit_code: int
    stdout: bytes
    stderr: bytes


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


class Backend(ABC):
    """One sandbox on one engine. Created unattached; ``create`` or ``attach`` binds it to a container."""

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
    def exec(self, command: Command) -> ExecOutput:
        """Run a command to completion and return its output (setup work; runs use the guest stream)."""

    @abstractmethod
    def open_stream(self, command: Command) -> DuplexStream:
        """Start a command with stdin attached and return the duplex stream to it."""

    @abstractmethod
    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        """Extract a tar archive into the existing directory ``path``; ``keep_owner`` keeps the headers' uid/gid."""

    @abstractmethod
    def get_archive(self, path: str) -> ArchiveStream:
        """A tar stream of ``path``; SandboxFileNotFoundError when it does not exist."""

    @abstractmethod
    def set_network(self, enabled: bool) -> None:
        """Connect (True) or disconnect (False) the container's network; only for owned containers."""

    @abstractmethod
    def is_running(self) -> bool:
        """Whether the bound container is still running."""

    @abstractmethod
    def commit(self, repository: str, tag: str) -> str:
        """Save the container's filesystem as a new image and return its reference."""

    @abstractmethod
    def remove(self) -> None:
        """Remove the bound container at once (no stop grace). Idempotent."""

    @abstractmethod
    def ensure_image(self, image: str) -> None:
        """Make ``image`` available locally: present, else pulled, else ImageNotFoundError."""

    @abstractmethod
    def build_image(self, dockerfile: str, tag: str) -> None:
        """Build ``tag`` from a Dockerfile, with its folder as the context."""

    @abstractmethod
    def remove_image(self, image: str) -> None:
        """Remove an image the session built. Idempotent."""

    @property
    def command_prefix(self) -> list[str]:
        """Argv every command of the session starts with (an environment wrapper); empty for plain engines."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing beyond the client
        """Release client resources held by the backend."""
