"""Copying files and directories into and out of a sandbox.

Into: the tar is made locally and unpacked by the in-sandbox helper as the code user (missing parents created);
where that user may not write (e.g. a new ``/container/path``), the engine unpacks it instead.
Out of: the engine's archive is hostile (the code in the sandbox made its contents) and goes through
``archives.safe_extract``: size checked before and while reading, links and special files refused, nothing written
outside ``dest`` and nothing partial left behind. A file is written at ``dest``; a directory at ``dest/<its name>``.
"""

from __future__ import annotations

import errno
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from llm_sandbox.archives import pack_path, safe_extract
from llm_sandbox.backends.base import Command
from llm_sandbox.errors import ContainerError, FileTooLargeError, LocalFileNotFoundError, ValidationError

if TYPE_CHECKING:
    from llm_sandbox.sandbox import Sandbox

logger = logging.getLogger(__name__)


def sandbox_path(workdir: str, path: str) -> str:
    """An absolute, normalised path inside the sandbox; relative paths are taken from the workdir."""
    if not path or "\0" in path:
        raise ValidationError(f"{path!r} is not a usable path inside the sandbox")
    return posixpath.normpath(posixpath.join(workdir, path))


def copy_to_runtime(sandbox: Sandbox, src: str, dest: str) -> None:
    local = Path(src)
    if not local.exists():
        raise LocalFileNotFoundError(f"no such local file or directory: {src}")
    runner = sandbox.runner
    target = sandbox_path(sandbox.spec.workdir, dest)
    parent, name = posixpath.split(target)
    if not name:
        raise ValidationError(f"dest {dest!r} must name a file or directory, not the root")
    # Fast path: the helper unpacks it as the code user, so the code can change what it was given.
    reply = runner.put_files(parent or "/", pack_path(local, name))
    if not reply.failed:
        return
    if reply.errno not in (errno.EACCES, errno.EPERM):
        raise ContainerError(f"cannot copy into {target}: {reply.reason}")
    # The code user may not write there (a new top-level folder): the engine may, as root. Only the missing
    # folders are in the archive, put at the deepest one that exists, so no existing folder is touched. That folder
    # is found by the host, never taken from the guest's reply, and never through a link the code could have put
    # on the way (root would follow it: a link to /etc would let the code's files land there).
    ancestor = _deepest_real_folder(sandbox, target)
    owner = runner.code_uid if sandbox.owned else None
    archive = pack_path(local, posixpath.relpath(target, ancestor), uid=owner, gid=owner)
    sandbox.put_archive(ancestor, archive, keep_owner=owner is not None)


# Run as root by absolute path: walks "$1" from / without following anything (every component is checked for a
# link before it is entered), prints the deepest folder that exists, or exits 3 naming the link or file in the way.
# POSIX sh, since /bin/sh is the one program every container the library uses has.
_WALK = (
    'deepest=/; IFS=/; set -f; for part in $1; do [ -n "$part" ] || continue; step="${deepest%/}/$part"; '
    'if [ -L "$step" ]; then echo "$step is a link" >&2; exit 3; fi; [ -e "$step" ] || break; '
    'if [ ! -d "$step" ]; then echo "$step is not a folder" >&2; exit 3; fi; deepest=$step; done; '
    'printf %s "$deepest"'
)


def _deepest_real_folder(sandbox: Sandbox, target: str) -> str:
    # The backend's own exec: no command prefix (an environment wrapper found on PATH would run as root).
    result = sandbox.backend.exec(Command(["/bin/sh", "-c", _WALK, "sh", target], user="0"))
    said = (result.stderr or result.stdout).decode("utf-8", "replace").strip()
    if result.exit_code == 3:
        raise ContainerError(f"cannot copy into {target}: {said}; copy to a path without links")
    if result.exit_code != 0:
        raise ContainerError(f"cannot copy into {target}: the code's user may not write there ({said})")
    return result.stdout.decode("utf-8", "replace")


def copy_from_runtime(sandbox: Sandbox, src: str, dest: str, limit: int) -> None:
    source = sandbox_path(sandbox.spec.workdir, src)
    archive = sandbox.get_archive(source)
    try:
        if not archive.is_dir and archive.size > limit:
            raise FileTooLargeError(
                f"{source} is {archive.size} bytes, over the copy limit of {limit} bytes (raise copy_limit to allow it)"
            )
        target = Path(dest)
        if archive.is_dir and posixpath.basename(source):
            # A directory lands under dest with its own name (dest/<name>/...), whether dest exists or not: where
            # the reference implementation puts it, so code written for it finds its files.
            target = target / posixpath.basename(source)
        safe_extract(archive.chunks, target, max_bytes=limit)
    finally:
        archive.close()
    logger.debug("copied %s out of the sandbox to %s", source, dest)
