"""The scratch folders of Bubblewrap sandboxes on the host, and the sweep of those a dead process left.

Each sandbox has one folder under ``/var/tmp/llm-sandbox-bwrap`` (root-only), named after its owner's pid and a
random part, holding the overlay's upper and work folders, the mount point of its root, and ``labels.json``: the
same labels a container of the library carries (owner pid and host, creation time), by which ``sweep`` tells an
orphan (``labels.is_orphan``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from llm_sandbox.backends import bwrap_cgroup
from llm_sandbox.labels import OWNER_HOST_LABEL, OWNER_PID_LABEL, is_orphan

logger = logging.getLogger(__name__)

SCRATCH_ROOT = Path("/var/tmp/llm-sandbox-bwrap")  # noqa: S108 - a root-only parent, made 0700
LABELS_FILE = "labels.json"
LAUNCHER_FILE = "launcher.pid"  # the host pid of the sandbox's outer bwrap, once it started


@dataclass(frozen=True)
class Scratch:
    """One sandbox's scratch folder."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def work(self) -> Path:
        return self.path / "work"

    @property
    def root(self) -> Path:
        return self.path / "root"

    def record_launcher(self, pid: int) -> None:
        (self.path / LAUNCHER_FILE).write_text(str(pid))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def make_scratch(labels: dict[str, str], root: Path = SCRATCH_ROOT) -> Scratch:
    """A new scratch folder for a sandbox with these labels."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    owner = labels.get(OWNER_PID_LABEL, str(os.getpid()))
    path = root / f"pid{owner}-{secrets.token_hex(6)}"
    path.mkdir(mode=0o700)
    scratch = Scratch(path)
    for folder in (scratch.upper, scratch.work, scratch.root):
        folder.mkdir(mode=0o755)
    (path / LABELS_FILE).write_text(json.dumps(labels))
    return scratch


def scratch_labels(path: Path) -> dict[str, str] | None:
    try:
        labels = json.loads((path / LABELS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return {str(key): str(value) for key, value in labels.items()} if isinstance(labels, dict) else None


def _launcher_alive(path: Path) -> int | None:
    """The pid of the folder's launcher if that process still runs and is the one on this folder."""
    try:
        pid = int((path / LAUNCHER_FILE).read_text())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command_line = handle.read()
    except (OSError, ValueError):
        return None
    return pid if str(path).encode() in command_line else None


def sweep(older_than: float | None = None, root: Path = SCRATCH_ROOT) -> list[str]:
    """Remove the sandboxes whose owner process is gone (or every one older than ``older_than`` seconds): kill
    what still runs of them, remove their scratch folders and cgroups; return the removed folders' names."""
    removed: list[str] = []
    live: set[str] = set()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        labels = scratch_labels(path)
        if labels is not None and not is_orphan(labels, older_than=older_than):
            live.add(path.name)
            continue
        if labels is None and not path.name.startswith("pid"):
            continue
        launcher = _launcher_alive(path)
        if launcher is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(launcher, 9)
        for group in bwrap_cgroup.orphan_groups(live):
            if group.name == path.name:
                bwrap_cgroup.kill_group(group)
        logger.info("removing the orphaned bubblewrap sandbox %s", path.name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    for group in bwrap_cgroup.orphan_groups(live):
        owner = group.name.removeprefix("pid").partition("-")[0]
        if owner.isdigit() and is_orphan({OWNER_PID_LABEL: owner, OWNER_HOST_LABEL: socket.gethostname()}):
            bwrap_cgroup.kill_group(group)
            bwrap_cgroup.remove_group(group)
    return removed
