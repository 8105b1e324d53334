"""Re-collect a Docker/Podman contract module's tests with ``backend`` = "kubernetes" (against the fake API server).

The contract modules take a ``backend`` fixture; a Kubernetes twin module loads a fresh copy of one, keeps its
``session`` fixture and its tests, and supplies its own ``backend``. A test Kubernetes does not share is still
collected and shown as skipped, with the reason (docs/kubernetes.md lists the differences).
"""

from __future__ import annotations

import inspect
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import pytest

ENGINE_ONLY_FIXTURES = {"engine_client", "make_container", "python_image", "docker_client", "podman_client"}
ENGINE_ONLY = "it holds a Docker or Podman SDK client; test_kubernetes*.py checks the same on pods"


@pytest.fixture(scope="module")
def backend(fake_kube: Any) -> str:
    return "kubernetes"


def contract_tests(file_name: str, not_shared: dict[str, str]) -> dict[str, Any]:
    """The ``session`` fixture and every test of ``file_name``, the unshared ones marked skipped with a reason."""
    path = Path(__file__).with_name(file_name)
    spec = spec_from_file_location(f"kubernetes_contract_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)  # a fresh copy: marking its tests leaves the original module's alone
    collected: dict[str, Any] = {"backend": backend}
    for name, value in vars(module).items():
        if name == "session":
            collected[name] = value
        elif name.startswith("test_"):
            reason = not_shared.get(name)
            if reason is None and ENGINE_ONLY_FIXTURES & set(inspect.signature(value).parameters):
                reason = ENGINE_ONLY
            collected[name] = pytest.mark.skip(reason=f"not on Kubernetes: {reason}")(value) if reason else value
    return collected
