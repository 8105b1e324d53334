"""Micromamba: not a backend of its own but a command wrapper composed with Docker or Podman when a sandbox is bound.

Every process of the sandbox (the guest helper, each run, command and install) starts as the argv
``micromamba run -n <environment> …``, built as a list (never a joined string). Lifecycle, files and networking
are the engine's: Docker underneath, or Podman when the caller's ``client`` is a ``PodmanClient``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llm_sandbox.backends.base import Backend
from llm_sandbox.errors import ValidationError

MICROMAMBA = "micromamba"
DEFAULT_ENVIRONMENT = "base"
ENVIRONMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def micromamba_argv(environment: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside the micromamba environment ``environment``."""
    return [MICROMAMBA, "run", "-n", environment, *argv]


def command_prefix(environment: str | None = None) -> list[str]:
    """The argv every command of a Micromamba sandbox starts with."""
    name = DEFAULT_ENVIRONMENT if environment is None else environment
    if not ENVIRONMENT_NAME.fullmatch(name):
        raise ValidationError(f"environment {name!r} is not a micromamba environment name")
    return micromamba_argv(name, [])


def _is_podman_client(client: Any) -> bool:
    return client is not None and type(client).__module__.split(".")[0] == "podman"


def engine_backend(client: Any | None = None) -> Backend:
    """The engine under the environment: Podman for a PodmanClient, else Docker."""
    if _is_podman_client(client):
        from llm_sandbox.backends.podman_engine import PodmanBackend

        return PodmanBackend(client)
    from llm_sandbox.backends.docker_engine import DockerBackend

    return DockerBackend(client)
