"""The shared contract tests of copying files in and out, on the Kubernetes backend (against the fake API server).

These are the very test functions of ``test_copy_files.py``, collected again with ``backend`` = "kubernetes".
Tests that hold a Docker or Podman SDK client, and those whose behaviour Kubernetes does not share, show as
skipped with their reason (docs/kubernetes.md lists the differences).
"""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

_spec = spec_from_file_location("kube_contract", Path(__file__).with_name("kube_contract.py"))
assert _spec is not None
assert _spec.loader is not None
kube_contract = module_from_spec(_spec)
_spec.loader.exec_module(kube_contract)

NOT_SHARED: dict[str, str] = {
    "test_file_round_trip_creates_missing_parents": (
        "a new folder under / needs root, and no exec on Kubernetes can be root (the pod's securityContext "
        "decides the user)"
    ),
    "test_huge_sparse_file_is_refused_before_reading": (
        "it lifts the Docker ulimit; test_kubernetes.py has the Kubernetes version"
    ),
}


globals().update(kube_contract.contract_tests("test_copy_files.py", NOT_SHARED))
