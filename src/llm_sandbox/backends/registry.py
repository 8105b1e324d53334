"""The one place that lists the backends: name -> how to build it and which options mean something for it."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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

    def build(self, client: Any, **options: Any) -> Backend:
        module_name, _, attribute = self.factory.partition(":")
        factory: Callable[..., Backend] = getattr(importlib.import_module(module_name), attribute)
        return factory(client=client, **options)


BACKENDS: dict[SandboxBackend, BackendEntry] = {
    SandboxBackend.DOCKER: BackendEntry(
        SandboxBackend.DOCKER, "llm_sandbox.backends.oci:DockerBackend", frozenset({"dockerfile"})
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
