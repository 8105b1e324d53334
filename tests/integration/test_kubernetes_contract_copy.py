"""The shared contract tests of copying files in and out, on the Kubernetes backend (against the fake API server).

These are the very test functions of ``test_copy_files.py``, collected again with ``backend`` = "kubernetes".
Left out: tests that hold a Docker or Podman SDK client (``ENGINE_ONLY_FIXTURES``), and those whose behaviour
Kubernetes does not share, each with its reason (docs/kubernetes.md lists the differences).
"""

from __future__ import annotations

import inspect
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import pytest

ENGINE_ONLY_FIXTURES = {"engine_client", "make_container", "python_image", "docker_client", "podman_client"}
NOT_SHARED: dict[str, str] = {
    "test_file_round_trip_creates_missing_parents": (
        "a new folder under / needs root, and no exec on Kubernetes can be root (the pod's securityContext "
        "decides the user)"
    ),
    "test_huge_sparse_file_is_refused_before_reading": (
        "it lifts the Docker ulimit; test_kubernetes.py has the Kubernetes version"
    ),
}


def engine_only(test: Any) -> bool:
    return bool(ENGINE_ONLY_FIXTURES & set(inspect.signature(test).parameters))


def shared_tests(file_name: str, not_shared: dict[str, str]) -> dict[str, Any]:
    """The tests (and the ``session`` fixture) of a sibling contract module that Kubernetes shares."""
    path = Path(__file__).with_name(file_name)
    spec = spec_from_file_location(f"kubernetes_contract_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        name: value
        for name, value in vars(module).items()
        if name == "session" or (name.startswith("test_") and name not in not_shared and not engine_only(value))
    }


globals().update(shared_tests("test_copy_files.py", NOT_SHARED))


@pytest.fixture(scope="module")
def backend(fake_kube: Any) -> str:
    return "kubernetes"
