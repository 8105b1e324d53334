"""The disk cap: what the code writes into a created sandbox, in total, stops at ``disk_limit`` (default 2 GiB),
in memory rather than on the host's disk; going over it is DiskLimitError, and the next run works."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import ABOVE_THE_COMMAND_PATH, TEST_LABEL, THIS_RUN, Harness
from llm_sandbox import DiskLimitError, SandboxSession
from llm_sandbox.labels import DISK_VOLUME_LABEL, SANDBOX_LABEL

pytestmark = [pytest.mark.requires("disk_limit"), ABOVE_THE_COMMAND_PATH]

MIB = 1024**2
SMALL_CAP = 64 * MIB
PLACES = ("/sandbox", "/tmp", "/var/tmp", "/run/lock", "/opt/llm-sandbox/user")


@pytest.fixture(scope="module")
def capped(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python", disk_limit="64m") as opened:
        yield opened


def _fs_size(session: SandboxSession, place: str) -> tuple[str, int]:
    """The filesystem type and size (bytes) of the filesystem at ``place``."""
    output = session.execute_command(["stat", "-f", "-c", "%T %b %S", place]).stdout.split()
    return output[0], int(output[1]) * int(output[2])


def _writer(*targets: str, per_target_mib: int = 48, pause_s: float = 0.0) -> str:
    """Python code that writes ``per_target_mib`` MiB into each target in turn, a MiB at a time (``pause_s``
    after each), then prints 'done'."""
    return (
        "import time\n"
        f"for target in {list(targets)!r}:\n"
        "    with open(target, 'wb') as handle:\n"
        f"        for _ in range({per_target_mib}):\n"
        f"            handle.write(b'x' * {MIB})\n"
        "            handle.flush()\n"
        f"            time.sleep({pause_s})\n"
        "print('done')\n"
    )


def test_every_place_the_code_writes_is_a_tmpfs_of_the_default_cap(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python") as session:
        for place in PLACES:
            assert _fs_size(session, place) == ("tmpfs", 2 * 1024**3), place
        # Owned as before: the workdir and the library prefix are the code's, the temporary folders sticky.
        owners = session.execute_command(["stat", "-c", "%n %u %a", *PLACES]).stdout.splitlines()
        assert owners == [
            "/sandbox 65534 755",
            "/tmp 0 1777",
            "/var/tmp 0 1777",
            "/run/lock 0 1777",
            "/opt/llm-sandbox/user 65534 755",
        ]
        # The files' pages are charged to the memory cgroup: the limit grew by the cap, not the code's share.
        host_config = engine_client.containers.get(session.container_id).attrs["HostConfig"]
        assert host_config["Memory"] == 3 * 1024**3


def test_one_place_over_the_cap_is_a_disk_limit_error_and_the_next_run_works(capped: SandboxSession) -> None:
    assert capped.run("open('kept.txt', 'w').write('from an earlier run')").exit_code == 0
    with pytest.raises(DiskLimitError, match="disk limit") as raised:
        capped.run(_writer("/sandbox/big", per_target_mib=100))
    assert raised.value.output is not None
    assert "done" not in raised.value.output.stdout
    # What the run wrote is gone, what an earlier run left stays, and the next run has room.
    listing = capped.run("import os; print(sorted(os.listdir('.')))").stdout
    assert listing == "['kept.txt']\n"
    assert capped.run(_writer("/sandbox/fits", per_target_mib=16)).stdout == "done\n"
    assert capped.execute_command(["rm", "/sandbox/fits"]).exit_code == 0


def _used_kib(session: SandboxSession) -> int:
    return int(session.execute_command("du -sk /tmp /var/tmp /sandbox | awk '{s += $1} END {print s}'").stdout)


def test_the_places_together_are_held_to_the_cap(capped: SandboxSession) -> None:
    # 48 MiB in each of three places: each alone is under the 64 MiB cap, the sum is not. A writer at memory
    # speed is done before the guest looks, and is caught at the run's end.
    with pytest.raises(DiskLimitError):
        capped.run(_writer("/tmp/first", "/var/tmp/second", "/sandbox/third"))
    assert _used_kib(capped) * 1024 < SMALL_CAP // 4
    # A slower one is stopped while it writes, once the sum passes the cap.
    with pytest.raises(DiskLimitError) as raised:
        capped.run(_writer("/tmp/first", "/var/tmp/second", "/sandbox/third", pause_s=0.005))
    assert raised.value.output is not None
    assert "done" not in raised.value.output.stdout
    used = capped.execute_command("du -sk /tmp /var/tmp /sandbox | awk '{s += $1} END {print s}'").stdout
    assert int(used) * 1024 < SMALL_CAP
    assert capped.run("print('next')").stdout == "next\n"


def test_a_command_over_the_cap_is_reported_the_same_way(capped: SandboxSession) -> None:
    with pytest.raises(DiskLimitError):
        capped.execute_command("head -c 100M /dev/zero > /run/lock/fill")
    assert capped.execute_command("ls /run/lock").stdout == ""


def test_writes_land_in_memory_not_on_the_hosts_disk(backend: Harness, engine_client: Any) -> None:
    with backend.session(lang="python", disk_limit="64m") as session:
        session.execute_command("head -c 8M /dev/zero > /sandbox/payload")
        volumes = engine_client.volumes.list(filters={"label": f"{SANDBOX_LABEL}={session.session_id}"})
        by_place = {volume.attrs["Labels"][DISK_VOLUME_LABEL]: volume for volume in volumes}
        assert set(by_place) == set(PLACES)
        with open("/proc/mounts", encoding="utf-8") as mounts:
            host_mounts = {line.split()[1]: line.split()[2] for line in mounts}
        mountpoint = by_place["/sandbox"].attrs["Mountpoint"]
        assert host_mounts.get(mountpoint) == "tmpfs"
    # Closing the session removes its volumes with it.
    assert not engine_client.volumes.list(filters={"label": f"{SANDBOX_LABEL}={session.session_id}"})


def test_reset_gives_the_space_back(backend: Harness) -> None:
    with backend.session(lang="python", disk_limit="64m") as session:
        session.execute_command("head -c 40M /dev/zero > /sandbox/a")
        assert session.sandbox is not None
        session.sandbox.reset()
        assert session.run(_writer("/sandbox/b", per_target_mib=40)).stdout == "done\n"


def test_relaxing_the_disk_limit_leaves_the_container_layer(backend: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_sandbox"):
        session = backend.session(lang="python", relax_hardening=["disk_limit"])
    assert any("disk_limit" in record.getMessage() for record in caplog.records)
    with session:
        kind, _size = _fs_size(session, "/sandbox")
        assert kind != "tmpfs"


def test_a_caller_volume_at_a_place_is_left_to_the_caller(backend: Harness, engine_client: Any) -> None:
    name = f"llm-sandbox-test-own-{time.time_ns()}"
    engine_client.volumes.create(name=name, labels={TEST_LABEL: next(iter(THIS_RUN))})
    try:
        options = {"volumes": {name: {"bind": "/var/tmp", "mode": "rw"}}}
        with backend.session(lang="python", disk_limit="64m", runtime_configs=options) as session:
            assert _fs_size(session, "/var/tmp")[0] != "tmpfs"
            assert _fs_size(session, "/tmp") == ("tmpfs", SMALL_CAP)
            # The caller's storage is not the cap's to count: 80 MiB there is no error.
            assert session.execute_command("head -c 80M /dev/zero > /var/tmp/fill").exit_code == 0
            assert session.run("print('counted apart')").stdout == "counted apart\n"
    finally:
        engine_client.volumes.get(name).remove(force=True)


@pytest.mark.backends("docker", "podman")  # the Micromamba harness runs its own stand-in image
def test_an_images_own_files_at_the_capped_places_are_there_and_counted(backend: Harness, tmp_path: Any) -> None:
    # Docker empties a tmpfs volume it fills from the image; the library copies the image's files in itself.
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM llm-sandbox/python:bookworm\n"
        "RUN mkdir -p /sandbox/data /opt/llm-sandbox/user/python && echo shipped > /sandbox/data/in.txt"
        " && echo 'VALUE = 7' > /opt/llm-sandbox/user/python/shipped.py && chown -R 65534:65534 /sandbox/data\n"
    )
    with backend.session(lang="python", dockerfile=str(dockerfile), disk_limit="64m") as session:
        assert _fs_size(session, "/sandbox") == ("tmpfs", SMALL_CAP)
        assert session.run("print(open('data/in.txt').read(), end='')").stdout == "shipped\n"
        assert session.run("import shipped; print(shipped.VALUE)").stdout == "7\n"
        assert session.execute_command(["stat", "-c", "%u", "/sandbox/data/in.txt"]).stdout == "65534\n"
