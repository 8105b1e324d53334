"""Confinement of the processes a run starts: a seccomp filter against new namespaces, the OOM killer's first
choice, and the subreaper flag that keeps every descendant of a run under the helper."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import List, Tuple

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    import ctypes  # here, not at the top: four milliseconds of every session's start-up

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# A seccomp filter stacked on the engine's own profile for user code in sandboxes the library owns: no new
# namespaces (unshare, setns, clone with namespace flags), so code cannot become "root" in a user namespace and
# reach kernel paths that need it; clone3 answers ENOSYS so that libc falls back to clone, which is checked.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SYSCALLS = {  # unshare, setns, clone, clone3
    "x86_64": (272, 308, 56, 435),
    "aarch64": (97, 268, 220, 435),
}
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
RET_ALLOW, RET_EPERM, RET_ENOSYS = 0x7FFF0000, 0x00050001, 0x00050026
LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06


def namespace_filter(machine: str) -> List[Tuple[int, int, int, int]]:
    """The BPF program, as (code, jump-if-true, jump-if-false, k); empty where the architecture is unknown."""
    if machine not in SYSCALLS:
        return []
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    # Jump offsets count instructions after the jump; the three returns sit at the end: ALLOW, EPERM, ENOSYS.
    return [
        (LD_ABS, 0, 0, 4),  # 0: architecture
        (JEQ, 0, 7, AUDIT_ARCH[machine]),  # 1: another ABI: allow (8)
        (LD_ABS, 0, 0, 0),  # 2: syscall number
        (JEQ, 6, 0, unshare),  # 3: -> EPERM (10)
        (JEQ, 5, 0, setns),  # 4: -> EPERM
        (JEQ, 5, 0, clone3),  # 5: -> ENOSYS (11)
        (JEQ, 0, 2, clone),  # 6: not clone: allow
        (LD_ABS, 0, 0, 16),  # 7: clone's flags (low word of the first argument)
        (JSET, 1, 0, NAMESPACE_FLAGS),  # 8: any namespace flag -> EPERM
        (RET, 0, 0, RET_ALLOW),  # 9 (allow sits at 9; the arch jump above lands here too)
        (RET, 0, 0, RET_EPERM),  # 10
        (RET, 0, 0, RET_ENOSYS),  # 11
    ]


def confine() -> None:
    """Install the namespace filter in this (child) process; runs between fork and exec. Fails closed."""
    program = namespace_filter(os.uname().machine)
    if not program:
        return
    import ctypes
    import struct

    # struct sock_filter {u16 code; u8 jt, jf; u32 k} x N, and struct sock_fprog {u16 len; sock_filter *filter}.
    filters = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *item) for item in program))
    fprog = ctypes.create_string_buffer(struct.pack("@HP", len(program), ctypes.addressof(filters)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: required to install a filter unprivileged
        raise OSError(ctypes.get_errno(), "cannot set no_new_privs")
    if libc.prctl(22, 2, fprog, 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "cannot install the sandbox's seccomp filter")


def prefer_for_oom_kill() -> None:
    """Make the run's processes the memory killer's first choice, so that a memory bomb never takes the helper."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
