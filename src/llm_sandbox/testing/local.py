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
import select
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from typing import IO, Any

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
from llm_sandbox.backends.registry import BackendEntry
from llm_sandbox.errors import ContainerError, SandboxFileNotFoundError, ValidationError

__all__ = ["LOCAL_BACKEND", "LocalBackend", "LocalStream"]

ARCHIVE_CHUNK = 1024 * 1024
READ_CHUNK = 65536
STDERR_KEEP = 4096
# How long a helper gets to exit on its own once its input is closed (it kills its runs first) before it is killed.
EXIT_GRACE_S = 10.0


class LocalStream:
    """Stdin and stdout of a host subprocess as a ``DuplexStream``; its stderr is kept in ``stderr_tail``."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise ValueError("the process needs stdin, stdout and stderr pipes")
        self.process = process
        self._stdin: IO[bytes] = process.stdin
        self._stdout_fd = process.stdout.fileno()
        self._closed = False
        self.stderr_tail = b""  # the end of what the process wrote on stderr, for error messages
        self._stderr_reader = threading.Thread(
            target=self._collect_stderr, args=(process.stderr,), name="local-stream-stderr", daemon=True
        )
        self._stderr_reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _collect_stderr(self, stderr: IO[bytes]) -> None:
        fd = stderr.fileno()
        while True:
            try:
                data = os.read(fd, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            self.stderr_tail = (self.stderr_tail + data)[-STDERR_KEEP:]

    def send(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def recv(self, timeout: float | None) -> bytes:
        """The next stdout bytes; b"" at the end of the stream; TimeoutError when none came within ``timeout``."""
        if self._closed:
            return b""
        readable, _, _ = select.select([self._stdout_fd], [], [], None if timeout is None else max(0.0, timeout))
        if not readable:
            raise TimeoutError("no answer from the local process in time")
        return os.read(self._stdout_fd, READ_CHUNK)

    def close(self) -> None:
        """Close stdin (the process sees end of input), wait for it to exit (kill it after a grace), reap it."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr_reader.join(timeout=EXIT_GRACE_S)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


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
            stdout, stderr, truncated = _read_bounded(process, command.timeout, command.output_limit)
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


def _read_bounded(process: subprocess.Popen[bytes], timeout: float, limit: int) -> tuple[bytes, bytes, bool]:
    """Both pipes of ``process`` until they end and it exits: (stdout, stderr, truncated once one went past
    ``limit``, which ends the reading at once); TimeoutError when that did not happen within ``timeout`` seconds."""
    assert process.stdout is not None
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    buffers = {process.stdout.fileno(): out, process.stderr.fileno(): err}
    open_fds = list(buffers)
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        readable, _, _ = select.select(open_fds, [], [], remaining)
        for fd in readable:
            data = os.read(fd, READ_CHUNK)
            if not data:
                open_fds.remove(fd)
                continue
            target = buffers[fd]
            room = limit - len(target)
            if len(data) > room:
                target += data[:room]
                return bytes(out), bytes(err), True
            target += data
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise TimeoutError from None
    return bytes(out), bytes(err), False


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
