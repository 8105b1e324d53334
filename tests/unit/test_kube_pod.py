"""The Kubernetes backend's pure logic: the pod it asks for, option checks, argv wrapping, pod states."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from llm_sandbox import ContainerError, SandboxSession, UnknownOptionError, ValidationError
from llm_sandbox.backends.base import ContainerSpec, Limits
from llm_sandbox.backends.kube_client import api_status, default_kube_client
from llm_sandbox.backends.kube_pod import (
    build_manifest,
    check_pod,
    cpu_quantity,
    label_value,
    memory_quantity,
    validate_runtime_configs,
)
from llm_sandbox.backends.kubernetes import KubernetesBackend, wrap_argv
from llm_sandbox.labels import EGRESS_LABEL
from llm_sandbox.testing.fake_kube_admission import restricted_violations


def _spec(**changes: Any) -> ContainerSpec:
    values: dict[str, Any] = {
        "image": "img:1",
        "command": ["sleep", "infinity"],
        "workdir": "/sandbox",
        "code_user": "65534:65534",
        "labels": {"io.llm-sandbox.managed": "true", "io.llm-sandbox.owner-host": "Host_Name.example!"},
    }
    values.update(changes)
    return ContainerSpec(**values)


def test_the_default_pod_meets_the_restricted_standard() -> None:
    manifest = build_manifest(_spec(), name="p", namespace="ns", pod_manifest=None)
    assert restricted_violations(manifest["spec"]) == []
    spec = manifest["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["fsGroup"] == 65534
    container = spec["containers"][0]
    assert container["resources"]["limits"] == {"memory": "1Gi", "cpu": "1", "ephemeral-storage": "1Gi"}
    assert spec["volumes"][0]["emptyDir"]["medium"] == "Memory"
    assert manifest["metadata"]["namespace"] == "ns"
    labels = manifest["metadata"]["labels"]
    assert labels[EGRESS_LABEL] == "deny"
    assert labels["io.llm-sandbox.owner-host"] == "Host_Name.example"


def test_runtime_configs_shape_the_default_pod() -> None:
    runtime = {
        "user": "1000:2000",
        "environment": {"A": "1"},
        "resources": {"limits": {"memory": "2Gi"}},
        "runtime_class_name": "gvisor",
        "workdir_size_limit": "1Gi",
        "labels": {"team": "a"},
    }
    manifest = build_manifest(
        _spec(code_user="1000:2000", runtime_configs=runtime, network_enabled=True, limits=Limits(cpus=0.5)),
        name="p",
        namespace="ns",
        pod_manifest=None,
    )
    container = manifest["spec"]["containers"][0]
    assert container["securityContext"]["runAsUser"] == 1000 and container["securityContext"]["runAsGroup"] == 2000
    assert {"name": "A", "value": "1"} in container["env"]
    assert container["resources"] == {"limits": {"memory": "2Gi"}}
    assert manifest["spec"]["runtimeClassName"] == "gvisor"
    assert manifest["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "1Gi"
    assert manifest["metadata"]["labels"]["team"] == "a"
    assert manifest["metadata"]["labels"][EGRESS_LABEL] == "allow"


def test_a_callers_manifest_is_completed_not_replaced() -> None:
    mine: dict[str, Any] = {
        "metadata": {"namespace": "mine", "labels": {"a": "b"}},
        "spec": {"containers": [{"name": "x"}]},
    }
    manifest = build_manifest(_spec(), name="p", namespace="mine", pod_manifest=mine)
    assert manifest["metadata"]["name"] == "p"
    assert manifest["metadata"]["labels"]["a"] == "b"
    assert manifest["metadata"]["labels"]["io.llm-sandbox.managed"] == "true"
    container = manifest["spec"]["containers"][0]
    assert (container["name"], container["image"], container["command"]) == ("x", "img:1", ["sleep", "infinity"])
    assert mine["metadata"] == {"namespace": "mine", "labels": {"a": "b"}}  # not mutated
    assert "securityContext" not in mine["spec"]["containers"][0]
    with pytest.raises(ValidationError, match=r"spec\.containers"):
        build_manifest(_spec(), name="p", namespace="n", pod_manifest={"spec": {}})


def test_a_callers_manifest_gets_the_hardened_security_context_where_it_leaves_it_unset() -> None:
    mine = {
        "spec": {
            "containers": [{"name": "x"}, {"name": "y", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]
        }
    }
    manifest = build_manifest(_spec(), name="p", namespace="n", pod_manifest=mine)
    first, second = manifest["spec"]["containers"]
    expected = {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}
    assert first["securityContext"] == expected
    # What the caller set stays; the rest is filled in.
    assert second["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    assert second["securityContext"]["allowPrivilegeEscalation"] is False
    pod = manifest["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert manifest["spec"]["automountServiceAccountToken"] is False


def test_explicit_choices_in_a_callers_manifest_are_kept() -> None:
    mine = {
        "spec": {
            "automountServiceAccountToken": True,
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "containers": [{"name": "x", "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": True}}],
        }
    }
    manifest = build_manifest(_spec(), name="p", namespace="n", pod_manifest=mine)
    pod = manifest["spec"]["securityContext"]
    assert pod == {"seccompProfile": {"type": "Unconfined"}}  # root asked for: no runAsNonRoot forced on it
    context = manifest["spec"]["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is True and context["runAsUser"] == 0
    assert manifest["spec"]["automountServiceAccountToken"] is True


def test_the_manifest_namespace_wins_over_kube_namespace() -> None:
    backend = KubernetesBackend(client=object(), kube_namespace="other", pod_manifest={"metadata": {"namespace": "m"}})
    assert backend.namespace == "m"
    assert KubernetesBackend(client=object(), kube_namespace="k").namespace == "k"
    assert KubernetesBackend(client=object()).namespace == "default"


@pytest.mark.parametrize(
    ("configs", "error", "match"),
    [
        ({"mem_limt": 1}, UnknownOptionError, "unknown key 'mem_limt'"),
        ({"nodeselector": {}}, UnknownOptionError, "did you mean 'node_selector'"),
        ({"mem_limit": "2g"}, UnknownOptionError, "resources="),
        ({"privileged": True}, UnknownOptionError, "pod_manifest"),
        ({"network_mode": "host"}, UnknownOptionError, "NetworkPolicy"),
        ({"user": "0"}, ValidationError, "never run as root"),
        ({"user": "nobody"}, ValidationError, "numeric"),
        ({"pod_ready_timeout": 0}, ValidationError, "positive"),
        ({"environment": ["A=1"]}, ValidationError, "mapping"),
    ],
)
def test_runtime_configs_are_checked(configs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validate_runtime_configs(configs)


def test_session_options_reach_the_backend() -> None:
    session = SandboxSession(backend="kubernetes", runtime_configs={"pod_ready_timeout": 5}, kube_namespace="n")
    assert session.options.sandbox.backend_options == {"kube_namespace": "n", "pod_ready_timeout": 5}
    with pytest.raises(UnknownOptionError, match="commit_container"):
        SandboxSession(backend="kubernetes", commit_container=True)


def test_quantities_and_label_values() -> None:
    assert (cpu_quantity(1.0), cpu_quantity(0.5), cpu_quantity(2.25)) == ("1", "500m", "2250m")
    assert (memory_quantity(1024**3), memory_quantity(3 * 1024**2), memory_quantity(1000)) == ("1Gi", "3Mi", "1000")
    assert label_value("-bad value/with*chars-" + "x" * 80) == ("bad-value-with-chars-" + "x" * 80)[:63]


def test_argv_wrapping_gives_exec_a_workdir_and_environment() -> None:
    assert wrap_argv(["ls"], workdir=None, environment=None) == ["ls"]
    assert wrap_argv(["ls"], workdir=None, environment={"A": "1 2"}) == ["env", "--", "A=1 2", "ls"]
    wrapped = wrap_argv(["ls", "-l"], workdir="/w d", environment=None)
    assert wrapped[:2] == ["/bin/sh", "-c"] and wrapped[3:] == ["sh", "/w d", "ls", "-l"]
    with pytest.raises(ValidationError):
        wrap_argv(["ls"], workdir=None, environment={"A=B": "1"})


def _pod(phase: str, state: dict[str, Any] | None, containers: tuple[str, ...] = ("a", "b")) -> Any:
    def holder(kind: str) -> Any:
        value = (state or {}).get(kind)
        return None if value is None else SimpleNamespace(**value)

    status = SimpleNamespace(
        name="a", state=SimpleNamespace(**{k: holder(k) for k in ("running", "waiting", "terminated")})
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(name="p"),
        spec=SimpleNamespace(containers=[SimpleNamespace(name=name) for name in containers]),
        status=SimpleNamespace(phase=phase, container_statuses=[status] if state is not None else None),
    )


def test_pod_states_are_read_for_the_chosen_container() -> None:
    assert check_pod(_pod("Running", {"running": {}}), None).state == "running"
    waiting = check_pod(_pod("Pending", {"waiting": {"reason": "ErrImagePull", "message": "nope"}}), "a")
    assert (waiting.state, waiting.reason) == ("waiting", "ErrImagePull")
    assert "ErrImagePull: nope" in waiting.describe()
    assert check_pod(_pod("Pending", None), "b").state == "unknown"
    ended = check_pod(_pod("Failed", {"terminated": {"reason": None, "exit_code": 3}}), None)
    assert ended.reason == "exit 3"
    with pytest.raises(ValidationError, match="no container 'c'"):
        check_pod(_pod("Running", {"running": {}}), "c")


def test_api_errors_are_read_from_bodies_and_refused_handshakes() -> None:
    body = SimpleNamespace(status=404, body='{"message": "pods \\"x\\" not found"}', reason="Not Found")
    assert api_status(body) == (404, 'pods "x" not found')
    handshake = SimpleNamespace(
        status=0, body=None, reason='Handshake status 400 Bad Request -+-+- {} -+-+- b\'{"message": "no"}\''
    )
    assert api_status(handshake) == (400, "no")


def test_without_a_kubeconfig_or_a_cluster_the_error_says_what_to_do(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ContainerError, match="KUBECONFIG"):
        default_kube_client()
