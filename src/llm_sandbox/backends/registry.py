"""The one place that lists the backends: name -> how to build it, which options mean something for it, and what
it guarantees (its ``BackendCapabilities``). Nothing here imports a backend module or an engine SDK."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import Backend, BackendCapabilities
from llm_sandbox.const import SandboxBackend
from llm_sandbox.errors import UnsupportedBackendError
from llm_sandbox.hints import did_you_mean

# Everything SECURITY.md's hardened defaults give a container the library creates on Docker or Podman.
OCI_CAPABILITIES = BackendCapabilities(
    pid_namespace=True,
    own_uid=True,
    own_cgroup=True,
    network_switch=True,
    images=True,
    commit=True,
    init=True,
    user_switch=True,
    process_limit=True,
    file_size_limit=True,
    disk_limit=True,
)
# A pod has its own pid namespace and cgroup, and the restricted pod runs nothing but the code's uid. It has no
# init, no process or file-size limit, no image store, and exec cannot choose a user; the network is switched by
# relabelling the pod for the cluster's NetworkPolicy (docs/kubernetes.md).
KUBERNETES_CAPABILITIES = BackendCapabilities(pid_namespace=True, own_uid=True, own_cgroup=True, network_switch=True)


@dataclass(frozen=True)
class BackendEntry:
    """How to build one backend, lazily (its module and SDK load only when the backend is used)."""

    name: str
    factory: str  # "module:callable", called with (client=..., **options)
    options: frozenset[str]
    capabilities: BackendCapabilities
    # "module:callable" that checks runtime_configs for this backend and returns the dict to use.
    runtime_validator: str = "llm_sandbox.backends.runtime_options:validate_runtime_configs"
    # runtime_configs keys that configure the backend itself: also passed to the factory as keyword arguments.
    runtime_backend_options: frozenset[str] = frozenset()
    # "module:callable" giving the argv every command starts with (an environment wrapper composed with the
    # engine at bind time), called with the options in ``wrapper_options``; None: commands run as given.
    command_prefix: str | None = None
    wrapper_options: frozenset[str] = frozenset()

    def build(self, client: Any, options: Mapping[str, Any]) -> tuple[Backend, list[str]]:
        """A new, unbound backend and the argv prefix of every command run through it."""
        factory: Callable[..., Backend] = _load(self.factory)
        backend = factory(client=client, **{k: v for k, v in options.items() if k not in self.wrapper_options})
        prefix: list[str] = []
        if self.command_prefix is not None:
            make_prefix: Callable[..., Sequence[str]] = _load(self.command_prefix)
            prefix = list(make_prefix(**{k: v for k, v in options.items() if k in self.wrapper_options}))
        return backend, prefix

    def validate_runtime_configs(self, configs: Mapping[str, Any]) -> dict[str, Any]:
        validator: Callable[[Mapping[str, Any]], dict[str, Any]] = _load(self.runtime_validator)
        return validator(configs)


def _load(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


BACKENDS: dict[SandboxBackend, BackendEntry] = {
    SandboxBackend.DOCKER: BackendEntry(
        SandboxBackend.DOCKER.value,
        "llm_sandbox.backends.docker_engine:DockerBackend",
        frozenset({"dockerfile"}),
        OCI_CAPABILITIES,
    ),
    SandboxBackend.PODMAN: BackendEntry(
        SandboxBackend.PODMAN.value,
        "llm_sandbox.backends.podman_engine:PodmanBackend",
        frozenset({"dockerfile"}),
        OCI_CAPABILITIES,
    ),
    SandboxBackend.MICROMAMBA: BackendEntry(
        SandboxBackend.MICROMAMBA.value,
        "llm_sandbox.backends.micromamba:engine_backend",
        frozenset({"dockerfile", "environment"}),
        OCI_CAPABILITIES,
        command_prefix="llm_sandbox.backends.micromamba:command_prefix",
        wrapper_options=frozenset({"environment"}),
    ),
    SandboxBackend.KUBERNETES: BackendEntry(
        SandboxBackend.KUBERNETES.value,
        "llm_sandbox.backends.kubernetes:KubernetesBackend",
        frozenset({"kube_namespace", "pod_manifest"}),
        KUBERNETES_CAPABILITIES,
        runtime_validator="llm_sandbox.backends.kube_pod:validate_runtime_configs",
        runtime_backend_options=frozenset({"pod_ready_timeout"}),
    ),
}


def get_backend_entry(name: str | SandboxBackend | BackendEntry) -> BackendEntry:
    """The entry for ``name``; UnsupportedBackendError names the known and the available backends.

    An entry itself is taken as it is: that is how a backend outside this list (the test-only local backend in
    ``llm_sandbox.testing``) is used without being listed here.
    """
    if isinstance(name, BackendEntry):
        return name
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


# Session options that only some backends understand; every other option is common to all.
BACKEND_SPECIFIC_OPTIONS = frozenset().union(*(entry.options for entry in BACKENDS.values()))
