"""The hardened defaults of new sandboxes, each shown to hold by attacking it for real (the contract suite: every
backend, see tests/harness.py; what a backend does not declare is skipped there, saying so)."""

from __future__ import annotations

import time
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
    # The engines' init (docker-init, catatonit as podman's -init), or bwrap's own reaper on Bubblewrap.
    init = session.execute_command("cat /proc/1/cmdline | tr '\\0' ' '").stdout.split()[0]
    assert init.endswith(("-init", "/bwrap")), init
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


# Every process whose real uid is the lister's own, but the lister and its ancestors (the helper that started it,
# and whatever command prefix the backend puts before it): "pid cmdline" per line.
CODE_UID_PROCESSES = (
    "import os, re\n"
    "def field(pid, name):\n"
    "    return int(re.search(name + r':\\s+(\\d+)', open('/proc/%d/status' % pid).read()).group(1))\n"
    "mine, pid = set(), os.getpid()\n"
    "while pid > 1:\n    mine.add(pid)\n    pid = field(pid, 'PPid')\n"
    "for name in os.listdir('/proc'):\n"
    "    if not name.isdigit() or int(name) in mine:\n        continue\n"
    "    try:\n"
    "        if field(int(name), 'Uid') != os.getuid():\n            continue\n"
    "        line = open('/proc/%s/cmdline' % name, 'rb').read().replace(b'\\0', b' ').decode().strip()\n"
    "    except (OSError, AttributeError):\n        continue\n"
    "    print(name, line or '<no command line>')\n"
)


def code_uid_processes(session: SandboxSession) -> list[str]:
    listed = session.execute_command(["python3", "-c", CODE_UID_PROCESSES])
    assert listed.exit_code == 0, listed.stderr
    return listed.stdout.splitlines()


@pytest.mark.requires("process_limit")
def test_fork_bomb_is_contained_and_the_next_run_works(session: SandboxSession) -> None:
    # The lister sees what it must: a process of the code's uid that is not its ancestor.
    seen = session.run(
        "import subprocess, time\nchild = subprocess.Popen(['sleep', '77'])\ntime.sleep(0.3)\n"
        f"exec(compile({CODE_UID_PROCESSES!r}, 'lister', 'exec'))\nchild.kill()\n"
    ).stdout
    assert any(line.split(" ", 1)[1] == "sleep 77" for line in seen.splitlines()), seen
    assert code_uid_processes(session) == []

    bomb = "import os\nwhile True:\n    os.fork()\n"
    with pytest.raises((ProcessLimitError, SandboxTimeoutError)) as raised:
        session.run(bomb, timeout=10)
    error = raised.value
    assert isinstance(error, (ProcessLimitError, SandboxTimeoutError))
    assert error.output is not None and error.output.exit_code != 0
    # Nothing of the bomb is left: no process of the code's uid at all (the helper's own chain aside).
    left = code_uid_processes(session)
    deadline = time.monotonic() + 3
    while left and time.monotonic() < deadline:  # the helper reaps what it killed
        time.sleep(0.2)
        left = code_uid_processes(session)
    assert left == [], f"{len(left)} process(es) of the code's uid left after the fork bomb: {left[:10]}"
    assert session.run("print('after bomb')").stdout == "after bomb\n"
    assert session.execute_command(["sh", "-c", "sleep 0 & wait; echo forks"]).stdout == "forks\n"


@pytest.mark.requires("own_cgroup")
def test_memory_bomb_is_reported_as_such(session: SandboxSession) -> None:
    with pytest.raises(MemoryLimitError) as raised:
        session.run("blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n", timeout=60)
    assert isinstance(raised.value, MemoryError)
    assert raised.value.output is not None and raised.value.output.exit_code == 137
    assert session.run("print('after oom')").stdout == "after oom\n"


ONE_GIB = 1024**3
AREAS = ("/sandbox", "/tmp", "/dev/shm")


@pytest.mark.requires("file_size_limit")
def test_giant_file_hits_the_file_size_limit(session: SandboxSession) -> None:
    # A sparse write that crosses 1 GiB: the file stops at the limit (not one byte past it) in every area, the
    # writer dies of SIGXFSZ (128 + 25), and the session goes on.
    with pytest.raises(DiskLimitError) as raised:
        session.execute_command("truncate -s 50G /sandbox/huge")
    assert raised.value.output is not None and raised.value.output.exit_code == 153
    assert session.execute_command("stat -c %s /sandbox/huge 2>/dev/null || echo none").stdout in ("0\n", "none\n")
    session.execute_command("rm -f /sandbox/huge")
    for area in AREAS[:2]:  # /dev/shm is smaller than the limit: see the filling test
        target = f"{area}/crossing"
        with pytest.raises(DiskLimitError) as raised:
            session.execute_command(f"dd if=/dev/zero of={target} bs=1M seek=1023 count=2 status=none")
        assert raised.value.output is not None and raised.value.output.exit_code == 153, area
        assert session.execute_command(["stat", "-c", "%s", target]).stdout == f"{ONE_GIB}\n", area
        assert session.execute_command(["rm", "-f", target]).exit_code == 0
    assert session.run("print('after giant')").stdout == "after giant\n"


def _size(session: SandboxSession, path: str) -> int:
    return int(session.execute_command(["stat", "-c", "%s", path]).stdout)


def test_filling_tmp_and_dev_shm_stays_inside_the_sandbox(backend: Harness) -> None:
    fill = 80 * 1024 * 1024
    with backend.session(lang="python") as session:
        # The workdir and /tmp are tmpfs volumes of the disk cap (test_disk_limit.py): 80 MiB go in whole (each
        # file is bounded by the file-size limit too, see the giant-file test) and can be removed again.
        for area in AREAS[:2]:
            result = session.execute_command(f"head -c 80M /dev/zero > {area}/fill")
            assert (result.exit_code, result.stderr) == (0, ""), area
            assert _size(session, f"{area}/fill") == fill, area
            assert session.run("print('after fill')").stdout == "after fill\n"
        # /dev/shm is a tmpfs of at most 64 MiB: the write fails with ENOSPC and keeps exactly what fitted.
        shm_bytes = int(session.execute_command("df -k --output=size /dev/shm | tail -1").stdout) * 1024
        assert 0 < shm_bytes <= 64 * 1024 * 1024
        result = session.execute_command("head -c 80M /dev/zero > /dev/shm/fill")
        assert result.exit_code == 1
        assert "No space left on device" in result.stderr
        assert _size(session, "/dev/shm/fill") == shm_bytes
        assert session.run("print('after shm')").stdout == "after shm\n"
        assert session.execute_command("echo small > /tmp/small && cat /tmp/small").stdout == "small\n"
        # Removing the file gives the space back within the session.
        session.execute_command("rm /dev/shm/fill")
        assert session.execute_command("head -c 1M /dev/zero > /dev/shm/again").exit_code == 0
        written = [f"{area}/fill" for area in AREAS]
    # What a session wrote is gone with it: the next session finds none of it.
    with backend.session(lang="python") as after:
        assert after.execute_command(["ls", *written]).exit_code != 0
        for path in written:
            assert after.execute_command(["test", "-e", path]).exit_code == 1, path


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
    # 1 GiB for the code, and 2 GiB for the files of the disk cap (tmpfs pages are charged to the cgroup).
    assert config["Memory"] == config["MemorySwap"] == 3 * 1024**3
    if backend.engine == "docker":
        assert config["NetworkMode"] == "none"
    else:  # Podman: on its bridge, disconnected before start
        assert not attrs["NetworkSettings"].get("Networks")
