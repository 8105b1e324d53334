"""The image builder on the real engines: a tiny recipe built FROM the existing base image through
``ImageBuilder.build`` (labels, idempotency, rebuild on change, replaced images removed), the command-line
engine's inspect, and a failed debootstrap that leaves nothing behind.

The builder builds the chain rootfs -> base -> language. So that nothing the project uses is touched, the plan's
language step (or rootfs step) is given a test tag here; everything else (what is up to date, what is built, the
recipe label, the removal of replaced images) is the builder's own code path on the real engine.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from harness import Harness
from llm_sandbox.errors import ImageBuildError
from llm_sandbox.images import BASE_IMAGE, RECIPE_LABEL, ROOTFS_IMAGE, build_hint
from llm_sandbox.images import rootfs as rootfs_module
from llm_sandbox.images.builder import ImageBuilder, ImageState
from llm_sandbox.images.engines import CliEngine
from llm_sandbox.images.recipes import ImageStep, layer_hash, recipe_text

pytestmark = pytest.mark.backends("docker", "podman")

TINY_RECIPE = "ARG BASE_IMAGE=llm-sandbox/base:bookworm\nFROM ${{BASE_IMAGE}}\nRUN echo {version} > /etc/tiny-recipe\n"


class RetaggedBuilder(ImageBuilder):
    """The builder with some steps of its plan under other tags (``retag``: step name -> tag)."""

    def __init__(self, engine: str, retag: Mapping[str, str], **options: Any) -> None:
        super().__init__(engine, **options)
        self.retag = dict(retag)

    def plan(self) -> dict[str, ImageStep]:
        return {
            name: dataclasses.replace(step, tag=self.retag.get(name, step.tag)) for name, step in super().plan().items()
        }


class Recipes:
    """The shipped recipes, but a tiny one for ``python`` (the step that is retagged)."""

    def __init__(self) -> None:
        self.version = "v1"

    def __call__(self, name: str) -> str:
        return TINY_RECIPE.format(version=self.version) if name == "python" else recipe_text(name)


@pytest.fixture
def engine_name(backend: Harness) -> str:
    assert backend.engine is not None
    return backend.engine


@pytest.fixture
def tiny_tag(engine_name: str, engine_client: Any) -> Iterator[str]:
    tag = f"llm-sandbox-test/tiny-{uuid.uuid4().hex[:10]}:bookworm"
    yield tag
    engine = CliEngine(engine_name)
    info = engine.inspect(tag)
    if info is not None:
        engine_client.images.remove(engine.qualify(tag), force=True)


# Docker only: Podman gets its images by `python -m llm_sandbox.images copy`, which brings the base and the
# languages but not the rootfs, so a build there starts with debootstrap (a minute, and the shared rootfs tag).
@pytest.mark.backends("docker")
@pytest.mark.requires("images")
def test_a_tiny_recipe_is_built_once_and_rebuilt_when_it_changes(
    backend: Harness, engine_name: str, engine_client: Any, tiny_tag: str
) -> None:
    recipes = Recipes()
    builder = RetaggedBuilder(engine_name, {"python": tiny_tag}, load_recipe=recipes)
    statuses = {status.step.name: status.state for status in builder.status()}
    if statuses["rootfs"] is not ImageState.PRESENT or statuses["base"] is not ImageState.PRESENT:
        pytest.fail(
            f"{BASE_IMAGE} (or {ROOTFS_IMAGE}) is not current in {engine_name}: {statuses}; build it with: "
            f"{build_hint('python', engine_name)}",
            pytrace=False,
        )
    assert statuses["python"] is ImageState.ABSENT
    engine = builder.engine
    base_before = engine.inspect(BASE_IMAGE)

    first = builder.build(["python"])
    assert [(outcome.tag, outcome.action) for outcome in first] == [
        (ROOTFS_IMAGE, "up to date"),
        (BASE_IMAGE, "up to date"),
        (tiny_tag, "built"),
    ]
    plan = builder.plan()
    built = engine.inspect(tiny_tag)
    assert built is not None
    assert built.labels[RECIPE_LABEL] == plan["python"].recipe_hash
    assert plan["python"].recipe_hash == layer_hash(TINY_RECIPE.format(version="v1"), plan["base"].recipe_hash)
    assert engine_client.images.get(engine.qualify(tiny_tag)).labels[RECIPE_LABEL] == plan["python"].recipe_hash
    with backend.session(lang="python", image=engine.qualify(tiny_tag)) as session:
        assert session.execute_command("cat /etc/tiny-recipe").stdout == "v1\n"  # FROM the base: a working sandbox

    second = builder.build(["python"])
    assert [outcome.action for outcome in second] == ["up to date"] * 3
    again = engine.inspect(tiny_tag)
    assert again is not None and again.id == built.id

    recipes.version = "v2"
    third = builder.build(["python"])
    assert [outcome.action for outcome in third] == ["up to date", "up to date", "built"]
    rebuilt = engine.inspect(tiny_tag)
    assert rebuilt is not None
    assert rebuilt.id != built.id
    assert rebuilt.labels[RECIPE_LABEL] == builder.plan()["python"].recipe_hash != built.labels[RECIPE_LABEL]
    assert built.id not in {image.id for image in engine_client.images.list(all=True)}  # the replaced one is gone
    with backend.session(lang="python", image=engine.qualify(tiny_tag)) as session:
        assert session.execute_command("cat /etc/tiny-recipe").stdout == "v2\n"
    base_after = engine.inspect(BASE_IMAGE)
    assert base_before is not None and base_after is not None and base_after.id == base_before.id


@pytest.mark.requires("images")
def test_the_command_line_engine_inspects_real_images(engine_name: str, engine_client: Any) -> None:
    engine = CliEngine(engine_name)
    engine.check()
    assert engine.inspect(f"llm-sandbox-test/absent-{uuid.uuid4().hex[:10]}:1") is None
    base = engine.inspect(BASE_IMAGE)
    assert base is not None
    sdk_image = engine_client.images.get(engine.qualify(BASE_IMAGE))
    assert base.id.removeprefix("sha256:") == sdk_image.id.removeprefix("sha256:")
    assert base.size > 0
    assert base.labels.get(RECIPE_LABEL) == sdk_image.labels[RECIPE_LABEL]
    assert len(base.labels[RECIPE_LABEL]) == 64


def _scratch_entries() -> set[Path]:
    return set(rootfs_module.SCRATCH_PARENT.glob("llm-sandbox-rootfs-*"))


@pytest.mark.requires("images")
def test_a_failed_debootstrap_leaves_no_scratch_directory_and_no_image(engine_name: str) -> None:
    tag = f"llm-sandbox-test/rootfs-{uuid.uuid4().hex[:10]}:bookworm"
    # A mirror nothing listens on: debootstrap itself fails, quickly.
    builder = RetaggedBuilder(engine_name, {"rootfs": tag}, mirror="http://127.0.0.1:9/debian")
    before = _scratch_entries()
    with pytest.raises(ImageBuildError, match="debootstrap"):
        builder.build(["python"])
    assert _scratch_entries() <= before
    assert builder.engine.inspect(tag) is None


@pytest.mark.backends("docker")
def test_an_unreachable_engine_is_a_build_error_naming_the_cause(
    backend: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix:///nonexistent-{uuid.uuid4().hex[:8]}/docker.sock")
    with pytest.raises(ImageBuildError, match="nonexistent-"):
        CliEngine("docker").inspect(BASE_IMAGE)
