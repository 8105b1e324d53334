"""Default sandbox images, built locally from the host's Debian mirror (no registry needed).

Every supported language has a default image, ``llm-sandbox/<lang>:bookworm``. The images are not
pulled from anywhere: ``python -m llm_sandbox.images build <lang>`` builds them on the machine, from a
``debootstrap`` base plus one Dockerfile per language, the ``image_recipe`` of its module in
:mod:`llm_sandbox.languages` (see :mod:`llm_sandbox.images.builder`). Under Podman the same images carry the
``localhost/`` prefix (``localhost/llm-sandbox/python:bookworm``); Podman resolves the short name to it.

Importing this module is cheap: it runs no subprocess and imports no engine SDK, only the language registry
(plain data, which never imports this package). The session code uses :func:`default_image` to pick an image
and :func:`build_hint` to tell the user how to build a missing one.
"""

from __future__ import annotations

from enum import Enum

from llm_sandbox.errors import LanguageNotSupportedError, UnsupportedBackendError
from llm_sandbox.labels import RECIPE_LABEL
from llm_sandbox.languages.registry import LANGUAGES

IMAGE_LANGUAGES: tuple[str, ...] = tuple(LANGUAGES)
"""Languages that have a default image, in build order (the order of the language registry)."""

IMAGE_REPOSITORY = "llm-sandbox"
"""Repository prefix shared by every image the builder makes."""

IMAGE_SUITE = "bookworm"
"""Debian suite the images are built from; also their tag."""

BASE_IMAGE = f"{IMAGE_REPOSITORY}/base:{IMAGE_SUITE}"
"""The common base every language image is built ``FROM``: the Debian rootfs plus the Python helper venv."""

ROOTFS_IMAGE = f"{IMAGE_REPOSITORY}/rootfs:{IMAGE_SUITE}"
"""The bare ``debootstrap`` root filesystem, imported as an image; the base is layered on it."""

"""Image label holding the sha256 of the recipe chain an image was built from."""

BUILD_ENGINES: tuple[str, ...] = ("docker", "podman")
"""Container engines the builder can drive."""


def normalize_language(lang: str) -> str:
    """The canonical name of ``lang`` (case-insensitive; a ``SupportedLanguage`` member works too).

    Raises :class:`~llm_sandbox.errors.LanguageNotSupportedError` (a ``ValueError``) naming the supported
    languages.
    """
    name = lang.value if isinstance(lang, Enum) else lang
    if not isinstance(name, str):
        raise LanguageNotSupportedError(
            f"Language must be a string, got {type(lang).__name__}; supported: {', '.join(IMAGE_LANGUAGES)}"
        )
    key = name.strip().lower()
    if key not in IMAGE_LANGUAGES:
        raise LanguageNotSupportedError(f"Language {name!r} is not supported; supported: {', '.join(IMAGE_LANGUAGES)}")
    return key


def default_image(lang: str) -> str:
    """The default image for ``lang`` (case-insensitive), e.g. ``llm-sandbox/python:bookworm``.

    Raises :class:`~llm_sandbox.errors.LanguageNotSupportedError` (a ``ValueError``) for an unknown language.
    """
    return f"{IMAGE_REPOSITORY}/{normalize_language(lang)}:{IMAGE_SUITE}"


def build_hint(lang: str, engine: str = "docker") -> str:
    """The shell command that builds the default image of ``lang`` for ``engine`` (``docker`` or ``podman``).

    The first build needs root (``debootstrap``) and the ``debootstrap`` package; later builds reuse the base.
    """
    name = normalize_language(lang)
    engine_name = engine.value if isinstance(engine, Enum) else engine
    engine_key = str(engine_name).strip().lower()
    if engine_key not in BUILD_ENGINES:
        raise UnsupportedBackendError(f"Images can be built for {' or '.join(BUILD_ENGINES)}, not {engine_name!r}")
    engine_option = "" if engine_key == "docker" else f" --engine {engine_key}"
    return f"python -m llm_sandbox.images build{engine_option} {name}"


__all__ = [
    "BASE_IMAGE",
    "BUILD_ENGINES",
    "IMAGE_LANGUAGES",
    "IMAGE_REPOSITORY",
    "IMAGE_SUITE",
    "RECIPE_LABEL",
    "ROOTFS_IMAGE",
    "build_hint",
    "default_image",
    "normalize_language",
]
