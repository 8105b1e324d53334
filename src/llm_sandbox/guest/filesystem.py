"""Files of a run (code files, its temporary folder, the files it collects back), copies into the sandbox and the
reset's wipe, all done as the code's user (the helper's own, or the effective one it takes for the work when it runs
as root: ``confine.ActingAsCode``) and never through a link the code may have planted."""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    from llm_sandbox.guest.confine import INHERITED_ENVIRONMENT
    from llm_sandbox.guest.protocol import Field, empty_reply, put_failed_reply
    from llm_sandbox.guest.wire import send_file

# Folders nested deeper than this are left in place (each level holds a descriptor while it is emptied).
MAX_DEPTH = 256
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def write_files(files: List[Dict[str, Any]]) -> None:
    for item in files:
        path = item[Field.PATH]
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(item[Field.CONTENT].encode("utf-8", "surrogateescape"))
        os.chmod(path, int(item.get(Field.MODE, 0o644)))


def temp_base() -> str:
    return INHERITED_ENVIRONMENT.get("TMPDIR") or "/tmp"


def make_temp_dir(request: Dict[str, Any]) -> Optional[str]:
    if not request.get(Field.TEMPDIR):
        return None
    base = temp_base()
    for _attempt in range(100):
        path = os.path.join(base, "llm-sandbox-run-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise OSError("cannot create a temporary folder in " + base)


def remove_entry(parent_fd: int, name: str, depth: int) -> bool:
    """Remove ``name`` in the open folder ``parent_fd``, a folder with everything in it; a link is removed, never
    followed. True when it is gone."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True
    if depth >= MAX_DEPTH:
        return False
    if info.st_mode & 0o700 != 0o700:  # a folder the code locked (chmod 0): its owner may open it again
        try:
            os.chmod(name, 0o700, dir_fd=parent_fd)
        except OSError:
            pass
    try:
        fd = os.open(name, DIRECTORY_FLAGS, dir_fd=parent_fd)
    except OSError:
        return False
    try:
        empty_open_folder(fd, depth + 1)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def empty_open_folder(fd: int, depth: int) -> bool:
    try:
        names = os.listdir(fd)
    except OSError:
        return False
    emptied = True
    for name in names:
        emptied = remove_entry(fd, name, depth) and emptied
    return emptied


def remove_tree(path: str) -> None:
    """Remove a folder the run used, never following a link the code may have planted in it."""
    parent, name = os.path.split(path.rstrip("/"))
    try:
        fd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        remove_entry(fd, name, 0)
    finally:
        os.close(fd)


def wipe_owned(folder: str) -> List[str]:
    """Remove each entry at the top of ``folder`` that this (effective) uid owns, with everything in it (what the
    image or the engine put there stays); the paths that could not be removed entirely."""
    uid = os.geteuid()
    left: List[str] = []
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return left
    try:
        for name in os.listdir(fd):
            try:
                owner = os.stat(name, dir_fd=fd, follow_symlinks=False).st_uid
            except OSError:
                continue
            if owner == uid and not remove_entry(fd, name, 0):
                left.append(os.path.join(folder, name))
    except OSError:
        left.append(folder)
    finally:
        os.close(fd)
    return left


def pattern_parts(pattern: str) -> Optional[List[str]]:
    """A collect pattern's path components (None for one that climbs out of the folder)."""
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return parts


def glob_match(pattern: Sequence[str], parts: Sequence[str], match: Callable[[str, str], bool]) -> bool:
    """Whether path components match pattern components (``**`` matches any number of folders)."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return glob_match(pattern[1:], parts, match) or (bool(parts) and glob_match(pattern, parts[1:], match))
    return bool(parts) and match(parts[0], pattern[0]) and glob_match(pattern[1:], parts[1:], match)


def glob_may_enter(pattern: Sequence[str], parts: Sequence[str], match: Callable[[str, str], bool]) -> bool:
    """Whether something inside the folder ``parts`` may match the pattern."""
    if not parts:
        return bool(pattern)
    if not pattern:
        return False
    if pattern[0] == "**":
        return True
    return match(parts[0], pattern[0]) and glob_may_enter(pattern[1:], parts[1:], match)


def read_regular(parent_fd: int, name: str, limit: int) -> Optional[bytes]:
    """The bytes of a regular file, at most ``limit`` + 1 of them; None for anything else (a link is not
    followed)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        parts = []
        wanted = limit + 1
        while wanted > 0:
            chunk = os.read(fd, min(wanted, 1 << 20))
            if not chunk:
                break
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


def open_folder(path: str) -> int:
    """A descriptor of the folder ``path`` (absolute), opened one component at a time without following a link on
    the way; OSError when a component is missing, not a folder, or a link."""
    fd = os.open("/", DIRECTORY_FLAGS)
    try:
        for part in [part for part in path.split("/") if part not in ("", ".")]:
            if part == "..":
                raise OSError("a collect root may not climb: " + path)
            inner = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def collect_roots(folder: str, patterns: Sequence[str]) -> List[Tuple[str, List[List[str]]]]:
    """The folders to walk and the pattern components to match under each, in the patterns' order: a relative
    pattern is under ``folder``; an absolute one under its leading components that hold no wildcard."""
    roots: Dict[str, List[List[str]]] = {}
    for pattern in patterns:
        parts = pattern_parts(pattern)
        if parts is None:
            continue
        root = folder
        if pattern.startswith("/"):
            literal = 0
            while literal < len(parts) - 1 and not any(char in parts[literal] for char in "*?["):
                literal += 1
            root = "/" + "/".join(parts[:literal])
            parts = parts[literal:]
        roots.setdefault(root, []).append(parts)
    return list(roots.items())


class Collecting:
    """What is left of a collect's budget (bytes) and count (files; 0: no count limit), and what was left out."""

    SKIPPED_NAMED = 100  # skipped files named one by one; past that, only how many more

    def __init__(self, budget: int, count: int) -> None:
        self.bytes_left = budget
        self.files_left = count if count > 0 else -1
        self.skipped: List[str] = []
        self.more_skipped = 0

    def skip(self, name: str) -> None:
        if len(self.skipped) < self.SKIPPED_NAMED:
            self.skipped.append(name)
        else:
            self.more_skipped += 1

    def report(self) -> List[str]:
        if self.more_skipped:
            return [*self.skipped, "(%d more)" % self.more_skipped]
        return list(self.skipped)


def collect_files(
    folder: str, patterns: Sequence[str], budget: int, count: int = 0, since: Optional[int] = None
) -> List[str]:
    """Send the regular files that match ``patterns`` as ``FILE`` frames: a relative pattern names files under
    ``folder`` (sent by their name relative to it), an absolute one files anywhere (sent by their absolute path).
    In walk order (a folder's files, then its subfolders, each sorted by name), until one does not fit what is
    left of ``budget`` bytes or ``count`` files: that one and every later match are skipped. ``since``: only files
    outside ``folder`` changed at or after that time (nanoseconds, ``change_clock``) are sent; the run's own folder
    is new, and what the host wrote there before the run (its code file) is the run's too. Links are never
    followed, on the way to a folder either; anything but a regular file is ignored. Returns the skipped names."""
    state = Collecting(budget, count)
    for root, wanted in collect_roots(folder, patterns):
        prefix = root.rstrip("/") + "/" if root != folder else ""
        try:
            root_fd = open_folder(root)
        except OSError:
            continue
        try:
            collect_under(root_fd, prefix, wanted, state, None if root == folder else since)
        finally:
            os.close(root_fd)
    return state.report()


def collect_under(
    top_fd: int, prefix: str, wanted: List[List[str]], state: Collecting, since: Optional[int] = None
) -> None:
    from fnmatch import fnmatchcase  # only collecting needs it (it imports re)

    for root, folders, names, root_fd in os.fwalk(".", follow_symlinks=False, dir_fd=top_fd):
        relative = os.path.relpath(root, ".")
        base = [] if relative == "." else relative.split(os.sep)
        folders[:] = sorted(
            name for name in folders if any(glob_may_enter(parts, [*base, name], fnmatchcase) for parts in wanted)
        )
        for name in sorted(names):
            path = [*base, name]
            if not any(glob_match(parts, path, fnmatchcase) for parts in wanted):
                continue
            try:
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or (since is not None and info.st_ctime_ns < since):
                continue
            relative_name = prefix + "/".join(path)
            if state.skipped or state.files_left == 0:
                state.skip(relative_name)
                continue
            data = read_regular(root_fd, name, state.bytes_left)
            if data is None:
                continue
            if len(data) > state.bytes_left:
                state.skip(relative_name)
                continue
            send_file(relative_name, data)
            state.bytes_left -= len(data)
            state.files_left -= 1


def change_clock() -> int:
    """A time (in nanoseconds) that every file changed before this call is older than, and no file changed after
    it is: the clock the kernel stamps changes with (the coarse one) read just past the start of its next tick (a
    file changed in the current tick has the current tick's time). ``time.time_ns()`` where that clock is not
    available."""
    import time

    clock = getattr(time, "CLOCK_REALTIME_COARSE", 5)
    try:
        now = time.clock_gettime_ns(clock)
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            later = time.clock_gettime_ns(clock)
            if later != now:
                return later
            time.sleep(0.0005)
        return now
    except OSError:
        return time.time_ns()


def which(name: str) -> Optional[str]:
    """``name`` on the code's PATH, as the code would find it (run as the code's effective user)."""
    for folder in INHERITED_ENVIRONMENT.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK, effective_ids=True):
            return candidate
    return None


def expand(value: str, temp_dir: Optional[str]) -> str:
    return value.replace("{tmp}", temp_dir) if temp_dir else value


def deepest_existing(path: str) -> str:
    while not os.path.isdir(path) and path not in ("", "/"):
        path = os.path.dirname(path)
    return path or "/"


def put_files(request: Dict[str, Any]) -> Dict[str, Any]:
    """Unpack the host's tar into ``parent`` (created if missing), as this process's user."""
    parent = request[Field.PARENT]
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent)
        import io  # only copies need these: keep them off the helper's start-up
        import tarfile

        with tarfile.open(fileobj=io.BytesIO(request[Field.PAYLOAD])) as archive:
            archive.extractall(parent)  # the host made this archive from the caller's files
    except OSError as error:
        return put_failed_reply(error.errno, str(error), deepest_existing(parent))
    return empty_reply()
