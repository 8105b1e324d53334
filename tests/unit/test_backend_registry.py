"""The backend registry's own rules: names, lookups, refusals. (Plugins found through entry points, and sessions run
on a registered backend, are tested on the real engine in tests/integration/test_backend_plugins.py.)"""

from __future__ import annotations

import pytest

from llm_sandbox import (
    BackendCapabilities,
    SandboxBackend,
    SandboxSession,
    UnsupportedBackendError,
    ValidationError,
    get_backend,
    list_backends,
    register_backend,
    unregister_backend,
)
from llm_sandbox.backends.registry import BUILTIN_BACKENDS


def test_the_built_in_backends_are_listed_first_in_their_order() -> None:
    names = [entry.name for entry in list_backends()]
    assert names[: len(BUILTIN_BACKENDS)] == [entry.name for entry in BUILTIN_BACKENDS]
    assert {"docker", "podman", "kubernetes", "micromamba"} <= set(names)


def test_lookup_takes_the_enum_and_any_case() -> None:
    assert get_backend(SandboxBackend.PODMAN) is get_backend(" Podman ") is get_backend("podman")


def test_an_unknown_name_is_refused_with_a_suggestion_and_the_list() -> None:
    with pytest.raises(
        UnsupportedBackendError, match=r"'dokcer' is unknown \(did you mean 'docker'\?\); available: docker, podman"
    ):
        get_backend("dokcer")


@pytest.mark.parametrize(
    ("name", "factory", "options", "message"),
    [
        ("", "m:f", (), "non-empty word"),
        ("two words", "m:f", (), "non-empty word"),
        ("fine", "not-a-path", (), "callable or a 'module:callable' path"),
        ("fine", "m:f", ("kube_namespacee",), "session options that do not exist"),
    ],
)
def test_a_bad_registration_is_refused(name: str, factory: str, options: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        register_backend(name, factory, options=options)
    assert name not in [entry.name for entry in list_backends()]


def test_capabilities_must_be_a_declaration() -> None:
    with pytest.raises(ValidationError, match="must be a BackendCapabilities"):
        register_backend("fine", "m:f", capabilities={"images": True})  # type: ignore[arg-type]


def test_registered_options_and_runtime_options_reach_the_session_spec() -> None:
    register_backend(
        "with-options", "m:f", capabilities=BackendCapabilities(), options=["kube_namespace"], runtime_options=["zone"]
    )
    try:
        session = SandboxSession(backend="with-options", kube_namespace="team", runtime_configs={"zone": "b"})
        assert session.options.sandbox.backend_options == {"kube_namespace": "team", "zone": "b"}
        assert "zone" not in session.options.sandbox.runtime_configs  # the backend's setting, not the sandbox's
    finally:
        unregister_backend("with-options")
    with pytest.raises(UnsupportedBackendError, match="not registered"):
        unregister_backend("with-options")
