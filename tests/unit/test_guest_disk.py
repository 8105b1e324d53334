"""The guest's side of the disk cap: which places it counts, and what it removes after a run over the cap."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from llm_sandbox.guest import agent_source
from llm_sandbox.guest.protocol import Limit

# The guest is one joined program: its modules' names are found in it, not by importing them one by one.
GUEST: dict[str, Any] = {"__name__": "llm_sandbox_guest_under_test"}
exec(compile(agent_source(), "llm-sandbox-guest", "exec"), GUEST)
DiskCap = GUEST["DiskCap"]
run_limit_names = GUEST["run_limit_names"]


def test_only_places_that_are_filesystems_of_their_own_are_counted(tmp_path: Path) -> None:
    cap = DiskCap()
    cap.configure([str(tmp_path), "relative", "/proc"], 1024)
    # A folder of the host's filesystem would add up that whole filesystem: it is left out; /proc is a mount.
    assert cap.paths == ["/proc"]
    cap.configure([str(tmp_path)], 1024)
    assert not cap.active


def test_a_run_over_the_cap_loses_what_it_wrote_and_keeps_what_came_before(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.txt"
    earlier.write_text("kept")
    outside = tmp_path.parent / f"outside-{time.time_ns()}.txt"
    outside.write_text("not the sandbox's")
    time.sleep(0.05)
    started_at = time.time()
    time.sleep(0.05)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "new.bin").write_bytes(b"x" * 10)
    (tmp_path / "new.txt").write_text("written by the run")
    (tmp_path / "link").symlink_to(outside)
    cap = DiskCap()
    cap.paths, cap.limit = [str(tmp_path)], 1  # 1 byte: whatever the folder holds is over it
    assert run_limit_names(cap, started_at, stopped_for_disk=True) == [Limit.DISK]
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["earlier.txt", "nested"]
    assert outside.read_text() == "not the sandbox's"  # the link went, not what it pointed at
    os.unlink(outside)


def test_a_run_within_the_cap_is_not_touched(tmp_path: Path) -> None:
    started_at = time.time() - 1
    (tmp_path / "new.txt").write_text("fits")
    cap = DiskCap()
    cap.paths, cap.limit = [str(tmp_path)], 2**62
    assert run_limit_names(cap, started_at, stopped_for_disk=False) == []
    assert (tmp_path / "new.txt").exists()
    assert run_limit_names(DiskCap(), started_at, stopped_for_disk=True) == []
