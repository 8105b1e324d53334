"""The Bubblewrap backend: a sandbox that is a ``bwrap`` process tree on this host, with no container engine.

Its root is the filesystem of the same image a Docker or Podman sandbox runs, exported once per image id
(``bwrap_rootfs``) and mounted read-only under an overlay whose upper layer is the sandbox's scratch folder
(``bwrap_scratch``); how it is launched and entered is in ``bwrap_argv``, its limits in ``bwrap_cgroup``. The
guest helper runs in it as root with the helper's capabilities alone, and the code as the unprivileged code uid,
as on the engines. Installs are a step of their own (``install_step``): a one-off bwrap with the host's network
that writes the code's library prefix and workdir and nothing else. See docs/bubblewrap.md for what holds and
what does not.

Needs root on the host (mounts, cgroups, entering namespaces), ``bwrap`` and util-linux's ``nsenter``,
``unshare`` and ``prlimit``; the images need ``setpriv`` (util-linux, in every Debian image) and GNU tar.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from llm_sandbox.backends import bwrap_argv
from llm_sandbox.backends.base import (
    ABANDONED_EXIT,
    ArchiveStream,
    Backend,
    Command,
    ContainerSpec,
    DuplexStream,
    ExecOutput,
)
from llm_sandbox.backends.bwrap_cgroup import CgroupSet, create_cgroups
from llm_sandbox.backends.bwrap_rootfs import RootfsCache
from llm_sandbox.backends.bwrap_scratch import Scratch, make_scratch
from llm_sandbox.backends.host_process import HostProcessStream, read_bounded
from llm_sandbox.errors import ContainerError, SandboxFileNotFoundError, UnknownOptionError, ValidationError
from llm_sandbox.helper_launch import numeric_ids
from llm_sandbox.languages.base import USER_PREFIX

logger = logging.getLogger(__name__)

HOST_TOOLS = ("bwrap", "nsenter", "unshare", "prlimit")
START_TIMEOUT_S = 30.0
TRANSFER_TIMEOUT_S = 300.0
ARCHIVE_CHUNK = 1024 * 1024
MISSING_PATH_EXIT = 3
# Where a path's kind and size are read, as root in the sandbox: "d <size>" or "f <size>"; exit 3 when it is not.
STAT_SCRIPT = (
    'if [ -d "$1" ] && [ ! -L "$1" ]; then kind=d; elif [ -e "$1" ] || [ -L "$1" ]; then kind=f; else exit 3; fi; '
    'echo "$kind $(stat -c %s -- "$1")"'
)
PUT_SCRIPT = '[ -d "$1" ] || exit 3; cd "$1" && shift && exec tar -x -f - "$@"'
GET_SCRIPT = 'cd "$1" && exec tar -c -f - -- "$2"'

# bwrap's --die-with-parent ends the sandbox when the thread that started it exits (PR_SET_PDEATHSIG follows the
# thread): sandboxes are started from this one thread, which lives as long as the process. One per process id: a
# forked child has no copy of its parent's thread.
_launchers: dict[int, ThreadPoolExecutor] = {}
_launchers_lock = threading.Lock()


def _launcher_thread() -> ThreadPoolExecutor:
    with _launchers_lock:
        executor = _launchers.get(os.getpid())
        if executor is None:
            executor = _launchers[os.getpid()] = ThreadPoolExecutor(1, "llm-sandbox-bwrap-launcher")
        return executor


class BubblewrapBackend(Backend):
    """One sandbox as a bwrap process tree; execs enter its namespaces."""

    def __init__(self, client: Any = None) -> None:
        # A Docker or Podman client, when given, is where images are exported from.
        clients = None if client is None else {_engine_of(client): client}
        self._rootfs = RootfsCache(clients=clients)
        self._tools: dict[str, str] = {}
        self._scratch: Scratch | None = None
        self._cgroups: CgroupSet | None = None
        self._launcher: subprocess.Popen[bytes] | None = None
        self._init_pid = 0
        self._environment: dict[str, str] = {}
        self._spec: ContainerSpec | None = None
        self._window = False
        self._streams: list[HostProcessStream] = []
        self._lock = threading.Lock()

    # Provisioner -----------------------------------------------------------------------------------------------

    @property
    def container_id(self) -> str:
        if self._scratch is None:
            raise ContainerError("no bubblewrap sandbox is bound to this backend yet")
        return self._scratch.name

    def attach(self, container_id: str) -> None:
        raise ContainerError(
            f"the bubblewrap backend cannot attach to {container_id!r}: its sandboxes are process trees it starts "
            "itself, not containers that outlive it (container_id= does not apply; open a new session instead)"
        )

    def create(self, spec: ContainerSpec) -> None:
        self._tools = _host_tools()
        rootfs = self._rootfs.rootfs(spec.image)
        self._spec = spec
        configured = dict(spec.runtime_configs.get("environment") or {})
        self._environment = {**rootfs.environment, **configured, **dict(spec.environment)}
        self._scratch = make_scratch(dict(spec.labels))
        self.owned = True
        try:
            self._prepare_places(spec)
            limits = spec.limits
            disk = spec.disk
            memory = limits.memory_bytes + (disk.limit if disk is not None else 0) if limits.memory_bytes else None
            self._cgroups = create_cgroups(self._scratch.name, memory=memory, pids=limits.pids, cpus=limits.cpus)
            self._launch(spec, str(rootfs.path))
        except BaseException:
            self.remove()
            raise

    def _prepare_places(self, spec: ContainerSpec) -> None:
        """The places the code writes, made in the overlay's upper layer (so they exist in the root, with these
        owners, before it is mounted): the workdir and library prefix the code's, the temporary folders open."""
        assert self._scratch is not None
        owner = numeric_ids(spec.code_user) or (0, 0)
        owned = {spec.workdir, USER_PREFIX}
        for place in (spec.workdir, "/tmp", "/var/tmp", "/run/lock", USER_PREFIX):  # noqa: S108 - sandbox paths
            folder = self._scratch.upper / place.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            if place in owned:
                os.chown(folder, *owner)
                folder.chmod(0o755)
            else:
                folder.chmod(0o1777)

    def _launch(self, spec: ContainerSpec, lower: str) -> None:
        assert self._scratch is not None
        assert self._cgroups is not None
        scratch = self._scratch
        mounts = bwrap_argv.Mounts(lower, str(scratch.upper), str(scratch.work), str(scratch.root))
        places = []
        if spec.disk is not None:
            for place in spec.disk.places:
                owner = spec.disk.owner if place in spec.disk.owned and spec.disk.owner is not None else None
                places.append(
                    bwrap_argv.TmpfsPlace(place, spec.disk.limit, 0o755 if owner else 0o1777, owner or (0, 0))
                )
        info_read, info_write = os.pipe()
        try:
            bwrap = bwrap_argv.bwrap_argv(
                mounts.root,
                spec.workdir,
                spec.command,
                info_fd=info_write,
                read_only_binds=self._cgroups.bind_targets(),
                network=spec.network_enabled,
            )
            bwrap[0] = self._tools["bwrap"]
            argv = bwrap_argv.launch_argv(
                mounts, places, self._cgroups.procs_files, bwrap, copy_up=not spec.default_image
            )
            argv[0] = self._tools["unshare"]
            self._launcher = _launcher_thread().submit(_start_launcher, argv, info_write).result()
            scratch.record_launcher(self._launcher.pid)
        finally:
            os.close(info_write)
        try:
            info = _read_info(info_read, self._launcher)
        finally:
            os.close(info_read)
        self._init_pid = int(info["child-pid"])
        _wait_ready(self._launcher)

    def is_running(self) -> bool:
        return self._launcher is not None and self._launcher.poll() is None

    def remove(self) -> None:
        """End every process of the sandbox (its PID 1 first: the pid namespace goes with it), then remove its
        cgroups and scratch folder. Idempotent."""
        with self._lock:
            streams, self._streams = self._streams, []
            launcher, self._launcher = self._launcher, None
            cgroups, self._cgroups = self._cgroups, None
            scratch, self._scratch = self._scratch, None
        if self._init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._init_pid, signal.SIGKILL)
            self._init_pid = 0
        if launcher is not None:
            with contextlib.suppress(ProcessLookupError):
                launcher.kill()
            launcher.wait()
            if launcher.stderr is not None:
                launcher.stderr.close()
        for stream in streams:
            stream.close()
        if cgroups is not None:
            cgroups.remove()
        if scratch is not None:
            scratch.remove()

    def set_network(self, enabled: bool) -> None:
        """Open (or close) the install window: the install step that follows gets the host's network."""
        self._require_bound()
        self._window = enabled

    # Channel ---------------------------------------------------------------------------------------------------

    def _enter(self, user: str | None, workdir: str | None, capabilities: Sequence[str], limit: bool) -> list[str]:
        """The host argv that runs what follows in the sandbox, as ``user``."""
        assert self._spec is not None
        assert self._cgroups is not None
        file_size = self._spec.limits.file_size_bytes if limit and "file_size_limit" not in self._spec.relaxed else None
        argv = bwrap_argv.join_argv(self._cgroups.procs_files, file_size)
        argv += bwrap_argv.nsenter_argv(self._init_pid, self._tools["nsenter"])
        return argv + bwrap_argv.user_argv(user, capabilities, workdir or self._spec.workdir)

    def _env(self, command: Command) -> dict[str, str]:
        return {**self._environment, **dict(command.environment)}

    def exec(self, command: Command) -> ExecOutput:
        self._require_bound()
        argv = [*self._enter(command.user, command.workdir, bwrap_argv.HELPER_CAPABILITIES, True), *command.argv]
        return self._run(argv, command)

    def _run(self, argv: list[str], command: Command) -> ExecOutput:
        process = subprocess.Popen(
            argv,
            env=self._env(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            stdout, stderr, truncated = read_bounded(process, command.timeout, command.output_limit)
        except TimeoutError:
            raise ContainerError(
                f"{command.describe()} did not finish within its deadline of {command.timeout:g} s in the "
                "bubblewrap sandbox; it was killed"
            ) from None
        finally:
            _end(process)
        if truncated:
            return ExecOutput(ABANDONED_EXIT, stdout, stderr, truncated=True)
        code = process.returncode
        return ExecOutput(code if code >= 0 else 128 - code, stdout, stderr)

    def install_step(self, command: Command) -> ExecOutput:
        """Run an install as a step of its own: a one-off bwrap on the sandbox's root, with the host's network
        while the install window is open (``set_network``) or the sandbox has the network anyway. Root's installs
        (system packages) may write the sandbox's root; any other user's only the code's library prefix and the
        workdir."""
        self._require_bound()
        assert self._spec is not None
        assert self._launcher is not None
        assert self._cgroups is not None
        assert self._scratch is not None
        root = str(self._scratch.root)
        # The workdir too: a Go install records the module's requirements in its go.mod, as on the engines.
        writable = None if (command.user or "0") in ("0", "root", "0:0") else [USER_PREFIX, self._spec.workdir]
        capabilities = bwrap_argv.HELPER_CAPABILITIES
        file_size = None if "file_size_limit" in self._spec.relaxed else self._spec.limits.file_size_bytes
        argv = bwrap_argv.join_argv(self._cgroups.procs_files, file_size)
        argv += [self._tools["nsenter"], "--target", str(self._launcher.pid), "--mount", "--"]
        workdir = command.workdir or self._spec.workdir
        step = bwrap_argv.install_bwrap_argv(root, writable, workdir, capabilities)
        if not (self._window or self._spec.network_enabled):
            step.insert(1, "--unshare-net")
        step[0] = self._tools["bwrap"]
        # "{tmp}" in an install argv is the run's own temporary folder, which the guest helper fills in for the
        # runs it starts: here the step's /tmp, a tmpfs of its own.
        install = [item.replace("{tmp}", "/tmp") for item in command.argv]  # noqa: S108 - the step's private tmpfs
        argv += [*step, *bwrap_argv.user_argv(command.user, capabilities, workdir), *install]
        return self._run(argv, command)

    def open_stream(self, command: Command) -> DuplexStream:
        self._require_bound()
        argv = [*self._enter(command.user, command.workdir, bwrap_argv.HELPER_CAPABILITIES, True), *command.argv]
        try:
            process = subprocess.Popen(
                argv, env=self._env(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as error:
            raise ContainerError(f"could not enter the bubblewrap sandbox: {error}") from error
        stream = HostProcessStream(process)
        with self._lock:
            self._streams = [item for item in self._streams if item.process.poll() is None]
            self._streams.append(stream)
        return stream

    def _transfer(self, script: str, *arguments: str) -> list[str]:
        """A file transfer's argv: root with the transfer capabilities, no file-size limit (as an engine's copy)."""
        return [
            *self._enter("0", "/", bwrap_argv.TRANSFER_CAPABILITIES, False),
            "/bin/sh",
            "-c",
            script,
            "sh",
            *arguments,
        ]

    def put_archive(self, path: str, data: bytes, *, keep_owner: bool = False) -> None:
        """Extract a tar into the existing folder ``path``, by GNU tar as root in the sandbox (it keeps members
        in the folder: no absolute names, no "..", no writing through a link it extracted)."""
        self._require_bound()
        owner = ["--same-owner", "--numeric-owner"] if keep_owner else ["--no-same-owner"]
        process = subprocess.Popen(
            self._transfer(PUT_SCRIPT, path, *owner, "--no-overwrite-dir"),
            env=self._environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(data, timeout=TRANSFER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ContainerError(f"copying into {path} did not finish within {TRANSFER_TIMEOUT_S:g} s") from None
        finally:
            _end(process)
        if process.returncode == MISSING_PATH_EXIT:
            raise SandboxFileNotFoundError(f"{path} is not an existing folder in the sandbox")
        if process.returncode != 0:
            said = stderr.decode("utf-8", "replace").strip()
            raise ContainerError(f"copying into {path} failed: {said}")

    def get_archive(self, path: str) -> ArchiveStream:
        """A tar of ``path`` under its own name (links stored as links), read from GNU tar as root in the
        sandbox as it writes it."""
        self._require_bound()
        stat = self._run(self._transfer(STAT_SCRIPT, path), Command(["stat"], timeout=TRANSFER_TIMEOUT_S))
        if stat.exit_code == MISSING_PATH_EXIT:
            raise SandboxFileNotFoundError(f"{path} does not exist in the sandbox")
        kind, _, size = stat.stdout.decode().strip().partition(" ")
        if stat.exit_code != 0 or not size.isdigit():
            raise ContainerError(f"could not read {path} in the sandbox: {stat.stderr.decode('utf-8', 'replace')}")
        normal = os.path.normpath(path)
        parent, name = os.path.dirname(normal) or "/", os.path.basename(normal) or "."
        process = subprocess.Popen(
            self._transfer(GET_SCRIPT, parent, name),
            env=self._environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        chunks = _chunks(process)
        return ArchiveStream(chunks=chunks, size=int(size), is_dir=kind == "d", close=chunks.close)

    def _require_bound(self) -> None:
        if self._scratch is None or self._launcher is None:
            raise ContainerError("the bubblewrap sandbox was removed (or never created)")


def _engine_of(client: Any) -> str:
    return "podman" if type(client).__module__.startswith("podman") else "docker"


def _host_tools() -> dict[str, str]:
    found = {tool: shutil.which(tool) for tool in HOST_TOOLS}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        raise ContainerError(
            f"the bubblewrap backend needs {', '.join(missing)} on this host: install the Debian packages "
            "bubblewrap and util-linux (apt-get install bubblewrap util-linux)"
        )
    if os.geteuid() != 0:
        raise ContainerError("the bubblewrap backend needs root on the host (it mounts, and sets up cgroups)")
    return {tool: str(path) for tool, path in found.items()}


def _start_launcher(argv: list[str], info_fd: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(info_fd,),
        start_new_session=True,
    )


def _read_info(fd: int, launcher: subprocess.Popen[bytes]) -> dict[str, Any]:
    """bwrap's JSON on its info fd (the PID 1's host pid): ContainerError with its stderr when it ends instead."""
    data = b""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([fd], [], [], max(0.0, remaining))
        chunk = os.read(fd, 65536) if readable else b""
        data += chunk
        if not chunk:
            break
    try:
        info = json.loads(data)
        if isinstance(info, dict) and "child-pid" in info:
            return info
    except ValueError:
        pass
    with contextlib.suppress(ProcessLookupError):
        launcher.kill()
    stderr: IO[bytes] | None = launcher.stderr
    said = stderr.read().decode("utf-8", "replace").strip() if stderr is not None else ""
    raise ContainerError(f"the bubblewrap sandbox did not start: {said or 'no word from bwrap'}")


def _wait_ready(launcher: subprocess.Popen[bytes]) -> None:
    """Wait for the sandbox's first command to say "ready" (its root is mounted, its namespaces complete)."""
    assert launcher.stdout is not None
    fd = launcher.stdout.fileno()
    readable, _, _ = select.select([fd], [], [], START_TIMEOUT_S)
    said = os.read(fd, 64) if readable else b""
    launcher.stdout.close()
    if said.startswith(b"ready"):
        return
    with contextlib.suppress(ProcessLookupError):
        launcher.kill()
    stderr = launcher.stderr.read().decode("utf-8", "replace").strip() if launcher.stderr is not None else ""
    raise ContainerError(f"the bubblewrap sandbox did not start its keep-alive command: {stderr or 'no word'}")


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _chunks(process: subprocess.Popen[bytes]) -> Generator[bytes, None, None]:
    assert process.stdout is not None
    try:
        while chunk := process.stdout.read(ARCHIVE_CHUNK):
            yield chunk
    finally:
        _end(process)


#: The runtime_configs a bubblewrap sandbox understands: the code's user and the sandbox's environment variables.
#: Limits come from the session's options.
RUNTIME_KEYS = frozenset({"user", "environment"})


def validate_runtime_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """``runtime_configs`` for the bubblewrap backend: the keys of an engine's container options mean nothing here,
    and are refused by name rather than ignored."""
    for key, value in configs.items():
        if key not in RUNTIME_KEYS:
            raise UnknownOptionError(
                f"runtime_configs[{key!r}] means nothing for the bubblewrap backend (its sandboxes are not "
                f"containers); the keys it accepts: {', '.join(sorted(RUNTIME_KEYS))}"
            )
        if key == "user" and not isinstance(value, str):
            raise ValidationError(f"runtime_configs['user'] must be a user as a string ('uid:gid'), not {value!r}")
        if key == "environment" and not (
            isinstance(value, Mapping) and all(isinstance(item, str) for pair in value.items() for item in pair)
        ):
            raise ValidationError(f"runtime_configs['environment'] must map names to strings, not {value!r}")
    return dict(configs)
