"""The sandbox's disk cap, as the guest enforces its total.

In a sandbox the library creates on Docker or Podman, every place the code can write (its workdir, /tmp, /var/tmp,
/run/lock and its library prefix) is a tmpfs of its own, each as large as the cap: one place alone ends in ENOSPC
at the cap. The places together are held to the same total here: while a run goes on, the guest adds up what the
places hold (a statvfs each, a few times a second) and ends the run once the sum passes the cap. The memory
cgroup, raised by the cap, is the backstop for a burst between two looks (tmpfs pages are charged to it).

A run that hit the cap (the sum reached it, or a place filled up) is reported as such, and the files it wrote
(changed since it started, by their ctime, which the code cannot set back) are removed, so the next run has room
and what earlier runs left stays.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import List, Optional, Tuple

    from llm_sandbox.guest.protocol import Limit

# How often a run's disk use is added up (seconds): often enough that a writer at memory speed gets little past
# the cap before it is stopped, rarely enough to cost nothing.
CHECK_EVERY_S = 0.1
# Folders nested deeper than this are not searched for a run's files.
DISK_SEARCH_DEPTH = 128


class DiskCap:
    """The capped places and their shared total (no places: no cap)."""

    def __init__(self) -> None:
        self.paths: List[str] = []
        self.limit = 0
        self.next_check = 0.0

    def configure(self, paths: List[str], limit: int) -> None:
        # Only a place that is a filesystem of its own is counted: any other would add up its whole filesystem.
        self.paths = [path for path in paths if isinstance(path, str) and path.startswith("/") and mounted(path)]
        self.limit = int(limit) if self.paths else 0

    @property
    def active(self) -> bool:
        return self.limit > 0

    def used(self) -> int:
        """The bytes the capped places hold together."""
        return self.measure()[0]

    def full(self) -> bool:
        """The sum reached the cap, or one place has no room left."""
        total, one_full = self.measure()
        return one_full or total >= self.limit

    def measure(self) -> Tuple[int, bool]:
        """What the places hold together, and whether one of them has no room left (one statvfs each)."""
        total = 0
        one_full = False
        for path in self.paths:
            try:
                stats = os.statvfs(path)
            except OSError:
                continue
            total += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
            one_full = one_full or (stats.f_blocks > 0 and stats.f_bavail == 0)
        return total, one_full

    def passed_during_run(self, now: float) -> bool:
        """During a run, at most every CHECK_EVERY_S: whether the sum passed the cap."""
        if not self.active or now < self.next_check:
            return False
        self.next_check = now + CHECK_EVERY_S
        return self.used() > self.limit

    def remove_written_since(self, started_at: float) -> None:
        """Remove the regular files of the capped places changed after ``started_at`` (wall clock), as the
        caller's effective user, never through a link.

        The kernel stamps ctime from a clock that lags by up to a tick (a few ms): a file an earlier run wrote
        always looks older than ``started_at``, so it stays; a file this run wrote in its first tick may look
        older too, and stays (it is small: the run had a few ms to write it)."""
        for path in self.paths:
            remove_newer_files(path, started_at, 0)


def remove_newer_files(folder: str, since: float, depth: int) -> None:
    if depth > DISK_SEARCH_DEPTH:
        return
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode):
            if not is_mount_point(entry.path, info):
                remove_newer_files(entry.path, since, depth + 1)
        elif info.st_ctime > since:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def changed_entries(folder: str, since: float, limit: int = 20) -> List[str]:
    """Entries of ``folder`` (the folder too) changed after ``since``, by ctime, which the code cannot set back: a
    file written, renamed, linked or re-moded, a folder whose entries came or went. At most ``limit`` are named;
    never through a link. (A pool checks with it that the libraries it prepared are as it left them.)"""
    found: List[str] = []
    stack = [(folder, 0)]
    while stack and len(found) < limit:
        path, depth = stack.pop()
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        if info.st_ctime > since:
            found.append(path)
        if stat.S_ISDIR(info.st_mode) and depth < DISK_SEARCH_DEPTH:
            try:
                stack.extend((entry.path, depth + 1) for entry in os.scandir(path))
            except OSError:
                found.append(path)
    return found


def mounted(path: str) -> bool:
    try:
        return is_mount_point(path, os.stat(path, follow_symlinks=False))
    except OSError:
        return False


def is_mount_point(path: str, info: os.stat_result) -> bool:
    """Another capped place (or any other filesystem) nested here is searched on its own, not through this one."""
    try:
        parent = os.stat(os.path.dirname(path), follow_symlinks=False)
    except OSError:
        return True
    return parent.st_dev != info.st_dev


def run_limit_names(cap: DiskCap, started_at: Optional[float], stopped_for_disk: bool) -> List[str]:
    """``[Limit.DISK]`` when the run hit the cap (its files then removed, as the caller's effective user), else
    nothing."""
    if not cap.active or started_at is None:
        return []
    if stopped_for_disk or cap.full():
        cap.remove_written_since(started_at)
        return [Limit.DISK]
    return []
