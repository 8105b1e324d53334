"""What only the Bubblewrap backend does: its sandboxes are process trees of this host, so a killed owner must
leave nothing but what the sweep finds, the image's filesystem is shared read-only between sandboxes, and options
that mean a container are refused. (The contract suite runs on it through ``BubblewrapHarness``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_sandbox import SandboxSession
from llm_sandbox.backends import bwrap_cgroup
from llm_sandbox.backends.bwrap_scratch import SCRATCH_ROOT
from llm_sandbox.cleanup import sweep
from llm_sandbox.errors import ImageNotFoundError, SandboxError

OWNER = """
import sys, time
from llm_sandbox import SandboxSession
session = SandboxSession(backend="bubblewrap", lang="python")
session.open()
print(session.container_id, flush=True)
time.sleep(600)
"""


def _processes_on(scratch: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if str(scratch).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_killed_owner_leaves_no_process_and_the_sweep_removes_the_rest() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    name = owner.stdout.readline().strip()
    scratch = SCRATCH_ROOT / name
    assert scratch.is_dir() and _processes_on(scratch)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while _processes_on(scratch) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_on(scratch) == []  # bwrap died with its parent, and the sandbox's pid namespace with it
    assert scratch.is_dir()  # the folder is what is left: the sweep finds it by the owner's pid
    assert name in sweep(engine="bubblewrap")
    assert not scratch.exists()
    assert [group for group in bwrap_cgroup.orphan_groups(set()) if group.name == name] == []


def test_the_image_root_is_shared_read_only_and_a_sandboxs_changes_are_its_own(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.write_text("hi")
    with SandboxSession(backend="bubblewrap", lang="python") as first:
        first.copy_to_runtime(str(planted), "/usr/local/bin/planted")  # as root: into the sandbox's own layer
        assert first.execute_command("cat /usr/local/bin/planted").stdout == "hi"
        with SandboxSession(backend="bubblewrap", lang="python") as second:
            assert second.execute_command("test -e /usr/local/bin/planted").exit_code == 1
    # The code itself (an unprivileged uid) cannot write the image's folders at all.
    with SandboxSession(backend="bubblewrap", lang="python") as session:
        assert session.execute_command("touch /usr/local/bin/x").exit_code != 0


def test_attaching_is_refused_naming_the_backend_and_the_option() -> None:
    with pytest.raises(SandboxError) as raised:
        SandboxSession(backend="bubblewrap", lang="python", container_id="anything").open()
    said = str(raised.value)
    assert "bubblewrap" in said and "container_id" in said


def test_an_image_no_engine_has_is_refused_saying_what_to_do() -> None:
    with pytest.raises(ImageNotFoundError) as raised:
        SandboxSession(backend="bubblewrap", lang="python", image="llm-sandbox/none-such:bookworm").open()
    said = str(raised.value)
    assert "Docker or Podman" in said and "llm_sandbox.images build" in said
