"""A backend for tests only: the guest helper and every command run as plain subprocesses of this host.

There is no container and NO ISOLATION of any kind: code run through it runs as the calling user, with the calling
process's environment, on the host's filesystem. It exists so that the whole hot path (session -> runner -> link
-> guest helper) can be tested without an engine::

    from llm_sandbox import SandboxSession
    from llm_sandbox.testing.local import LOCAL_BACKEND

    with SandboxSession(backend=LOCAL_BACKEND, workdir=str(tmp_path)) as session:
        print(session.run("print(6 * 7)").stdout)

Its entry declares no capability but ``interactive``: that is what keeps the guest helper from ever
sending kill(-1), which on a host would reach every process of the user, and from reading the host's cgroup
counters as if they were a sandbox's. A run's processes are still all killed at a timeout: the helper is their
subreaper and kills its own descendants only. Never run untrusted code through it.

``Sandbox.reset()`` follows the same declaration: it kills the helper's own descendants, but it also removes what
the calling user owns at the top of the workdir and of the helper's TMPDIR, so give a local sandbox folders of
its own (``workdir=`` and a ``TMPDIR`` in ``runtime_configs["environment"]`` or the environment).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Generator
from typing import Any

from llm_sandbox.backends.base import (
    ABANDONED_EXIT,
    ArchiveStream,
    Backend,
    BackendCapabilities,
    Command,
    ContainerSpec,
    DuplexStream,
    ExecOutput,
)
from llm_sandbox.backends.host_process import HostProcessStream, read_bounded
from llm_sandbox.backends.registry import BackendEntry
from llm_sandbox.errors import ContainerError, SandboxFileNotFoundError, ValidationError

__all__ = ["LOCAL_BACKEND", "LocalBackend", "LocalStream"]

ARCHIVE_CHUNK = 1024 * 1024
# The stream over a helper's pipes is the one every host-process backend uses (its stderr kept for errors).
LocalStream = HostProcessStream


class LocalBackend(Backend):
    """A "sandbox" that is this host: commands are subprocesses, paths are host paths, the workdir a host folder."""

    def __init__(self, client: Any = None) -> None:
        if client is not None:
            raise ValidationError("the local backend takes no client: it runs processes on this host")
        self._id: str | None = None
        self._workdir = "/"
        self._environment: dict[str, str] = {}
        self._streams: list[LocalStream] = []

    # Provisioner -----------------------------------------------------------------------------------------------

    @property
    def container_id(self) -> str:
        if self._id is None:
            raise ContainerError("no local sandbox is bound to this backend yet")
        return self._id

    def create(self, spec: ContainerSpec) -> None:
        """Bind to the host, with ``spec.workdir`` (made when missing) as the working folder; the image is unused."""
        os.makedirs(spec.workdir, exist_ok=True)
        self._workdir = spec.workdir
        self._environment = dict(spec.environment)
        self._id = f"local-{uuid.uuid4().hex[:12]}"
        self.owned = True

    def attach(self, container_id: str) -> None:
        raise ContainerError(
            f"the local backend cannot attach to {container_id!r}: it has no containers, it runs processes on this "
            "host (open a new session instead)"
        )

    def is_running(self) -> bool:
        return self._id is not None

    def remove(self) -> None:
        """Forget the binding and end any process still streaming; the workdir (the caller's folder) stays."""
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
        self._id = None

    # Channel ---------------------------------------------------------------------------------------------------

    def _environment_for(self, command: Command) -> dict[str, str]:
        return {**os.environ, **self._environment, **dict(command.environment)}

    def _cwd(self, command: Command) -> str:
        return command.workdir or self._workdir

    def exec(self, command: Command) -> ExecOutput:
        """Run ``command.argv`` to completion (``command.user`` is ignored: the entry claims no user_switch), within
        ``command.timeout`` (then it is killed, with its session, and ContainerError raised) and reading at most
        ``command.output_limit`` bytes of each stream (then it is killed too, its output cut: ``truncated``)."""
        self._require_bound()
        try:
            process = subprocess.Popen(
                list(command.argv),
                cwd=self._cwd(command),
                env=self._environment_for(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError as error:
            return ExecOutput(127, b"", f"{command.argv[0]}: {error.strerror}\n".encode())
        except PermissionError as error:
            return ExecOutput(126, b"", f"{command.argv[0]}: {error.strerror}\n".encode())
        try:
            stdout, stderr, truncated = read_bounded(process, command.timeout, command.output_limit)
        except TimeoutError:
            raise ContainerError(
                f"{command.describe()} did not finish within its deadline of {command.timeout:g} s on this host; "
                "it was killed"
            ) from None
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        if truncated:
            return ExecOutput(ABANDONED_EXIT, stdout, stderr, truncated=True)
        code = process.returncode
        return ExecOutput(code if code >= 0 else 128 - code, stdout, stderr)

    def open_stream(self, command: Command) -> DuplexStream:
        self._require_bound()
        try:
            process = subprocess.Popen(
                list(command.argv),
                cwd=self._cwd(command),
                env=self._environment_for(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as error:
            raise ContainerError(f"could not start {command.argv[0]!r} on this host: {error}") from error
        stream = LocalStream(process)
        self._streams = [item for item in self._streams if item.process.poll() is None]
        self._streams.append(stream)
        return stream

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        """Extract a tar into the existing host folder ``path`` (the headers' owners are never applied here)."""
        self._require_bound()
        if not os.path.isdir(path):
            raise SandboxFileNotFoundError(f"{path} is not an existing folder")
        with tempfile.TemporaryFile() as spool:
            spool.write(data)
            spool.seek(0)
            with tarfile.open(fileobj=spool) as archive:
                archive.extractall(path, filter="data")

    def get_archive(self, path: str) -> ArchiveStream:
        """A tar of ``path`` under its own name (links stored as links), made only when read."""
        self._require_bound()
        try:
            stat = os.lstat(path)
        except FileNotFoundError:
            raise SandboxFileNotFoundError(f"{path} does not exist") from None
        chunks = _tar_chunks(path)
        return ArchiveStream(
            chunks=chunks,
            size=stat.st_size,
            is_dir=os.path.isdir(path) and not os.path.islink(path),
            close=chunks.close,
        )

    def _require_bound(self) -> None:
        if self._id is None:
            raise ContainerError("the local sandbox was removed (or never created)")


def _tar_chunks(path: str) -> Generator[bytes, None, None]:
    name = os.path.basename(os.path.normpath(path)) or "."
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(path, arcname=name)
        spool.seek(0)
        while chunk := spool.read(ARCHIVE_CHUNK):
            yield chunk


#: The entry to pass as ``backend=``: it declares no capability (see the module's docstring for why that matters).
# Interactive sessions are the one thing it declares: a kernel is a helper child like any run, and nothing of
# the guarantees above depends on it.
LOCAL_BACKEND = BackendEntry(
    "local", "llm_sandbox.testing.local:LocalBackend", frozenset(), BackendCapabilities(interactive=True)
)
