"""The image recipes, their hashes and the plan of the whole image chain.

Every image but the rootfs is built from a Dockerfile: ``recipes/common.Dockerfile`` (shipped beside this
module) makes the base, and each language's image comes from the ``image_recipe`` of its module in
:mod:`llm_sandbox.languages`, found through the language registry. :func:`image_plan` lists the chain in build
order as :class:`ImageStep` values.

Each image carries the label ``io.llm-sandbox.recipe=<sha256>``. The rootfs hash covers the debootstrap
arguments (suite, variant, package list; not the mirror, which does not change what is installed), the import
options and the host CA bundle; every other hash covers its recipe text plus its parent's hash. A build skips
an image whose label already matches and rebuilds one whose recipe (or any ancestor) changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llm_sandbox.errors import ImageBuildError
from llm_sandbox.images import BASE_IMAGE, IMAGE_LANGUAGES, IMAGE_SUITE, ROOTFS_IMAGE, default_image
from llm_sandbox.images.rootfs import (
    DEBOOTSTRAP_PACKAGES,
    DEBOOTSTRAP_VARIANT,
    IMPORT_CHANGES,
    ROOTFS_CA_BUNDLE,
    ROOTFS_LOCAL_CA_DIR,
)
from llm_sandbox.languages.registry import LANGUAGES

_HASH_VERSION = 1


COMMON_RECIPE = "common"
"""Name of the base image's recipe, ``recipes/common.Dockerfile``."""


def recipe_text(name: str) -> str:
    """The Dockerfile text of ``common`` (the base, from ``recipes/common.Dockerfile``) or of a language."""
    if name != COMMON_RECIPE:
        language = LANGUAGES.get(name)
        if language is None:
            raise ImageBuildError(
                f"There is no image recipe for {name!r}: it is neither {COMMON_RECIPE} nor a language"
            )
        return language.image_recipe
    resource = resources.files("llm_sandbox.images") / "recipes" / f"{name}.Dockerfile"
    try:
        return resource.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ImageBuildError(f"The recipe {name}.Dockerfile is missing from the installed package") from exc


def _sha256_json(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def rootfs_hash(ca_bundle: bytes | None) -> str:
    """Hash of the rootfs recipe: debootstrap arguments, import changes and the host CA bundle."""
    return _sha256_json(
        {
            "version": _HASH_VERSION,
            "kind": "rootfs",
            "suite": IMAGE_SUITE,
            "variant": DEBOOTSTRAP_VARIANT,
            "include": list(DEBOOTSTRAP_PACKAGES),
            "changes": list(IMPORT_CHANGES),
            "ca_layout": [ROOTFS_CA_BUNDLE, f"{ROOTFS_LOCAL_CA_DIR}/host-ca-<n>.crt (extras only)"],
            "ca_sha256": None if ca_bundle is None else hashlib.sha256(ca_bundle).hexdigest(),
        }
    )


def layer_hash(recipe: str, parent_hash: str) -> str:
    """Hash of a Dockerfile recipe layered on a parent whose hash is ``parent_hash``."""
    return _sha256_json({"version": _HASH_VERSION, "kind": "dockerfile", "recipe": recipe, "parent": parent_hash})


@dataclass(frozen=True)
class ImageStep:
    """One image of the chain: what it is called, what it is built from and the hash its label must carry."""

    name: str
    """``rootfs``, ``base`` or a language."""
    tag: str
    """Unqualified tag, e.g. ``llm-sandbox/python:bookworm``."""
    recipe_hash: str
    parent: str | None
    """Name of the step this one is built ``FROM`` (``None`` for the rootfs)."""
    dockerfile: str | None
    """Recipe text (``None`` for the rootfs, which debootstrap makes)."""
    parent_arg: str | None = None
    """Build argument through which the recipe receives its parent's tag."""


def image_plan(ca_bundle: bytes | None, load_recipe: Callable[[str], str] = recipe_text) -> dict[str, ImageStep]:
    """Every image the builder knows, keyed by name, in build order (rootfs, base, then the languages)."""
    root = ImageStep("rootfs", ROOTFS_IMAGE, rootfs_hash(ca_bundle), None, None)
    common = load_recipe(COMMON_RECIPE)
    base = ImageStep("base", BASE_IMAGE, layer_hash(common, root.recipe_hash), "rootfs", common, "ROOTFS_IMAGE")
    plan = {root.name: root, base.name: base}
    for lang in IMAGE_LANGUAGES:
        text = load_recipe(lang)
        plan[lang] = ImageStep(
            lang, default_image(lang), layer_hash(text, base.recipe_hash), "base", text, "BASE_IMAGE"
        )
    return plan


__all__ = [
    "COMMON_RECIPE",
    "ImageStep",
    "image_plan",
    "layer_hash",
    "recipe_text",
    "rootfs_hash",
]
