"""Third-party backends announced by installed packages, through the entry-point group ``llm_sandbox.backends``.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."llm_sandbox.backends"]
    firecracker = "my_package.backend:ENTRY"

The entry point's name is the backend's name (``SandboxBackend(backend="firecracker")``). Its object is either a
``BackendEntry`` (made with ``llm_sandbox.backends.plugins.plugin_entry``: the factory and everything the backend
declares) or a factory callable, whose ``capabilities`` attribute (a ``BackendCapabilities``) declares what it
guarantees (nothing, without one). Listing reads the installed packages' metadata only; the plugin's module is
imported the first time a session asks for that backend, so a plugin whose SDK is missing cannot break listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from llm_sandbox.backends.base import BackendCapabilities
from llm_sandbox.errors import UnsupportedBackendError

ENTRY_POINT_GROUP = "llm_sandbox.backends"


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def plugin_names() -> list[str]:
    """The backend names installed packages announce (nothing is imported)."""
    return list(dict.fromkeys(point.name.strip().lower() for point in _entry_points()))


def load_plugin(name: str) -> Any:
    """The ``BackendEntry`` of the installed plugin named ``name``, or None when no package announces it."""
    from llm_sandbox.backends.registry import BackendEntry

    points = [point for point in _entry_points() if point.name.strip().lower() == name]
    if not points:
        return None
    if len({point.value for point in points}) > 1:
        raise UnsupportedBackendError(
            f"backend {name!r} is announced by more than one installed package ("
            + ", ".join(sorted({point.value for point in points}))
            + "); uninstall all but one"
        )
    point = points[0]
    try:
        target = point.load()
    except Exception as error:
        raise UnsupportedBackendError(
            f"the plugin of backend {name!r} ({point.value}) could not be loaded: {error}"
        ) from error
    if isinstance(target, BackendEntry):
        if target.name != name:
            raise UnsupportedBackendError(
                f"the entry point {name!r} ({point.value}) gives a backend named {target.name!r}; the two must agree"
            )
        return _with_origin(target, point.value)
    if callable(target):
        declared = getattr(target, "capabilities", None)
        return plugin_entry(
            name,
            target,
            capabilities=declared if isinstance(declared, BackendCapabilities) else None,
            origin=point.value,
        )
    raise UnsupportedBackendError(
        f"the entry point of backend {name!r} ({point.value}) is neither a BackendEntry nor a factory callable"
    )


def plugin_entry(
    name: str,
    factory: Any,
    *,
    capabilities: BackendCapabilities | None = None,
    options: Iterable[str] = (),
    runtime_options: Iterable[str] = (),
    runtime_validator: Callable[[Mapping[str, Any]], dict[str, Any]] | str | None = None,
    origin: str = "entry point",
) -> Any:
    """A plugin's declaration, with the same checks as ``register_backend`` but without registering it (the
    registry takes it when the backend is first asked for)."""
    from llm_sandbox.backends import registry

    entry = registry.make_entry(
        name,
        factory,
        capabilities=capabilities,
        options=options,
        runtime_options=runtime_options,
        runtime_validator=runtime_validator,
    )
    return _with_origin(entry, origin)


def _with_origin(entry: Any, origin: str) -> Any:
    from dataclasses import replace

    return replace(entry, origin=origin)
