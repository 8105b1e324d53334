"""The real guest program, started the way the host starts it (``python -I -S -c BOOTSTRAP``, the program on stdin)
as a plain subprocess of this host, driven through ``GuestLink``: no engine, no container.

These guests run on the host as the calling user. They are always told ``kill_all=False`` and ``own_cgroup=False``
(kill(-1) would reach every process of the user), except in the last test, which runs its guest as another uid in
a pid namespace of its own, where kill(-1) reaches nothing else. Each guest gets a TMPDIR of its own, so a reset
wipes a test folder, never the host's /tmp.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llm_sandbox.errors import OutputDecodingError
from llm_sandbox.guest import BOOTSTRAP, agent_payload
from llm_sandbox.guest.protocol import FRAME_HEADER, Ended, Field, Frame
from llm_sandbox.guest.warm import HAND_LIMIT, WARM_IMPORTS, python_recipe, spare_recipe
from llm_sandbox.link import FinalReply, GuestLink, OutputCallback, Reply
from llm_sandbox.messages import (
    CloseReply,
    CloseRequest,
    CodeFile,
    ExecReply,
    ExecRequest,
    FeedReply,
    FeedRequest,
    InfoReply,
    InfoRequest,
    PingRequest,
    Request,
    ResetReply,
    ResetRequest,
    SpawnReply,
    SpawnRequest,
)

PYTHON = sys.executable  # what the runs and the long-lived children run
# The guest's own interpreter: this one, or another to check the guest on (it must run on any Python 3.7+).
GUEST_PYTHON = os.environ.get("LLM_SANDBOX_TEST_GUEST_PYTHON") or sys.executable
MARKER = b"--end--\n"
# A small stateful child: adds up the numbers it reads, prints the total and a marker after each line.
ADDER = (
    "import sys\n"
    "total = 0\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'exit':\n"
    "        sys.exit(3)\n"
    "    total += int(line)\n"
    "    print(total)\n"
    "    print('--end--', flush=True)\n"
)


class PipeStream:
    """A subprocess's stdin and stdout as a ``DuplexStream``."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None and process.stdout is not None
        self._stdin = process.stdin
        self._stdout_fd = process.stdout.fileno()

    def send(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def recv(self, timeout: float | None) -> bytes:
        readable, _, _ = select.select([self._stdout_fd], [], [], timeout)
        if not readable:
            raise TimeoutError("the guest said nothing in time")
        return os.read(self._stdout_fd, 65536)

    def close(self) -> None:
        try:
            self._stdin.close()
        except OSError:
            pass


class Guest:
    """One guest process, its link, and the folders it works in."""

    def __init__(
        self,
        workdir: Path,
        tmp: Path,
        *,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        kill_all: bool = False,
        python: str = GUEST_PYTHON,
    ) -> None:
        self.workdir, self.tmp, self.python = workdir, tmp, python
        self.process = subprocess.Popen(
            [*prefix, python, "-I", "-S", "-c", BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=workdir,
            env={**os.environ, "TMPDIR": str(tmp), **(env or {})},
        )
        stream = PipeStream(self.process)
        stream.send(agent_payload())
        self.link = GuestLink(stream)
        self.info = self.describe(kill_all=kill_all, own_cgroup=False)

    def request(
        self,
        request: Request,
        *,
        timeout: float | None = 30.0,
        on_stdout: OutputCallback | None = None,
        encoding_errors: str = "replace",
    ) -> Reply:
        return self.link.request(request, timeout=timeout, on_stdout=on_stdout, encoding_errors=encoding_errors)

    def describe(self, *, kill_all: bool, own_cgroup: bool) -> InfoReply:
        reply = self.request(InfoRequest(str(self.workdir), kill_all=kill_all, own_cgroup=own_cgroup))
        return InfoReply.from_fields(reply.fields)

    def run(
        self,
        argv: Sequence[str],
        *,
        files: Sequence[CodeFile] = (),
        timeout: float | None = 30.0,
        collect: Sequence[str] = (),
        collect_budget: int = 1 << 20,
        collect_count: int = 0,
        warm: bool = False,
        encoding_errors: str = "replace",
        env: dict[str, str] | None = None,
    ) -> ExecReply:
        request = ExecRequest(
            argv=tuple(argv),
            cwd=str(self.workdir),
            env=env or {},
            timeout=timeout,
            output_limit=1 << 20,
            files=tuple(files),
            spare=python_recipe(self.python) if warm else None,
            collect=tuple(collect),
            collect_budget=collect_budget,
            collect_count=collect_count,
        )
        reply = self.request(request, timeout=timeout, encoding_errors=encoding_errors)
        assert reply.error is None, reply.error
        return ExecReply.from_reply(reply)

    def spawn(self, argv: Sequence[str]) -> SpawnReply:
        reply = self.request(SpawnRequest(tuple(argv), {}, str(self.workdir)))
        assert reply.error is None, reply.error
        return SpawnReply.from_fields(reply.fields)

    def feed(self, handle: int, data: bytes, marker: bytes = MARKER, timeout: float | None = 10.0) -> FeedReply:
        reply = self.request(FeedRequest(handle, data, marker, timeout), timeout=timeout)
        assert reply.error is None, reply.error
        return FeedReply.from_reply(reply)

    def close_child(self, handle: int) -> CloseReply:
        reply = self.request(CloseRequest(handle))
        assert reply.error is None, reply.error
        return CloseReply.from_fields(reply.fields)

    def stop(self) -> None:
        self.link.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Folders:
    workdir: Path
    tmp: Path


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    workdir, tmp = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    tmp.mkdir()
    return Folders(workdir, tmp)


@pytest.fixture
def guest(folders: Folders) -> Iterator[Guest]:
    started = Guest(folders.workdir, folders.tmp)
    yield started
    started.stop()


def state_of(pid: int) -> str | None:
    """The process's state letter, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def alive(pid: int) -> bool:
    return state_of(pid) not in (None, "Z", "X")


def gone_soon(pid: int, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# Info and capabilities ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("own_cgroup", [True, False])
def test_info_says_what_the_guest_made_of_the_capabilities(guest: Guest, own_cgroup: bool) -> None:
    info = guest.describe(kill_all=False, own_cgroup=own_cgroup)
    assert (info.kill_all, info.own_cgroup) == (False, own_cgroup)
    assert info.pid == guest.process.pid
    assert info.uid == os.getuid()
    assert info.subreaper is True
    assert info.workdir_writable is True
    guest.describe(kill_all=False, own_cgroup=False)


def test_kill_all_comes_from_the_request_alone_and_never_for_root(folders: Folders) -> None:
    # The environment variable that used to say so means nothing now.
    started = Guest(folders.workdir, folders.tmp, env={"LLM_SANDBOX_OWNED": "1"})
    try:
        assert started.info.kill_all is False
        try:
            said = started.describe(kill_all=True, own_cgroup=False)
        finally:
            back = started.describe(kill_all=False, own_cgroup=False)
        assert said.kill_all is (os.getuid() != 0)  # root is never allowed kill(-1)
        assert back.kill_all is False
    except BaseException:
        started.process.kill()  # a guest that may still hold kill_all never sees the end of its input
        raise
    finally:
        started.stop()


def test_without_its_own_cgroup_a_run_reports_no_limit(guest: Guest) -> None:
    # Reading the host's counters as a sandbox's would name limits the run never hit.
    result = guest.run([PYTHON, "-c", "pass"])
    assert result.limits == ()


# Exec -------------------------------------------------------------------------------------------------------------


def test_exec_writes_its_files_runs_and_relays_the_output(guest: Guest, folders: Folders) -> None:
    code = "import os, sys\nprint('out', os.getcwd())\nprint('err', file=sys.stderr)\nsys.exit(4)\n"
    seen: list[str] = []
    request = ExecRequest(
        argv=(PYTHON, "-u", "{tmp}/main.py"),
        cwd=str(folders.workdir),
        env={"EXTRA": "1"},
        timeout=30,
        output_limit=1000,
        files=(CodeFile("{tmp}/main.py", code),),
    )
    result = ExecReply.from_reply(guest.request(request, on_stdout=seen.append))
    assert (result.exit_code, result.stdout, result.stderr) == (4, f"out {folders.workdir}\n", "err\n")
    assert "".join(seen) == result.stdout
    assert (result.timed_out, result.truncated, result.files, result.skipped) == (False, False, {}, ())
    assert list(folders.tmp.iterdir()) == []  # the run's temporary folder is gone


def test_a_timeout_kills_the_run_and_everything_it_started(guest: Guest) -> None:
    result = guest.run(["/bin/sh", "-c", "sleep 100 & echo $!; sleep 100"], timeout=0.5)
    assert (result.timed_out, result.exit_code) == (True, 137)
    assert gone_soon(int(result.stdout))


def test_a_missing_program_is_exit_127_and_the_link_stays_usable(guest: Guest) -> None:
    result = guest.run(["/no/such/program"])
    assert result.exit_code == 127
    assert "/no/such/program" in result.stderr
    assert guest.run(["/bin/echo", "still here"]).stdout == "still here\n"


@dataclass(frozen=True)
class UnknownRequest(Request):
    op: ClassVar[str] = "no-such-operation"

    def to_message(self) -> dict[str, Any]:
        return {Field.OP: self.op}


def test_an_unknown_operation_gets_an_error_reply(guest: Guest) -> None:
    reply = guest.request(UnknownRequest())
    assert reply.error is not None and "no-such-operation" in reply.error
    assert guest.request(PingRequest()).error is None


def test_a_decoding_error_is_raised_after_the_reply_and_no_stale_frame_is_read_later(guest: Guest) -> None:
    argv = [PYTHON, "-c", "import sys; sys.stdout.buffer.write(b'\\xff' * 10); sys.stdout.flush(); print('after')"]
    with pytest.raises(OutputDecodingError):
        guest.run(argv, encoding_errors="strict")
    assert not guest.link.broken
    after = guest.run([PYTHON, "-c", "print('own')"], encoding_errors="strict")
    assert after.stdout == "own\n"


# Collected files --------------------------------------------------------------------------------------------------

MAKE_FILES = r"""
import os, sys
tmp = sys.argv[1]
os.makedirs(os.path.join(tmp, "out", "deep"))
with open(os.path.join(tmp, "a.txt"), "w") as f: f.write("a" * 10)
with open(os.path.join(tmp, "out", "b.bin"), "wb") as f: f.write(b"\0" * 20)
with open(os.path.join(tmp, "out", "deep", "c.txt"), "w") as f: f.write("c" * 30)
os.symlink("/etc/passwd", os.path.join(tmp, "passwd"))
os.symlink("/etc/passwd", os.path.join(tmp, "out", "passwd.txt"))
os.symlink("/etc", os.path.join(tmp, "etc"))
os.mkfifo(os.path.join(tmp, "fifo.txt"))
"""


def _make_files(guest: Guest, patterns: Sequence[str], budget: int) -> ExecReply:
    return guest.run(
        [PYTHON, "{tmp}/make.py", "{tmp}"],
        files=[CodeFile("{tmp}/make.py", MAKE_FILES)],
        collect=patterns,
        collect_budget=budget,
    )


def test_collect_sends_the_matching_regular_files_and_never_follows_a_link(guest: Guest, folders: Folders) -> None:
    result = _make_files(guest, ["**/*", "passwd", "etc/passwd", "out/*.txt", "../*", "/etc/*"], 1 << 20)
    assert result.exit_code == 0, result.stderr
    assert list(result.files.items()) == [
        ("a.txt", b"a" * 10),
        ("make.py", MAKE_FILES.encode()),
        ("out/b.bin", b"\0" * 20),
        ("out/deep/c.txt", b"c" * 30),
    ]
    assert result.skipped == ()
    assert list(folders.tmp.iterdir()) == []  # collected before the folder went, and it went


def test_collect_stops_at_the_budget_and_says_what_it_skipped(guest: Guest) -> None:
    fits = _make_files(guest, ["*.txt", "out/**/*"], 35)
    assert list(fits.files) == ["a.txt", "out/b.bin"]
    assert fits.skipped == ("out/deep/c.txt",)
    # Once one does not fit, the later ones are skipped too, even one that would.
    stops = _make_files(guest, ["*.txt", "out/**/*"], 25)
    assert list(stops.files) == ["a.txt"]
    assert stops.skipped == ("out/b.bin", "out/deep/c.txt")


def test_collect_matches_patterns_by_path_component(guest: Guest) -> None:
    result = _make_files(guest, ["*"], 1 << 20)
    assert list(result.files) == ["a.txt", "make.py"]  # "*" stays in the folder itself
    result = _make_files(guest, ["out/*"], 1 << 20)
    assert list(result.files) == ["out/b.bin"]
    result = _make_files(guest, ["**/c.txt"], 1 << 20)
    assert list(result.files) == ["out/deep/c.txt"]


def test_collect_stops_at_the_count_and_says_what_it_skipped(guest: Guest) -> None:
    reply = guest.run(
        [PYTHON, "{tmp}/make.py", "{tmp}"],
        files=[CodeFile("{tmp}/make.py", MAKE_FILES)],
        collect=["**/*"],
        collect_count=2,
    )
    assert list(reply.files) == ["a.txt", "make.py"]
    assert reply.skipped == ("out/b.bin", "out/deep/c.txt")


def test_collect_names_at_most_a_hundred_skipped_files(guest: Guest) -> None:
    many = "import os, sys\nfor i in range(150): open(os.path.join(sys.argv[1], '%03d' % i), 'w').close()\n"
    reply = guest.run(
        [PYTHON, "{tmp}/many.py", "{tmp}"],
        files=[CodeFile("{tmp}/many.py", many)],
        collect=["0*", "1*"],
        collect_count=10,
    )
    assert list(reply.files) == [f"{i:03d}" for i in range(10)]
    assert reply.skipped == (*(f"{i:03d}" for i in range(10, 110)), "(40 more)")


CHANGE_OUTPUTS = r"""
import os, sys
outputs = sys.argv[1]
with open(os.path.join(outputs, "new.csv"), "w") as f: f.write("a,b\n")
with open(os.path.join(outputs, "deep", "changed.txt"), "a") as f: f.write("more")
os.symlink("/etc/passwd", os.path.join(outputs, "passwd.csv"))
"""


def test_collect_from_an_absolute_folder_sends_what_the_run_changed_by_absolute_path(
    guest: Guest, folders: Folders
) -> None:
    outputs = folders.workdir / "outputs"
    (outputs / "deep").mkdir(parents=True)
    (outputs / "old.csv").write_text("old")
    (outputs / "deep" / "changed.txt").write_text("some")
    os.utime(outputs / "old.csv", (1, 1))  # ctime stays "now": the clock is what matters, not the times set
    time.sleep(0.05)
    reply = guest.run(
        [PYTHON, "{tmp}/change.py", str(outputs)],
        files=[CodeFile("{tmp}/change.py", CHANGE_OUTPUTS)],
        collect=["plots/*", f"{outputs}/**"],
    )
    assert reply.exit_code == 0, reply.stderr
    assert dict(reply.files) == {f"{outputs}/new.csv": b"a,b\n", f"{outputs}/deep/changed.txt": b"somemore"}


def test_collect_from_an_absolute_folder_never_sends_again_what_an_earlier_run_wrote(
    guest: Guest, folders: Folders
) -> None:
    # Runs back to back: the last write of one and the start of the next often fall in the same clock tick.
    outputs = folders.workdir / "outputs"
    outputs.mkdir()
    write = "import sys\nopen(sys.argv[1], 'w').write('x')\n"
    for number in range(30):
        reply = guest.run(
            [PYTHON, "{tmp}/w.py", str(outputs / f"{number}.txt")],
            files=[CodeFile("{tmp}/w.py", write)],
            collect=[f"{outputs}/*"],
        )
        assert list(reply.files) == [f"{outputs}/{number}.txt"]


def test_collect_never_walks_through_a_link_to_its_folder(guest: Guest, folders: Folders) -> None:
    real = folders.workdir / "real"
    real.mkdir()
    (folders.workdir / "outputs").symlink_to(real)
    write = "import sys; open(sys.argv[1] + '/r.txt', 'w').write('x')\n"
    reply = guest.run(
        [PYTHON, "{tmp}/w.py", str(real)],
        files=[CodeFile("{tmp}/w.py", write)],
        collect=[f"{folders.workdir}/outputs/**", f"{folders.workdir}/outputs/r.txt"],
    )
    assert reply.exit_code == 0, reply.stderr
    assert (real / "r.txt").read_text() == "x"
    assert dict(reply.files) == {}


# Long-lived children ----------------------------------------------------------------------------------------------


def test_spawn_feed_close_keeps_state_across_feeds(guest: Guest) -> None:
    child = guest.spawn([PYTHON, "-u", "-c", ADDER])
    assert alive(child.pid)
    first = guest.feed(child.handle, b"2\n")
    assert (first.ended, first.exit_code, first.stdout) == (Ended.MARKER, None, "2\n")
    second = guest.feed(child.handle, b"40\n")
    assert (second.ended, second.stdout) == (Ended.MARKER, "42\n")
    closed = guest.close_child(child.handle)
    assert closed.exit_code == 137
    assert gone_soon(child.pid)
    reply = guest.request(FeedRequest(child.handle, b"1\n", MARKER, 1.0))
    assert reply.error is not None and "handle" in reply.error


def test_feed_reports_the_exit_and_its_status(guest: Guest) -> None:
    child = guest.spawn([PYTHON, "-u", "-c", ADDER])
    guest.feed(child.handle, b"1\n")
    ended = guest.feed(child.handle, b"exit\n")
    assert (ended.ended, ended.exit_code) == (Ended.EXITED, 3)
    assert guest.close_child(child.handle).exit_code == 3  # its own status: it had exited


def test_feed_times_out_and_the_child_lives_on(guest: Guest) -> None:
    child = guest.spawn([PYTHON, "-u", "-c", ADDER])
    started = time.monotonic()
    waited = guest.feed(child.handle, b"", timeout=0.3)
    assert (waited.ended, waited.exit_code, waited.stdout) == (Ended.TIMEOUT, None, "")
    assert time.monotonic() - started < 5
    assert guest.feed(child.handle, b"5\n").stdout == "5\n"
    guest.close_child(child.handle)


def test_a_python_repl_keeps_its_state_and_the_marker_may_come_in_pieces(guest: Guest) -> None:
    child = guest.spawn([PYTHON, "-i", "-q", "-u"])
    done = b"print('--end--')\n"
    assert guest.feed(child.handle, b"x = 41\n" + done).stdout == ""
    assert guest.feed(child.handle, b"print(x + 1)\n" + done).stdout == "42\n"
    # The marker written in pieces, and output after it: kept for the next feed, not lost, not relayed early.
    pieces = b"import sys, time\n" + b"_ = sys.stdout.write('a--e'); sys.stdout.flush(); time.sleep(0.1); "
    pieces += b"print('nd--'); print('b')\n"
    split = guest.feed(child.handle, pieces)
    assert (split.ended, split.stdout) == (Ended.MARKER, "a")
    assert guest.feed(child.handle, done).stdout == "b\n"
    # Errors go to stderr, the prompts too; the REPL lives on.
    failed = guest.feed(child.handle, b"1 / 0\n" + done)
    assert "ZeroDivisionError" in failed.stderr
    assert guest.feed(child.handle, b"print(x)\n" + done).stdout == "41\n"
    guest.close_child(child.handle)


def test_a_feed_without_a_marker_relays_everything_until_the_exit(guest: Guest) -> None:
    child = guest.spawn(["/bin/sh", "-c", "read line; echo got $line; echo bye >&2; exit 5"])
    ended = guest.feed(child.handle, b"this\n", marker=b"")
    assert (ended.ended, ended.exit_code, ended.stdout, ended.stderr) == (Ended.EXITED, 5, "got this\n", "bye\n")
    guest.close_child(child.handle)


def test_a_large_feed_is_written_while_the_output_is_read(guest: Guest) -> None:
    # More than a pipe holds, both ways: the guest must not block on either side.
    child = guest.spawn([PYTHON, "-u", "-c", "import sys\nfor line in sys.stdin: sys.stdout.write(line)"])
    data = b"".join(b"%06d\n" % number for number in range(60000))
    echoed = guest.feed(child.handle, data + b"--end--\n")
    assert (echoed.ended, echoed.stdout.encode()) == (Ended.MARKER, data)
    guest.close_child(child.handle)


def test_long_lived_children_survive_the_clean_up_after_runs(guest: Guest) -> None:
    child = guest.spawn(["/bin/sh", "-c", "sleep 1000 & echo $!; exec cat"])
    grandchild = int(guest.feed(child.handle, b"", marker=b"\n").stdout)
    leftover = guest.run(["/bin/sh", "-c", "sleep 1000 & echo $!"])
    assert gone_soon(int(leftover.stdout))
    timed_out = guest.run(["/bin/sh", "-c", "sleep 1000 & echo $!; sleep 1000"], timeout=0.3)
    assert timed_out.timed_out
    assert gone_soon(int(timed_out.stdout))
    for _ in range(2):
        warm = guest.run(
            [guest.python, "-u", "{tmp}/main.py"], files=[CodeFile("{tmp}/main.py", "print(1)")], warm=True
        )
        assert warm.stdout == "1\n"
    assert alive(child.pid) and alive(grandchild)
    assert guest.feed(child.handle, b"hello\n", marker=b"hello\n").ended == Ended.MARKER
    assert guest.close_child(child.handle).exit_code == 137
    assert gone_soon(child.pid) and gone_soon(grandchild)


PRELOAD_CHECK = (
    "import os, sys\n"
    "print('noisy_preload' in sys.modules, [name for name in os.environ if name == 'LLM_SANDBOX_WARM_IMPORTS'])\n"
)


def test_a_waiting_interpreter_imports_what_the_run_names_quietly_and_hides_the_variable(
    guest: Guest, folders: Folders
) -> None:
    (folders.workdir / "noisy_preload.py").write_text("import sys\nprint('noise')\nsys.stderr.write('noise\\n')\n")
    environment = {WARM_IMPORTS: "noisy_preload,missing_module"}
    code = [CodeFile("{tmp}/main.py", PRELOAD_CHECK)]
    cold = guest.run([guest.python, "-u", "{tmp}/main.py"], files=code, warm=True, env=environment)
    assert cold.stdout == "False ['LLM_SANDBOX_WARM_IMPORTS']\n"  # no interpreter was waiting: a plain start
    warm = guest.run([guest.python, "-u", "{tmp}/main.py"], files=code, warm=True, env=environment)
    assert (warm.stdout, warm.stderr) == ("True []\n", "")


def test_closing_a_child_kills_what_it_abandoned_too(guest: Guest) -> None:
    # A double fork leaves the grandchild to the guest (the subreaper), outside the child's tree.
    child = guest.spawn(["/bin/sh", "-c", "(sleep 1000 & echo $!) ; exec cat"])
    orphan = int(guest.feed(child.handle, b"", marker=b"\n").stdout)
    guest.close_child(child.handle)
    assert gone_soon(child.pid) and gone_soon(orphan)


def test_the_end_of_input_ends_the_long_lived_children(folders: Folders) -> None:
    started = Guest(folders.workdir, folders.tmp)
    child = started.spawn([PYTHON, "-u", "-c", ADDER])
    started.stop()
    assert started.process.returncode == 0
    assert gone_soon(child.pid)


# Reset ------------------------------------------------------------------------------------------------------------


def test_reset_kills_every_process_and_removes_what_the_uid_owns(
    guest: Guest, folders: Folders, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    child = guest.spawn([PYTHON, "-u", "-c", ADDER])
    made = guest.run(
        [
            "/bin/sh",
            "-c",
            "mkdir -p dir/sub locked && echo x > dir/sub/f && echo y > mine.txt && touch locked/z && chmod 0 locked"
            f" && ln -s {outside} link && ln -s {outside}/keep.txt file-link && mkdir $TMPDIR/junk"
            " && echo z > $TMPDIR/junk/z && echo w > $TMPDIR/w",
        ]
    )
    assert made.exit_code == 0, made.stderr
    foreign = folders.workdir / "foreign.txt"
    foreign.write_text("not the code's")
    if os.getuid() == 0:
        os.chown(foreign, 65534, 65534)
    reply = guest.request(ResetRequest(str(folders.workdir)))
    assert reply.error is None, reply.error
    assert ResetReply.from_fields(reply.fields).left == ()
    assert gone_soon(child.pid)
    remaining = sorted(path.name for path in folders.workdir.iterdir())
    assert remaining == (["foreign.txt"] if os.getuid() == 0 else [])
    assert list(folders.tmp.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "keep"  # a link is removed, never followed
    # The guest survived its own reset and starts afresh.
    assert guest.request(PingRequest()).error is None
    again = guest.spawn([PYTHON, "-u", "-c", ADDER])
    assert guest.feed(again.handle, b"7\n").stdout == "7\n"


# kill(-1), where it reaches nothing else ----------------------------------------------------------------------------

NAMESPACE_PREFIX = [
    "unshare",
    "--pid",
    "--fork",
    "--mount-proc",
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
]
SLEEPERS = "import os, time\nfor _ in range(20):\n    if os.fork() == 0:\n        time.sleep(1000)\ntime.sleep(1000)\n"
LIST_SLEEPERS = (
    "import os\n"
    "for pid in os.listdir('/proc'):\n"
    "    if pid.isdigit():\n"
    "        try:\n"
    "            cmd = open('/proc/%s/cmdline' % pid, 'rb').read()\n"
    "        except OSError:\n"
    "            continue\n"
    "        if b'sleepers' in cmd:\n"
    "            print(pid)\n"
)


def _namespace_python() -> str | None:
    """An interpreter that uid 65534 can run, and run again from itself, in a pid namespace; None when there is
    no such namespace here (not root, no unshare or setpriv)."""
    if os.getuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return None
    again = "import os, sys; os.execv(sys.executable, [sys.executable, '-c', ''])"
    for python in (PYTHON, "/usr/bin/python3", "/usr/local/bin/python3"):
        if not os.path.exists(python):
            continue
        probe = subprocess.run([*NAMESPACE_PREFIX, python, "-c", again], cwd="/", capture_output=True, check=False)
        if probe.returncode == 0:
            return python
    return None


NAMESPACE_PYTHON = _namespace_python()


@pytest.fixture
def nobody_folders() -> Iterator[Folders]:
    """Folders the uid 65534 can reach (the test's own tmp_path sits under a root-only folder)."""
    base = Path(tempfile.mkdtemp(prefix="guest-namespace-"))
    folders = Folders(base / "work", base / "tmp")
    for folder in (folders.workdir, folders.tmp):
        folder.mkdir()
    for folder in (base, folders.workdir, folders.tmp):
        os.chown(folder, 65534, 65534)
    yield folders
    shutil.rmtree(base)


@pytest.mark.skipif(NAMESPACE_PYTHON is None, reason="needs root, unshare and setpriv for a private pid namespace")
def test_kill_all_in_a_pid_namespace_spares_the_guest_and_its_long_lived_children(nobody_folders: Folders) -> None:
    assert NAMESPACE_PYTHON is not None
    python = NAMESPACE_PYTHON
    folders = nobody_folders
    started = Guest(folders.workdir, folders.tmp, prefix=NAMESPACE_PREFIX, kill_all=True, python=python)
    try:
        assert (started.info.kill_all, started.info.uid, started.info.pid) == (True, 65534, 1)
        sleepers = [CodeFile("{tmp}/sleepers.py", SLEEPERS)]
        listing = [CodeFile("{tmp}/list.py", LIST_SLEEPERS)]
        child = started.spawn([python, "-u", "-c", ADDER])
        # A timeout with a long-lived child alive: the run's processes are frozen and killed, the child lives.
        timed_out = started.run([python, "{tmp}/sleepers.py"], files=sleepers, timeout=0.5)
        assert timed_out.timed_out
        assert started.run([python, "{tmp}/list.py"], files=listing).stdout == ""
        assert started.feed(child.handle, b"1\n").stdout == "1\n"
        # With nothing protected, the same timeout ends in kill(-1): the guest is never among its victims.
        started.close_child(child.handle)
        assert started.run([python, "{tmp}/sleepers.py"], files=sleepers, timeout=0.5).timed_out
        assert started.run([python, "{tmp}/list.py"], files=listing).stdout == ""
        # A reset kills everything of the uid (kill(-1)) but the guest.
        again = started.spawn([python, "-u", "-c", ADDER])
        assert started.request(ResetRequest(str(folders.workdir))).error is None
        assert started.request(PingRequest()).error is None
        reply = started.request(FeedRequest(again.handle, b"1\n", MARKER, 1.0))
        assert reply.error is not None
    finally:
        started.stop()
    assert started.process.returncode == 0


# Cancelling a run in flight (Frame.CANCEL): the run's whole tree is killed, the reply still comes, and the link
# stays in step.

# Leaves a detached grandchild (its pid in a file), says so, then waits.
CANCELLED_RUN = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "print('started', flush=True)\n"
    "time.sleep(300)\n"
)


def cancellable_request(guest: Guest, argv: list[str]) -> ExecRequest:
    return ExecRequest(argv=tuple(argv), cwd=str(guest.workdir), env={}, timeout=60, output_limit=1 << 20)


def test_a_cancel_from_another_thread_kills_the_runs_tree_and_its_reply_still_comes(
    guest: Guest, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild"
    started = threading.Event()
    cancelled: list[bool] = []

    def cancel_once_started() -> None:
        started.wait(30)
        cancelled.append(guest.link.cancel())

    canceller = threading.Thread(target=cancel_once_started)
    canceller.start()
    began = time.monotonic()
    request = cancellable_request(guest, [PYTHON, "-c", CANCELLED_RUN, str(pid_file)])
    reply = ExecReply.from_reply(
        guest.link.request(request, timeout=60, on_stdout=lambda text: started.set() if "started" in text else None)
    )
    canceller.join()
    assert cancelled == [True]
    assert reply.cancelled and not reply.timed_out
    assert reply.exit_code == 128 + 9 and reply.stdout == "started\n"
    assert time.monotonic() - began < 20
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while state_of(grandchild) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state_of(grandchild) in (None, "Z")
    # Nothing is in flight now: there is nothing to cancel, and the link serves the next request.
    assert not guest.link.cancel()
    assert guest.link.request(PingRequest(), timeout=10).error is None


def test_a_cancel_sent_with_its_request_is_seen(guest: Guest, tmp_path: Path) -> None:
    """The cancel comes in the same write as the request: the guest finds it in its reader's buffer, not on the
    pipe, and still stops the run at once."""
    request = cancellable_request(guest, [PYTHON, "-c", CANCELLED_RUN, str(tmp_path / "pid")])
    with guest.link.borrowed() as (protocol, pipe):  # the link's own protocol and stream, driven by hand
        began = time.monotonic()
        pipe.send(protocol.encode_request(request.to_message()) + protocol.cancel_frame())
        final = None
        while final is None:
            final = next((event for event in protocol.feed(pipe.recv(20)) if isinstance(event, FinalReply)), None)
    assert final.fields["cancelled"] is True
    assert time.monotonic() - began < 10
    assert guest.link.request(PingRequest(), timeout=10).error is None


def test_a_cancel_that_crosses_the_reply_is_skipped(guest: Guest) -> None:
    reply = guest.run([PYTHON, "-c", "print('done')"])
    assert reply.stdout == "done\n" and not reply.cancelled
    stdin = guest.process.stdin
    assert stdin is not None
    stdin.write(FRAME_HEADER.pack(Frame.CANCEL, 0))  # as if the host's cancel left just as the reply came
    stdin.flush()
    assert guest.run([PYTHON, "-c", "print('next')"]).stdout == "next\n"


# A shell stands in for an interpreter's stub: it waits on descriptor 3 for the path, says it is the spare (with what
# its stdin holds), closes the descriptor and shows the file as the plain run (cat FILE) would.
SPARE_RUN = ["cat", "{file}"]
SPARE_STUB = 'read path <&3; exec 3<&-; echo "spare $(wc -c)"; exec cat "$path"'
SOURCE_STUB = 'echo "spare $(wc -c)"; exec cat <&3'


def run_for_spare(guest: Guest, recipe: dict[str, Any] | None, text: str = "hello\n") -> ExecReply:
    request = ExecRequest(
        argv=("cat", "{tmp}/file.txt"),
        cwd=str(guest.workdir),
        env={"PATH": os.environ["PATH"]},
        timeout=10,
        output_limit=1 << 20,
        files=(CodeFile("{tmp}/file.txt", text),),
        spare=recipe,
    )
    reply = guest.request(request)
    assert reply.error is None, reply.error
    return ExecReply.from_reply(reply)


def waiting_spare(guest: Guest, within_s: float = 3.0) -> int:
    """The pid of the guest's child that runs the stand-in's stub (started once the last reply was out)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    command = handle.read()
            except (OSError, ValueError, IndexError):
                continue
            if parent == guest.process.pid and b"spare" in command:
                return int(name)
        time.sleep(0.01)
    raise AssertionError("no spare is waiting")


def test_the_run_after_a_run_is_served_by_a_spare_with_stdin_empty(guest: Guest) -> None:
    recipe = spare_recipe(["/bin/sh", "-c", SPARE_STUB], SPARE_RUN)
    assert run_for_spare(guest, recipe).stdout == "hello\n"  # nothing was waiting: the plain run
    assert run_for_spare(guest, recipe).stdout == "spare 0\nhello\n"
    assert run_for_spare(guest, recipe, "again\n").stdout == "spare 0\nagain\n"


def test_any_other_request_or_recipe_throws_the_spare_away(guest: Guest) -> None:
    recipe = spare_recipe(["/bin/sh", "-c", SPARE_STUB], SPARE_RUN)
    run_for_spare(guest, recipe)
    spare = waiting_spare(guest)
    assert run_for_spare(guest, None).stdout == "hello\n"  # a run without the recipe (a command, an install)
    assert gone_soon(spare)
    run_for_spare(guest, recipe)
    other = spare_recipe(["/bin/sh", "-c", SPARE_STUB + " # another"], SPARE_RUN)
    assert run_for_spare(guest, other).stdout == "hello\n"  # another recipe: its own spare comes next
    assert run_for_spare(guest, other).stdout == "spare 0\nhello\n"


def test_a_spare_that_died_is_replaced_and_the_run_starts_cold(guest: Guest) -> None:
    recipe = spare_recipe(["/bin/sh", "-c", SPARE_STUB], SPARE_RUN)
    run_for_spare(guest, recipe)
    os.kill(waiting_spare(guest), signal.SIGKILL)
    assert run_for_spare(guest, recipe).stdout == "hello\n"
    assert run_for_spare(guest, recipe).stdout == "spare 0\nhello\n"


def test_a_spare_can_be_handed_the_source_up_to_what_the_pipe_holds(guest: Guest) -> None:
    recipe = spare_recipe(["/bin/sh", "-c", SOURCE_STUB], SPARE_RUN, hand="# {file}\n{source}")
    run_for_spare(guest, recipe)
    warm = run_for_spare(guest, recipe).stdout.splitlines()
    assert warm[0] == "spare 0" and warm[1].startswith("# /") and warm[1].endswith("/file.txt")
    assert warm[2:] == ["hello"]
    large = "x" * HAND_LIMIT + "\n"
    assert run_for_spare(guest, recipe, large).stdout == large  # too large to hand over: the plain run
