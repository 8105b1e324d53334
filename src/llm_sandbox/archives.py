"""Tar archives in and out of the sandbox.

``pack_path`` builds the (trusted) archive uploaded INTO a sandbox. ``safe_extract`` unpacks the archive
downloaded OUT of one, which untrusted code made, so every member is checked before anything reaches the host:

* only regular files and directories; links, devices, FIFOs, sparse and unknown members are refused;
* names must be relative, with no ``..``/``.``/empty components and no NUL, all under one top component;
* the sizes declared in headers are summed and checked against ``max_bytes`` *before* any data is read, and
  the bytes actually written are counted again;
* everything lands in a fresh temporary folder beside ``dest`` and is moved into place only once the whole
  archive has been read and checked, so a failure leaves nothing behind.

The archive is read as a stream (``tarfile`` mode ``"r|"``) from the HTTP response chunks, never buffered
whole. Python 3.11.7's ``tarfile`` still reads pax and GNU long-name data into memory and parses pax records
with a quadratic regex (CVE-2024-6232), so header blocks are budgeted here before ``tarfile`` reads them.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from llm_sandbox.errors import FileTooLargeError, UnsafeArchiveError, ValidationError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["file_size_limit_error", "pack_path", "safe_extract"]

_TEMP_PREFIX = ".llm_sandbox-"
_Owner = tuple[int, int]  # (uid, gid) written into every header
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)
# pax, pax global, Solaris pax, GNU long name, GNU long link: tarfile reads their data into memory itself.
_META_TYPES = (b"x", b"g", b"X", b"L", b"K")
_REFUSED = {
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hard link",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CONTTYPE: "contiguous file",
}
_META_MAX = 8 * 1024  # one pax/long-name block: a 4096-byte path plus a few records fits easily
_META_TOTAL = 4 * 1024 * 1024  # all of them together; bounds the quadratic pax parsing to seconds
_HEADER_BUDGET = 64 * 1024  # raw bytes tarfile may pull while reading one member's headers
_BUFSIZE = 4096  # tarfile's read size from the chunk adapter; keeps its read-ahead small
_COPY_SIZE = 64 * 1024
_MAX_MEMBERS = 100_000  # empty files and dirs cost no declared bytes, but inodes and time
_MAX_DEPTH = 256  # keeps recursive host helpers (shutil.rmtree, the merge) far from the recursion limit


def file_size_limit_error(path: str, size: int, limit: int) -> FileTooLargeError:
    """The error for a copy that is (or would grow) larger than ``limit`` bytes."""
    return FileTooLargeError(f"{path}: {size} bytes is more than the {limit}-byte limit for copying out")


def _split_name(name: str, error: type[Exception]) -> tuple[str, ...]:
    """The components of a relative POSIX member name, or ``error`` naming what is wrong with it."""
    if "\x00" in name:
        raise error(f"{name!r}: name contains a NUL byte")
    if name.startswith("/"):
        raise error(f"{name!r}: absolute name")
    parts = tuple(name.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise error(f"{name!r}: empty, '.' or '..' component")
        if any(sep in part for sep in (os.sep, os.altsep) if sep and sep != "/"):
            raise error(f"{name!r}: host path separator in a component")
    if len(parts) > _MAX_DEPTH:
        raise error(f"{name!r}: nested deeper than {_MAX_DEPTH} levels")
    return parts


def pack_path(src: Path, arcname: str, uid: int | None = None, gid: int | None = None) -> bytes:
    """An uncompressed tar of the file or directory ``src`` stored under ``arcname``.

    Each parent of ``arcname`` gets a directory entry (mode 0o755) so the engine creates it. Modes keep the
    local permission bits (not setuid/setgid/sticky); mtimes are the local ones; owners are ``uid``/``gid``
    (0 when not given, never the host's ids) with empty user/group names so the engine uses the numbers.
    Entries are sorted, so the same tree always gives the same bytes.

    ``src`` itself is followed if it is a symlink (the caller named it). Inside a directory, a symlink whose
    target resolves inside ``src`` and is a regular file is stored as a regular file with the target's
    content; links to directories (cycles, duplicated trees), links leaving ``src``, dangling links and
    FIFOs/sockets/devices are skipped, so nothing outside the chosen tree is ever uploaded.
    """
    parts = _split_name(arcname.rstrip("/"), ValidationError)
    try:
        top = os.stat(src)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(src)) from None
    owner = (uid or 0, gid or 0)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for depth in range(1, len(parts)):
            tf.addfile(_info("/".join(parts[:depth]), top.st_mtime, owner, 0o755))
        name = "/".join(parts)
        if stat.S_ISREG(top.st_mode):
            _add_file(tf, Path(src), name, owner, follow=True)
        elif stat.S_ISDIR(top.st_mode):
            _add_tree(tf, Path(src), name, top, owner)
        else:
            raise ValidationError(f"{src} is neither a regular file nor a directory")
    return out.getvalue()


def _info(name: str, mtime: float, owner: _Owner, mode: int, size: int | None = None) -> tarfile.TarInfo:
    """A header for a directory (``size`` None) or a regular file, with no host user or group names."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if size is None else tarfile.REGTYPE
    info.size = size or 0
    info.mode = stat.S_IMODE(mode) & 0o777
    info.mtime = int(mtime)
    info.uid, info.gid = owner
    info.uname = info.gname = ""
    return info


def _add_file(tf: tarfile.TarFile, path: Path, name: str, owner: _Owner, follow: bool = False) -> None:
    # O_NOFOLLOW/O_NONBLOCK: an entry swapped for a link or a FIFO after the listing is neither followed nor
    # waited on; fstat then describes exactly what was opened.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(os.open(path, flags), "rb") as f:
        st = os.fstat(f.fileno())
        if stat.S_ISREG(st.st_mode):
            tf.addfile(_info(name, st.st_mtime, owner, st.st_mode, st.st_size), f)


def _add_tree(tf: tarfile.TarFile, root: Path, name: str, top: os.stat_result, owner: _Owner) -> None:
    real_root = os.path.realpath(root)
    stack = [(root, name)]  # children pushed in reverse: a sorted pre-order walk without recursion
    while stack:
        path, arc = stack.pop()
        st = top if path is root else os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            tf.addfile(_info(arc, st.st_mtime, owner, st.st_mode))
            stack.extend((path / child, f"{arc}/{child}") for child in sorted(os.listdir(path), reverse=True))
        elif stat.S_ISREG(st.st_mode):
            _add_file(tf, path, arc, owner)
        elif stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if os.path.commonpath([real_root, target]) == real_root and os.path.isfile(target):
                _add_file(tf, Path(target), arc, owner)


class _Source:
    """A read-only file object over an iterator of byte chunks, refusing to read past ``limit``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buf = b""
        self._off = 0
        self.pos = 0  # bytes handed to tarfile so far
        self.limit = 0  # absolute position tarfile may not read past (set per header / member)
        self.meta = 0  # bytes of pax / long-name data seen so far

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        while self._off >= len(self._buf):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buf, self._off = bytes(chunk), 0
        if self.pos >= self.limit:
            raise UnsafeArchiveError(f"archive headers near byte {self.pos} are larger than allowed")
        n = min(len(self._buf) - self._off, self.limit - self.pos)
        if size > 0:
            n = min(n, size)
        data = self._buf[self._off : self._off + n]
        self._off += n
        self.pos += n
        return data

    def tell(self) -> int:
        return self.pos

    def write(self, b: bytes, /) -> int:
        raise io.UnsupportedOperation("read-only")

    def seek(self, pos: int, /) -> int:
        raise io.UnsupportedOperation("not seekable")

    def close(self) -> None:
        pass


def _guarded_tarinfo(src: _Source) -> type[tarfile.TarInfo]:
    """A TarInfo class that vets each raw header before tarfile reads any data that belongs to it."""

    class _Guarded(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
            info = super().frombuf(buf, encoding, errors)
            if info.type == tarfile.GNUTYPE_SPARSE:  # refused before tarfile reads its extension blocks
                raise UnsafeArchiveError(f"{info.name!r}: sparse member ({info.size} bytes declared)")
            if info.type in _META_TYPES:
                src.meta += info.size
                if info.size > _META_MAX or src.meta > _META_TOTAL:
                    raise UnsafeArchiveError(f"{info.name!r}: oversized pax/long-name header ({info.size} bytes)")
            return info

    return _Guarded


def _check_member(member: tarfile.TarInfo) -> bool:
    """True for a directory, False for a regular file; anything else is refused."""
    name = member.name
    if member.sparse is not None or any(key.startswith("GNU.sparse.") for key in member.pax_headers):
        raise UnsafeArchiveError(f"{name!r}: sparse member")
    if member.type == tarfile.DIRTYPE:
        if member.size:
            raise UnsafeArchiveError(f"{name!r}: directory with {member.size} bytes of data")
        return True
    if member.type in _FILE_TYPES:
        return False
    why = _REFUSED.get(member.type, f"member of type {member.type!r}")
    link = f" -> {member.linkname!r}" if member.linkname else ""
    raise UnsafeArchiveError(f"{name!r}{link}: {why} refused; only regular files and directories are allowed")


def _write_file(tf: tarfile.TarFile, member: tarfile.TarInfo, target: Path, room: int) -> int:
    """Copy one member's data to a new file; ``room`` is how many bytes the whole copy may still grow."""
    data = tf.extractfile(member)
    if data is None:
        raise UnsafeArchiveError(f"{member.name!r}: has no readable data")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    written = 0
    with data, os.fdopen(os.open(target, flags, 0o600), "wb") as out:
        while chunk := data.read(_COPY_SIZE):
            written += len(chunk)
            if written > room:  # counted on real bytes, whatever the header said
                raise FileTooLargeError(f"{member.name!r}: more data than the copy-out limit allows")
            if written > member.size:
                raise UnsafeArchiveError(f"{member.name!r}: more data than its header declares")
            out.write(chunk)
        if written != member.size:
            raise UnsafeArchiveError(f"{member.name!r}: data is shorter than its header declares")
    # By path (portable): ``target`` is our own regular file in a fresh private folder, nothing to follow.
    os.chmod(target, (member.mode & 0o755) | 0o600)
    with contextlib.suppress(OverflowError, OSError, ValueError):  # a silly mtime is not worth failing for
        os.utime(target, (member.mtime, member.mtime))
    return written


class _Layout:
    """Maps member names to paths under ``root`` and remembers what each of them already is."""

    def __init__(self, root: Path, strip_top: bool) -> None:
        self.root, self.strip_top = root, strip_top
        self.top: str | None = None
        self.kinds: dict[tuple[str, ...], bool] = {}  # relative parts -> is a directory
        self.dir_modes: dict[Path, int] = {}  # applied at the end: a read-only dir must still take children
        if not strip_top:
            self._mkdir(())

    def _mkdir(self, parts: tuple[str, ...]) -> None:
        self.root.joinpath(*parts).mkdir(mode=0o700)
        self.kinds[parts] = True

    def place(self, member: tarfile.TarInfo, is_dir: bool) -> Path:
        """The path for ``member``, its parents created (and the directory itself, for a directory)."""
        parts = _split_name(member.name, UnsafeArchiveError)
        if self.strip_top:
            self.top = self.top or parts[0]
            if parts[0] != self.top:
                raise UnsafeArchiveError(f"{member.name!r}: outside the archive's top entry {self.top!r}")
            parts = parts[1:]
        if parts in self.kinds and not (is_dir and self.kinds[parts]):
            raise UnsafeArchiveError(f"{member.name!r}: duplicate or conflicting member")
        for depth in range(len(parts) + is_dir):
            if parts[:depth] not in self.kinds:
                self._mkdir(parts[:depth])
            elif not self.kinds[parts[:depth]]:
                raise UnsafeArchiveError(f"{member.name!r}: inside a regular file")
        path = self.root.joinpath(*parts)
        if is_dir:
            self.dir_modes[path] = (member.mode & 0o755) | 0o700
        else:
            self.kinds[parts] = False
        return path


def _extract(src: _Source, root: Path, max_bytes: int, strip_top: bool, max_members: int) -> bool:
    """Extract the stream under ``root`` (which must not exist); True if ``root`` ends up a directory."""
    layout = _Layout(root, strip_top)
    declared = written = count = 0
    src.limit = _HEADER_BUDGET
    with tarfile.open(fileobj=src, mode="r|", bufsize=_BUFSIZE, tarinfo=_guarded_tarinfo(src)) as tf:
        while True:
            src.limit = src.pos + _HEADER_BUDGET
            member = tf.next()
            if member is None:
                break
            count += 1
            if count > max_members:
                raise FileTooLargeError(f"archive has more than {max_members} members")
            is_dir = _check_member(member)
            if not is_dir:
                declared += member.size
                if declared > max_bytes:  # decided on the header, before a byte of its data is read
                    raise file_size_limit_error(member.name, declared, max_bytes)
            target = layout.place(member, is_dir)
            if not is_dir:
                src.limit = src.pos + member.size + _HEADER_BUDGET
                written += _write_file(tf, member, target, max_bytes - written)
        # tarfile takes a stream that just stops at a member boundary for a normal end: insist on the
        # end-of-archive block, so a cut-off download is not mistaken for a complete copy.
        if src.pos < tf.offset + tarfile.BLOCKSIZE:
            raise UnsafeArchiveError("archive is truncated (no end-of-archive marker)")
    if count == 0:
        raise UnsafeArchiveError("empty archive")
    for path, mode in layout.dir_modes.items():
        path.chmod(mode)
    return layout.kinds.get((), False)


def _merge_conflicts(src: Path, dst: Path) -> Iterator[str]:
    """Entries of ``src`` that cannot be moved over their counterparts in the existing directory ``dst``."""
    for entry in os.scandir(src):
        try:
            st = os.lstat(dst / entry.name)
        except FileNotFoundError:
            continue
        if entry.is_dir(follow_symlinks=False) != stat.S_ISDIR(st.st_mode):
            yield str(dst / entry.name)
        elif entry.is_dir(follow_symlinks=False):
            yield from _merge_conflicts(Path(entry.path), dst / entry.name)


def _merge(src: Path, dst: Path) -> None:
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and os.path.lexists(target):
            _merge(Path(entry.path), target)  # a real directory: _merge_conflicts checked it
        else:
            os.replace(entry.path, target)  # a symlink at target is replaced, never followed


def _install(content: Path, is_dir: bool, dest: Path) -> None:
    if not is_dir:
        if dest.is_dir() and not dest.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "Cannot replace a directory with a file", str(dest))
        os.replace(content, dest)
    elif not os.path.lexists(dest):
        os.rename(content, dest)
    elif not dest.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Cannot merge a directory into a non-directory", str(dest))
    else:
        conflict = next(_merge_conflicts(content, dest), None)
        if conflict is not None:
            raise FileExistsError(errno.EEXIST, "A file and a directory collide while merging", conflict)
        _merge(content, dest)


def safe_extract(
    chunks: Iterable[bytes],
    dest: Path,
    *,
    max_bytes: int,
    strip_top: bool = True,
    max_members: int = _MAX_MEMBERS,
) -> None:
    """Extract the untrusted tar stream ``chunks`` to ``dest``, all or nothing.

    With ``strip_top`` (an engine's archive of ``/x/y`` has the single top entry ``y``): a top regular file is
    written at ``dest``; a top directory's contents go into ``dest`` (created, or merged into an existing
    directory, replacing files). Without it, every member lands under the directory ``dest``. Extracted files
    keep their permission bits ``& 0o755`` (owner always rw), directories ``& 0o755`` (owner always rwx).

    Raises UnsafeArchiveError for a refused member or a corrupt, truncated or empty archive, FileTooLargeError
    past ``max_bytes`` of file data (or ``max_members`` entries). On any error nothing is left at or beside
    ``dest``, and parent directories this call created are removed again if still empty.
    """
    if max_bytes < 0 or max_members < 1:
        raise ValidationError("max_bytes must be >= 0 and max_members >= 1")
    dest = Path(dest)
    created = [p for p in (dest.parent, *dest.parent.parents) if not os.path.lexists(p)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=_TEMP_PREFIX))
        try:
            content = tmp / "content"
            try:
                is_dir = _extract(_Source(chunks), content, max_bytes, strip_top, max_members)
            except (tarfile.TarError, EOFError) as exc:
                raise UnsafeArchiveError(f"corrupt or truncated archive: {exc}") from exc
            except FileExistsError as exc:  # two names for one host path (case-insensitive file systems)
                raise UnsafeArchiveError(f"colliding member names: {exc}") from exc
            except ValueError as exc:  # tarfile's own parsing slips (e.g. a bad GNU sparse map)
                raise UnsafeArchiveError(f"corrupt archive: {exc}") from exc
            _install(content, is_dir, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        for path in created:  # deepest first; stop at the first one that is not empty (or not ours)
            try:
                path.rmdir()
            except OSError:
                break
        raise
