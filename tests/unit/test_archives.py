"""Tests for llm_sandbox.archives: packing into the sandbox, and hostile archives coming out of it.

Every hostile archive is built here with tarfile and fed as a stream of odd-sized chunks, like the HTTP
response it normally comes from. After every refusal nothing may exist at ``dest`` and no temporary folder
may be left beside it.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_sandbox.archives import file_size_limit_error, pack_path, safe_extract
from llm_sandbox.errors import FileTooLargeError, UnsafeArchiveError, ValidationError

Member = tuple[tarfile.TarInfo, bytes]
GIB = 1024**3


# ------------------------------------------------------------------------------------------------- helpers


def chunks(data: bytes, size: int = 7) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def then_raise(prefix: bytes, size: int = 7) -> Iterator[bytes]:
    """The chunks of ``prefix``, then an error: proves nothing past ``prefix`` was read."""
    yield from chunks(prefix, size)
    raise AssertionError("the stream was read past the header")


def reg(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dirent(name: str, mode: int = 0o755) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, b""


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def make_tar(*members: Member, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def fix_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def assert_clean(dest: Path) -> None:
    assert not os.path.lexists(dest)
    assert not list(dest.parent.glob(".llm_sandbox-*"))


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a directory)."""
    result: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        result[path.relative_to(root).as_posix()] = None if path.is_dir() else path.read_bytes()
    return result


# --------------------------------------------------------------------------------------- hostile archives


HOSTILE = [
    pytest.param([reg("/etc/passwd", b"x")], "absolute", id="absolute"),
    pytest.param([reg("../evil", b"x")], "'..'", id="dotdot"),
    pytest.param([dirent("y"), reg("y/../../b", b"x")], "'..'", id="dotdot-inside"),
    pytest.param([dirent("y"), reg("y/./a", b"x")], "'.'", id="dot-component"),
    pytest.param([dirent("y"), reg("y//a", b"x")], "empty", id="empty-component"),
    pytest.param([dirent("y"), special("y/l", tarfile.SYMTYPE, "/etc/passwd")], "symlink", id="symlink-abs"),
    pytest.param([dirent("y"), special("y/l", tarfile.SYMTYPE, "../../x")], "symlink", id="symlink-rel"),
    pytest.param([dirent("y"), reg("y/a", b"x"), special("y/h", tarfile.LNKTYPE, "y/a")], "hard link", id="hardlink"),
    pytest.param([dirent("y"), special("y/p", tarfile.FIFOTYPE)], "FIFO", id="fifo"),
    pytest.param([dirent("y"), special("y/c", tarfile.CHRTYPE)], "character device", id="chardev"),
    pytest.param([dirent("y"), special("y/b", tarfile.BLKTYPE)], "block device", id="blockdev"),
    pytest.param([dirent("y"), special("y/v", b"V")], "type", id="unknown-type"),
    pytest.param([dirent("y"), reg("y/a", b"x"), reg("z/b", b"x")], "outside", id="outside-top"),
    pytest.param([reg("y", b"x"), reg("y/a", b"x")], "regular file", id="under-a-file"),
    pytest.param([dirent("y"), reg("y/a", b"1"), reg("y/a", b"2")], "duplicate", id="duplicate"),
    pytest.param([dirent("y"), reg("y/a", b"1"), dirent("y/a")], "duplicate", id="file-then-dir"),
]


@pytest.mark.parametrize(("members", "why"), HOSTILE)
def test_hostile_member_is_refused(tmp_path: Path, members: list[Member], why: str) -> None:
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=why):
        safe_extract(chunks(make_tar(*members)), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_nul_in_a_pax_name_is_refused(tmp_path: Path) -> None:
    info, data = reg("y", b"x")
    info.pax_headers = {"path": "y\x00z"}
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="NUL"):
        safe_extract(chunks(make_tar((info, data), fmt=tarfile.PAX_FORMAT)), dest, max_bytes=100)
    assert_clean(dest)


def test_refusal_after_files_were_written_leaves_nothing(tmp_path: Path) -> None:
    members = [dirent("y"), reg("y/a", b"a" * 5000), reg("y/b", b"b"), special("y/l", tarfile.SYMTYPE, "/")]
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="'y/l' -> '/'"):
        safe_extract(chunks(make_tar(*members), 13), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_declared_size_over_limit_fails_before_reading_data(tmp_path: Path) -> None:
    header = make_tar(reg("y", b"z" * 1000))[: tarfile.BLOCKSIZE]
    dest = tmp_path / "out"
    with pytest.raises(FileTooLargeError, match="1000 bytes"):
        safe_extract(then_raise(header), dest, max_bytes=999)
    assert_clean(dest)


def test_declared_sizes_are_summed(tmp_path: Path) -> None:
    archive = make_tar(dirent("y"), reg("y/a", b"a" * 60), reg("y/b", b"b" * 60))
    dest = tmp_path / "out"
    with pytest.raises(FileTooLargeError, match="120 bytes"):
        safe_extract(chunks(archive), dest, max_bytes=100)
    assert_clean(dest)
    safe_extract(chunks(archive), dest, max_bytes=120)
    assert tree(dest) == {"a": b"a" * 60, "b": b"b" * 60}


def test_header_declaring_more_data_than_the_stream_holds(tmp_path: Path) -> None:
    archive = make_tar(dirent("y"), reg("y/a", b"a" * 3000))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        safe_extract(chunks(archive[: 2 * tarfile.BLOCKSIZE + 1000]), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_stream_cut_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    archive = make_tar(dirent("y"), reg("y/a", b"a" * 100), reg("y/b", b"b"))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="truncated"):
        safe_extract(chunks(archive[: 3 * tarfile.BLOCKSIZE]), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_gnu_sparse_member_of_50_gib_is_refused_without_reading(tmp_path: Path) -> None:
    info = tarfile.TarInfo("y")
    info.type, info.size = tarfile.GNUTYPE_SPARSE, 50 * GIB
    block = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    block[483:495] = b"\x80" + (50 * GIB).to_bytes(11, "big")  # base-256 "real size" field
    block[482] = 1  # "more sparse headers follow": must not be read either
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="sparse"):
        safe_extract(then_raise(fix_checksum(block)), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_pax_sparse_member_is_refused(tmp_path: Path) -> None:
    info, data = reg("y", b"0123456789")
    info.pax_headers = {"GNU.sparse.map": "0,10", "GNU.sparse.size": "10"}
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="sparse"):
        safe_extract(chunks(make_tar((info, data), fmt=tarfile.PAX_FORMAT)), dest, max_bytes=100)
    assert_clean(dest)


def test_endless_pax_sparse_map_hits_the_header_budget(tmp_path: Path) -> None:
    info, _ = reg("y")
    info.size = 50 * GIB
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "y"}

    def endless() -> Iterator[bytes]:
        yield from chunks(info.tobuf(tarfile.PAX_FORMAT) + b"999999999999\n", 7)
        while True:
            yield b"1\n" * 512

    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="larger than allowed"):
        safe_extract(endless(), dest, max_bytes=100)
    assert_clean(dest)


def test_oversized_pax_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    info, data = reg("y", b"x")
    info.pax_headers = {"comment": "c" * 100_000}
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="oversized"):
        safe_extract(then_raise(make_tar((info, data), fmt=tarfile.PAX_FORMAT)[:512]), dest, max_bytes=100)
    assert_clean(dest)


def test_too_many_members(tmp_path: Path) -> None:
    archive = make_tar(dirent("y"), *(reg(f"y/{i}") for i in range(5)))
    dest = tmp_path / "out"
    with pytest.raises(FileTooLargeError, match="members"):
        safe_extract(chunks(archive), dest, max_bytes=100, max_members=5)
    assert_clean(dest)


@pytest.mark.parametrize("archive", [make_tar(), b"", b"\x00" * 10240], ids=["no-members", "zero-bytes", "zeros"])
def test_empty_archive(tmp_path: Path, archive: bytes) -> None:
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(chunks(archive), dest, max_bytes=100)
    assert_clean(dest)


def test_garbage_stream(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="corrupt"):
        safe_extract(chunks(b"this is not a tar archive at all" * 64), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_error_from_the_stream_itself_propagates_and_cleans_up(tmp_path: Path) -> None:
    archive = make_tar(dirent("y"), reg("y/a", b"a" * 4000))

    def broken() -> Iterator[bytes]:
        yield archive[:2000]
        raise ConnectionResetError("peer went away")

    dest = tmp_path / "out"
    with pytest.raises(ConnectionResetError):
        safe_extract(broken(), dest, max_bytes=1 << 20)
    assert_clean(dest)


def test_created_parents_are_removed_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(chunks(make_tar(reg("../x", b"x"))), dest, max_bytes=100)
    assert not (tmp_path / "new").exists()


def test_invalid_limits() -> None:
    with pytest.raises(ValidationError):
        safe_extract([], Path("unused"), max_bytes=-1)


def test_size_error_helper() -> None:
    err = file_size_limit_error("/x/y", 12, 10)
    assert isinstance(err, FileTooLargeError)
    assert "/x/y" in str(err)
    assert "12" in str(err)
    assert "10" in str(err)


# ------------------------------------------------------------------------------------------ good archives


def test_single_file_is_written_at_dest(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "result.txt"
    safe_extract(chunks(make_tar(reg("y", b"hello", 0o640))), dest, max_bytes=5)
    assert dest.read_bytes() == b"hello"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.joinpath("sub").iterdir()) == ["result.txt"]


def test_empty_file(tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    safe_extract(chunks(make_tar(reg("y"))), dest, max_bytes=0)
    assert dest.read_bytes() == b""


@pytest.mark.parametrize(("mode", "expected"), [(0o4777, 0o755), (0o2755, 0o755), (0o000, 0o600), (0o666, 0o644)])
def test_file_modes_are_tamed(tmp_path: Path, mode: int, expected: int) -> None:
    dest = tmp_path / "f"
    safe_extract(chunks(make_tar(reg("y", b"x", mode))), dest, max_bytes=1)
    assert stat.S_IMODE(dest.stat().st_mode) == expected


def test_directory_contents_go_into_dest(tmp_path: Path) -> None:
    archive = make_tar(
        dirent("y"),
        reg("y/a", b"A"),
        dirent("y/sub", 0o1777),
        reg("y/sub/b", b"B"),
        dirent("y/sub/empty", 0o500),
    )
    dest = tmp_path / "out"
    safe_extract(chunks(archive, 1), dest, max_bytes=2)
    assert tree(dest) == {"a": b"A", "sub": None, "sub/b": b"B", "sub/empty": None}
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "sub/empty").stat().st_mode) == 0o700
    assert not list(tmp_path.glob(".llm_sandbox-*"))


def test_missing_directory_entries_are_implied(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    safe_extract(chunks(make_tar(reg("y/deep/er/c", b"C"), reg("y/d", b"D"))), dest, max_bytes=2)
    assert tree(dest) == {"d": b"D", "deep": None, "deep/er": None, "deep/er/c": b"C"}


def test_merge_into_existing_directory(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "sub").mkdir(parents=True)
    (dest / "a").write_bytes(b"old")
    (dest / "keep").write_bytes(b"kept")
    (dest / "sub" / "old").write_bytes(b"old too")
    archive = make_tar(dirent("y"), reg("y/a", b"new"), dirent("y/sub"), reg("y/sub/b", b"B"), dirent("y/n"))
    safe_extract(chunks(archive), dest, max_bytes=100)
    assert tree(dest) == {
        "a": b"new",
        "keep": b"kept",
        "n": None,
        "sub": None,
        "sub/b": b"B",
        "sub/old": b"old too",
    }
    assert not list(tmp_path.glob(".llm_sandbox-*"))


def test_merge_conflict_changes_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a").write_bytes(b"old")
    (dest / "sub").write_bytes(b"a file, not a dir")
    archive = make_tar(dirent("y"), reg("y/a", b"new"), dirent("y/sub"), reg("y/sub/b", b"B"))
    with pytest.raises(FileExistsError):
        safe_extract(chunks(archive), dest, max_bytes=100)
    assert tree(dest) == {"a": b"old", "sub": b"a file, not a dir"}
    assert not list(tmp_path.glob(".llm_sandbox-*"))


def test_symlinks_on_the_host_side_are_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a").symlink_to(victim)
    safe_extract(chunks(make_tar(dirent("y"), reg("y/a", b"evil"))), dest, max_bytes=100)
    assert not (dest / "a").is_symlink()
    assert (dest / "a").read_bytes() == b"evil"
    link = tmp_path / "link"
    link.symlink_to(victim)
    safe_extract(chunks(make_tar(reg("y", b"evil"))), link, max_bytes=100)
    assert not link.is_symlink()
    assert victim.read_bytes() == b"precious"


def test_file_replaces_an_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_bytes(b"old")
    safe_extract(chunks(make_tar(reg("y", b"new"))), dest, max_bytes=100)
    assert dest.read_bytes() == b"new"


def test_without_strip_top_members_land_under_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    archive = make_tar(dirent("y"), reg("y/a", b"A"), reg("z", b"Z"))
    safe_extract(chunks(archive), dest, max_bytes=100, strip_top=False)
    assert tree(dest) == {"y": None, "y/a": b"A", "z": b"Z"}


def test_long_names_via_pax(tmp_path: Path) -> None:
    name = "y/" + "/".join(["d" * 60] * 5) + "/" + "é" * 80
    dest = tmp_path / "out"
    safe_extract(chunks(make_tar(reg(name, b"L"), fmt=tarfile.PAX_FORMAT)), dest, max_bytes=1)
    assert (dest / name.removeprefix("y/")).read_bytes() == b"L"


# ----------------------------------------------------------------------------------------------- packing


def members_of(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        return tf.getmembers()


def build_tree(root: Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    (root / "a.py").write_bytes(b"print('a')\n")
    (root / "empty").write_bytes(b"")
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o751)
    (root / "sub" / "deeper" / "b.bin").write_bytes(bytes(range(256)) * 50)


def test_pack_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    build_tree(src)
    archive = pack_path(src, "y")
    for size in (1, 7, 512, 1 << 20):
        dest = tmp_path / f"out{size}"
        safe_extract(chunks(archive, size), dest, max_bytes=1 << 20)
        assert tree(dest) == tree(src)
        assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o751


def test_pack_single_file_under_nested_arcname(tmp_path: Path) -> None:
    src = tmp_path / "f.py"
    src.write_bytes(b"x = 1\n")
    src.chmod(0o640)
    archive = pack_path(src, "a/b/f.py", uid=1000, gid=1001)
    members = members_of(archive)
    assert [(m.name, m.type) for m in members] == [
        ("a", tarfile.DIRTYPE),
        ("a/b", tarfile.DIRTYPE),
        ("a/b/f.py", tarfile.REGTYPE),
    ]
    assert b"a/\x00" in archive  # directory entries carry the trailing slash
    assert all((m.uid, m.gid, m.uname, m.gname) == (1000, 1001, "", "") for m in members)
    assert members[2].mode == 0o640
    assert members[0].mode == 0o755
    dest = tmp_path / "out" / "f.py"
    safe_extract(chunks(archive), dest, max_bytes=100, strip_top=False)
    assert (dest / "a/b/f.py").read_bytes() == b"x = 1\n"


def test_pack_defaults_to_root_owner_and_is_deterministic(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    build_tree(src)
    archive = pack_path(src, "y/")
    assert archive == pack_path(src, "y")
    members = members_of(archive)
    assert all((m.uid, m.gid) == (0, 0) for m in members)
    names = [m.name for m in members]
    assert names == [
        "y",
        "y/a.py",
        "y/empty",
        "y/empty_dir",
        "y/run.sh",
        "y/sub",
        "y/sub/deeper",
        "y/sub/deeper/b.bin",
    ]


def test_pack_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"do not upload")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "real.txt").write_bytes(b"real")
    (src / "in_tree").symlink_to("real.txt")
    (src / "d" / "up_in_tree").symlink_to("../real.txt")
    (src / "escape").symlink_to(outside)
    (src / "escape_rel").symlink_to("../secret")
    (src / "dangling").symlink_to("nowhere")
    (src / "dir_link").symlink_to("d")
    (src / "loop").symlink_to(".")
    os.mkfifo(src / "fifo")
    members = {m.name: m for m in members_of(pack_path(src, "y"))}
    assert sorted(members) == ["y", "y/d", "y/d/up_in_tree", "y/in_tree", "y/real.txt"]
    assert all(m.isreg() or m.isdir() for m in members.values())
    dest = tmp_path / "out"
    safe_extract(chunks(pack_path(src, "y")), dest, max_bytes=100)
    assert (dest / "in_tree").read_bytes() == b"real"
    assert (dest / "d" / "up_in_tree").read_bytes() == b"real"


def test_pack_follows_a_symlink_given_as_src(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"r")
    (tmp_path / "link").symlink_to("real")
    assert [m.name for m in members_of(pack_path(tmp_path / "link", "x"))] == ["x"]


def test_pack_missing_src(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        pack_path(missing, "x")


@pytest.mark.parametrize("arcname", ["", "/abs", "../x", "a/../b", "a//b", "./a", "a\x00b"])
def test_pack_bad_arcname(tmp_path: Path, arcname: str) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(ValidationError):
        pack_path(tmp_path / "f", arcname)


def test_pack_refuses_special_src(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValidationError):
        pack_path(tmp_path / "fifo", "x")
