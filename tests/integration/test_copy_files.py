"""Copying files in and out of a real sandbox, including hostile trees planted by the code inside (the contract
suite: every backend, see tests/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Harness
from llm_sandbox import ContainerError, FileTooLargeError, SandboxSession, UnsafeArchiveError


@pytest.fixture(scope="module")
def session(backend: Harness) -> Iterator[SandboxSession]:
    with backend.session(lang="python") as opened:
        yield opened


def _no_temp_left(folder: Path) -> None:
    assert not list(folder.glob(".llm_sandbox-*"))


# A new folder under / needs root: the engine writes it, as a user the code is not.
@pytest.mark.requires("user_switch")
def test_file_round_trip_creates_missing_parents(session: SandboxSession, tmp_path: Path) -> None:
    local = tmp_path / "script.py"
    local.write_text("print('copied in')\n")
    session.copy_to_runtime(str(local), "/container/path/file.py")
    assert session.execute_command(["python3", "/container/path/file.py"]).stdout == "copied in\n"
    back = tmp_path / "out" / "file.py"
    session.copy_from_runtime("/container/path/file.py", str(back))
    assert back.read_text() == "print('copied in')\n"


@pytest.mark.requires("user_switch")
@pytest.mark.parametrize("link_to", ["/etc", "/usr/lib"])
def test_a_planted_link_never_leads_roots_copy_out_of_the_codes_reach(
    session: SandboxSession, tmp_path: Path, link_to: str
) -> None:
    # The code may not write under the link's target, so the copy falls back to root: which must not follow it.
    local = tmp_path / "evil.conf"
    local.write_text("planted\n")
    assert session.execute_command(["ln", "-sfn", link_to, "/sandbox/link"]).exit_code == 0
    with pytest.raises(ContainerError, match="/sandbox/link is a link"):
        session.copy_to_runtime(str(local), "/sandbox/link/new-folder/evil.conf")
    assert session.execute_command(["test", "-e", f"{link_to}/new-folder"]).exit_code == 1
    session.execute_command(["rm", "/sandbox/link"])
    assert session.run("print('next')").stdout == "next\n"


def test_copied_files_belong_to_the_code_user(session: SandboxSession, tmp_path: Path) -> None:
    local = tmp_path / "data.txt"
    local.write_text("v1")
    session.copy_to_runtime(str(local), "data.txt")
    result = session.execute_command("echo v2 > /sandbox/data.txt && cat /sandbox/data.txt")
    assert result.stdout == "v2\n"


def test_empty_file_both_ways(session: SandboxSession, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    session.copy_to_runtime(str(empty), "/sandbox/empty-in")
    assert session.execute_command("stat -c %s /sandbox/empty-in").stdout == "0\n"
    session.execute_command("touch /sandbox/empty-out")
    session.copy_from_runtime("/sandbox/empty-out", str(tmp_path / "got"))
    assert (tmp_path / "got").read_bytes() == b""


def test_a_directory_copied_out_lands_under_dest_with_its_name(session: SandboxSession, tmp_path: Path) -> None:
    # As the reference implementation does: dest/<name>/..., whether dest exists or not.
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("A")
    (tree / "sub" / "b.txt").write_text("B")
    session.copy_to_runtime(str(tree), "/sandbox/tree")
    assert session.execute_command("cat /sandbox/tree/a.txt /sandbox/tree/sub/b.txt").stdout == "AB"
    new_dest = tmp_path / "new"
    session.copy_from_runtime("/sandbox/tree", str(new_dest))
    assert sorted(path.name for path in new_dest.iterdir()) == ["tree"]
    assert (new_dest / "tree" / "a.txt").read_text() == "A"
    assert (new_dest / "tree" / "sub" / "b.txt").read_text() == "B"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "kept.txt").write_text("mine")
    session.copy_from_runtime("/sandbox/tree/", str(existing))
    assert sorted(path.name for path in existing.iterdir()) == ["kept.txt", "tree"]
    assert (existing / "tree" / "sub" / "b.txt").read_text() == "B"


def test_missing_paths_raise_file_not_found(session: SandboxSession, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        session.copy_from_runtime("/sandbox/not-there", str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError):
        session.copy_to_runtime(str(tmp_path / "not-here"), "/sandbox/x")


@pytest.mark.parametrize(
    "plant",
    [
        "ln -s /etc/passwd /sandbox/evil/abs-link",
        "ln -s ../../../../../../tmp /sandbox/evil/up-link",
        "mkfifo /sandbox/evil/fifo",
        "ln /sandbox/evil/ok.txt /sandbox/evil/hard-link",
    ],
)
def test_planted_links_and_fifos_are_refused_and_nothing_is_written(
    session: SandboxSession, tmp_path: Path, plant: str
) -> None:
    session.execute_command(f"rm -rf /sandbox/evil && mkdir /sandbox/evil && echo ok > /sandbox/evil/ok.txt && {plant}")
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError):
        session.copy_from_runtime("/sandbox/evil", str(dest))
    assert not dest.exists()
    _no_temp_left(tmp_path)


def test_huge_sparse_file_is_refused_before_reading(backend: Harness, tmp_path: Path) -> None:
    # A backend with a file-size limit would stop the 50G file itself: lift it, by name.
    roomy = {"relax_hardening": ["file_size_limit"]} if backend.capabilities().file_size_limit else {}
    with backend.session(lang="python", **roomy) as session:
        assert session.execute_command("truncate -s 50G /sandbox/sparse").exit_code == 0
        with pytest.raises(FileTooLargeError):
            session.copy_from_runtime("/sandbox/sparse", str(tmp_path / "sparse"))
        session.execute_command("mkdir /sandbox/d && truncate -s 2G /sandbox/d/sparse")
        with pytest.raises(FileTooLargeError):
            session.copy_from_runtime("/sandbox/d", str(tmp_path / "d"))
    assert not (tmp_path / "sparse").exists()
    assert not (tmp_path / "d").exists()
    _no_temp_left(tmp_path)
