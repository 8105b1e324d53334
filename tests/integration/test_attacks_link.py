"""Engine execs the library waits on are bounded, on the real engines: a command that never ends is abandoned at
its deadline with a ContainerError that names it, and one that floods its output is cut at its byte cap and
abandoned, promptly, on Docker and Podman (containers made the way a user makes them) and on Kubernetes (a pod on
the fake API server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness import Harness
from llm_sandbox.backends.base import ABANDONED_EXIT, Backend, Command
from llm_sandbox.backends.kubernetes import KubernetesBackend
from llm_sandbox.backends.registry import get_backend_entry
from llm_sandbox.errors import ContainerError
from llm_sandbox.images import default_image

CAP = 1024 * 1024
FLOOD = 100 * 1024 * 1024
FLOODS = {
    "stdout": ["head", "-c", str(FLOOD), "/dev/zero"],
    "stderr": ["/bin/sh", "-c", f"head -c {FLOOD} /dev/zero >&2"],
}


def _check_deadline(backend: Backend) -> None:
    started = time.monotonic()
    with pytest.raises(ContainerError, match=r"'sleep' did not finish within its deadline of 1\.5 s"):
        backend.exec(Command(["sleep", "1000"], timeout=1.5))
    assert time.monotonic() - started < 6
    # The channel still works after an abandoned exec.
    assert backend.exec(Command(["echo", "still here"], timeout=30)).stdout == b"still here\n"


def _check_byte_cap(backend: Backend, stream: str) -> None:
    started = time.monotonic()
    output = backend.exec(Command(FLOODS[stream], timeout=60, output_limit=CAP))
    elapsed = time.monotonic() - started
    flooded, quiet = (output.stdout, output.stderr) if stream == "stdout" else (output.stderr, output.stdout)
    assert len(flooded) == CAP
    assert set(flooded) == {0}
    assert quiet == b""
    assert output.truncated
    assert output.exit_code == ABANDONED_EXIT
    assert elapsed < 15
    # Under the cap, nothing is cut and the exit code is the command's own.
    small = backend.exec(Command(["/bin/sh", "-c", "head -c 1000 /dev/zero; exit 3"], timeout=30, output_limit=CAP))
    assert (small.exit_code, len(small.stdout), small.truncated) == (3, 1000, False)


@pytest.fixture
def attached(backend: Harness, make_container: Any, engine_client: Any) -> Iterator[Backend]:
    """The library's backend for ``backend``'s engine, attached to a plain container the test made."""
    container = make_container()
    built, _prefix = get_backend_entry(backend.name).build(engine_client, {})
    built.attach(container.id)
    try:
        yield built
    finally:
        built.close()


@pytest.mark.backends("docker", "podman", "bubblewrap")
def test_an_exec_past_its_deadline_is_abandoned_promptly(attached: Backend) -> None:
    _check_deadline(attached)


@pytest.mark.backends("docker", "podman", "bubblewrap")
@pytest.mark.parametrize("stream", list(FLOODS))
def test_an_exec_past_its_byte_cap_is_cut_and_abandoned_promptly(attached: Backend, stream: str) -> None:
    _check_byte_cap(attached, stream)


@pytest.fixture
def pod(fake_kube: Any, kube_api: Any) -> Iterator[KubernetesBackend]:
    name = f"attack-link-{uuid.uuid4().hex[:8]}"
    body = {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": default_image("python"), "command": ["sleep", "infinity"]}]},
    }
    kube_api.create_namespaced_pod("default", body)
    backend = KubernetesBackend(client=kube_api)
    try:
        backend.attach(name)
        yield backend
    finally:
        backend.close()
        kube_api.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_a_pod_exec_past_its_deadline_is_abandoned_promptly(pod: KubernetesBackend) -> None:
    _check_deadline(pod)


def test_a_pod_exec_past_its_byte_cap_is_cut_and_abandoned_promptly(pod: KubernetesBackend) -> None:
    _check_byte_cap(pod, "stdout")
