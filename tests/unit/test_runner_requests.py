"""The runner's typed requests end to end, on the test-only local backend (the guest runs on this host, told that
the sandbox guarantees nothing: no kill(-1), no cgroup of its own). The session gets a TMPDIR of its own, so that
a reset wipes a test folder and never the host's /tmp."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_sandbox import ContainerError, SandboxSession
from llm_sandbox.config import RunPolicy
from llm_sandbox.guest.protocol import Ended
from llm_sandbox.runner import GuestRunner
from llm_sandbox.testing.local import LOCAL_BACKEND

ADDER = (
    "import sys\n"
    "total = 0\n"
    "for line in sys.stdin:\n"
    "    total += int(line)\n"
    "    print(total)\n"
    "    print('--end--', flush=True)\n"
)
MARKER = b"--end--\n"


def _gone_soon(pid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SandboxSession, Path, Path]]:
    workdir, tmp = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the helper's temporary folder, inherited on this backend
    with SandboxSession(backend=LOCAL_BACKEND, lang="python", workdir=str(workdir)) as session:
        yield session, workdir, tmp


def _runner(session: SandboxSession) -> GuestRunner:
    assert session.sandbox is not None
    return session.sandbox.runner


def test_the_first_request_carries_the_capabilities_and_no_variable_does(
    opened: tuple[SandboxSession, Path, Path],
) -> None:
    session, _, _ = opened
    runner = _runner(session)
    assert runner.guest_info is not None
    assert (runner.guest_info.kill_all, runner.guest_info.own_cgroup) == (False, False)
    assert runner.python == runner.guest_info.python
    assert "LLM_SANDBOX_OWNED" not in session.run("import os; print(sorted(os.environ))").stdout


def test_spawn_feed_and_close_through_the_runner(opened: tuple[SandboxSession, Path, Path]) -> None:
    session, _, _ = opened
    runner = _runner(session)
    child = runner.spawn([sys.executable, "-u", "-c", ADDER])
    seen: list[str] = []
    assert runner.feed(child.handle, b"2\n", marker=MARKER, timeout=10, on_stdout=seen.append).stdout == "2\n"
    # A run in between: its clean-up leaves the long-lived child alone.
    assert session.run("print('between')").stdout == "between\n"
    second = runner.feed(child.handle, b"40\n", marker=MARKER, timeout=10)
    assert (second.ended, second.stdout, "".join(seen)) == (Ended.MARKER, "42\n", "2\n")
    assert runner.close_process(child.handle).exit_code == 137
    assert _gone_soon(child.pid)
    with pytest.raises(ContainerError, match="handle"):
        runner.close_process(child.handle)
    assert session.run("print('the link is fine')").stdout == "the link is fine\n"


def test_a_run_collects_the_files_of_its_temporary_folder(opened: tuple[SandboxSession, Path, Path]) -> None:
    session, _, tmp = opened
    runner = _runner(session)
    code = "import os, sys\npath = os.path.join(os.path.dirname(sys.argv[0]), 'plot.png')\n"
    code += "with open(path, 'wb') as handle:\n    handle.write(b'PNG')\n"
    request = runner.code_request(code, RunPolicy(), timeout=30, collect=["*.png"])
    reply = runner.execute(request, RunPolicy())
    assert reply.exit_code == 0, reply.stderr
    assert dict(reply.files) == {"plot.png": b"PNG"}
    assert list(tmp.iterdir()) == []


def test_reset_ends_every_process_and_wipes_the_workdir_and_tmp(opened: tuple[SandboxSession, Path, Path]) -> None:
    session, workdir, tmp = opened
    runner = _runner(session)
    child = runner.spawn([sys.executable, "-u", "-c", ADDER])
    session.run("import os\nopen('left.txt', 'w').write('x')\nos.makedirs(os.environ['TMPDIR'] + '/junk/deep')\n")
    assert sorted(os.listdir(workdir)) == ["left.txt"]
    assert session.sandbox is not None
    session.sandbox.reset()
    assert _gone_soon(child.pid)
    assert os.listdir(workdir) == []
    assert os.listdir(tmp) == []
    assert session.run("print('after the reset')").stdout == "after the reset\n"


def test_reset_on_the_host_never_touches_the_hosts_own_folders(opened: tuple[SandboxSession, Path, Path]) -> None:
    # The local backend's helper runs on the host: /var/tmp and /run/lock there are the host's, and what this
    # process's uid owns in them must survive a reset (it once did not: build folders of the engines went).
    session, _workdir, _tmp = opened
    marker = Path("/var/tmp") / f"llm-sandbox-host-marker-{os.getpid()}"
    marker.write_text("the host's")
    try:
        assert session.sandbox is not None
        session.sandbox.reset()
        assert marker.read_text() == "the host's"
    finally:
        marker.unlink(missing_ok=True)
