"""Shared fixtures: a real Docker engine, the locally built images, and a leak check at the end of the run.

Tests that need an engine fail (they are never skipped) when it is missing: `scripts/test.sh` starts everything.
"""

from __future__ import annotations

import glob
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from llm_sandbox.images import build_hint, default_image

TEST_LABEL = "io.llm-sandbox.test"
MANAGED_LABEL = "io.llm-sandbox.managed"
PYTHON_IMAGE = default_image("python")


def _docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # the suite needs the engine: say how to get it
        pytest.fail(f"no Docker engine reachable ({error}); run scripts/test.sh, which starts it", pytrace=False)
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def python_image(docker_client: Any) -> str:
    import docker.errors

    try:
        docker_client.images.get(PYTHON_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{PYTHON_IMAGE} is missing; build it with: {build_hint('python')}", pytrace=False)
    return PYTHON_IMAGE


@pytest.fixture
def make_container(docker_client: Any, python_image: str) -> Iterator[Any]:
    """Start plain containers the way a user would (not through the library); removed at teardown."""
    created: list[Any] = []

    def start(image: str = python_image, **options: Any) -> Any:
        options.setdefault("command", ["sleep", "infinity"])
        options.setdefault("name", f"llm-sandbox-test-{uuid.uuid4().hex[:10]}")
        labels = {TEST_LABEL: "1", **options.pop("labels", {})}
        container = docker_client.containers.run(image, detach=True, labels=labels, **options)
        created.append(container)
        return container

    yield start
    for container in created:
        try:
            container.remove(force=True)
        except Exception:
            pass


def _leftovers(client: Any) -> list[str]:
    found = []
    for label in (MANAGED_LABEL, TEST_LABEL):
        for container in client.containers.list(all=True, filters={"label": label}):
            found.append(f"container {container.name} ({container.status})")
        for volume in client.volumes.list(filters={"label": label}):
            found.append(f"volume {volume.name}")
    pattern = os.path.join(tempfile.gettempdir(), ".llm_sandbox-*")
    found.extend(f"temporary file {path}" for path in glob.glob(pattern))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the whole run: no container, volume or temporary folder of the library or of the tests remains."""
    yield
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        return
    client = _docker_client()
    try:
        import time

        # The engine removes auto-removed containers asynchronously: give it a moment before judging.
        deadline = time.monotonic() + 10
        leftovers = _leftovers(client)
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.2)
            leftovers = _leftovers(client)
    finally:
        client.close()
    assert not leftovers, f"the test run left these behind: {leftovers}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to the real engine.
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.docker)
