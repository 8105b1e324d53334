"""Build the default sandbox images locally, without any image registry.

The images form one chain per engine::

    llm-sandbox/rootfs:bookworm   debootstrap --variant=minbase (python3, venv, pip, CA certificates, procps),
            │                     imported with ``<engine> import``
    llm-sandbox/base:bookworm     recipes/common.Dockerfile: host CA trust, /opt/venv (root), /sandbox and
            │                     /opt/llm-sandbox/user (uid 65534)
            │
    llm-sandbox/<lang>:bookworm   the language module's image_recipe: its toolchain from Debian packages

:class:`ImageBuilder` walks that chain for one engine, building each image whose recipe label is missing or
stale. The pieces it orchestrates live beside it: :mod:`~llm_sandbox.images.recipes` (recipe texts, hashes and
the plan of the chain), :mod:`~llm_sandbox.images.rootfs` (debootstrap settings, the host's mirror and CA
bundle, scratch directories and the build lock) and :mod:`~llm_sandbox.images.engines` (Docker and Podman
driven through their command-line tools).
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llm_sandbox.errors import ImageBuildError
from llm_sandbox.images import IMAGE_LANGUAGES, IMAGE_SUITE, RECIPE_LABEL, normalize_language
from llm_sandbox.images.engines import CliEngine, Engine, run_streaming
from llm_sandbox.images.recipes import ImageStep, image_plan, recipe_text
from llm_sandbox.images.rootfs import (
    DEBOOTSTRAP_PACKAGES,
    DEBOOTSTRAP_VARIANT,
    HOST_CA_BUNDLE,
    IMPORT_CHANGES,
    build_lock,
    parse_debian_mirror,
    prepare_rootfs,
    read_ca_bundle,
    scratch_dir,
)

log = logging.getLogger(__name__)


class ImageState(str, enum.Enum):
    """How a local image compares with its recipe."""

    PRESENT = "present"
    ABSENT = "absent"
    STALE = "stale"


@dataclass(frozen=True)
class ImageStatus:
    step: ImageStep
    qualified_tag: str
    state: ImageState
    size: int | None


@dataclass(frozen=True)
class BuildOutcome:
    """What a build did to one image: ``built`` or ``up to date``, and how long it took."""

    tag: str
    action: str
    seconds: float


def resolve_languages(names: Iterable[str]) -> list[str]:
    """Normalise language names (``all`` means every language); unknown names raise a ValueError subclass."""
    result: list[str] = []
    for name in names:
        if name.strip().lower() == "all":
            candidates: Iterable[str] = IMAGE_LANGUAGES
        else:
            candidates = [normalize_language(name)]
        for lang in candidates:
            if lang not in result:
                result.append(lang)
    return result


class ImageBuilder:
    """Builds and inspects the image chain for one engine."""

    def __init__(
        self,
        engine: Engine | str = "docker",
        *,
        mirror: str | None = None,
        ca_bundle_path: Path = HOST_CA_BUNDLE,
        load_recipe: Callable[[str], str] = recipe_text,
    ) -> None:
        self.engine: Engine = CliEngine(engine) if isinstance(engine, str) else engine
        self._mirror = mirror
        self._ca_bundle_path = ca_bundle_path
        self._load_recipe = load_recipe

    @property
    def mirror(self) -> str:
        if self._mirror is None:
            self._mirror = parse_debian_mirror()
        return self._mirror

    def plan(self) -> dict[str, ImageStep]:
        return image_plan(read_ca_bundle(self._ca_bundle_path), self._load_recipe)

    def status(self) -> list[ImageStatus]:
        """The state of every image of the chain under this engine."""
        self.engine.check()
        statuses: list[ImageStatus] = []
        for step in self.plan().values():
            info = self.engine.inspect(step.tag)
            if info is None:
                state, size = ImageState.ABSENT, None
            else:
                fresh = info.labels.get(RECIPE_LABEL) == step.recipe_hash
                state, size = (ImageState.PRESENT if fresh else ImageState.STALE), info.size
            statuses.append(ImageStatus(step, self.engine.qualify(step.tag), state, size))
        return statuses

    def build(self, languages: Sequence[str] = ("python",), force: bool = False) -> list[BuildOutcome]:
        """Build ``languages``, and the rootfs and base under them, where missing or stale.

        ``force`` rebuilds every image of the chain, without the engine's build cache.

        Returns one outcome per image of the chain, in build order.
        """
        wanted = resolve_languages(languages)
        self.engine.check()
        plan = self.plan()
        outcomes: list[BuildOutcome] = []
        replaced: list[str] = []
        started = time.monotonic()
        with build_lock(self.engine.name):
            for name in ["rootfs", "base", *wanted]:
                step = plan[name]
                info = self.engine.inspect(step.tag)
                if not force and info is not None and info.labels.get(RECIPE_LABEL) == step.recipe_hash:
                    log.debug("%s is up to date", self.engine.qualify(step.tag))
                    outcomes.append(BuildOutcome(step.tag, "up to date", 0.0))
                    continue
                reason = "forced" if force else ("missing" if info is None else "recipe changed")
                log.info("Building %s (%s)", self.engine.qualify(step.tag), reason)
                step_started = time.monotonic()
                if step.dockerfile is None:
                    self._build_rootfs(step)
                else:
                    self._build_layer(step, plan, no_cache=force)
                seconds = time.monotonic() - step_started
                log.info("Built %s in %.1f s", self.engine.qualify(step.tag), seconds)
                outcomes.append(BuildOutcome(step.tag, "built", seconds))
                if info is not None and info.id:
                    replaced.append(info.id)
            for image_id in reversed(replaced):  # children first, so that their parents become removable
                self.engine.remove_if_untagged(image_id)
        built = sum(1 for outcome in outcomes if outcome.action == "built")
        if built:
            log.info(
                "%d image(s) built, %d up to date, in %.1f s",
                built,
                len(outcomes) - built,
                time.monotonic() - started,
            )
        else:
            log.info("Images up to date: %s", ", ".join(self.engine.qualify(o.tag) for o in outcomes))
        return outcomes

    def _build_layer(self, step: ImageStep, plan: Mapping[str, ImageStep], no_cache: bool) -> None:
        assert step.dockerfile is not None
        assert step.parent is not None
        assert step.parent_arg is not None
        parent_tag = self.engine.qualify(plan[step.parent].tag)
        self.engine.build(
            step.tag,
            step.dockerfile,
            build_args={step.parent_arg: parent_tag},
            labels={RECIPE_LABEL: step.recipe_hash},
            no_cache=no_cache,
        )

    def _build_rootfs(self, step: ImageStep) -> None:
        """debootstrap a minimal Debian into a scratch directory and import it as ``step.tag``."""
        if os.geteuid() != 0:
            raise ImageBuildError(
                "Building the base image runs debootstrap, which needs root: run this command as root "
                "(for example with sudo)"
            )
        debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
        if debootstrap is None:
            raise ImageBuildError("debootstrap is not installed: apt-get install -y debootstrap")
        mirror = self.mirror
        env = dict(os.environ)
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        with scratch_dir("llm-sandbox-rootfs-") as scratch:
            root = scratch / "root"
            argv = [
                debootstrap,
                f"--variant={DEBOOTSTRAP_VARIANT}",
                f"--include={','.join(DEBOOTSTRAP_PACKAGES)}",
                IMAGE_SUITE,
                str(root),
                mirror,
            ]
            log.info("Running debootstrap %s from %s (about a minute)", IMAGE_SUITE, mirror)
            started = time.monotonic()
            run_streaming(argv, "debootstrap", env)
            log.info("debootstrap took %.1f s", time.monotonic() - started)
            self._prepare_rootfs(root)
            started = time.monotonic()
            self.engine.import_rootfs(root, step.tag, [*IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={step.recipe_hash}"])
            log.info("Import took %.1f s", time.monotonic() - started)

    def _prepare_rootfs(self, root: Path) -> None:
        """Drop APT caches and put the host CA bundle where the images expect it."""
        prepare_rootfs(root, self._ca_bundle_path)


__all__ = [
    "BuildOutcome",
    "ImageBuilder",
    "ImageState",
    "ImageStatus",
    "resolve_languages",
]
