"""The command lines of a Bubblewrap sandbox: pure functions from what is wanted to argv lists.

A sandbox is three layers of processes on the host:

- the launcher: ``unshare --mount`` gives it a private mount namespace, in which it mounts the sandbox's root (an
  overlay: the cached image read-only below, the sandbox's scratch folder above) and the disk cap's tmpfs places,
  joins the sandbox's cgroups, then execs ``bwrap``. Those mounts live in that namespace only: nothing is mounted
  on the host, and they go when the sandbox's processes do;
- ``bwrap``: every namespace but the user namespace unshared (a user namespace made by root maps root alone, and
  the code's uid must exist in the sandbox), its own /proc and /dev, the keep-alive command as its child; its
  PID 1 is bwrap's own reaper, root and out of the code's reach;
- every exec: ``nsenter`` into the sandbox's namespaces and root, then ``setpriv`` (the image's, inside) sets the
  user, the capability bounding set and no_new_privs before the command runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: What the launcher runs as root in its private mount namespace. Arguments: the cgroup.procs files to join
#: (one word, space separated), the overlay's options and mount point, then (tmpfs options, place, the image's
#: folder there, or "") triples up to "--", then the bwrap argv. A capped place is a tmpfs over the image's folder:
#: what the image holds there is copied in, the place keeping its own owner and mode (the default images hold
#: nothing there, and are given ""). Exit 125: the launch itself failed (the stderr says what).
LAUNCH_SCRIPT = (
    'for procs in $1; do echo 0 > "$procs" || exit 125; done; '
    'mount -t overlay overlay -o "$2" "$3" || exit 125; shift 3; '
    'while [ "$1" != -- ]; do mkdir -p "$2" && mount -t tmpfs -o "$1" tmpfs "$2" || exit 125; '
    'if [ -n "$3" ] && [ -d "$3" ]; then (tar -C "$3" -cf - . | tar -C "$2" -xf - --no-overwrite-dir) || exit 125; fi; '
    "shift 3; done; shift; "
    'exec "$@"'
)
#: What an exec runs on the host before entering: join the sandbox's cgroups (argument 1), then the rest.
JOIN_SCRIPT = 'for procs in $1; do echo 0 > "$procs" || exit 125; done; shift; exec "$@"'

#: The sandbox's first command: say on stdout that the sandbox is set up (bwrap reports its PID 1 before it has
#: mounted the root), then become the keep-alive command.
READY_SCRIPT = 'echo ready; exec "$@"'
#: What an exec runs in the sandbox, as its user, before its command: into its working folder (argument 1).
CHDIR_SCRIPT = 'cd -- "$1" || exit 126; shift; exec "$@"'

SHM_BYTES = 64 * 1024 * 1024
#: The namespaces a sandbox unshares: all of --unshare-all's but the user namespace (see the module's notes).
UNSHARED = ("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup")
#: nsenter's options for each of them, plus the sandbox's root.
ENTERED = ("--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--root")
#: The capabilities root keeps in the sandbox: the guest helper's (switching to the code's uid, killing its
#: processes, dropping the bounding set of what it starts), as on Docker and Podman.
HELPER_CAPABILITIES = ("setuid", "setgid", "kill", "setpcap")
#: What root's file transfers keep as well: reading and writing any file, and giving files their owners.
TRANSFER_CAPABILITIES = (*HELPER_CAPABILITIES, "chown", "dac_override", "dac_read_search", "fowner", "fsetid")


@dataclass(frozen=True)
class Mounts:
    """Where a sandbox's root is assembled on the host (all inside its scratch folder but the image's root)."""

    lower: str  # the cached image root (read-only)
    upper: str  # the sandbox's changes
    work: str  # the overlay's work folder
    root: str  # the mount point of the assembled root

    def overlay_options(self) -> str:
        return f"lowerdir={self.lower},upperdir={self.upper},workdir={self.work}"


@dataclass(frozen=True)
class TmpfsPlace:
    """A place of the disk cap: a tmpfs of ``size`` bytes at ``path`` in the sandbox."""

    path: str
    size: int
    mode: int
    owner: tuple[int, int]

    def options(self) -> str:
        return f"size={self.size},mode={self.mode:o},uid={self.owner[0]},gid={self.owner[1]},nosuid,nodev"


def launch_argv(
    mounts: Mounts,
    places: Sequence[TmpfsPlace],
    cgroup_procs: Sequence[str],
    bwrap: Sequence[str],
    *,
    copy_up: bool = True,
) -> list[str]:
    """The launcher: a private mount namespace, the root and places mounted there (with the image's files at them
    when ``copy_up``), the cgroups joined, bwrap."""
    triples: list[str] = []
    # Outer places first: a workdir under /tmp is mounted on the /tmp place, not hidden by it.
    for place in sorted(places, key=lambda item: item.path.count("/")):
        triples += [place.options(), mounts.root + place.path, mounts.lower + place.path if copy_up else ""]
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        LAUNCH_SCRIPT,
        "llm-sandbox-bwrap",
        " ".join(cgroup_procs),
        mounts.overlay_options(),
        mounts.root,
        *triples,
        "--",
        *bwrap,
    ]


def bwrap_argv(
    root: str,
    workdir: str,
    keep_alive: Sequence[str],
    *,
    info_fd: int,
    read_only_binds: Mapping[str, str] | None = None,
    network: bool = False,
) -> list[str]:
    """The sandbox's bwrap: the assembled ``root`` as /, its own /proc and /dev, ``read_only_binds`` (host path ->
    sandbox path), no network unless ``network``; ``info_fd`` receives its JSON (the PID 1's host pid)."""
    argv = ["bwrap", *(option for option in UNSHARED if option != "--unshare-net" or not network)]
    argv += ["--die-with-parent", "--new-session", "--bind", root, "/", "--proc", "/proc", "--dev", "/dev"]
    # /dev/shm as the engines make it: a tmpfs of 64 MiB (bwrap's /dev is an unbounded tmpfs).
    argv += ["--size", str(SHM_BYTES), "--perms", "1777", "--tmpfs", "/dev/shm"]  # noqa: S108 - the sandbox's
    if network:  # the host's network, with its name servers (an exported image's resolv.conf is empty)
        argv += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    for source, target in (read_only_binds or {}).items():
        argv += ["--ro-bind", source, target]
    argv += ["--hostname", "sandbox", "--chdir", workdir, "--info-fd", str(info_fd), "--"]
    return [*argv, "/bin/sh", "-c", READY_SCRIPT, "llm-sandbox-ready", *keep_alive]


def install_bwrap_argv(
    root: str, writable: Sequence[str] | None, workdir: str, capabilities: Sequence[str]
) -> list[str]:
    """A one-off bwrap for an install step: the host's network (with its DNS settings), its own pid namespace,
    the sandbox's root read-only but for ``writable`` (sandbox paths; None: all of it, for root's system
    installs); ``capabilities`` kept for the ``user_argv`` that follows."""
    argv = ["bwrap", *(option for option in UNSHARED if option != "--unshare-net")]
    argv += ["--die-with-parent", "--new-session"]
    argv += ["--bind" if writable is None else "--ro-bind", root, "/"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    # Temporary folders of the step's own: nothing the code left in the sandbox's is read, nothing stays.
    for temporary in ("/tmp", "/var/tmp"):  # noqa: S108 - the step's own tmpfs places
        argv += ["--perms", "1777", "--tmpfs", temporary]
    # After them: a workdir under /tmp is the sandbox's, bound onto the step's /tmp.
    for place in writable or ():
        argv += ["--bind", root + place, place]
    for capability in capabilities:
        argv += ["--cap-add", f"CAP_{capability.upper()}"]
    return [*argv, "--chdir", workdir, "--"]


def nsenter_argv(target_pid: int, tool: str = "nsenter") -> list[str]:
    """Into the namespaces and root of the sandbox whose PID 1 is ``target_pid`` on the host.

    Its working folder is chosen inside (``user_argv``): nsenter's ``--wd`` would open the path on the host."""
    return [tool, "--target", str(target_pid), *ENTERED, "--"]


def user_argv(user: str | None, capabilities: Sequence[str], workdir: str) -> list[str]:
    """``setpriv`` as ``user`` ("uid", "uid:gid" or a name; None: root) with no supplementary group, no_new_privs
    and ``capabilities`` alone in the bounding set (a uid other than 0 keeps none of them anyway); then, as that
    user, into ``workdir`` (exit 126 when it cannot)."""
    name, _, group = (user or "0").partition(":")
    # A named user's group is the group of the same name (what useradd makes): setpriv cannot look it up.
    argv = ["/usr/bin/setpriv", f"--reuid={name}", f"--regid={group or name}", "--clear-groups"]
    bounding = ",".join(["-all", *(f"+{capability}" for capability in capabilities)])
    argv += ["--inh-caps=-all", f"--bounding-set={bounding}", "--no-new-privs", "--"]
    return [*argv, "/bin/sh", "-c", CHDIR_SCRIPT, "llm-sandbox-cd", workdir]


def join_argv(cgroup_procs: Sequence[str], file_size: int | None) -> list[str]:
    """What an exec runs on the host first: the sandbox's cgroups joined, its file-size limit set."""
    argv = ["/bin/sh", "-c", JOIN_SCRIPT, "llm-sandbox-bwrap-exec", " ".join(cgroup_procs)]
    if file_size is not None:
        argv += ["prlimit", f"--fsize={file_size}:{file_size}", "--"]
    return argv
