"""The hardened defaults of new sandboxes, each shown to hold by attacking it for real (the contract suite: every
backend, see tests/harness.py; what a backend does not declare is skipped there, saying so)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import (
    DiskLimitError,
    MemoryLimitError,
    ProcessLimitError,
    SandboxSession,
    SandboxTimeoutError,
)

# Egress is probed only through the package index's own client, as the project's rules require.
PIP_EGRESS = (
    "import subprocess, sys\n"
    "r = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-cache-dir', '-d', '/tmp/dl',"
    " '--timeout', '5', '--retries', '0', 'six==1.16.0'], capture_output=True, text=True)\n"
    "print('EGRESS', r.returncode)\n"
)


def assert_no_egress(stdout: str) -> None:
    assert "EGRESS" in stdout, stdout
    assert "EGRESS 0" not in stdout


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python") as opened:
        yield opened


def _status_field(session: SandboxSession, name: str) -> str:
    output = session.execute_command(f"grep '^{name}:' /proc/self/status").stdout
    return output.split(":", 1)[1].strip()


def test_code_runs_unprivileged_without_capabilities(session: SandboxSession) -> None:
    assert session.execute_command("id -u").stdout.strip() == "65534"
    assert _status_field(session, "CapEff") == "0000000000000000"
    assert _status_field(session, "CapBnd") == "0000000000000000"
    assert _status_field(session, "NoNewPrivs") == "1"


@pytest.mark.requires("init")
def test_pid_one_is_an_init_owned_by_root(session: SandboxSession) -> None:
    assert session.execute_command("cat /proc/1/cmdline | tr '\\0' ' '").stdout.split()[0].endswith("-init")
    assert session.execute_command("stat -c %u /proc/1").stdout.strip() == "0"


@pytest.mark.requires("init")
def test_pid_one_cannot_be_killed_or_traced(session: SandboxSession) -> None:
    killed = session.execute_command("kill -9 1; echo rc=$?")
    assert "rc=1" in killed.stdout
    traced = session.run(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())"  # PTRACE_ATTACH
    )
    assert traced.stdout.split()[0] == "-1"
    assert session.run("print('alive')").stdout == "alive\n"


def test_privilege_escalation_attempts_fail(session: SandboxSession) -> None:
    for command in ("mount -t tmpfs none /mnt", "chroot / true", "unshare -r true", "su -c true root </dev/null"):
        assert session.execute_command(command).exit_code != 0, command


def test_no_new_namespaces_through_clone_either(session: SandboxSession) -> None:
    # unshare(1) uses the unshare syscall; a program can ask clone() for a user namespace instead.
    code = (
        "import ctypes, os, platform\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "number = {'x86_64': 56, 'aarch64': 220}[platform.machine()]\n"
        "CLONE_NEWUSER, SIGCHLD = 0x10000000, 17\n"
        "pid = libc.syscall(number, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)\n"
        "if pid == 0:\n    os._exit(0)\n"
        "print(pid, ctypes.get_errno())\n"
    )
    assert session.run(code).stdout.split() == ["-1", "1"]  # EPERM


def test_no_engine_socket_and_no_host_secrets(session: SandboxSession) -> None:
    listing = session.execute_command("ls /var/run/docker.sock /run/docker.sock /run/podman 2>&1; env").stdout
    assert "No such file" in listing
    assert "DOCKER_HOST" not in listing
    assert "AWS_" not in listing


def test_user_code_has_no_network_by_default(session: SandboxSession) -> None:
    assert_no_egress(session.run(PIP_EGRESS, timeout=60).stdout)


def test_install_gets_the_network_for_its_duration_only(session: SandboxSession) -> None:
    result = session.run("import six\nprint(six.__name__)", libraries=["six"])
    assert result.stdout == "six\n"
    assert_no_egress(session.run(PIP_EGRESS, timeout=60).stdout)


def test_full_network_allows_egress(backend: Harness) -> None:
    with backend.session(lang="python", network="full") as session:
        assert "EGRESS 0" in session.run(PIP_EGRESS, timeout=120).stdout


@pytest.mark.requires("process_limit")
def test_fork_bomb_is_contained_and_the_next_run_works(session: SandboxSession) -> None:
    bomb = "import os\nwhile True:\n    os.fork()\n"
    with pytest.raises((ProcessLimitError, SandboxTimeoutError)):
        session.run(bomb, timeout=10)
    assert session.run("print('after bomb')").stdout == "after bomb\n"


@pytest.mark.requires("own_cgroup")
def test_memory_bomb_is_reported_as_such(session: SandboxSession) -> None:
    with pytest.raises(MemoryLimitError) as raised:
        session.run("blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n", timeout=60)
    assert isinstance(raised.value, MemoryError)
    assert raised.value.output is not None and raised.value.output.exit_code == 137
    assert session.run("print('after oom')").stdout == "after oom\n"


@pytest.mark.requires("file_size_limit")
def test_giant_file_hits_the_file_size_limit(session: SandboxSession) -> None:
    with pytest.raises(DiskLimitError):
        session.execute_command("truncate -s 50G /sandbox/huge")
    session.execute_command("rm -f /sandbox/huge")


def test_filling_tmp_and_dev_shm_stays_inside_the_sandbox(session: SandboxSession) -> None:
    for target in ("/tmp/fill", "/dev/shm/fill", "/sandbox/fill"):
        result = session.execute_command(f"head -c 80M /dev/zero > {target}; echo rc=$?; rm -f {target}")
        assert "rc=" in result.stdout
    assert session.run("print('after fill')").stdout == "after fill\n"


def test_labels_mark_the_container_for_cleanup(session: SandboxSession, engine_client: Any) -> None:
    labels = engine_client.containers.get(session.container_id).labels
    assert labels["io.llm-sandbox.managed"] == "true"
    assert labels["io.llm-sandbox.session"] == session.session_id
    assert labels["io.llm-sandbox.owner-pid"].isdigit()
    assert labels["io.llm-sandbox.created-at"].isdigit()


def test_engine_keeps_no_log_of_the_output(session: SandboxSession, engine_client: Any, backend: Harness) -> None:
    attrs = engine_client.containers.get(session.container_id).attrs
    config = attrs["HostConfig"]
    assert config["LogConfig"]["Type"] == "none"
    assert config["PidsLimit"] == 256
    assert config["Memory"] == config["MemorySwap"] == 1024**3
    if backend.engine == "docker":
        assert config["NetworkMode"] == "none"
    else:  # Podman: on its bridge, disconnected before start
        assert not attrs["NetworkSettings"].get("Networks")
