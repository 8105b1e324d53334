"""Pods for the Kubernetes backend: the default manifest, the caller's manifest completed, ``runtime_configs``
validation, and reading a pod's state. Pure data work: no API calls here.

The default pod meets the "restricted" Pod Security Standard: non-root uid and gid (the session's code user),
``allowPrivilegeEscalation: false``, every capability dropped, ``RuntimeDefault`` seccomp, no service-account
token, ``restartPolicy: Never``; it has CPU and memory requests and limits, and its workdir is a memory-backed
``emptyDir`` with a size limit. Its keep-alive command is the session's (``sleep``), which needs no TTY.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import ContainerSpec
from llm_sandbox.errors import UnknownOptionError, ValidationError
from llm_sandbox.hints import did_you_mean
from llm_sandbox.labels import EGRESS_LABEL

CONTAINER_NAME = "sandbox"
WORKDIR_VOLUME = "workdir"
MANAGED_BY = {"app.kubernetes.io/managed-by": "llm-sandbox"}
DEFAULT_WORKDIR_SIZE = "512Mi"
DEFAULT_POD_READY_TIMEOUT_S = 60.0
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}
IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
FATAL_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})

# runtime_configs keys for Kubernetes; each maps onto the default pod (pod_manifest gives full control).
ALLOWED_RUNTIME_KEYS = frozenset(
    {
        "annotations",
        "environment",
        "image_pull_policy",
        "labels",
        "node_selector",
        "pod_ready_timeout",
        "resources",
        "runtime_class_name",
        "tolerations",
        "user",
        "workdir_size_limit",
    }
)
_LIMITS_HINT = "resources={'limits': {'memory': '2Gi', 'cpu': '2'}} (a Kubernetes ResourceRequirements)"
_MANIFEST_HINT = "pod_manifest=... (a full pod manifest) for settings beyond the hardened defaults"
REDIRECTED_KEYS = {
    "network_mode": "the session's network= option (enforced by the cluster's NetworkPolicy, see docs/kubernetes.md)",
    "network": "the session's network= option (enforced by the cluster's NetworkPolicy, see docs/kubernetes.md)",
    "image": "the session's image= option",
    "command": "nothing: the library runs its own keep-alive command",
    "entrypoint": "nothing: the library runs its own keep-alive command",
    "working_dir": "the session's workdir= option",
    **dict.fromkeys(("mem_limit", "memswap_limit", "nano_cpus", "cpu_count", "cpu_quota", "cpus"), _LIMITS_HINT),
    **dict.fromkeys(("privileged", "cap_add", "cap_drop", "security_opt", "volumes", "mounts"), _MANIFEST_HINT),
}
_USER = re.compile(r"([0-9]+)(?::([0-9]+))?")
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]+")


def validate_runtime_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """Check Kubernetes ``runtime_configs``: known keys with values of the right shape; return a copy."""
    for key, value in configs.items():
        if key in REDIRECTED_KEYS:
            raise UnknownOptionError(
                f"runtime_configs[{key!r}] is not accepted on Kubernetes: use {REDIRECTED_KEYS[key]}"
            )
        if key not in ALLOWED_RUNTIME_KEYS:
            raise UnknownOptionError(
                f"runtime_configs has an unknown key {key!r} for Kubernetes{did_you_mean(key, ALLOWED_RUNTIME_KEYS)}; "
                f"accepted keys: {', '.join(sorted(ALLOWED_RUNTIME_KEYS))}"
            )
        _check_value(key, value)
    return dict(configs)


def _check_value(key: str, value: Any) -> None:
    if key in ("annotations", "environment", "labels", "node_selector"):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValidationError(f"runtime_configs[{key!r}] must be a mapping of names to strings")
    elif key == "user":
        match = _USER.fullmatch(str(value))
        if match is None or int(match.group(1)) == 0:
            raise ValidationError(
                f"runtime_configs['user'] must be a non-zero numeric 'uid' or 'uid:gid' on Kubernetes, not {value!r} "
                "(the pod's securityContext sets the user, and the library's pods never run as root)"
            )
    elif key == "pod_ready_timeout":
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValidationError("runtime_configs['pod_ready_timeout'] must be a positive number of seconds")
    elif key in ("resources",) and not isinstance(value, Mapping):
        raise ValidationError("runtime_configs['resources'] must be a Kubernetes ResourceRequirements mapping")
    elif key == "tolerations" and not isinstance(value, list):
        raise ValidationError("runtime_configs['tolerations'] must be a list of Kubernetes tolerations")


def label_value(value: str) -> str:
    """A valid label value (at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    return _LABEL_VALUE_BAD.sub("-", value).strip("._-")[:63].strip("._-")


def pod_labels(labels: Mapping[str, str], *, egress_allowed: bool) -> dict[str, str]:
    sanitized = {key: label_value(str(value)) for key, value in labels.items()}
    return {**MANAGED_BY, **sanitized, EGRESS_LABEL: "allow" if egress_allowed else "deny"}


def cpu_quantity(cpus: float) -> str:
    millis = max(1, round(cpus * 1000))
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def code_ids(user: str) -> tuple[int, int]:
    match = _USER.fullmatch(user)
    if match is None or int(match.group(1)) == 0:
        raise ValidationError(f"the code user must be a non-zero numeric uid[:gid] on Kubernetes, not {user!r}")
    uid = int(match.group(1))
    return uid, int(match.group(2)) if match.group(2) else uid


def manifest_namespace(pod_manifest: Mapping[str, Any] | None) -> str | None:
    metadata = (pod_manifest or {}).get("metadata") or {}
    namespace = metadata.get("namespace")
    return str(namespace) if namespace else None


def build_manifest(
    spec: ContainerSpec, *, name: str, namespace: str, pod_manifest: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The pod to create: the caller's manifest completed, or the hardened default."""
    labels = pod_labels(spec.labels, egress_allowed=spec.network_enabled)
    if pod_manifest is not None:
        return _complete_manifest(pod_manifest, spec, name=name, namespace=namespace, labels=labels)
    return _default_manifest(spec, name=name, namespace=namespace, labels=labels)


def _default_manifest(spec: ContainerSpec, *, name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    runtime = spec.runtime_configs
    uid, gid = code_ids(spec.code_user)
    limits: dict[str, str] = {}
    if spec.limits.memory_bytes is not None:
        limits["memory"] = memory_quantity(spec.limits.memory_bytes)
    if spec.limits.cpus is not None:
        limits["cpu"] = cpu_quantity(spec.limits.cpus)
    if spec.limits.file_size_bytes is not None:
        limits["ephemeral-storage"] = memory_quantity(spec.limits.file_size_bytes)
    environment = {**spec.environment, **dict(runtime.get("environment") or {})}
    seccomp = {"type": "RuntimeDefault"}
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": str(runtime.get("image_pull_policy", "IfNotPresent")),
        "command": list(spec.command),
        "workingDir": spec.workdir,
        "env": [{"name": key, "value": str(value)} for key, value in environment.items()],
        "resources": copy.deepcopy(dict(runtime.get("resources") or {"requests": DEFAULT_REQUESTS, "limits": limits})),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "seccompProfile": seccomp,
        },
        "volumeMounts": [{"name": WORKDIR_VOLUME, "mountPath": spec.workdir}],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": gid,
            "fsGroup": gid,
            "seccompProfile": seccomp,
        },
        "containers": [container],
        "volumes": [
            {
                "name": WORKDIR_VOLUME,
                "emptyDir": {
                    "medium": "Memory",
                    "sizeLimit": str(runtime.get("workdir_size_limit", DEFAULT_WORKDIR_SIZE)),
                },
            }
        ],
    }
    for key, field_name in (("node_selector", "nodeSelector"), ("runtime_class_name", "runtimeClassName")):
        if key in runtime:
            pod_spec[field_name] = copy.deepcopy(runtime[key])
    if "tolerations" in runtime:
        pod_spec["tolerations"] = copy.deepcopy(list(runtime["tolerations"]))
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**{k: label_value(str(v)) for k, v in dict(runtime.get("labels") or {}).items()}, **labels},
    }
    if runtime.get("annotations"):
        metadata["annotations"] = {key: str(value) for key, value in dict(runtime["annotations"]).items()}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def _complete_manifest(
    pod_manifest: Mapping[str, Any], spec: ContainerSpec, *, name: str, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    manifest = copy.deepcopy(dict(pod_manifest))
    manifest.setdefault("apiVersion", "v1")
    manifest.setdefault("kind", "Pod")
    metadata = manifest.setdefault("metadata", {})
    metadata["namespace"] = namespace
    if not metadata.get("name") and not metadata.get("generateName"):
        metadata["name"] = name
    metadata["labels"] = {**dict(metadata.get("labels") or {}), **labels}
    containers = (manifest.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise ValidationError("pod_manifest needs spec.containers with at least one container")
    first = containers[0]
    first.setdefault("name", CONTAINER_NAME)
    first.setdefault("image", spec.image)
    if not first.get("command") and not first.get("args"):
        first["command"] = list(spec.command)  # an image's shell CMD would exit at once without a TTY
    _fill_security_defaults(manifest["spec"], spec.code_user)
    return manifest


def _fill_security_defaults(pod_spec: dict[str, Any], code_user: str) -> None:
    """The default pod's securityContext, filled into a caller's pod spec wherever the caller left a field unset.

    What the caller sets stays as set (that is how a manifest asks for less); only an explicit root user keeps the
    non-root defaults away, since Kubernetes would refuse to start a pod that asks for both.
    """
    uid, gid = code_ids(code_user)
    containers = [item for key in ("initContainers", "containers") for item in pod_spec.get(key) or []]
    root_asked = any(
        isinstance(item, dict) and (item.get("securityContext") or {}).get("runAsUser") == 0 for item in containers
    )
    pod_context = pod_spec.get("securityContext") or {}
    pod_spec["securityContext"] = pod_context
    pod_context.setdefault("seccompProfile", {"type": "RuntimeDefault"})
    if not root_asked and pod_context.get("runAsUser") != 0:
        pod_context.setdefault("runAsNonRoot", True)
        pod_context.setdefault("runAsUser", uid)
        pod_context.setdefault("runAsGroup", gid)
    pod_spec.setdefault("automountServiceAccountToken", False)
    for container in containers:
        if not isinstance(container, dict):
            continue
        context = container.get("securityContext") or {}
        container["securityContext"] = context
        context.setdefault("allowPrivilegeEscalation", False)
        context.setdefault("privileged", False)
        capabilities = context.get("capabilities") or {}
        context["capabilities"] = capabilities
        capabilities.setdefault("drop", ["ALL"])


@dataclass(frozen=True)
class PodCheck:
    """What a pod looks like to the session: its phase and the state of the chosen container."""

    name: str
    phase: str
    container: str
    state: str  # "running", "waiting", "terminated" or "unknown"
    reason: str = ""
    message: str = ""

    def describe(self) -> str:
        detail = f" ({self.reason}{': ' + self.message if self.message else ''})" if self.reason else ""
        return f"pod {self.name!r} is {self.phase}, container {self.container!r} is {self.state}{detail}"


def check_pod(pod: Any, container: str | None) -> PodCheck:
    """The state of ``container`` (default: the first) in a V1Pod; ValidationError for an unknown container."""
    name = str(pod.metadata.name)
    names = [str(item.name) for item in pod.spec.containers]
    chosen = container or names[0]
    if chosen not in names:
        raise ValidationError(f"pod {name!r} has no container {chosen!r}; its containers: {', '.join(names)}")
    phase = str((pod.status.phase if pod.status else None) or "Pending")
    statuses = {str(item.name): item for item in (pod.status.container_statuses or [])} if pod.status else {}
    state = getattr(statuses.get(chosen), "state", None)
    if state is not None and state.running is not None:
        return PodCheck(name, phase, chosen, "running")
    if state is not None and state.terminated is not None:
        ended = state.terminated
        return PodCheck(name, phase, chosen, "terminated", str(ended.reason or f"exit {ended.exit_code}"), "")
    if state is not None and state.waiting is not None:
        return PodCheck(
            name, phase, chosen, "waiting", str(state.waiting.reason or ""), str(state.waiting.message or "")
        )
    return PodCheck(name, phase, chosen, "unknown")
