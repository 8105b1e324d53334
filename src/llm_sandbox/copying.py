"""Copying files and directories into and out of a sandbox.

Into: the tar is made locally and unpacked by the in-sandbox helper as the code user (missing parents created);
where that user may not write (e.g. a new ``/container/path``), the engine unpacks it instead.
Out of: the engine's archive is hostile (the code in the sandbox made its contents) and goes through
``archives.safe_extract``: size checked before and while reading, links and special files refused, nothing written
outside ``dest`` and nothing partial left behind.
"""

from __future__ import annotations

import errno
import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from llm_sandbox.archives import pack_path, safe_extract
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
    # The code user may not write there (a new top-level folder): the engine may. Only the missing folders are
    # in the archive, put at the deepest one that exists, so no existing folder is touched.
    ancestor = reply.ancestor
    owner = runner.code_uid if sandbox.owned else None
    archive = pack_path(local, posixpath.relpath(target, ancestor), uid=owner, gid=owner)
    sandbox.put_archive(ancestor, archive, keep_owner=owner is not None)


def copy_from_runtime(sandbox: Sandbox, src: str, dest: str, limit: int) -> None:
    source = sandbox_path(sandbox.spec.workdir, src)
    archive = sandbox.get_archive(source)
    try:
        if not archive.is_dir and archive.size > limit:
            raise FileTooLargeError(
                f"{source} is {archive.size} bytes, over the copy limit of {limit} bytes (raise copy_limit to allow it)"
            )
        safe_extract(archive.chunks, Path(dest), max_bytes=limit)
    finally:
        archive.close()
    logger.debug("copied %s out of the sandbox to %s", source, dest)
