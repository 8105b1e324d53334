"""The cgroups of a Bubblewrap sandbox, on a host whose cgroup v1 hierarchies the library may write (root).

Each sandbox gets a group of its own in the memory, pids and cpu hierarchies (``llm-sandbox-bwrap/<name>``): the
memory limit (``Limits.memory_bytes`` plus the disk cap, whose tmpfs pages it is charged), the process limit and
the CPU quota. Its processes join them before they start (the launcher and every exec write their own pid).
The memory and pids groups are bound read-only into the sandbox at /sys/fs/cgroup/memory and /sys/fs/cgroup/pids,
where the guest helper reads its counters (out-of-memory kills, process-limit hits) as on Docker's cgroup v1.

A host with the unified (v2) hierarchy alone, or whose hierarchies are not writable, gets no cgroup: the sandbox
then has no memory, CPU or process limit, which ``CgroupSet.missing`` names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "llm-sandbox-bwrap"
CPU_PERIOD_US = 100_000
REMOVE_WAIT_S = 5.0


@dataclass
class CgroupSet:
    """A sandbox's groups, one per controller that could be made; ``missing`` names the others."""

    name: str
    groups: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def procs_files(self) -> list[str]:
        return [str(group / "cgroup.procs") for group in self.groups.values()]

    def bind_targets(self) -> dict[str, str]:
        """Host group folder -> where the guest helper looks for its counters."""
        return {
            str(group): f"/sys/fs/cgroup/{controller}"
            for controller, group in self.groups.items()
            if controller in ("memory", "pids")
        }

    def remove(self) -> None:
        """Remove the groups once their processes are gone (a group's last processes may take a moment to go)."""
        for group in self.groups.values():
            remove_group(group)
        self.groups = {}


def create_cgroups(name: str, *, memory: int | None, pids: int | None, cpus: float | None) -> CgroupSet:
    """The groups of a new sandbox with these limits (None: that limit is not set, its group not needed)."""
    wanted = {
        "memory": {"memory.limit_in_bytes": memory, "memory.memsw.limit_in_bytes": memory},
        "pids": {"pids.max": pids},
        "cpu": {"cpu.cfs_period_us": CPU_PERIOD_US, "cpu.cfs_quota_us": int(cpus * CPU_PERIOD_US) if cpus else None},
    }
    made = CgroupSet(name)
    for controller, settings in wanted.items():
        if all(value is None for key, value in settings.items() if key != "cpu.cfs_period_us"):
            continue
        hierarchy = CGROUP_ROOT / controller
        if not (hierarchy / "cgroup.procs").exists():
            made.missing.append(controller)
            continue
        group = hierarchy / PARENT / name
        try:
            group.mkdir(parents=True, exist_ok=True)
            made.groups[controller] = group
            for key, value in settings.items():
                if value is None:
                    continue
                try:
                    (group / key).write_text(str(value))
                except FileNotFoundError:
                    if key != "memory.memsw.limit_in_bytes":  # swap accounting is optional in the kernel
                        raise
        except OSError as error:
            logger.warning("no %s cgroup for the sandbox (%s): that limit does not hold", controller, error)
            made.missing.append(controller)
    return made


def remove_group(group: Path) -> None:
    deadline = time.monotonic() + REMOVE_WAIT_S
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                logger.warning("the cgroup %s still has processes; left for the sweep", group)
                return
        time.sleep(0.02)


def orphan_groups(live: set[str]) -> list[Path]:
    """The sandbox groups of every controller whose name is not among ``live`` (the scratch folders' names)."""
    found: list[Path] = []
    for hierarchy in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        parent = hierarchy / PARENT
        with contextlib.suppress(OSError):
            found += [group for group in parent.iterdir() if group.is_dir() and group.name not in live]
    return found


def pids_of(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def kill_group(group: Path) -> None:
    for pid in pids_of(group):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
