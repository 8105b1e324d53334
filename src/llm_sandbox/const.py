"""Names of the backends and languages the public API accepts."""

from __future__ import annotations

from enum import Enum
from typing import Literal


class _NamedByValue(str, Enum):
    """An enum whose members are their string values, as the reference implementation's are: ``str()`` and
    f-strings give the value (``"python"``, not ``"SupportedLanguage.PYTHON"``) and lookup ignores case."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def _missing_(cls, value: object) -> _NamedByValue | None:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.lower():
                    return member
        return None


class SandboxBackend(_NamedByValue):
    """Where sandboxes run."""

    DOCKER = "docker"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"
    MICROMAMBA = "micromamba"
    BUBBLEWRAP = "bubblewrap"


class SupportedLanguage(_NamedByValue):
    """Languages a session can run."""

    PYTHON = "python"
    JAVASCRIPT = "javascript"
    JAVA = "java"
    CPP = "cpp"
    GO = "go"
    RUBY = "ruby"
    R = "r"


EncodingErrorsType = Literal["strict", "replace", "ignore", "surrogateescape", "backslashreplace", "xmlcharrefreplace"]
"""The ``encoding_errors`` values a session accepts (those of ``bytes.decode``)."""


def __getattr__(name: str) -> object:
    # The reference keeps DefaultImage here; ours lives in llm_sandbox.compat, which imports the image names (and,
    # through them, this module): it is read on first use.
    if name == "DefaultImage":
        from llm_sandbox.compat import DefaultImage

        return DefaultImage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
