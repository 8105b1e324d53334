"""The helper's separation from the code and its seccomp program: the BPF program's structure on each architecture
(run through a small interpreter of the instructions it uses), the privilege drop and the effective-uid switch
(each in a forked child of this process, never in the test process itself), and the info messages that carry
them."""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from llm_sandbox.guest.confine import (
    AUDIT_ARCH,
    JEQ,
    JSET,
    LD_ABS,
    NAMESPACE_FLAGS,
    RET,
    RET_ALLOW,
    RET_ENOSYS,
    RET_EPERM,
    SYSCALLS,
    X32_SYSCALL_BIT,
    ActingAsCode,
    can_confine,
    confine,
    drop_privileges,
    namespace_filter,
)
from llm_sandbox.helper_launch import numeric_ids, refusal
from llm_sandbox.messages import GuestProtocolError, InfoReply, InfoRequest

AUDIT_ARCH_I386, AUDIT_ARCH_ARM = 0x40000003, 0x40000028
GETPID = {"x86_64": 39, "aarch64": 172}
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17


def _run(program: list[tuple[int, int, int, int]], arch: int, number: int, flags: int = 0) -> tuple[int, set[int]]:
    """The program's verdict on one seccomp_data (arch, nr, first argument's low word), and the instructions it
    went through."""
    data = {0: number, 4: arch, 16: flags}
    accumulator, index, seen = 0, 0, set()
    while True:
        seen.add(index)
        code, jt, jf, k = program[index]
        if code == LD_ABS:
            accumulator, index = data[k], index + 1
        elif code == RET:
            return k, seen
        elif code in (JEQ, JSET):
            hit = accumulator == k if code == JEQ else bool(accumulator & k)
            index += 1 + (jt if hit else jf)
        else:
            raise AssertionError(f"an instruction the filter should not hold: {code:#x}")


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_every_jump_lands_inside_the_program_and_it_ends_in_its_returns(machine: str) -> None:
    program = namespace_filter(machine)
    assert [item[0] for item in program[-3:]] == [RET, RET, RET]
    assert sorted(item[3] for item in program if item[0] == RET) == sorted([RET_ALLOW, RET_EPERM, RET_ENOSYS])
    for index, (code, jt, jf, _k) in enumerate(program):
        if code in (JEQ, JSET):
            assert index + 1 + max(jt, jf) < len(program)
            assert 0 <= jt <= 255 and 0 <= jf <= 255
        else:
            assert (jt, jf) == (0, 0)


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_the_native_abi_keeps_its_rules(machine: str) -> None:
    program = namespace_filter(machine)
    arch = AUDIT_ARCH[machine]
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    assert _run(program, arch, unshare)[0] == RET_EPERM
    assert _run(program, arch, setns)[0] == RET_EPERM
    assert _run(program, arch, clone3)[0] == RET_ENOSYS
    assert _run(program, arch, clone, CLONE_NEWUSER | SIGCHLD)[0] == RET_EPERM
    for flag in range(17, 31):  # every namespace flag alone
        if NAMESPACE_FLAGS & (1 << flag):
            assert _run(program, arch, clone, (1 << flag) | SIGCHLD)[0] == RET_EPERM
    assert _run(program, arch, clone, 0x003D0F00)[0] == RET_ALLOW  # the flags pthread_create uses
    assert _run(program, arch, clone, SIGCHLD)[0] == RET_ALLOW  # fork
    assert _run(program, arch, GETPID[machine])[0] == RET_ALLOW
    assert _run(program, arch, 0)[0] == RET_ALLOW


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
@pytest.mark.parametrize("foreign", [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, 0xC000003E, 0xC00000B7, 0])
def test_every_call_of_another_abi_is_refused(machine: str, foreign: int) -> None:
    if foreign == AUDIT_ARCH[machine]:
        return  # the native one (the other architecture's value stands for another ABI here)
    program = namespace_filter(machine)
    for number in (0, 1, 20, 39, 172, 310, *SYSCALLS[machine]):
        assert _run(program, foreign, number)[0] == RET_EPERM, (machine, hex(foreign), number)


def test_x32_numbers_are_refused_on_x86_64() -> None:
    program = namespace_filter("x86_64")
    arch = AUDIT_ARCH["x86_64"]
    for number in (0, 39, 56, 272, 308, 435, 512, 547):  # read, getpid, clone, unshare, setns, clone3, x32-only
        assert _run(program, arch, X32_SYSCALL_BIT | number)[0] == RET_EPERM, number
    assert _run(program, arch, 39)[0] == RET_ALLOW


def test_aarch64_has_no_x32_check() -> None:
    program = namespace_filter("aarch64")
    assert all(not (code == JSET and k == X32_SYSCALL_BIT) for code, _jt, _jf, k in program)
    assert len(program) == len(namespace_filter("x86_64")) - 1


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_every_instruction_is_reachable(machine: str) -> None:
    program = namespace_filter(machine)
    arch = AUDIT_ARCH[machine]
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    seen: set[int] = set()
    cases = [(arch, unshare, 0), (arch, setns, 0), (arch, clone3, 0), (arch, clone, CLONE_NEWUSER), (arch, clone, 17)]
    cases += [(arch, GETPID[machine], 0), (AUDIT_ARCH_I386, 0, 0), (arch, X32_SYSCALL_BIT | 1, 0)]
    for case in cases:
        seen |= _run(program, *case)[1]
    assert seen == set(range(len(program)))


def test_an_unknown_architecture_has_no_program_and_confine_refuses_there(monkeypatch: pytest.MonkeyPatch) -> None:
    assert namespace_filter("riscv64") == []
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, "riscv64"))
    monkeypatch.setattr(os, "uname", lambda: fake)
    with pytest.raises(OSError, match="riscv64"):
        confine()  # raises before any prctl: nothing is installed in this process
    assert can_confine(None) is False


def _in_child(work: Callable[[], Any]) -> str:
    """Run ``work`` in a forked child of this process; its result (or its error) as text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            text = repr(work())
        except BaseException as error:
            text = f"error {type(error).__name__}: {error}"
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def _status(*names: str) -> dict[str, str]:
    with open("/proc/self/status") as handle:
        lines = [line.split(":", 1) for line in handle]
    return {key: value.strip() for key, value in lines if key in names}


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root (CAP_SETUID, CAP_SETGID)")


@needs_root
def test_drop_privileges_leaves_no_capability_and_no_way_back() -> None:
    def drop() -> tuple[Any, ...]:
        drop_privileges((65534, 65534))
        status = _status("CapEff", "CapPrm", "CapBnd", "CapAmb")
        try:
            os.setuid(0)
            back = "regained"
        except PermissionError:
            back = "refused"
        return os.getresuid(), os.getresgid(), os.getgroups(), status, back

    zero = "0000000000000000"
    assert ast.literal_eval(_in_child(drop)) == (
        (65534, 65534, 65534),
        (65534, 65534, 65534),
        [],
        {"CapEff": zero, "CapPrm": zero, "CapBnd": zero, "CapAmb": zero},
        "refused",
    )


@needs_root
def test_acting_as_code_makes_the_codes_files_and_switches_back() -> None:
    folder = tempfile.mkdtemp(prefix="acting-as-code-")
    os.chmod(folder, 0o777)
    try:

        def act() -> tuple[Any, ...]:
            acting = ActingAsCode()
            acting.ids = (65534, 65534)
            with acting:
                with acting:  # nested: still the code's until the outer block ends
                    pass
                inner = (os.geteuid(), os.getegid(), os.getuid())
                with open(os.path.join(folder, "made"), "w") as handle:
                    handle.write("x")
            info = os.stat(os.path.join(folder, "made"))
            return inner, (info.st_uid, info.st_gid), (os.geteuid(), os.getegid())

        assert ast.literal_eval(_in_child(act)) == ((65534, 65534, 0), (65534, 65534), (0, 0))
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def test_acting_as_code_does_nothing_when_not_separated() -> None:
    acting = ActingAsCode()
    before = (os.geteuid(), os.getegid())
    with acting:
        assert (os.geteuid(), os.getegid()) == before


@pytest.mark.parametrize(
    ("user", "ids"),
    [
        ("65534:65534", (65534, 65534)),
        ("1000", (1000, 1000)),
        ("1000:100", (1000, 100)),
        ("0", None),
        ("0:0", None),
        ("root", None),
        ("nobody:nogroup", None),
        ("1000:staff", None),
    ],
)
def test_only_a_numeric_user_other_than_root_is_separated(user: str, ids: tuple[int, int] | None) -> None:
    assert numeric_ids(user) == ids


def test_info_messages_carry_the_separation_both_ways() -> None:
    request = InfoRequest(
        "/sandbox", kill_all=True, own_cgroup=True, code_user=(65534, 65534), seccomp=True, lease=True, prefix=("m",)
    )
    assert InfoRequest.from_fields({**request.to_message()}) == request
    for wrong in ([1], [1, "2"], [True, 1], [-1, 1], "65534:65534"):
        with pytest.raises(GuestProtocolError):
            InfoRequest.from_fields({**request.to_message(), "code_user": wrong})
    reply = InfoReply(1, 0, "/usr/bin/python3", True, True, False, True, separated=True, can_confine=False)
    assert InfoReply.from_fields(reply.to_message()) == reply
    with pytest.raises(GuestProtocolError):
        InfoReply.from_fields({**reply.to_message(), "can_confine": None})


def test_a_sandbox_that_cannot_be_confined_or_separated_is_refused_naming_the_opt_out() -> None:
    confined = InfoReply(1, 0, "python3", True, True, False, True, separated=True, can_confine=True)
    unconfinable = InfoReply(1, 0, "python3", True, True, False, True, separated=True, can_confine=False)
    not_root = InfoReply(1, 65534, "python3", True, True, True, True, separated=False, can_confine=True)
    assert refusal(confined, separated=True, confine=True) == ""
    assert 'relax_hardening=["seccomp"]' in refusal(unconfinable, separated=True, confine=True)
    assert refusal(unconfinable, separated=True, confine=False) == ""  # relaxed by name: not asked for
    assert "separate" in refusal(not_root, separated=True, confine=True)
    assert refusal(not_root, separated=False, confine=True) == ""
