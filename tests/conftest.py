"""Shared fixtures: real engines (Docker and Podman), the locally built images, the backends under test, and a leak
check at the end.

Tests that need an engine fail (they are never skipped) when it is missing: `scripts/test.sh` starts everything.
Tests that take the ``backend`` fixture form the contract suite: they run once per harness in ``HARNESSES``
(tests/harness.py: Docker, Podman, Kubernetes on the fake API server, Micromamba in its stand-in image on Docker),
or on those a module names with ``pytestmark = pytest.mark.backends(...)``. A test marked
``@pytest.mark.requires("capability", ...)`` is skipped on a backend whose registry entry does not declare it, and
a test that takes ``engine_client`` on a backend with no engine SDK client; the skip reason says which and why.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/harness.py, for this file and the test modules

from harness import ENGINES, HARNESSES, TEST_LABEL, THIS_RUN, Harness, connect
from llm_sandbox.images import build_hint, default_image

PYTHON_IMAGE = default_image("python")
MICROMAMBA_STAND_IN = Path(__file__).parent / "fixtures" / "micromamba-stand-in"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): run only on backends whose registry entry declares every one of these "
        "BackendCapabilities (skipped elsewhere, saying which is missing)",
    )
    config.addinivalue_line(
        "markers", "backends(*names): run this module's backend-parametrized tests on these harnesses only"
    )


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    client = connect("docker")
    yield client
    client.close()


@pytest.fixture(scope="session")
def podman_client() -> Iterator[Any]:
    client = connect("podman")
    yield client
    client.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that takes ``backend`` runs once per harness (or per harness its module names)."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = list(marker.args) if marker is not None else list(HARNESSES)
    unknown = [name for name in names if name not in HARNESSES]
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: no harness named {unknown}; known: {list(HARNESSES)}")
    metafunc.parametrize("backend", names, indirect=True, scope="module", ids=names)


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Harness:
    """The backend a contract test runs on (every harness in turn)."""
    return HARNESSES[request.param].start(request)


@pytest.fixture(scope="module")
def engine_client(backend: Harness) -> Any:
    """The SDK client of the engine under the backend, as a user would hold it."""
    if backend.sdk_client is None:
        reason = backend.skip_reason((), needs_sdk_client=True)
        pytest.skip(reason or f"the {backend.name} harness holds no engine SDK client")
    return backend.sdk_client


@pytest.fixture(scope="module")
def python_image(engine_client: Any, backend: Harness) -> str:
    try:
        engine_client.images.get(PYTHON_IMAGE)
    except Exception:
        engine = backend.engine or "docker"
        pytest.fail(f"{PYTHON_IMAGE} is missing in {engine}; build it with: {build_hint('python', engine)}")
    return PYTHON_IMAGE


@pytest.fixture
def make_container(engine_client: Any, python_image: str) -> Iterator[Any]:
    """Start plain containers the way a user would (not through the library); removed at teardown."""
    created: list[Any] = []

    def start(image: str = python_image, **options: Any) -> Any:
        options.setdefault("command", ["sleep", "infinity"])
        options.setdefault("name", f"llm-sandbox-test-{uuid.uuid4().hex[:10]}")
        labels = {TEST_LABEL: str(os.getpid()), **options.pop("labels", {})}
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


@pytest.fixture(scope="session")
def micromamba_stand_in_image(docker_client: Any) -> Iterator[str]:
    """The Python image with the micromamba STAND-IN (tests/fixtures/micromamba-stand-in), built once on Docker."""
    try:
        docker_client.images.get(PYTHON_IMAGE)
    except Exception:
        pytest.fail(f"{PYTHON_IMAGE} is missing in docker; build it with: {build_hint('python')}", pytrace=False)
    tag = f"llm-sandbox-test/micromamba-stand-in:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(
        path=str(MICROMAMBA_STAND_IN), tag=tag, buildargs={"BASE_IMAGE": PYTHON_IMAGE}, rm=True, forcerm=True
    )
    yield tag
    docker_client.images.remove(tag, force=True)


def _leftovers(clients: dict[str, Any]) -> list[str]:
    found = [item for harness in HARNESSES.values() for item in harness.leftovers(clients)]
    pattern = os.path.join(tempfile.gettempdir(), ".llm_sandbox-*")
    found.extend(f"temporary file {path}" for path in glob.glob(pattern))
    return list(dict.fromkeys(found))  # harnesses on the same engine see the same containers


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the whole run: no container, volume or temporary folder of the library or of the tests remains, on
    any harness's backend."""
    yield
    if not any(item.get_closest_marker("docker") for item in request.session.items):
        return
    clients = {engine: connect(engine) for engine in ENGINES}
    try:
        # The engine removes auto-removed containers asynchronously: give it a moment before judging.
        deadline = time.monotonic() + 10
        leftovers = _leftovers(clients)
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.2)
            leftovers = _leftovers(clients)
    finally:
        for client in clients.values():
            client.close()
    assert not leftovers, f"the test run left these behind: {leftovers}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # Everything under tests/integration talks to the real engine.
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.docker)
        required = [name for marker in item.iter_markers("requires") for name in marker.args]
        callspec = getattr(item, "callspec", None) if isinstance(item, pytest.Function) else None
        harness = None if callspec is None else callspec.params.get("backend")
        if harness is None or not isinstance(item, pytest.Function):
            if required:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires needs the test to take `backend`")
            continue
        reason = HARNESSES[harness].skip_reason(required, needs_sdk_client="engine_client" in item.fixturenames)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


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
    THIS_RUN.add(server.server_id)
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
