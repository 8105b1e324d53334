"""The Micromamba backend: an OCI backend (Docker, or Podman when given a PodmanClient) whose every command runs
inside a micromamba environment, as the argv ``micromamba run -n <environment> …`` (never a joined string).

It composes with the engine backend instead of copying it: lifecycle, files and networking are the engine's;
only the argv of each exec is wrapped. The session's helper starts inside the environment too, so the
interpreter it finds is the environment's, and it wraps every run, command and install the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llm_sandbox.backends.base import ArchiveStream, Backend, Command, ContainerSpec, DuplexStream, ExecOutput
from llm_sandbox.errors import ValidationError

MICROMAMBA = "micromamba"
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def micromamba_argv(environment: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the micromamba environment ``environment``."""
    return [MICROMAMBA, "run", "-n", environment, *argv]


def _is_podman_client(client: Any) -> bool:
    return client is not None and type(client).__module__.split(".")[0] == "podman"


class MicromambaBackend(Backend):
    """Wraps a Docker or Podman backend so that every process runs in a micromamba environment."""

    def __init__(self, client: Any | None = None, environment: str | None = None) -> None:
        name = "base" if environment is None else environment
        if not ENVIRONMENT_NAME.fullmatch(name):
            raise ValidationError(f"environment {name!r} is not a micromamba environment name")
        self.environment = name
        if _is_podman_client(client):
            from llm_sandbox.backends.podman_engine import PodmanBackend

            self.inner: Backend = PodmanBackend(client)
        else:
            from llm_sandbox.backends.docker_engine import DockerBackend

            self.inner = DockerBackend(client)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return micromamba_argv(self.environment, argv)

    @property
    def command_prefix(self) -> list[str]:
        return micromamba_argv(self.environment, [])

    @property
    def owned(self) -> bool:  # type: ignore[override]
        return self.inner.owned

    @property
    def container_id(self) -> str:
        return self.inner.container_id

    def create(self, spec: ContainerSpec) -> None:
        self.inner.create(spec)

    def attach(self, container_id: str) -> None:
        self.inner.attach(container_id)

    def exec(self, command: Command) -> ExecOutput:
        return self.inner.exec(command.wrapped(self.command_prefix))

    def open_stream(self, command: Command) -> DuplexStream:
        return self.inner.open_stream(command.wrapped(self.command_prefix))

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        self.inner.put_archive(path, data, keep_owner=keep_owner)

    def get_archive(self, path: str) -> ArchiveStream:
        return self.inner.get_archive(path)

    def set_network(self, enabled: bool) -> None:
        self.inner.set_network(enabled)

    def is_running(self) -> bool:
        return self.inner.is_running()

    def commit(self, repository: str, tag: str) -> str:
        return self.inner.commit(repository, tag)

    def remove(self) -> None:
        self.inner.remove()

    def ensure_image(self, image: str) -> None:
        self.inner.ensure_image(image)

    def build_image(self, dockerfile: str, tag: str) -> None:
        self.inner.build_image(dockerfile, tag)

    def remove_image(self, image: str) -> None:
        self.inner.remove_image(image)

    def close(self) -> None:
        self.inner.close()
