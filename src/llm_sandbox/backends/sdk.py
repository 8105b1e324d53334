"""Lazy imports of engine SDKs: ``import llm_sandbox`` never loads docker, podman or kubernetes."""

from __future__ import annotations

import importlib
from types import ModuleType

from llm_sandbox.errors import MissingDependencyError


def import_sdk(module: str, *, extra: str) -> ModuleType:
    """Import an engine SDK, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"the {module!r} package is needed for this backend: pip install 'llm-sandbox[{extra}]'"
        ) from error
