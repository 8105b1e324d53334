"""The guest helper's pure parts: the joined source, its JSON writer and its seccomp program."""

from __future__ import annotations

import ast
import json
import os
import random
import sys
from importlib import resources

import pytest

from llm_sandbox.guest import MODULES, agent_source
from llm_sandbox.guest.confine import (
    AUDIT_ARCH,
    NAMESPACE_FLAGS,
    RET_ALLOW,
    RET_ENOSYS,
    RET_EPERM,
    SYSCALLS,
    namespace_filter,
)
from llm_sandbox.guest.protocol import FRAME_HEADER, MARSHAL_VERSION, Field, Frame, Result, info_request
from llm_sandbox.guest.wire import to_json

JUMPS = {0x15, 0x45}  # BPF_JMP | JEQ / JSET with a constant
LOAD, RETURN = 0x20, 0x06


def _top_level_names(module: str) -> set[str]:
    tree = ast.parse(resources.files("llm_sandbox.guest").joinpath(f"{module}.py").read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names - {"TYPE_CHECKING"}


def test_joined_source_compiles_for_the_oldest_supported_python() -> None:
    source = agent_source()
    assert source.startswith("from __future__ import annotations\n")
    assert source.count("from __future__") == 1
    ast.parse(source, feature_version=(3, 7))
    compile(source, "guest", "exec")


def test_no_two_guest_modules_define_the_same_name() -> None:
    seen: dict[str, str] = {}
    for module in MODULES:
        for name in _top_level_names(module):
            assert name not in seen, f"{name} is defined in both {seen[name]} and {module}"
            seen[name] = module


def test_guest_imports_nothing_heavy_at_start() -> None:
    tree = ast.parse(agent_source())
    imported = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    # ctypes, fnmatch, tarfile: only when needed; stat: loaded by os already
    assert imported <= {"marshal", "os", "select", "signal", "stat", "struct", "sys", "time"}


@pytest.mark.parametrize(
    "value",
    [
        {"exit_code": 0, "duration_s": 0.25, "timed_out": False, "limits": ["oom", "pids"], "error": None},
        {"text": 'quote " backslash \\ newline \n tab \t bell \x07 nul \x00 é 漢 \U0001f600'},
        {"surrogate": "\udc80 lone"},
        {"nested": [[1, 2], {"a": [True, None]}], "big": 2**40, "negative": -3},
    ],
)
def test_to_json_is_read_back_by_json(value: dict[str, object]) -> None:
    assert json.loads(to_json(value)) == value


def test_to_json_round_trips_random_text() -> None:
    generator = random.Random(7)
    for _ in range(300):
        text = "".join(
            chr(generator.choice([generator.randrange(0, 128), generator.randrange(0, 0x11000)]))
            for _ in range(generator.randrange(0, 40))
        )
        assert json.loads(to_json({"t": text})) == {"t": text}


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_namespace_filter_jumps_land_on_its_returns(machine: str) -> None:
    program = namespace_filter(machine)
    returns = {index: k for index, (code, _jt, _jf, k) in enumerate(program) if code == RETURN}
    assert sorted(returns.values()) == sorted([RET_ALLOW, RET_EPERM, RET_ENOSYS])
    for index, (code, jt, jf, _k) in enumerate(program):
        if code in JUMPS:
            for offset in (jt, jf):
                assert index + 1 + offset < len(program)


def _run(program: list[tuple[int, int, int, int]], arch: int, number: int, flags: int = 0) -> int:
    """Interpret the program on one seccomp_data (arch, nr, first argument's low word)."""
    data = {0: number, 4: arch, 16: flags}
    accumulator, index = 0, 0
    while True:
        code, jt, jf, k = program[index]
        if code == LOAD:
            accumulator, index = data[k], index + 1
        elif code == RETURN:
            return k
        else:
            hit = accumulator == k if code == 0x15 else bool(accumulator & k)
            index += 1 + (jt if hit else jf)


@pytest.mark.parametrize("machine", sorted(SYSCALLS))
def test_namespace_filter_decides_as_documented(machine: str) -> None:
    program = namespace_filter(machine)
    arch = AUDIT_ARCH[machine]
    unshare, setns, clone, clone3 = SYSCALLS[machine]
    assert _run(program, arch, unshare) == RET_EPERM
    assert _run(program, arch, setns) == RET_EPERM
    assert _run(program, arch, clone3) == RET_ENOSYS
    assert _run(program, arch, clone, 0x10000000 | 17) == RET_EPERM  # CLONE_NEWUSER | SIGCHLD
    assert _run(program, arch, clone, 0x003D0F00) == RET_ALLOW  # the flags pthread_create uses
    assert _run(program, arch, clone, 17) == RET_ALLOW  # fork
    assert _run(program, arch, 0) == RET_ALLOW
    assert _run(program, 0x40000003, unshare) == RET_EPERM  # another ABI (i386 on x86_64): every call refused
    assert NAMESPACE_FLAGS & 0x10000000


def test_unknown_architectures_get_no_filter() -> None:
    assert namespace_filter("riscv64") == []


@pytest.mark.parametrize("same_interpreter", [True, False])
def test_bootstrap_runs_the_compiled_program_or_compiles_the_source(same_interpreter: bool) -> None:
    import marshal
    import subprocess

    from llm_sandbox.guest import BOOTSTRAP, agent_payload

    payload = agent_payload()
    if not same_interpreter:  # another interpreter's tag: the guest must ignore the code object and compile
        tag_length = int.from_bytes(payload[:4], "big")
        payload = (5).to_bytes(4, "big") + b"other" + payload[4 + tag_length :]
    request = marshal.dumps({**info_request("/", kill_all=False, own_cgroup=False), Field.ID: 1}, MARSHAL_VERSION)
    frames = payload + FRAME_HEADER.pack(Frame.REQUEST, len(request)) + request
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", BOOTSTRAP], input=frames, capture_output=True, timeout=30, check=False
    )
    kind, size = FRAME_HEADER.unpack(done.stdout[: FRAME_HEADER.size])
    assert kind == Frame.REPLY, done.stderr
    reply = json.loads(done.stdout[FRAME_HEADER.size : FRAME_HEADER.size + size])
    assert reply[Result.ID] == 1
    assert reply[Result.UID] == os.getuid()
