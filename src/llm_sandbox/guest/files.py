"""Files of a run (code files, its temporary folder) and copies into the sandbox, done as the helper's user."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # for checkers only: at run time the guest is one joined source and imports what it must
    from typing import Any, Dict, List, Optional


def write_files(files: List[Dict[str, Any]]) -> None:
    for item in files:
        path = item["path"]
        parent = os.path.dirname(path)
        if parent and not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(item["content"].encode("utf-8", "surrogateescape"))
        os.chmod(path, int(item.get("mode", 0o644)))


def make_temp_dir(request: Dict[str, Any]) -> Optional[str]:
    if not request.get("tempdir"):
        return None
    base = os.environ.get("TMPDIR") or "/tmp"
    for _attempt in range(100):
        path = os.path.join(base, "llm-sandbox-run-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise OSError("cannot create a temporary folder in " + base)


def remove_tree(path: str) -> None:
    """Remove a folder the run used, never following a link the code may have planted in it."""
    for root, folders, files in os.walk(path, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in folders:
            entry = os.path.join(root, name)
            try:
                os.unlink(entry) if os.path.islink(entry) else os.rmdir(entry)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def which(name: str) -> Optional[str]:
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
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
    parent = request["parent"]
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent)
        import io  # only copies need these: keep them off the helper's start-up
        import tarfile

        with tarfile.open(fileobj=io.BytesIO(request["payload"])) as archive:
            archive.extractall(parent)  # the host made this archive from the caller's files
    except OSError as error:
        return {"errno": error.errno, "reason": str(error), "ancestor": deepest_existing(parent)}
    return {}
