"""The reference implementation's names (llm-sandbox 0.3.46) that this library spells differently, in one place.

Code written for the reference imports these names from the module paths it knows (``llm_sandbox.exceptions``,
``llm_sandbox.docker``, ``llm_sandbox.core.session_base``, ...); those modules re-export from here and from the
modules that hold our own names, so each reference name is one of our classes under its reference spelling, never
a second implementation. ``tests/unit/test_reference_names.py`` pins the whole list, and ``docs/reference-
compatibility.md`` lists where the behaviour behind a name deliberately differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.config import SessionOptions
from llm_sandbox.const import SandboxBackend
from llm_sandbox.errors import (
    ContainerError,
    LibraryInstallationNotSupportedError,
    NotOpenSessionError,
    UnknownOptionError,
    ValidationError,
)
from llm_sandbox.images import default_image
from llm_sandbox.languages.registry import LANGUAGES, get_language
from llm_sandbox.session import SandboxSession

# --- errors the reference names differently ---------------------------------------------------------------------

ExtraArgumentsError = UnknownOptionError
"""The reference's name for an unknown keyword argument; ours raises :class:`UnknownOptionError`."""

PackageManagerError = LibraryInstallationNotSupportedError
"""The reference raises it when a language has no package manager; ours raises
:class:`LibraryInstallationNotSupportedError` for that."""

InvalidRegexPatternError = ValidationError
"""The reference raises it for a security pattern that is not a regex; ours raises :class:`ValidationError`."""

CommandFailedError = ContainerError
"""The reference raises it when a command could not be run at all; ours raises :class:`ContainerError` then (a
command that runs and fails is a result with its exit code, in both)."""

LanguageHandlerNotInitializedError = NotOpenSessionError
"""The reference raises it when a session is used before it is set up; ours raises :class:`NotOpenSessionError`."""

# --- sessions ---------------------------------------------------------------------------------------------------

BaseSession = SandboxSession
"""What the reference's sessions derive from; ours all derive from :class:`SandboxSession`."""

SessionConfig = SessionOptions
"""A session's settings (``session.options``): ours groups them into what defines the sandbox (``.sandbox``) and
what governs a run (``.run``)."""

create_session = SandboxSession
"""The reference's factory behind ``SandboxSession(...)``; ours is the class itself, for every backend."""


class SandboxDockerSession(SandboxSession):
    """A :class:`SandboxSession` on Docker (the reference's Docker session class)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(backend=SandboxBackend.DOCKER, **options)


class SandboxPodmanSession(SandboxSession):
    """A :class:`SandboxSession` on Podman (the reference's Podman session class)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(backend=SandboxBackend.PODMAN, **options)


class SandboxKubernetesSession(SandboxSession):
    """A :class:`SandboxSession` on Kubernetes (the reference's Kubernetes session class)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(backend=SandboxBackend.KUBERNETES, **options)


class MicromambaSession(SandboxSession):
    """A :class:`SandboxSession` on Micromamba (the reference's Micromamba session class)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(backend=SandboxBackend.MICROMAMBA, **options)


class ArtifactPooledSandboxSession(ArtifactSandboxSession):
    """An :class:`ArtifactSandboxSession` that takes its sandbox from ``pool_manager`` (the reference's pooled
    artifact session; ours is ``ArtifactSandboxSession(pool=...)``)."""

    def __init__(self, pool_manager: Any, **options: Any) -> None:
        super().__init__(pool=pool_manager, **options)


# --- constants --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DefaultImages:
    """The default image of each language, as attributes (the reference's ``DefaultImage``). Ours are built on the
    machine (``python -m llm_sandbox.images build``), so the names are local ones, not registry addresses."""

    PYTHON: str = default_image("python")
    JAVA: str = default_image("java")
    JAVASCRIPT: str = default_image("javascript")
    CPP: str = default_image("cpp")
    GO: str = default_image("go")
    RUBY: str = default_image("ruby")
    R: str = default_image("r")


DefaultImage = _DefaultImages()


# --- library names ----------------------------------------------------------------------------------------------

PACKAGE_NAME_PATTERNS = {name: language.library_pattern for name, language in LANGUAGES.items()}
"""The pattern a library name must match in each language (local sources under the workdir are accepted too)."""


def validate_package_name(library: str, language: str) -> str:
    """Return ``library`` when ``language``'s package manager may be given it; else raise
    :class:`~llm_sandbox.errors.InvalidLibraryNameError` (a :class:`ValidationError`)."""
    get_language(language).check_library(library)
    return library
