"""The shared contract tests of the hardened defaults, on the Kubernetes backend (against the fake API server).

These are the very test functions of ``test_hardening.py``, collected again with ``backend`` = "kubernetes".
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
    "test_pid_one_is_an_init_owned_by_root": (
        "Kubernetes runs no init: PID 1 is the keep-alive command, under the pod's non-root uid"
    ),
    "test_pid_one_cannot_be_killed_or_traced": (
        "PID 1 shares the code's uid on Kubernetes (the kernel still ignores kill -9 from inside)"
    ),
    "test_fork_bomb_is_contained_and_the_next_run_works": (
        "a pod spec has no process limit (the kubelet's podPidsLimit decides, cluster-wide)"
    ),
    "test_giant_file_hits_the_file_size_limit": (
        "a pod spec has no file-size rlimit (ephemeral-storage limits evict the pod instead)"
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


globals().update(shared_tests("test_hardening.py", NOT_SHARED))


@pytest.fixture(scope="module")
def backend(fake_kube: Any) -> str:
    return "kubernetes"
