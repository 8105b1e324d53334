"""Every label the library puts on what it creates, in one place, and how to tell an orphan by them.

A sandbox the library creates carries its id, its creation time and its owner (process id and host name), so that
``llm_sandbox.cleanup`` can find what a crashed process left behind. Images the builder makes carry their recipe's
hash; pods carry the egress label a cluster's NetworkPolicy selects on.
"""

from __future__ import annotations

import os
import socket
import time

LABEL_PREFIX = "io.llm-sandbox"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"  # "true" on every sandbox the library creates
SANDBOX_LABEL = f"{LABEL_PREFIX}.session"  # the sandbox's id (the name predates sandboxes outliving sessions)
CREATED_AT_LABEL = f"{LABEL_PREFIX}.created-at"  # seconds since the epoch
OWNER_PID_LABEL = f"{LABEL_PREFIX}.owner-pid"
OWNER_HOST_LABEL = f"{LABEL_PREFIX}.owner-host"
EGRESS_LABEL = f"{LABEL_PREFIX}.egress"  # "deny" / "allow" on pods: what the documented NetworkPolicy selects on
RECIPE_LABEL = f"{LABEL_PREFIX}.recipe"  # sha256 of the recipe a built image came from
DISK_VOLUME_LABEL = f"{LABEL_PREFIX}.disk-place"  # on a disk-cap volume: the place in the sandbox it is mounted at


def sandbox_labels(sandbox_id: str) -> dict[str, str]:
    """The labels of a new sandbox owned by this process."""
    return {
        MANAGED_LABEL: "true",
        SANDBOX_LABEL: sandbox_id,
        CREATED_AT_LABEL: str(int(time.time())),
        OWNER_PID_LABEL: str(os.getpid()),
        OWNER_HOST_LABEL: socket.gethostname(),
    }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_orphan(labels: dict[str, str], *, older_than: float | None = None, now: float | None = None) -> bool:
    """Whether a labelled sandbox belongs to nobody alive (or is older than ``older_than`` seconds)."""
    created = labels.get(CREATED_AT_LABEL, "")
    if older_than is not None and created.isdigit():
        return (now or time.time()) - int(created) > older_than
    if labels.get(OWNER_HOST_LABEL) != socket.gethostname():
        return False  # another host's process: we cannot tell whether it lives
    owner = labels.get(OWNER_PID_LABEL, "")
    return owner.isdigit() and not _pid_alive(int(owner))
