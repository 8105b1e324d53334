"""The one place that lists the backends: name -> how to build it and which options mean something for it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import Backend
from llm_sandbox.const import SandboxBackend
from llm_sandbox.errors import UnsupportedBackendError
from llm_sandbox.hints import did_you_mean

# Session options that only some backends understand; every other option is common to all.
BACKEND_SPECIFIC_OPTIONS = frozenset({"dockerfile", "kube_namespace", "pod_manifest", "environment"})


@dataclass(frozen=True)
class BackendEntry:
    """How to build one backend, lazily (its SDK loads only when the backend is used)."""

    name: SandboxBackend
    factory: str  # "module:callable", called with (client=..., **options)
    options: frozenset[str]
    # "module:callable" that checks runtime_configs for this backend and returns the dict to use.
    runtime_validator: str = "llm_sandbox.backends.runtime_options:validate_runtime_configs"
    # runtime_configs keys that configure the backend itself: also passed to the factory as keyword arguments.
    runtime_backend_options: frozenset[str] = frozenset()
    # Whether commit_container means something here (saving the sandbox as an image).
    can_commit: bool = True

    def build(self, client: Any, **options: Any) -> Backend:
        factory: Callable[..., Backend] = _load(self.factory)
        return factory(client=client, **options)

    def validate_runtime_configs(self, configs: Mapping[str, Any]) -> dict[str, Any]:
        validator: Callable[[Mapping[str, Any]], dict[str, Any]] = _load(self.runtime_validator)
        return validator(configs)


def _load(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


BACKENDS: dict[SandboxBackend, BackendEntry] = {
    SandboxBackend.DOCKER: BackendEntry(
        SandboxBackend.DOCKER, "llm_sandbox.backends.docker_engine:DockerBackend", frozenset({"dockerfile"})
    ),
    SandboxBackend.PODMAN: BackendEntry(
        SandboxBackend.PODMAN, "llm_sandbox.backends.podman_engine:PodmanBackend", frozenset({"dockerfile"})
    ),
    SandboxBackend.MICROMAMBA: BackendEntry(
        SandboxBackend.MICROMAMBA,
        "llm_sandbox.backends.micromamba:MicromambaBackend",
        frozenset({"dockerfile", "environment"}),
    ),
    SandboxBackend.KUBERNETES: BackendEntry(
        SandboxBackend.KUBERNETES,
        "llm_sandbox.backends.kubernetes:KubernetesBackend",
        frozenset({"kube_namespace", "pod_manifest"}),
        runtime_validator="llm_sandbox.backends.kube_pod:validate_runtime_configs",
        runtime_backend_options=frozenset({"pod_ready_timeout"}),
        can_commit=False,
    ),
}


def get_backend_entry(name: str | SandboxBackend) -> BackendEntry:
    """The entry for ``name``; UnsupportedBackendError names the known and the available backends."""
    try:
        key = SandboxBackend(name.value if isinstance(name, SandboxBackend) else str(name).strip().lower())
    except ValueError:
        known = [member.value for member in SandboxBackend]
        raise UnsupportedBackendError(
            f"backend {name!r} is unknown{did_you_mean(str(name).lower(), known)}; known: {', '.join(known)}"
        ) from None
    entry = BACKENDS.get(key)
    if entry is None:
        raise UnsupportedBackendError(
            f"backend {key.value!r} is not available in this version; available: "
            + ", ".join(member.value for member in BACKENDS)
        )
    return entry
