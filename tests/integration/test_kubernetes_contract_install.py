"""The shared contract tests of installs and the security policy, on the Kubernetes backend (the fake server).

These are the very test functions of ``test_install_and_policy.py``, collected again with ``backend`` = "kubernetes".
Tests that hold a Docker or Podman SDK client show as skipped with their reason.
"""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

_spec = spec_from_file_location("kube_contract", Path(__file__).with_name("kube_contract.py"))
assert _spec is not None
assert _spec.loader is not None
kube_contract = module_from_spec(_spec)
_spec.loader.exec_module(kube_contract)

globals().update(kube_contract.contract_tests("test_install_and_policy.py", {}))
