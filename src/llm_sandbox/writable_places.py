"""Where the code can write in a sandbox the library creates, and the disk cap that covers those places.

The default images leave the code's uid these places and no other: the workdir, the temporary folders and its
library prefix (everything else belongs to root). Each becomes a tmpfs of the cap's size (``backends/disk.py``),
and the guest holds them together to the cap (``guest/disk.py``).
"""

from __future__ import annotations

from llm_sandbox.backends.base import DiskPlan
from llm_sandbox.backends.disk import caller_mount_targets
from llm_sandbox.config import SandboxSpec
from llm_sandbox.helper_launch import numeric_ids
from llm_sandbox.languages.base import USER_PREFIX

TEMP_FOLDERS = ("/tmp", "/var/tmp", "/run/lock")  # noqa: S108 - places the code may write, to be capped


def code_writable_places(workdir: str) -> tuple[str, ...]:
    """The workdir, the temporary folders and the library prefix (each once: the workdir may be one of them)."""
    return tuple(dict.fromkeys((workdir, *TEMP_FOLDERS, USER_PREFIX)))


def disk_plan(spec: SandboxSpec) -> DiskPlan | None:
    """The disk cap of a sandbox created from ``spec`` (what the backend mounts, and what the guest adds up); None
    where there is none (a backend that cannot cap, or ``relax_hardening=["disk_limit"]``)."""
    limit = spec.limits.disk_bytes
    if not limit or "disk_limit" in spec.relaxed or not spec.backend.capabilities.disk_limit:
        return None
    # A place the caller mounts something at holds their storage, at their size: it is not the cap's.
    taken = caller_mount_targets(spec.runtime_configs)
    return DiskPlan(
        places=tuple(place for place in code_writable_places(spec.workdir) if place not in taken),
        limit=limit,
        owner=numeric_ids(spec.code_user),
        owned=tuple(dict.fromkeys((spec.workdir, USER_PREFIX))),
    )
