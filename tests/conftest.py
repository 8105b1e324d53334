"""Shared fixtures: real engines (Docker and Podman), the locally built images, and a leak check at the end.

Tests that need an engine fail (they are never skipped) when it is missing: `scripts/test.sh` starts everything.
Tests that take the ``backend`` fixture form the contract suite: they run once per engine in ``ENGINES``.
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
FAKE_KUBE_LABEL = "io.llm-sandbox.fake-kube"  # on every container behind a pod of the fake Kubernetes API server
PYTHON_IMAGE = default_image("python")
ENGINES = ("docker", "podman")
PODMAN_SOCKET = "unix:///run/podman/podman.sock"


def _client(engine: str) -> Any:
    try:
        if engine == "docker":
            import docker

            client = docker.from_env()
        else:
            import podman

            client = podman.PodmanClient(base_url=os.environ.get("CONTAINER_HOST", PODMAN_SOCKET))
        client.ping()
    except Exception as error:  # the suite needs the engine: say how to get it
        pytest.fail(f"no {engine} engine reachable ({error}); run scripts/test.sh, which starts it", pytrace=False)
    return client


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = _client("docker")
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_client() -> Iterator[Any]:
    client = _client("podman")
    yield client
    client.close()


@pytest.fixture(scope="module", params=ENGINES)
def backend(request: pytest.FixtureRequest) -> str:
    """The engine a contract test runs on (every engine in turn)."""
    return str(request.param)


@pytest.fixture(scope="module")
def engine_client(backend: str, request: pytest.FixtureRequest) -> Any:
    """The SDK client of the engine under test, as a user would hold it."""
    return request.getfixturevalue(f"{backend}_client")


@pytest.fixture(scope="module")
def python_image(engine_client: Any, backend: str) -> str:
    try:
        engine_client.images.get(PYTHON_IMAGE)
    except Exception:
        pytest.fail(f"{PYTHON_IMAGE} is missing in {backend}; build it with: {build_hint('python', backend)}")
    return PYTHON_IMAGE


@pytest.fixture
def make_container(engine_client: Any, python_image: str) -> Iterator[Any]:
    """Start plain containers the way a user would (not through the library); removed at teardown."""
    created: list[Any] = []

    def start(image: str = python_image, **options: Any) -> Any:
        options.setdefault("command", ["sleep", "infinity"])
        options.setdefault("name", f"llm-sandbox-test-{uuid.uuid4().hex[:10]}")
        labels = {TEST_LABEL: "1", **options.pop("labels", {})}
        container = engine_client.containers.run(image, detach=True, labels=labels, **options)
        created.append(container)
        return container

    yield start
    for container in created:
        for action in (container.kill, lambda item=container: item.remove(force=True)):
            try:
                action()  # kill first: Podman's forced remove would wait out a stop grace period
            except Exception:
                pass


def _leftovers(client: Any) -> list[str]:
    found = []
    for label in (MANAGED_LABEL, TEST_LABEL, FAKE_KUBE_LABEL):
        for container in client.containers.list(all=True, filters={"label": label}):
            state = container.attrs.get("State")  # podman's list gives a plain string here
            found.append(f"container {container.name} ({state.get('Status') if isinstance(state, dict) else state})")
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
    import time

    clients = [_client(engine) for engine in ENGINES]
    try:
        # The engine removes auto-removed containers asynchronously: give it a moment before judging.
        deadline = time.monotonic() + 10
        leftovers = [item for client in clients for item in _leftovers(client)]
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.2)
            leftovers = [item for client in clients for item in _leftovers(client)]
    finally:
        for client in clients:
            client.close()
    assert not leftovers, f"the test run left these behind: {leftovers}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to the real engine.
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.docker)


# --- Kubernetes: the fake API server (llm_sandbox.testing.fake_kube), its pods backed by the Docker engine ------


@pytest.fixture(scope="session")
def fake_kube(docker_client: Any) -> Iterator[Any]:
    """A fake Kubernetes API server for the whole run; KUBECONFIG points at it while it runs.

    At the end it fails the run if a pod is left (each test removes what it made), then removes everything.
    """
    import shutil

    from llm_sandbox.testing.fake_kube import FakeKubeServer

    folder = tempfile.mkdtemp(prefix="llm-sandbox-test-kube-")
    server = FakeKubeServer(docker_client).start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(server.write_kubeconfig(os.path.join(folder, "kubeconfig")))
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        leftovers = [
            f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            for pod in server.store.list_pods(None, "")["items"]
        ]
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert not leftovers, f"the Kubernetes tests left these pods behind: {leftovers}"


@pytest.fixture(scope="session")
def kube_api(fake_kube: Any) -> Iterator[Any]:
    """A CoreV1Api on the fake server, made from its kubeconfig as a user would make one."""
    import kubernetes.config
    from kubernetes import client

    loader: Any = kubernetes.config  # its functions carry no annotations
    api = client.CoreV1Api(loader.new_client_from_config(config_file=str(fake_kube.kubeconfig_path)))
    yield api
    api.api_client.close()
