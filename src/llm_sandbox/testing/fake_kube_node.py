"""The fake cluster's only node: what a kubelet does with a container spec, done with the Docker engine.

The image, ``command`` (entrypoint) and ``args``, ``env``, ``workingDir``; the security context (user and group,
``fsGroup`` and ``supplementalGroups`` as supplementary groups, dropped and added capabilities,
``allowPrivilegeEscalation: false`` as no-new-privileges, privileged, read-only root, seccomp ``Unconfined``);
memory and CPU limits; ``emptyDir`` volumes as tmpfs mounts (``sizeLimit`` honoured, executable like a
kubelet's). The pod name is the hostname; there is no init process, as on Kubernetes; a pid limit stands for a
kubelet's podPidsLimit. Every container carries the server's label, so that nothing is left behind unnoticed.
"""

from __future__ import annotations

import re
from typing import Any

BACKING_LABEL = "io.llm-sandbox.fake-kube"
BACKING_POD_LABEL = "io.llm-sandbox.fake-kube.pod"
PIDS_LIMIT = 4096  # a kubelet's podPidsLimit: a fork bomb in a test cannot take the host down
_QUANTITY = re.compile(r"([0-9.]+)([A-Za-z]*)")
_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 1e-3,
}


class ImageMissingError(Exception):
    """The pod's image is not on the (fake) node, and no registry can be reached to pull it."""


class ContainerConfigError(Exception):
    """The container cannot be created as specified (a kubelet's CreateContainerConfigError)."""


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity ("512Mi", "500m", "1") as a number."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a resource quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _security_context(pod_spec: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The container's effective security context: the pod's user settings, overridden by the container's."""
    pod_sc = pod_spec.get("securityContext") or {}
    effective = {key: value for key, value in pod_sc.items() if key in ("runAsUser", "runAsGroup", "runAsNonRoot")}
    effective.update(spec.get("securityContext") or {})
    effective.setdefault("seccompProfile", pod_sc.get("seccompProfile") or {})
    return effective


def _image_user(docker_client: Any, image: str) -> str:
    import docker.errors

    try:
        return str(docker_client.images.get(image).attrs["Config"].get("User") or "")
    except docker.errors.ImageNotFound as error:
        raise ImageMissingError(f'Back-off pulling image "{image}": not present on the fake node') from error


def docker_options(
    docker_client: Any, pod: dict[str, Any], spec: dict[str, Any], *, server_id: str, network_mode: str
) -> dict[str, Any]:
    """``containers.create`` keyword arguments for container ``spec`` of ``pod``."""
    pod_spec = pod["spec"]
    name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
    sc = _security_context(pod_spec, spec)
    image = spec["image"]
    image_user = _image_user(docker_client, image)
    if sc.get("runAsNonRoot") and sc.get("runAsUser") is None and image_user in ("", "0", "root"):
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    capabilities = sc.get("capabilities") or {}
    options: dict[str, Any] = {
        "image": image,
        "entrypoint": spec.get("command") or None,
        "command": spec.get("args") or None,
        "environment": {item["name"]: str(item.get("value", "")) for item in spec.get("env") or []},
        "working_dir": spec.get("workingDir"),
        "labels": {BACKING_LABEL: server_id, BACKING_POD_LABEL: f"{namespace}.{name}"},
        "network_mode": network_mode,
        "log_config": {"type": "none", "config": {}},
        "pids_limit": PIDS_LIMIT,
        "cap_drop": list(capabilities.get("drop") or []) or None,
        "cap_add": list(capabilities.get("add") or []) or None,
        "privileged": bool(sc.get("privileged")),
        "read_only": bool(sc.get("readOnlyRootFilesystem")),
        "hostname": name if len(name) <= 63 and "." not in name else None,
    }
    if sc.get("runAsUser") is not None:
        group = sc.get("runAsGroup")
        options["user"] = f"{sc['runAsUser']}:{group}" if group is not None else str(sc["runAsUser"])
    pod_sc = pod_spec.get("securityContext") or {}
    groups = [*([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []), *(pod_sc.get("supplementalGroups") or [])]
    options["group_add"] = [str(group) for group in groups] or None
    security_opt = []
    if sc.get("allowPrivilegeEscalation") is False:
        security_opt.append("no-new-privileges")
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        security_opt.append("seccomp=unconfined")
    options["security_opt"] = security_opt or None
    limits = (spec.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        options["mem_limit"] = options["memswap_limit"] = int(quantity(limits["memory"]))
    if "cpu" in limits:
        options["nano_cpus"] = int(quantity(limits["cpu"]) * 1e9)
    options["tmpfs"] = _empty_dirs(pod_spec, spec, sc.get("runAsUser"), pod_sc.get("fsGroup")) or None
    return {key: value for key, value in options.items() if value is not None}


def _empty_dirs(pod_spec: dict[str, Any], spec: dict[str, Any], uid: Any, fs_group: Any) -> dict[str, str]:
    """tmpfs mounts for the container's emptyDir volumes, writable by the container's user.

    A kubelet makes an emptyDir mode 0777 (group ``fsGroup``). Docker copies the mode of the image's directory
    at that path onto the tmpfs instead, so the fake also gives the tmpfs to the container's user and fsGroup.
    """
    volumes = {volume["name"]: volume for volume in pod_spec.get("volumes") or []}
    owner = (f",uid={int(uid)}" if uid is not None else "") + (f",gid={int(fs_group)}" if fs_group is not None else "")
    tmpfs = {}
    for mount in spec.get("volumeMounts") or []:
        empty_dir = volumes[mount["name"]].get("emptyDir") or {}
        size = f",size={int(quantity(empty_dir['sizeLimit']))}" if empty_dir.get("sizeLimit") else ""
        tmpfs[mount["mountPath"]] = f"mode=0777,exec{size}{owner}"
    return tmpfs
