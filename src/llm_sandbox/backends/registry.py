"""The one place that knows the backends: name -> how to build it, which options mean something for it, and what it
guarantees (its ``BackendCapabilities``).

The built-in backends and third-party plugins go through the same door, :func:`register_backend`. A plugin package
may also announce itself with an entry point in the group ``llm_sandbox.backends`` (see ``backends/plugins.py``):
it is listed by name without being imported, and loaded the first time a session asks for it. Nothing here imports
a backend module or an engine SDK; a backend's factory is loaded when a sandbox of that backend is built.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import Backend, BackendCapabilities
from llm_sandbox.const import SandboxBackend
from llm_sandbox.errors import (
    ContainerError,
    SandboxError,
    UnknownOptionError,
    UnsupportedBackendError,
    ValidationError,
)
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
    attach=True,
    resource_limits=True,
    pooling=True,
    interactive=True,
)
# A pod has its own pid namespace and cgroup, and the restricted pod runs nothing but the code's uid. It has no
# init, no process or file-size limit, no image store, and exec cannot choose a user; the network is switched by
# relabelling the pod for the cluster's NetworkPolicy (docs/kubernetes.md).
KUBERNETES_CAPABILITIES = BackendCapabilities(
    pid_namespace=True,
    own_uid=True,
    own_cgroup=True,
    network_switch=True,
    attach=True,
    resource_limits=True,
    pooling=True,
    interactive=True,
)
# A bwrap process tree on this host (docs/bubblewrap.md): namespaces of its own but the user namespace, bwrap's
# reaper as PID 1, the helper as root with its capabilities alone, cgroup v1 limits, the disk cap's tmpfs places
# and a file-size rlimit. Installs are a step of their own with the host's network. No image store (it runs
# images of Docker or Podman), and nothing to attach to.
BUBBLEWRAP_CAPABILITIES = BackendCapabilities(
    pid_namespace=True,
    own_uid=True,
    own_cgroup=True,
    network_switch=True,
    init=True,
    user_switch=True,
    process_limit=True,
    file_size_limit=True,
    disk_limit=True,
    resource_limits=True,
    pooling=True,
    interactive=True,
)

Factory = Callable[..., Backend]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendEntry:
    """How to build one backend, lazily (its module and SDK load only when the backend is used)."""

    name: str
    #: "module:callable", or the callable itself; called with (client=..., **options) and returns a ``Backend``.
    factory: str | Factory
    #: Session options (keyword arguments of ``SandboxSession``) that only some backends understand and this one
    #: does; they are passed to the factory.
    options: frozenset[str]
    capabilities: BackendCapabilities
    # "module:callable" (or the callable) that checks runtime_configs for this backend and returns the dict to use.
    runtime_validator: str | Callable[[Mapping[str, Any]], dict[str, Any]] = (
        "llm_sandbox.backends.runtime_options:validate_runtime_configs"
    )
    # runtime_configs keys that configure the backend itself: also passed to the factory as keyword arguments.
    runtime_backend_options: frozenset[str] = frozenset()
    # "module:callable" giving the argv every command starts with (an environment wrapper composed with the
    # engine at bind time), called with the options in ``wrapper_options``; None: commands run as given.
    command_prefix: str | None = None
    wrapper_options: frozenset[str] = frozenset()
    #: Where the entry came from: "built-in", "register_backend" or the entry point's "module:attribute".
    origin: str = "built-in"

    def build(self, client: Any, options: Mapping[str, Any]) -> tuple[Backend, list[str]]:
        """A new, unbound backend and the argv prefix of every command run through it."""
        factory: Factory = _load(self.factory)
        backend = factory(client=client, **{k: v for k, v in options.items() if k not in self.wrapper_options})
        if not isinstance(backend, Backend):
            raise ContainerError(
                f"the factory of backend {self.name!r} returned {type(backend).__name__}, not a "
                "llm_sandbox.backends.base.Backend: a backend's factory builds the provisioner and channel of one "
                "sandbox (a session is made by SandboxSession itself)"
            )
        prefix: list[str] = []
        if self.command_prefix is not None:
            make_prefix: Callable[..., Sequence[str]] = _load(self.command_prefix)
            prefix = list(make_prefix(**{k: v for k, v in options.items() if k in self.wrapper_options}))
        return backend, prefix

    def validate_runtime_configs(self, configs: Mapping[str, Any]) -> dict[str, Any]:
        validator: Callable[[Mapping[str, Any]], dict[str, Any]] = _load(self.runtime_validator)
        return validator(configs)


def _load(reference: Any) -> Any:
    if not isinstance(reference, str):
        return reference
    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class _OnlyDeclaredRuntimeOptions:
    """The runtime_configs check of a plugin that brings none of its own: only the keys it declared are taken."""

    def __init__(self, backend: str, accepted: frozenset[str]) -> None:
        self.backend = backend
        self.accepted = accepted

    def __call__(self, configs: Mapping[str, Any]) -> dict[str, Any]:
        for key in configs:
            if key not in self.accepted:
                accepted = ", ".join(sorted(self.accepted)) or "none"
                raise UnknownOptionError(
                    f"runtime_configs[{key!r}] means nothing for the {self.backend} backend"
                    f"{did_you_mean(key, self.accepted)}; the keys it accepts: {accepted}"
                )
        return dict(configs)


_lock = threading.RLock()
_registered: dict[str, BackendEntry] = {}


def _normal_name(name: str | SandboxBackend) -> str:
    text = name.value if isinstance(name, SandboxBackend) else str(name)
    return text.strip().lower()


def register_backend(
    name: str,
    factory: str | Factory,
    *,
    capabilities: BackendCapabilities | None = None,
    options: Iterable[str] = (),
    runtime_options: Iterable[str] = (),
    runtime_validator: str | Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> BackendEntry:
    """Make ``backend=name`` build sandboxes with ``factory``; returns the registered entry.

    ``factory`` is a callable (or its "module:callable" path, imported on first use) called as
    ``factory(client=..., **options)`` and returning a :class:`~llm_sandbox.backends.base.Backend`.
    ``capabilities`` declares what the backend guarantees; an option that needs a capability it does not declare
    is refused when a session is made (the default declares nothing). ``options`` names the backend-specific
    session options it understands (``dockerfile``, ``kube_namespace``, …); ``runtime_options`` names the
    ``runtime_configs`` keys passed to the factory as keyword arguments. Without a ``runtime_validator``, a
    ``runtime_configs`` key it did not name is refused. A taken name is an error: names are never silently
    replaced (``unregister_backend`` first, to replace one on purpose).
    """
    entry = make_entry(
        name,
        factory,
        capabilities=capabilities,
        options=options,
        runtime_options=runtime_options,
        runtime_validator=runtime_validator,
    )
    _add(entry)
    return entry


def make_entry(
    name: str,
    factory: str | Factory,
    *,
    capabilities: BackendCapabilities | None = None,
    options: Iterable[str] = (),
    runtime_options: Iterable[str] = (),
    runtime_validator: str | Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
) -> BackendEntry:
    """A checked ``BackendEntry`` for a backend that is not built in (``register_backend`` registers it)."""
    key = _normal_name(name)
    if not key or not key.replace("-", "_").replace(".", "_").isidentifier():
        raise ValidationError(f"backend name {name!r} must be a non-empty word (letters, digits, '-', '_', '.')")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ValidationError(f"the factory of backend {key!r} must be a callable or a 'module:callable' path")
    declared = BackendCapabilities() if capabilities is None else capabilities
    if not isinstance(declared, BackendCapabilities):
        raise ValidationError(f"the capabilities of backend {key!r} must be a BackendCapabilities")
    taken_options = frozenset(options)
    unknown = sorted(taken_options - _SESSION_BACKEND_OPTIONS)
    if unknown:
        raise ValidationError(
            f"backend {key!r} declares session options that do not exist: {unknown}; pass backend settings "
            "through runtime_options (runtime_configs keys) instead"
        )
    accepted = frozenset(runtime_options)
    return BackendEntry(
        key,
        factory,
        taken_options,
        declared,
        runtime_validator=_OnlyDeclaredRuntimeOptions(key, accepted)
        if runtime_validator is None
        else runtime_validator,
        runtime_backend_options=accepted,
        origin="register_backend",
    )


def _add(entry: BackendEntry) -> None:
    with _lock:
        holder = _registered.get(entry.name)
        if holder is not None:
            raise ValidationError(
                f"backend name {entry.name!r} is taken (registered by {holder.origin}); choose another name, or "
                "call unregister_backend() first to replace it on purpose"
            )
        _registered[entry.name] = entry


def unregister_backend(name: str) -> None:
    """Forget a backend registered with :func:`register_backend` (built-in backends cannot be removed)."""
    key = _normal_name(name)
    with _lock:
        entry = _registered.get(key)
        if entry is None:
            raise UnsupportedBackendError(f"backend {key!r} is not registered")
        if entry.origin == "built-in":
            raise ValidationError(f"the built-in backend {key!r} cannot be unregistered")
        del _registered[key]


def get_backend(name: str | SandboxBackend | BackendEntry) -> BackendEntry:
    """The entry for ``name``: a built-in backend, one registered with :func:`register_backend`, or an installed
    plugin's (loaded now, on first use). UnsupportedBackendError names the backends there are."""
    if isinstance(name, BackendEntry):
        return name  # an entry itself is taken as it is (the test-only local backend of llm_sandbox.testing)
    key = _normal_name(name)
    with _lock:
        entry = _registered.get(key)
    if entry is not None:
        return entry
    from llm_sandbox.backends.plugins import load_plugin

    loaded = load_plugin(key)
    if loaded is not None:
        with _lock:
            if key not in _registered:
                _add(loaded)
            return _registered[key]
    known = backend_names()
    raise UnsupportedBackendError(
        f"backend {str(name)!r} is unknown{did_you_mean(key, known)}; available: {', '.join(known)} "
        "(a third-party backend must be installed, or registered with llm_sandbox.register_backend)"
    )


get_backend_entry = get_backend


def list_backends() -> tuple[BackendEntry, ...]:
    """Every backend ``backend=`` takes, in registration order: built-in, registered, then installed plugins.

    A plugin is listed from its entry point's declaration (a ``BackendEntry`` whose factory is a "module:callable"
    path), so listing imports neither its backend module nor its SDK; a plugin whose declaration cannot be loaded
    is left out of the list with a warning (asking for it by name says what is wrong).
    """
    from llm_sandbox.backends.plugins import plugin_names

    for name in plugin_names():
        with _lock:
            if name in _registered:
                continue
        try:
            get_backend(name)
        except SandboxError as error:
            logger.warning("backend plugin %r is not listed: %s", name, error)
    return tuple(registered_entries())


def backend_names() -> list[str]:
    """The names ``backend=`` takes, plugins included, without loading anything."""
    from llm_sandbox.backends.plugins import plugin_names

    with _lock:
        names = list(_registered)
    return names + [name for name in plugin_names() if name not in names]


def registered_entries() -> list[BackendEntry]:
    """The entries registered so far (plugins not yet used are not among them)."""
    with _lock:
        return list(_registered.values())


# The built-in backends, registered through the same door as any plugin.
BUILTIN_BACKENDS: tuple[BackendEntry, ...] = (
    BackendEntry(
        SandboxBackend.DOCKER.value,
        "llm_sandbox.backends.docker_engine:DockerBackend",
        frozenset({"dockerfile"}),
        OCI_CAPABILITIES,
    ),
    BackendEntry(
        SandboxBackend.PODMAN.value,
        "llm_sandbox.backends.podman_engine:PodmanBackend",
        frozenset({"dockerfile"}),
        OCI_CAPABILITIES,
    ),
    BackendEntry(
        SandboxBackend.MICROMAMBA.value,
        "llm_sandbox.backends.micromamba:engine_backend",
        frozenset({"dockerfile", "environment"}),
        OCI_CAPABILITIES,
        command_prefix="llm_sandbox.backends.micromamba:command_prefix",
        wrapper_options=frozenset({"environment"}),
    ),
    BackendEntry(
        SandboxBackend.KUBERNETES.value,
        "llm_sandbox.backends.kubernetes:KubernetesBackend",
        frozenset({"kube_namespace", "pod_manifest"}),
        KUBERNETES_CAPABILITIES,
        runtime_validator="llm_sandbox.backends.kube_pod:validate_runtime_configs",
        runtime_backend_options=frozenset({"pod_ready_timeout"}),
    ),
    BackendEntry(
        SandboxBackend.BUBBLEWRAP.value,
        "llm_sandbox.backends.bubblewrap:BubblewrapBackend",
        frozenset(),
        BUBBLEWRAP_CAPABILITIES,
        runtime_validator="llm_sandbox.backends.bubblewrap:validate_runtime_configs",
    ),
)

# Session options that only some backends understand; every other option is common to all.
BACKEND_SPECIFIC_OPTIONS: frozenset[str] = frozenset().union(*(entry.options for entry in BUILTIN_BACKENDS))
_SESSION_BACKEND_OPTIONS = BACKEND_SPECIFIC_OPTIONS

for _entry in BUILTIN_BACKENDS:
    _add(_entry)


def accepting(option: str) -> list[str]:
    """The registered backends that understand the backend-specific session option ``option``."""
    return [entry.name for entry in registered_entries() if option in entry.options]


BackendDefinition = BackendEntry
"""The reference implementation's name for a registered backend."""
