"""Attacks on the library's own machinery in the sandbox: the helper that runs the code, its output stream, its
restart, what a run leaves behind, the sandbox's lease on its host process, and the seccomp filter.

The helper is out of the code's reach where the sandbox is the library's and its execs choose their user (the
backend declares ``user_switch`` and ``own_uid``): there it runs as root and the code under its own uid. Each attack
is made for real, from inside a run or from outside with the engine's own client.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import Harness
from llm_sandbox import ContainerError, ImageNotFoundError, SandboxDiedError, SandboxSession
from llm_sandbox.cleanup import sweep
from llm_sandbox.labels import OWNER_PID_LABEL

CODE_UID = 65534
EPERM, EACCES = 1, 13

# What a run prints about the helper, its parent: the helper's pid is the parent of the run's process.
HELPER_PID = "import os\nhelper = os.getppid()\n"


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python") as opened:
        yield opened


def _helper_pid(session: SandboxSession) -> int:
    assert session.sandbox is not None and session.sandbox.runner.guest_info is not None
    return session.sandbox.runner.guest_info.pid


@pytest.mark.requires("user_switch", "own_uid")
def test_the_code_cannot_kill_or_stop_the_helper(session: SandboxSession) -> None:
    code = (
        HELPER_PID + "import signal\n"
        "for number in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):\n"
        "    try:\n"
        "        os.kill(helper, number)\n"
        "        print('sent', int(number))\n"
        "    except OSError as error:\n"
        "        print('refused', int(number), error.errno)\n"
        "print('helper', helper)\n"
    )
    result = session.run(code)
    assert f"helper {_helper_pid(session)}" in result.stdout
    for number in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
        assert f"refused {int(number)} {EPERM}" in result.stdout, result.stdout
    shell = session.execute_command('kill -9 "$PPID"; echo "kill=$?"; kill -STOP "$PPID"; echo "stop=$?"')
    assert "kill=1" in shell.stdout and "stop=1" in shell.stdout, shell.stdout
    assert session.run("print('after the attempts')").stdout == "after the attempts\n"


@pytest.mark.requires("user_switch", "own_uid")
def test_a_forged_frame_cannot_be_written_into_the_helpers_output(session: SandboxSession) -> None:
    # A reply frame ('J', big-endian length, JSON) that would answer the next request, if it reached the stream.
    code = (
        HELPER_PID + "import struct\n"
        'body = b\'{"id": 999, "exit_code": 0}\'\n'
        "frame = b'1' + struct.pack('>I', 7) + b'FORGED\\n' + b'J' + struct.pack('>I', len(body)) + body\n"
        "for fd in (1, 2, 0):\n"
        "    try:\n"
        "        with open('/proc/%d/fd/%d' % (helper, fd), 'wb', buffering=0) as handle:\n"
        "            handle.write(frame)\n"
        "        print('wrote', fd)\n"
        "    except OSError as error:\n"
        "        print('refused', fd, error.errno)\n"
    )
    result = session.run(code)
    for fd in (1, 2, 0):
        assert f"refused {fd} {EACCES}" in result.stdout or f"refused {fd} {EPERM}" in result.stdout, result.stdout
    following = session.run("print('the next run, its own output')")
    assert following.stdout == "the next run, its own output\n"
    assert "FORGED" not in following.stdout
    assert session.execute_command("echo third").stdout == "third\n"


@pytest.mark.requires("user_switch", "own_uid")
def test_the_helper_cannot_be_traced_or_read(session: SandboxSession) -> None:
    code = (
        HELPER_PID + "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('attach', libc.ptrace(16, helper, 0, 0), ctypes.get_errno())\n"  # PTRACE_ATTACH
        "for name in ('mem', 'environ', 'maps'):\n"
        "    try:\n"
        "        with open('/proc/%d/%s' % (helper, name), 'rb') as handle:\n"
        "            handle.read(64)\n"
        "        print('read', name)\n"
        "    except OSError as error:\n"
        "        print('refused', name, error.errno)\n"
        "print('status', [line for line in open('/proc/%d/status' % helper).read().splitlines()"
        " if line.startswith(('Uid:', 'TracerPid:'))])\n"
    )
    result = session.run(code)
    assert f"attach -1 {EPERM}" in result.stdout, result.stdout
    for name in ("mem", "environ", "maps"):
        assert f"refused {name} {EACCES}" in result.stdout or f"refused {name} {EPERM}" in result.stdout, result.stdout
    assert "'Uid:\\t0\\t0\\t0\\t0'" in result.stdout  # the helper is root, not the code's uid
    assert "'TracerPid:\\t0'" in result.stdout


# A folder the code can write, first on the container's PATH (images whose virtual environment or environment
# wrapper's bin folder belongs to the code's user have one): the helper was once restarted by a PATH lookup.
WRITABLE_PATH = "/sandbox/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLANT = (
    "import os\n"
    "os.makedirs('/sandbox/bin', exist_ok=True)\n"
    "script = '#!/bin/sh\\necho planted > /tmp/planted-marker\\nexec /usr/bin/python3 \"$@\"\\n'\n"
    "folders = os.environ.get('PATH', '').split(':') + ['/usr/local/bin', '/usr/bin', '/bin', '/opt/conda/bin']\n"
    "planted = []\n"
    "for folder in dict.fromkeys(folders):\n"
    "    if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):\n"
    "        for name in ('python3', 'python'):\n"
    "            path = os.path.join(folder, name)\n"
    "            try:\n"
    "                os.unlink(path)\n"
    "            except FileNotFoundError:\n"
    "                pass\n"
    "            with open(path, 'w') as handle:\n"
    "                handle.write(script)\n"
    "            os.chmod(path, 0o755)\n"
    "            planted.append(path)\n"
    "print(' '.join(planted))\n"
)


@pytest.mark.requires("user_switch", "own_uid")
def test_a_helper_killed_from_outside_means_a_new_sandbox_never_a_planted_interpreter(
    backend: Harness, engine_client: Any
) -> None:
    with backend.session(lang="python", runtime_configs={"environment": {"PATH": WRITABLE_PATH}}) as session:
        planted = session.run(PLANT).stdout.split()
        assert "/sandbox/bin/python3" in planted, planted
        old_id = session.container_id
        assert old_id is not None
        container = engine_client.containers.get(old_id)
        killed = container.exec_run(["kill", "-9", str(_helper_pid(session))], user="0")
        assert killed[0] == 0, killed
        with pytest.raises(SandboxDiedError, match="replaced"):
            session.run("print('lost')")
        # The old sandbox: nothing ran the planted interpreter (the helper was not restarted by name).
        marker = container.exec_run(["cat", "/tmp/planted-marker"], user="0")
        assert marker[0] != 0, marker
        result = session.run("import os, sys\nprint(os.path.exists('/tmp/planted-marker'), sys.executable)")
        assert session.container_id != old_id
        assert result.stdout.split()[0] == "False"
        assert session.execute_command("ls /sandbox/bin 2>&1; echo rc=$?").stdout.endswith("rc=2\n")


@pytest.mark.requires("attach")
def test_an_attached_containers_helper_is_restarted_by_absolute_path_never_from_path(
    backend: Harness, engine_client: Any, make_container: Any
) -> None:
    if backend.entry().command_prefix is not None:
        pytest.skip(
            f"the {backend.name} backend runs every command through its wrapper, which the plain Python image this "
            "test attaches to does not have"
        )
    # The owner's container runs as the code's uid, with a folder that uid can write first on its PATH.
    container = make_container(user=f"{CODE_UID}:{CODE_UID}", environment={"PATH": WRITABLE_PATH})
    with backend.session(container_id=container.id, lang="python") as session:
        planted = session.run(PLANT).stdout.split()
        assert "/sandbox/bin/python3" in planted, planted
        container.exec_run(["kill", "-9", str(_helper_pid(session))], user="0")
        with pytest.raises(ContainerError, match="restarted"):
            session.run("print('lost')")
        assert session.run("print('restarted')").stdout == "restarted\n"
        assert session.container_id == container.id  # the owner's container: restarted in place, not replaced
        marker = container.exec_run(["cat", "/tmp/planted-marker"], user="0")
        assert marker[0] != 0, marker


LIST_OTHERS = (
    "import os\n"
    "mine, pid = set(), os.getpid()\n"
    "while pid > 1:\n"  # this run's own chain of processes
    "    mine.add(pid)\n"
    "    with open('/proc/%d/stat' % pid) as handle:\n"
    "        pid = int(handle.read().rsplit(')', 1)[1].split()[1])\n"
    "for name in os.listdir('/proc'):\n"
    "    if not name.isdigit() or int(name) in mine:\n"
    "        continue\n"
    "    try:\n"
    "        status = open('/proc/%s/status' % name).read()\n"
    "        command = open('/proc/%s/cmdline' % name, 'rb').read().replace(b'\\0', b' ').decode()\n"
    "    except OSError:\n"
    "        continue\n"
    "    uid = [line.split()[1] for line in status.splitlines() if line.startswith('Uid:')][0]\n"
    "    if uid == '65534':\n"
    "        print('LEFT', name, command)\n"
    "print('listed')\n"
)


@pytest.mark.requires("user_switch", "own_uid")
def test_nothing_of_a_run_outlives_it(session: SandboxSession) -> None:
    started = session.execute_command(
        "sleep 1000 & setsid nohup sleep 1001 >/dev/null 2>&1 & "
        "(setsid sh -c 'sleep 1002 & sleep 1003' >/dev/null 2>&1 &) ; echo started"
    )
    assert started.stdout == "started\n"
    listing = session.run(LIST_OTHERS).stdout
    assert "listed" in listing
    assert "LEFT" not in listing, listing
    # The same after a Python run that forks a daemon and returns at once.
    session.run("import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(1000)\n")
    listing = session.run(LIST_OTHERS).stdout
    assert "LEFT" not in listing, listing


@pytest.mark.requires("user_switch", "own_uid")
def test_a_long_lived_child_outlives_the_clean_up_after_runs_and_nothing_else_does(session: SandboxSession) -> None:
    assert session.sandbox is not None
    runner = session.sandbox.runner
    child = runner.spawn([runner.python, "-u", "-c", "import sys\nfor line in sys.stdin:\n    print(line.strip())"])
    try:
        listing = session.run(LIST_OTHERS).stdout
        # The long-lived child exists by design; the run's own leftovers do not.
        lines = [line for line in listing.splitlines() if line.startswith("LEFT")]
        assert [line.split()[1] for line in lines] == [str(child.pid)], listing
        session.execute_command("sleep 1000 &")
        lines = [line for line in session.run(LIST_OTHERS).stdout.splitlines() if line.startswith("LEFT")]
        assert [line.split()[1] for line in lines] == [str(child.pid)]
    finally:
        runner.close_process(child.handle)


# Opens a session, prints its container's id, then waits idle, or in a run that never ends (argv[2] == "busy").
OWNER_SCRIPT = (
    "import json, sys, time\n"
    "from llm_sandbox import SandboxSession\n"
    "session = SandboxSession(**json.loads(sys.argv[1]))\n"
    "session.open()\n"
    "print(session.container_id, flush=True)\n"
    "if sys.argv[2] == 'busy':\n"
    "    session.run('import time\\nprint(1, flush=True)\\ntime.sleep(1000)', timeout=None)\n"
    "time.sleep(1000)\n"
)


def _not_found(error: Exception) -> bool:
    # docker.errors.NotFound, podman.errors.NotFound; Podman answers a lookup that races its own removal with a
    # server error that says so.
    return type(error).__name__ == "NotFound" or "no such container" in str(error).lower()


def _removed(engine_client: Any, container_id: str) -> bool:
    try:
        engine_client.containers.get(container_id)
    except Exception as error:
        if _not_found(error):
            return True
        raise
    return False


def _gone(engine_client: Any, container_id: str) -> bool:
    try:
        container = engine_client.containers.get(container_id)
    except Exception as error:
        if _not_found(error):
            return True
        raise
    return container.status in ("exited", "dead", "removing")


@pytest.mark.requires("user_switch", "own_uid", "init")
@pytest.mark.parametrize("activity", ["idle", "busy"])
def test_a_sandbox_ends_by_itself_once_its_host_process_is_killed(
    backend: Harness, engine_client: Any, activity: str
) -> None:
    # No sweep runs anywhere here: the container ends because the helper's link is its lease, whether the helper
    # waits for a request or relays a run that would never end.
    options = {**backend.session_defaults, "lang": "python"}
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, json.dumps(options), activity],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert owner.stdout is not None
        container_id = owner.stdout.readline().decode().strip()
        assert container_id, owner.stderr.read().decode() if owner.stderr else ""
        assert not _gone(engine_client, container_id)
        if activity == "busy":
            time.sleep(1.0)  # the run has started (its output is not read: the host never sees it)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        for stream in (owner.stdout, owner.stderr):
            if stream is not None:
                stream.close()
    deadline = time.monotonic() + 15
    while not _gone(engine_client, container_id):
        assert time.monotonic() < deadline, "the sandbox outlived its host process by 15 s"
        time.sleep(0.2)
    # Auto-removed by the engine, not merely stopped.
    deadline = time.monotonic() + 15
    while not _removed(engine_client, container_id):
        assert time.monotonic() < deadline, "the stopped sandbox was not removed"
        time.sleep(0.2)
    if backend.capabilities().disk_limit:
        _disk_volumes_hold_nothing_and_are_swept(engine_client, owner.pid)


def _disk_volumes_hold_nothing_and_are_swept(engine_client: Any, owner_pid: int) -> None:
    """The engines keep a removed container's named volumes: the disk cap's tmpfs volumes of a dead owner remain
    as empty names (a tmpfs holds nothing once unmounted), and the sweep removes them."""
    volumes = engine_client.volumes.list(filters={"label": f"{OWNER_PID_LABEL}={owner_pid}"})
    assert volumes, "the sandbox had disk-cap volumes"
    with open("/proc/mounts", encoding="utf-8") as mounts:
        mounted = {line.split()[1] for line in mounts}
    for volume in volumes:
        mountpoint = volume.attrs.get("Mountpoint", "")
        assert mountpoint not in mounted, f"{volume.name} is still mounted on the host"
        assert not os.path.isdir(mountpoint) or not os.listdir(mountpoint), f"{volume.name} holds data"
    sweep(engine_client)
    assert not engine_client.volumes.list(filters={"label": f"{OWNER_PID_LABEL}={owner_pid}"})


@pytest.mark.requires("user_switch", "own_uid", "init")
def test_closing_a_session_is_quick_and_leaves_nothing(backend: Harness, engine_client: Any) -> None:
    session = backend.session(lang="python").open()
    container_id = session.container_id
    assert container_id is not None
    session.run("print(1)")
    started = time.monotonic()
    session.close()
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while not _removed(engine_client, container_id):
        assert time.monotonic() < deadline, "the closed session's container is still there"
        time.sleep(0.2)


# Seccomp ----------------------------------------------------------------------------------------------------------

FOREIGN_ABIS = r"""
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static long int80(long number, long argument) {
    long result;
    __asm__ volatile ("int $0x80" : "=a"(result) : "a"(number), "b"(argument) : "memory");
    return result;
}

int main(void) {
    const long newuser = 0x10000000L;  /* CLONE_NEWUSER */
    printf("i386-unshare %ld\n", int80(310, newuser));
    printf("i386-getpid %ld\n", int80(20, 0));
    errno = 0;
    long x32_unshare = syscall(0x40000000L | 272, newuser);
    printf("x32-unshare %ld %d\n", x32_unshare, errno);
    errno = 0;
    long x32_getpid = syscall(0x40000000L | 39);
    printf("x32-getpid %ld %d\n", x32_getpid, errno);
    errno = 0;
    long native = syscall(272, newuser);
    printf("native-unshare %ld %d\n", native, errno);
    printf("native-getpid-ok %d\n", syscall(39) > 0);
    return 0;
}
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="int $0x80 and x32 numbers exist on x86_64 only")
def test_foreign_system_call_abis_are_refused(backend: Harness) -> None:
    if "image" in backend.session_defaults:
        pytest.skip(
            f"the {backend.name} harness runs every session in its own image "
            f"({backend.session_defaults['image']}), which has no C compiler"
        )
    try:
        session = backend.session(lang="cpp").open()
    except ImageNotFoundError as error:
        pytest.skip(f"the {backend.name} backend has no C++ image to compile in: {error}")
    try:
        result = session.run(FOREIGN_ABIS, timeout=120)
    finally:
        session.close()
    values = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert result.exit_code == 0, result.stderr
    # int $0x80 returns the raw result: -EPERM, for any call (getpid included, which every engine profile allows).
    assert values["i386-unshare"] == f"-{EPERM}", result.stdout
    assert values["i386-getpid"] == f"-{EPERM}", result.stdout
    assert values["x32-unshare"] == f"-1 {EPERM}", result.stdout
    assert values["x32-getpid"] == f"-1 {EPERM}", result.stdout
    assert values["native-unshare"] == f"-1 {EPERM}", result.stdout
    assert values["native-getpid-ok"] == "1"


SECCOMP_OF_CODE_AND_HELPER = (
    "import os\n"
    "def seccomp(pid):\n"
    "    lines = open('/proc/%s/status' % pid).read().splitlines()\n"
    "    return [line.split(':')[1].strip() for line in lines if line.startswith(('Seccomp:', 'Seccomp_filters:'))]\n"
    "print(*seccomp('self'), *seccomp(os.getppid()))\n"
)


def test_relaxing_seccomp_by_name_leaves_the_code_with_the_engines_profile_only(backend: Harness) -> None:
    with backend.session(lang="python") as hardened:
        mode, filters, _helper_mode, helper_filters = hardened.run(SECCOMP_OF_CODE_AND_HELPER).stdout.split()
    # The helper has the engine's profile only (if any); the code one filter more, the library's.
    assert mode == "2"
    assert int(filters) == int(helper_filters) + 1
    with backend.session(lang="python", relax_hardening=["seccomp"]) as relaxed:
        code = relaxed.run(SECCOMP_OF_CODE_AND_HELPER).stdout.split()
    # Relaxed by name: the code has exactly the helper's filters, the engine's profile (mode 0 where it has none).
    assert code[:2] == code[2:], code


# An engine profile that lets everything through but the installation of a seccomp filter.
NO_FILTERS_PROFILE = json.dumps(
    {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["prctl"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 22, "op": "SCMP_CMP_EQ"}]},
            {"names": ["seccomp"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
)


def test_a_sandbox_where_the_filter_cannot_be_installed_refuses_to_open(backend: Harness) -> None:
    if backend.engine != "docker":
        pytest.skip(
            f"the {backend.name} backend takes no custom seccomp profile from runtime_configs (Docker's security_opt "
            "carries one; the podman SDK reads security_opt as SELinux options, and a pod spec names profiles only)"
        )
    runtime_configs = {"security_opt": [f"seccomp={NO_FILTERS_PROFILE}"]}
    with pytest.raises(ContainerError, match=r'relax_hardening=\["seccomp"\]') as refused:
        backend.session(lang="python", runtime_configs=runtime_configs).open()
    assert "seccomp filter cannot be installed" in str(refused.value)
    with backend.session(lang="python", runtime_configs=runtime_configs, relax_hardening=["seccomp"]) as relaxed:
        assert relaxed.run("print('opened without the filter')").stdout == "opened without the filter\n"
