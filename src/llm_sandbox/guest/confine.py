"""Confinement of the processes a run starts, and the helper's separation from them.

In a sandbox the library creates on an engine whose execs choose their user, the helper runs as root and every
process of the code (runs, the warm spare interpreter, long-lived children) under the code's uid and gid, out of
the helper's reach and the helper out of theirs. The child drops, between fork and exec: the capability bounding
set first (PR_CAPBSET_DROP needs CAP_SETPCAP, so while it is still root), then the supplementary groups, the gid
and the uid (setresgid and setresuid: real, effective and saved alike, so nothing is left to switch back to).
The file work the helper does itself (a run's files and folder, copies in, the reset's wipe) runs with the
effective uid and gid switched to the code's (``ActingAsCode``): the kernel then checks every path as it would for
the code, and creates files the code owns; the real and saved uid stay 0 meanwhile, so the helper can switch back,
while the code still cannot signal or trace it (both compare against the real and saved uid, never the effective
one alone). A forked child that drops would cost a fork and a pipe on every run's hot path for the same checks.

Also here: a seccomp filter against new namespaces and foreign system-call ABIs, the OOM killer's first choice,
and the subreaper flag that keeps every descendant of a run under the helper.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, List, Optional, Tuple

PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
EINVAL = 22
CAP_SEARCH_END = 64  # capability numbers are below this; the kernel's last one answers EINVAL past it
# The helper's own environment once it runs as root: nothing inherited (the code's environment is kept for the code
# only, in INHERITED_ENVIRONMENT), and a PATH of root-owned system folders for any lookup the helper makes itself.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INHERITED_ENVIRONMENT: Dict[str, str] = dict(os.environ)
LIBC_HANDLE: List[Any] = []


def libc() -> Any:
    """The C library through ctypes, loaded once (a forked child must not load it again)."""
    if not LIBC_HANDLE:
        import ctypes  # here, not at the top: four milliseconds of every session's start-up

        LIBC_HANDLE.append(ctypes.CDLL(None, use_errno=True))
    return LIBC_HANDLE[0]


def prctl_or_raise(option: int, value: int, what: str) -> None:
    import ctypes

    if libc().prctl(option, value, 0, 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, "%s: %s" % (what, os.strerror(number)))


def become_subreaper() -> bool:
    try:
        return bool(libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def separate_helper() -> None:
    """Make the helper, running as root, unreachable from the code: not dumpable (so /proc/<helper> stays root's
    and no ptrace or file-descriptor access is ever allowed), no supplementary groups, and an environment of its
    own (the code's is kept apart for the code)."""
    prctl_or_raise(PR_SET_DUMPABLE, 0, "cannot make the helper non-dumpable")
    os.setgroups([])
    os.environ.clear()
    os.environ["PATH"] = ROOT_PATH


def drop_privileges(ids: Tuple[int, int]) -> None:
    """Become the code's user for good; runs in a child between fork and exec (fails closed: it raises)."""
    import ctypes

    handle = libc()
    for capability in range(CAP_SEARCH_END):
        if handle.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            number = ctypes.get_errno()
            if number == EINVAL:  # past the kernel's last capability
                break
            raise OSError(number, "cannot empty the capability bounding set: %s" % os.strerror(number))
    uid, gid = ids
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise OSError(1, "the code's user could not be taken for good")


class ActingAsCode:
    """``with`` block in which the helper's effective uid and gid are the code's (file work on the code's files);
    the real and saved uid stay root's. Does nothing when the helper is not separated (``ids`` None)."""

    def __init__(self) -> None:
        self.ids: Optional[Tuple[int, int]] = None
        self.depth = 0

    def __enter__(self) -> None:
        if self.ids is not None:
            if self.depth == 0:
                os.setegid(self.ids[1])
                os.seteuid(self.ids[0])
            self.depth += 1

    def __exit__(self, *exc_info: object) -> None:
        if self.ids is not None:
            self.depth -= 1
            if self.depth == 0:
                os.seteuid(0)
                os.setegid(0)


# A seccomp filter stacked on the engine's own profile for user code in sandboxes the library owns: no new
# namespaces (unshare, setns, clone with namespace flags), so code cannot become "root" in a user namespace and
# reach kernel paths that need it; clone3 answers ENOSYS so that libc falls back to clone, which is checked. Every
# system call of another ABI than the native one (i386's int 0x80 on x86_64, 32-bit ARM on aarch64) and every x32
# number on x86_64 (the x32 bit in the number, same architecture value) is refused: their tables hold the same
# calls under other numbers, which the checks above would not see.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {  # unshare, setns, clone, clone3
    "x86_64": (272, 308, 56, 435),
    "aarch64": (97, 268, 220, 435),
}
X32_SYSCALL_BIT = 0x40000000
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
RET_ALLOW, RET_EPERM, RET_ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026
LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
# Jump targets of the program below, by name; None: the next instruction.
RETURNS = (("allow", RET_ALLOW), ("eperm", RET_EPERM), ("enosys", RET_ENOSYS))


def namespace_filter(machine: str) -> List[Tuple[int, int, int, int]]:
    """The BPF program, as (code, jump-if-true, jump-if-false, k); empty where the architecture is unknown."""
    if machine not in SYSCALLS:
        return []
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    steps: List[Tuple[int, Optional[str], Optional[str], int]] = [
        (LD_ABS, None, None, 4),  # the architecture (the ABI the call came in by)
        (JEQ, None, "eperm", AUDIT_ARCH[machine]),  # another ABI: refused
        (LD_ABS, None, None, 0),  # the system call's number
    ]
    if machine == "x86_64":
        steps.append((JSET, "eperm", None, X32_SYSCALL_BIT))  # an x32 number: refused
    steps += [
        (JEQ, "eperm", None, unshare),
        (JEQ, "eperm", None, setns),
        (JEQ, "enosys", None, clone3),
        (JEQ, None, "allow", clone),
        (LD_ABS, None, None, 16),  # clone's flags (low word of the first argument)
        (JSET, "eperm", "allow", NAMESPACE_FLAGS),
    ]
    at = {name: len(steps) + index for index, (name, _value) in enumerate(RETURNS)}

    def offset(index: int, target: Optional[str]) -> int:
        return 0 if target is None else at[target] - index - 1

    program = [(code, offset(i, jt), offset(i, jf), k) for i, (code, jt, jf, k) in enumerate(steps)]
    return program + [(RET, 0, 0, value) for _name, value in RETURNS]


def confine() -> None:
    """Install the namespace filter in this (child) process; runs between fork and exec. Fails closed: an unknown
    architecture or a refused prctl raises, and the exec does not happen."""
    program = namespace_filter(os.uname().machine)
    if not program:
        raise OSError(1, "no seccomp filter for the architecture %s" % os.uname().machine)
    import ctypes
    import struct

    # struct sock_filter {u16 code; u8 jt, jf; u32 k} x N, and struct sock_fprog {u16 len; sock_filter *filter}.
    filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *item) for item in program))
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(program), ctypes.addressof(filters)))
    handle = libc()
    if handle.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # required to install a filter unprivileged
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
    if handle.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "cannot install the sandbox's seccomp filter")


def can_confine(ids: Optional[Tuple[int, int]]) -> bool:
    """Whether a process of the code can be confined here: a child (as the code's user, when separated) tries."""
    if not namespace_filter(os.uname().machine):
        return False
    try:
        libc()
    except (OSError, AttributeError):
        return False
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if ids is not None:
                drop_privileges(ids)
            confine()
            code = 0
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def prefer_for_oom_kill() -> None:
    """Make the run's processes the memory killer's first choice, so that a memory bomb never takes the helper."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
