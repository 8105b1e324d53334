"""What the fake API server checks before it accepts a pod: the shape the real API server validates (422
``Invalid``), the namespace rules (400, 404), and the "restricted" Pod Security Standard (403) in namespaces
labelled ``pod-security.kubernetes.io/enforce: restricted``, as Pod Security Admission does.
"""

from __future__ import annotations

import re
from typing import Any

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
RESTRICTED_VOLUMES = {"emptyDir", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim", "csi"}
SUPPORTED_VOLUMES = {"emptyDir"}


class ApiError(Exception):
    """An error answer of the API server, rendered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def invalid(name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid, with one cause per bad field, worded like the real server's field errors."""
    message = f'Pod "{name}" is invalid: ' + ", ".join(f"{field}: {text}" for field, text in causes)
    details = {
        "name": name,
        "kind": "Pod",
        "causes": [{"reason": "FieldValueInvalid", "message": text, "field": field} for field, text in causes],
    }
    return ApiError(422, "Invalid", message, details)


def check_labels(labels: Any, field: str) -> list[tuple[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [(field, "must be a map of strings")]
    causes = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if (prefix and not DNS_SUBDOMAIN.fullmatch(prefix)) or not LABEL_NAME.fullmatch(name) or len(name) > 63:
            causes.append((f"{field}", f"Invalid value: {key!r}: name part must consist of alphanumeric characters"))
        if not isinstance(value, str) or (value and (len(value) > 63 or not LABEL_NAME.fullmatch(value))):
            causes.append((f"{field}", f"Invalid value: {value!r}: a valid label must be 63 characters or less"))
    return causes


def validate_pod(body: dict[str, Any], name: str) -> None:
    """Raise 422 for what the real API server refuses and the fake relies on."""
    causes: list[tuple[str, str]] = []
    if not DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        causes.append(("metadata.name", f"Invalid value: {name!r}: must be a lowercase RFC 1123 subdomain"))
    causes += check_labels(body["metadata"].get("labels"), "metadata.labels")
    spec = body.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list) or not containers:
        raise invalid(name, [*causes, ("spec.containers", "Required value")])
    assert isinstance(spec, dict)
    volumes = {str(volume.get("name")): volume for volume in spec.get("volumes") or []}
    causes += _container_causes(containers, set(volumes))
    for volume_name, volume in volumes.items():
        kinds = set(volume) - {"name"}
        if not kinds <= SUPPORTED_VOLUMES:
            causes.append((f"spec.volumes[{volume_name}]", f"Unsupported value: {sorted(kinds)} (the fake: emptyDir)"))
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        causes.append(("spec.restartPolicy", f"Unsupported value: {spec.get('restartPolicy')!r}"))
    if causes:
        raise invalid(name, causes)


def _container_causes(containers: list[Any], volumes: set[str]) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, container in enumerate(containers):
        field = f"spec.containers[{index}]"
        container_name = container.get("name") if isinstance(container, dict) else None
        if not isinstance(container_name, str) or not DNS_LABEL.fullmatch(container_name):
            causes.append((f"{field}.name", f"Invalid value: {container_name!r}: must be a lowercase RFC 1123 label"))
        elif container_name in seen:
            causes.append((f"{field}.name", f"Duplicate value: {container_name!r}"))
        seen.add(str(container_name))
        if not isinstance(container, dict) or not container.get("image"):
            causes.append((f"{field}.image", "Required value"))
            continue
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                causes.append((f"{field}.volumeMounts.name", f"Not found: {mount.get('name')!r}"))
    return causes


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Why a pod spec breaks the "restricted" Pod Security Standard (empty when it meets it)."""
    pod_sc = spec.get("securityContext") or {}
    found: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            found.append(f"host namespaces ({flag}=true)")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"restricted volume types (volume {volume.get('name')!r} uses {sorted(kinds)})")
    if pod_sc.get("runAsUser") == 0:
        found.append("runAsUser=0 (pod must not set runAsUser=0)")
    for container in spec.get("containers") or []:
        found += _container_violations(container, pod_sc)
    return found


def _container_violations(container: dict[str, Any], pod_sc: dict[str, Any]) -> list[str]:
    found: list[str] = []
    name = container.get("name")
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        found.append(f'privileged (container "{name}" must not set securityContext.privileged=true)')
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append(f'allowPrivilegeEscalation != false (container "{name}")')
    capabilities = sc.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append(f'unrestricted capabilities (container "{name}" must set capabilities.drop=["ALL"])')
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        found.append(f'unrestricted capabilities (container "{name}" adds {capabilities.get("add")})')
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
        found.append(f'runAsNonRoot != true (container "{name}")')
    if sc.get("runAsUser") == 0:
        found.append(f'runAsUser=0 (container "{name}")')
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append(f'seccompProfile (container "{name}" must set type RuntimeDefault or Localhost)')
    return found


def admit(namespace: dict[str, Any], body: dict[str, Any], name: str) -> None:
    """403 when the namespace enforces "restricted" and the pod does not meet it."""
    labels = namespace.get("metadata", {}).get("labels") or {}
    if labels.get(ENFORCE_LABEL) != "restricted":
        return
    violations = restricted_violations(body.get("spec") or {})
    if violations:
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: violates PodSecurity "restricted:latest": ' + ", ".join(violations),
        )


def label_changes(patch: Any, content_type: str) -> dict[tuple[str, str], Any]:
    """{("labels" | "annotations", key): new value or None} from a patch body, refusing anything else."""
    only = ApiError(422, "Invalid", "the fake API server patches metadata.labels and metadata.annotations only")
    changes: dict[tuple[str, str], Any] = {}
    if content_type.startswith("application/json-patch+json"):
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        for operation in patch:
            parts = str(operation.get("path", "")).split("/")
            if len(parts) != 4 or parts[:2] != ["", "metadata"] or parts[2] not in ("labels", "annotations"):
                raise only
            item = parts[3].replace("~1", "/").replace("~0", "~")
            if operation.get("op") in ("add", "replace"):
                changes[(parts[2], item)] = operation.get("value")
            elif operation.get("op") == "remove":
                changes[(parts[2], item)] = None
            else:
                raise only
        return changes
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
    metadata = patch.get("metadata") or {}
    if set(patch) - {"metadata"} or set(metadata) - {"labels", "annotations"}:
        raise only
    for key in ("labels", "annotations"):
        for item, value in (metadata.get(key) or {}).items():
            changes[(key, item)] = value
    return changes
