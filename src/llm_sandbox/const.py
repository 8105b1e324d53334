"""Names of the backends and languages the public API accepts."""

from __future__ import annotations

from enum import Enum


class SandboxBackend(str, Enum):
    """Where sandboxes run."""

    DOCKER = "docker"
    PODMAN = "podman"
    KUBERNETES = "kubernetes"
    MICROMAMBA = "micromamba"


class SupportedLanguage(str, Enum):
    """Languages a session can run."""

    PYTHON = "python"
    JAVASCRIPT = "javascript"
    JAVA = "java"
    CPP = "cpp"
    GO = "go"
    RUBY = "ruby"
    R = "r"
