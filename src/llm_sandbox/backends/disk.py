"""The disk cap of a created container, on Docker and Podman: one size-limited tmpfs volume per writable place.

Why volumes of tmpfs: the engines' storage quota (``--storage-opt size``) needs overlay on XFS with project quotas,
which ordinary hosts (ext4) do not have; a tmpfs has a hard size on any host, and its pages are charged to the
container's memory cgroup, so the host's disk is never what fills up (the memory limit is raised by the cap, so
the files do not eat the code's memory). They are volumes rather than the engines' ``tmpfs`` mounts because the
archive API (``copy_to_runtime``, ``copy_from_runtime``) does not see into Docker's tmpfs mounts, and Podman's
cannot be given an owner. The volumes are named after the sandbox and labelled like it: removed with the
container, and by ``llm_sandbox.cleanup`` when their owner process died before it could (a leftover holds no
data: a tmpfs is emptied when it is unmounted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from llm_sandbox.backends.base import ContainerSpec, DiskPlan
from llm_sandbox.labels import DISK_VOLUME_LABEL, SANDBOX_LABEL

VOLUME_PREFIX = "llm-sandbox-disk-"
# Podman 4.3 reads a local volume's "size" option as an XFS project quota and refuses it on other filesystems;
# tmpfs's own "nr_blocks" (pages) says the same size and passes.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class DiskVolume:
    """One tmpfs volume: its name, where it is mounted, its driver options and labels."""

    name: str
    target: str
    driver_opts: dict[str, str]
    labels: dict[str, str]


def disk_volumes(spec: ContainerSpec, *, engine: str) -> list[DiskVolume]:
    """The volumes of ``spec``'s disk cap on ``engine`` ("docker" or "podman")."""
    plan = spec.disk
    if plan is None:
        return []
    sandbox_id = spec.labels.get(SANDBOX_LABEL, "")
    volumes = []
    for index, place in enumerate(plan.places):
        volumes.append(
            DiskVolume(
                name=f"{VOLUME_PREFIX}{sandbox_id}-{index}",
                target=place,
                driver_opts={"type": "tmpfs", "device": "tmpfs", "o": _mount_options(plan, place, engine)},
                labels={**spec.labels, DISK_VOLUME_LABEL: place},
            )
        )
    return volumes


def _mount_options(plan: DiskPlan, place: str, engine: str) -> str:
    size = f"nr_blocks={-(-plan.limit // PAGE_SIZE)}" if engine == "podman" else f"size={plan.limit}"
    if place in plan.owned and plan.owner is not None:
        uid, gid = plan.owner
        ownership = f"uid={uid},gid={gid},mode=0755"
    else:  # a temporary folder, or a code user known by name only: open to all, sticky, like /tmp
        ownership = "uid=0,gid=0,mode=1777"
    return f"{size},{ownership},nosuid,nodev"


def caller_mount_targets(runtime_configs: Any) -> set[str]:
    """The places the caller's runtime_configs mount something at (volumes, mounts, tmpfs)."""
    targets: set[str] = set()
    volumes = runtime_configs.get("volumes") or {}
    if isinstance(volumes, dict):
        targets.update(str(value.get("bind", "")) for value in volumes.values() if isinstance(value, dict))
    else:
        for item in volumes:
            parts = str(item).split(":")
            targets.add(parts[1] if len(parts) > 1 else parts[0])
    for mount in runtime_configs.get("mounts") or []:
        target = mount.get("Target") or mount.get("target") if isinstance(mount, dict) else None
        if target:
            targets.add(str(target))
    targets.update(str(path) for path in runtime_configs.get("tmpfs") or {})
    return {target.rstrip("/") or "/" for target in targets if target}


def volume_bindings(volumes: list[DiskVolume], caller_volumes: Any) -> Any:
    """The container's ``volumes`` option: the caller's, with the disk volumes added in the caller's form."""
    if isinstance(caller_volumes, list | tuple):
        return [*caller_volumes, *(f"{volume.name}:{volume.target}:rw" for volume in volumes)]
    bindings = dict(caller_volumes or {})
    bindings.update({volume.name: {"bind": volume.target, "mode": "rw"} for volume in volumes})
    return bindings
