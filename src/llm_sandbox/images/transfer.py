"""Copy built images from one engine to another (``docker save | podman load``), skipping what is current.

Building for Podman from scratch repeats the minute-long debootstrap; loading Docker's images takes seconds and
keeps the recipe labels, so idempotency works the same on both engines.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence

from llm_sandbox.errors import ImageBuildError
from llm_sandbox.images import BASE_IMAGE, RECIPE_LABEL, default_image
from llm_sandbox.images.engines import CliEngine

log = logging.getLogger(__name__)


def _recipe(engine: CliEngine, tag: str) -> str | None:
    info = engine.inspect(tag)
    return None if info is None else info.labels.get(RECIPE_LABEL)


def copy_images(languages: Sequence[str], source: str = "docker", target: str = "podman") -> list[str]:
    """Copy the base and the languages' images from ``source`` to ``target``; return the tags copied."""
    origin, destination = CliEngine(source), CliEngine(target)
    origin.check()
    destination.check()
    wanted = [BASE_IMAGE, *(default_image(language) for language in languages)]
    stale = []
    for tag in wanted:
        recipe = _recipe(origin, tag)
        if recipe is None:
            raise ImageBuildError(f"{tag} is not built for {source}: python -m llm_sandbox.images build {tag}")
        if _recipe(destination, tag) != recipe:
            stale.append(tag)
    if not stale:
        log.info("Images up to date in %s: %s", target, ", ".join(wanted))
        return []
    started = time.monotonic()
    log.info("Copying %s from %s to %s", ", ".join(stale), source, target)
    with subprocess.Popen([source, "save", *stale], stdout=subprocess.PIPE) as save:
        loaded = subprocess.run([target, "load"], stdin=save.stdout, capture_output=True, text=True, check=False)
    if save.returncode != 0 or loaded.returncode != 0:
        raise ImageBuildError(f"copying images to {target} failed: {loaded.stderr.strip()[-2000:]}")
    log.info("Copied in %.1f s", time.monotonic() - started)
    return stale
