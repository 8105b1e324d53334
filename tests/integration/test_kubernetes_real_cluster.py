"""The Kubernetes backend against a real cluster (kind, k3s, …), when one is configured.

Set ``LLM_SANDBOX_REAL_KUBECONFIG`` to a kubeconfig; optionally ``LLM_SANDBOX_REAL_NAMESPACE`` (default
"default") and ``LLM_SANDBOX_REAL_IMAGE`` (default: the project's python image, which the cluster's nodes must
have: ``kind load docker-image llm-sandbox/python:bookworm``; docs/kubernetes.md). Without it, every test here
is skipped with a reason that says so: no cluster can be installed on the project's machines.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_sandbox import ContainerError, SandboxSession, SandboxTimeoutError
from llm_sandbox.images import default_image

KUBECONFIG = os.environ.get("LLM_SANDBOX_REAL_KUBECONFIG", "")
NAMESPACE = os.environ.get("LLM_SANDBOX_REAL_NAMESPACE", "default")
IMAGE = os.environ.get("LLM_SANDBOX_REAL_IMAGE", default_image("python"))

pytestmark = pytest.mark.skipif(
    not KUBECONFIG,
    reason="no real Kubernetes cluster here: set LLM_SANDBOX_REAL_KUBECONFIG to a kubeconfig to run these",
)


@pytest.fixture(scope="module")
def real_api() -> Iterator[Any]:
    import kubernetes.config
    from kubernetes import client

    loader: Any = kubernetes.config
    api = client.CoreV1Api(loader.new_client_from_config(config_file=KUBECONFIG))
    yield api
    api.api_client.close()


def _session(api: Any, **options: Any) -> SandboxSession:
    return SandboxSession(backend="kubernetes", client=api, kube_namespace=NAMESPACE, image=IMAGE, **options)


def test_new_pod_runs_code_commands_and_files(real_api: Any, tmp_path: Path) -> None:
    with _session(real_api, lang="python") as session:
        result = session.run("import sys, os\nprint(os.getuid())\nsys.stdout.buffer.write(b'\\xff')\nsys.exit(3)")
        assert (result.exit_code, result.stdout) == (3, "65534\n\ufffd")
        assert session.execute_command("echo $((6 * 7)) | tr 4 x").stdout == "x2\n"
        local = tmp_path / "data.bin"
        local.write_bytes(bytes(range(256)))
        session.copy_to_runtime(str(local), "/sandbox/in/data.bin")
        session.copy_from_runtime("/sandbox/in", str(tmp_path / "out"))
        assert (tmp_path / "out" / "in" / "data.bin").read_bytes() == bytes(range(256))
        with pytest.raises(SandboxTimeoutError):
            session.run("while True: pass", timeout=2)
        assert session.run("print('alive')").stdout == "alive\n"
        name = session.container_id
    deadline = time.monotonic() + 30
    while any(pod.metadata.name == name for pod in real_api.list_namespaced_pod(NAMESPACE).items):
        assert time.monotonic() < deadline, f"pod {name} was not deleted"
        time.sleep(0.5)


def test_existing_pod_is_attached_and_kept(real_api: Any) -> None:
    name = f"llm-sandbox-real-{uuid.uuid4().hex[:8]}"
    body = {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "600"]}]},
    }
    real_api.create_namespaced_pod(NAMESPACE, body)
    try:
        with _session(real_api, container_id=name, lang="python") as session:
            assert session.run("print('attached')").stdout == "attached\n"
        assert real_api.read_namespaced_pod(name, NAMESPACE).status.phase == "Running"
        with pytest.raises(ContainerError):
            _session(real_api, container_id=f"{name}-missing", lang="python").open()
    finally:
        real_api.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=0)
