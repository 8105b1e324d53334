"""The shared contract tests of the hardened defaults, on the Kubernetes backend (against the fake API server).

These are the very test functions of ``test_hardening.py``, collected again with ``backend`` = "kubernetes".
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


globals().update(kube_contract.contract_tests("test_hardening.py", NOT_SHARED))
