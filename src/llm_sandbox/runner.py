"""Runs code and commands through the guest helper, and turns its replies into results or errors.

The helper is started once per session over one attached stream; its first request (info) tells it what the
sandbox guarantees. A run is then one request: the code file, the argv, the limits; the helper writes the file into
a fresh temporary folder, runs, relays output, enforces the timeout and output cap, kills every leftover process,
sends back the files asked for, and removes the folder. Requests and replies are the typed ones of ``messages``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from llm_sandbox.backends.base import BackendCapabilities, Command, DuplexStream, ExecOutput
from llm_sandbox.config import RunPolicy, SandboxSpec
from llm_sandbox.data import ConsoleOutput
from llm_sandbox.errors import (
    ContainerError,
    DiskLimitError,
    MemoryLimitError,
    ProcessLimitError,
    SandboxDiedError,
    SandboxError,
    SandboxTimeoutError,
)
from llm_sandbox.guest import BOOTSTRAP, agent_payload
from llm_sandbox.guest.protocol import Limit
from llm_sandbox.link import GuestLink, GuestLinkError, OutputCallback
from llm_sandbox.messages import (
    DEFAULT_COLLECT_BUDGET,
    CloseReply,
    CloseRequest,
    CodeFile,
    ExecReply,
    ExecRequest,
    FeedReply,
    FeedRequest,
    InfoReply,
    InfoRequest,
    PutReply,
    PutRequest,
    Reply,
    Request,
    ResetReply,
    ResetRequest,
    SpawnReply,
    SpawnRequest,
)

logger = logging.getLogger(__name__)

# Finds an interpreter for the helper without assuming where the image keeps it.
# -I keeps the workdir and PYTHON* variables from shadowing the helper's stdlib modules; -S skips site-packages,
# which the helper does not use (the code it runs gets the normal interpreter).
LAUNCHER = (
    'for p in python3 python; do if command -v "$p" >/dev/null 2>&1; then exec "$p" -I -S -c "$1"; fi; done; '
    'echo "llm_sandbox: no python3 or python on PATH in this container" >&2; exit 127'
)
PYTHON_LOOKUP = "command -v python3 || command -v python || exit 127"
SIGXFSZ_EXIT = 128 + 25
SIGKILL_EXIT = 128 + 9
INFO_TIMEOUT_S = 30.0
PUT_TIMEOUT_S = 300.0
RESET_TIMEOUT_S = 60.0
CONTROL_TIMEOUT_S = 30.0  # spawn and close: no user code runs to its end meanwhile

ReplyType = TypeVar("ReplyType")


class HelperHost(Protocol):
    """What the runner needs of the sandbox it serves (``sandbox.Sandbox`` is one)."""

    spec: SandboxSpec
    capabilities: BackendCapabilities
    prefix: tuple[str, ...]

    @property
    def owned(self) -> bool: ...

    def exec(self, command: Command) -> ExecOutput: ...

    def open_stream(self, command: Command) -> DuplexStream: ...

    def is_running(self) -> bool: ...


class GuestRunner:
    """The sandbox's helper process and the requests it serves; each run is governed by a ``RunPolicy``."""

    def __init__(self, sandbox: HelperHost) -> None:
        self._sandbox = sandbox
        self._spec = sandbox.spec
        self._link: GuestLink | None = None
        self.info: dict[str, Any] = {}  # the guest's info reply, as sent (``guest_info`` has it typed)
        self.guest_info: InfoReply | None = None
        self.died = False  # the container stopped: a new one is needed (the session makes it, for owned ones)

    def start(self) -> None:
        sandbox = self._sandbox
        capabilities = sandbox.capabilities
        environment = {"HOME": self._spec.workdir} if sandbox.owned else {}
        stream = sandbox.open_stream(
            Command(
                ["/bin/sh", "-c", LAUNCHER, "llm-sandbox-guest", BOOTSTRAP],
                user=self._spec.code_user if sandbox.owned else None,
                environment=environment,
            )
        )
        self._link = GuestLink(stream)
        # What the sandbox guarantees goes to the guest in its first request, and nothing else tells it: kill(-1)
        # as the code's uid reaches only the code's processes when the sandbox has a pid namespace and the uid to
        # itself; the cgroup's counters tell a limit hit when the cgroup is the sandbox's own.
        request = InfoRequest(
            workdir=self._spec.workdir,
            kill_all=capabilities.pid_namespace and capabilities.own_uid,
            own_cgroup=capabilities.own_cgroup,
        )
        try:
            stream.send(agent_payload())
            reply = self._link.request(request, timeout=INFO_TIMEOUT_S)
            info = _typed(reply, _fields_of(InfoReply.from_fields))
        except (GuestLinkError, OSError, ContainerError) as error:
            self._link.close()
            self._link = None
            said = self._diagnose() or getattr(stream, "stderr_tail", b"").decode("utf-8", "replace").strip()
            raise ContainerError(
                "could not start the library's helper in the container: it needs /bin/sh and python3 (or python) "
                f"on PATH ({error}{'; it said: ' + said if said else ''})"
            ) from error
        self.info = reply.fields
        self.guest_info = info
        logger.debug("guest helper: %s", info)

    def _diagnose(self) -> str:
        """Why the helper could not start: run its interpreter lookup once, the same way, and report stderr."""
        try:
            probe = self._sandbox.exec(Command(["/bin/sh", "-c", PYTHON_LOOKUP]))
        except SandboxError:
            return ""
        # Docker reports an exec whose program is missing on stdout ("OCI runtime exec failed: ...").
        said = (probe.stderr or probe.stdout).decode("utf-8", "replace").strip()
        return said or ("no python3 or python on PATH" if probe.exit_code else "")

    def close(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    def _ensure_link(self) -> GuestLink:
        if self._link is not None and not self._link.broken:
            return self._link
        if self._link is not None:
            self._link.close()
            self._link = None
        if not self._sandbox.is_running():
            raise self._died()
        logger.info("restarting the sandbox's helper")
        self.start()
        assert self._link is not None
        return self._link

    def _request(
        self,
        request: Request,
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        payload: bytes | None = None,
        encoding_errors: str = "replace",
    ) -> Reply:
        """One request on the link (the helper restarted first if it was lost); a lost link is an error."""
        link = self._ensure_link()
        try:
            return link.request(
                request,
                timeout=timeout,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                payload=payload,
                encoding_errors=encoding_errors,
            )
        except GuestLinkError as error:
            if not self._sandbox.is_running():
                raise self._died() from error
            raise ContainerError(
                f"the sandbox's helper stopped answering ({error}); it is restarted on the next call"
            ) from error

    def _typed_request(
        self,
        request: Request,
        read: Callable[[Reply], ReplyType],
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        payload: bytes | None = None,
        encoding_errors: str = "replace",
    ) -> ReplyType:
        """A request whose reply is read by ``read``: an error reply raises ContainerError; a reply that breaks
        the protocol breaks the link (the helper is restarted on the next call) and raises ContainerError."""
        reply = self._request(
            request,
            timeout=timeout,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            payload=payload,
            encoding_errors=encoding_errors,
        )
        try:
            return _typed(reply, read)
        except GuestLinkError as error:
            self.close()
            raise ContainerError(
                f"the sandbox's helper stopped answering ({error}); it is restarted on the next call"
            ) from error

    # Requests ----------------------------------------------------------------------------------------------

    def run_code(
        self,
        code: str,
        policy: RunPolicy,
        *,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ConsoleOutput:
        request = self.code_request(code, policy, timeout=timeout)
        return outcome(self.execute(request, policy, on_stdout=on_stdout, on_stderr=on_stderr), timeout)

    def run_argv(
        self,
        argv: list[str],
        policy: RunPolicy,
        *,
        cwd: str | None,
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ConsoleOutput:
        request = self.argv_request(argv, policy, cwd=cwd, timeout=timeout)
        return outcome(self.execute(request, policy, on_stdout=on_stdout, on_stderr=on_stderr), timeout)

    def code_request(
        self,
        code: str,
        policy: RunPolicy,
        *,
        timeout: float | None,
        collect: Sequence[str] = (),
        collect_budget: int = DEFAULT_COLLECT_BUDGET,
    ) -> ExecRequest:
        """The request that runs ``code`` in the session's language (``collect``: files of ``{tmp}`` to send
        back, as glob patterns relative to it)."""
        language = self._spec.language
        path = language.code_path()
        argv = language.run_argv({"file": path, "dir": "{tmp}", "python": self.python, "workdir": self.workdir})
        warm = self.python if language.warm_interpreter else None
        return self._exec_request(
            argv,
            self.workdir,
            policy,
            timeout,
            files=(CodeFile(path, code),),
            warm_python=warm,
            collect=collect,
            collect_budget=collect_budget,
        )

    def argv_request(
        self,
        argv: Sequence[str],
        policy: RunPolicy,
        *,
        cwd: str | None,
        timeout: float | None,
        collect: Sequence[str] = (),
        collect_budget: int = DEFAULT_COLLECT_BUDGET,
    ) -> ExecRequest:
        """The request that runs ``argv`` in ``cwd`` (the workdir when None)."""
        return self._exec_request(
            argv, cwd or self.workdir, policy, timeout, collect=collect, collect_budget=collect_budget
        )

    def _exec_request(
        self,
        argv: Sequence[str],
        cwd: str,
        policy: RunPolicy,
        timeout: float | None,
        *,
        files: tuple[CodeFile, ...] = (),
        warm_python: str | None = None,
        collect: Sequence[str] = (),
        collect_budget: int = DEFAULT_COLLECT_BUDGET,
    ) -> ExecRequest:
        return ExecRequest(
            argv=(*self._sandbox.prefix, *argv),
            cwd=cwd,
            env=self._environment(),
            timeout=timeout,
            output_limit=policy.output_limit,
            files=files,
            warm_python=warm_python,
            collect=tuple(collect),
            collect_budget=collect_budget,
        )

    def execute(
        self,
        request: ExecRequest,
        policy: RunPolicy,
        *,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecReply:
        """Run one exec request; its output goes to the callbacks (or the log, when the policy streams)."""
        if on_stdout is None and policy.stream:
            on_stdout = _log_chunk("stdout")
        if on_stderr is None and policy.stream:
            on_stderr = _log_chunk("stderr")
        return self._typed_request(
            request,
            ExecReply.from_reply,
            timeout=request.timeout,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            encoding_errors=policy.encoding_errors,
        )

    def put_files(self, parent: str, archive: bytes) -> PutReply:
        """Unpack a tar into ``parent`` as the code user."""
        return self._typed_request(
            PutRequest(parent), _fields_of(PutReply.from_fields), timeout=PUT_TIMEOUT_S, payload=archive
        )

    def reset(self) -> None:
        """Kill every process the code left (long-lived ones included) and remove what it wrote in the workdir and
        the temporary folder. The helper does it: it survives the kill, and it never follows a link the code
        planted."""
        try:
            reply = self._typed_request(
                ResetRequest(self.workdir), _fields_of(ResetReply.from_fields), timeout=RESET_TIMEOUT_S
            )
        except ContainerError as error:
            if isinstance(error, SandboxDiedError):
                raise
            raise ContainerError(f"could not reset the sandbox: {error}") from error
        if reply.left:
            logger.debug("reset left %s", ", ".join(reply.left))

    def spawn(self, argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None) -> SpawnReply:
        """Start a long-lived process (the session's environment, plus ``env``) that outlives runs and is fed
        with ``feed``; it ends with ``close_process``, a reset, or the helper."""
        environment = {**self._environment(), **(env or {})}
        request = SpawnRequest((*self._sandbox.prefix, *argv), environment, cwd or self.workdir)
        return self._typed_request(request, _fields_of(SpawnReply.from_fields), timeout=CONTROL_TIMEOUT_S)

    def feed(
        self,
        handle: int,
        data: bytes,
        *,
        marker: bytes = b"",
        timeout: float | None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        encoding_errors: str = "replace",
    ) -> FeedReply:
        """Write ``data`` to a long-lived process's stdin and relay its output until ``marker`` shows on its
        stdout, it exits, or ``timeout`` passes (the reply says which)."""
        return self._typed_request(
            FeedRequest(handle, data, marker, timeout),
            FeedReply.from_reply,
            timeout=timeout,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            encoding_errors=encoding_errors,
        )

    def close_process(self, handle: int) -> CloseReply:
        """Kill a long-lived process and everything under it."""
        return self._typed_request(CloseRequest(handle), _fields_of(CloseReply.from_fields), timeout=CONTROL_TIMEOUT_S)

    def install_argv(self, libraries: list[str]) -> list[str]:
        return self._spec.language.install_argv(libraries, {"python": self.python, "workdir": self.workdir})

    def run_install(self, argv: list[str], *, timeout: float, encoding_errors: str = "replace") -> ConsoleOutput:
        """Run an install argv as the language's install user: the code user through the helper, else the engine."""
        user = self._spec.language.install_user
        if user is None:
            return self.run_argv(argv, RunPolicy(encoding_errors=encoding_errors), cwd=None, timeout=timeout)
        # Another user (root, for system package managers) cannot come from the helper, which runs as the code
        # user: the engine runs it. The argv bounds its own time (the helper's timeout does not apply here).
        started = time.monotonic()
        environment = self._spec.language.environment_for({"workdir": self.workdir})
        result = self._sandbox.exec(Command(argv, user=user, environment=environment))
        return ConsoleOutput(
            exit_code=result.exit_code,
            stdout=result.stdout.decode("utf-8", encoding_errors),
            stderr=result.stderr.decode("utf-8", encoding_errors),
            duration_s=time.monotonic() - started,
        )

    @property
    def workdir(self) -> str:
        return self._spec.workdir

    @property
    def code_uid(self) -> int | None:
        uid = self._spec.code_user.partition(":")[0]
        return int(uid) if uid.isdigit() else None

    @property
    def python(self) -> str:
        return self.guest_info.python if self.guest_info is not None and self.guest_info.python else "python3"

    def _environment(self) -> dict[str, str]:
        return self._spec.language.environment_for({"workdir": self.workdir})

    def _died(self) -> SandboxDiedError:
        self.died = True
        if self._sandbox.owned:
            return SandboxDiedError("the sandbox container stopped running; the next call creates a new one")
        return SandboxDiedError("the attached container stopped running; start it and open a new session")


def _typed(reply: Reply, read: Callable[[Reply], ReplyType]) -> ReplyType:
    """The typed reply; the guest's error reply raises ContainerError."""
    if reply.error is not None:
        raise ContainerError(f"the sandbox's helper failed: {reply.error}")
    return read(reply)


def _fields_of(read: Callable[[Mapping[str, Any]], ReplyType]) -> Callable[[Reply], ReplyType]:
    return lambda reply: read(reply.fields)


def outcome(reply: ExecReply, timeout: float | None) -> ConsoleOutput:
    """The run's ConsoleOutput, or the error that says which limit ended it."""
    output = ConsoleOutput(
        exit_code=reply.exit_code,
        stdout=reply.stdout,
        stderr=reply.stderr,
        timed_out=reply.timed_out,
        truncated=reply.truncated,
        duration_s=reply.duration_s,
    )
    limits = set(reply.limits)
    if output.timed_out:
        raise SandboxTimeoutError(
            f"the run exceeded its timeout of {timeout:g} s; its processes were killed", output, timeout
        )
    if Limit.OOM in limits and output.exit_code == SIGKILL_EXIT:
        raise MemoryLimitError("the run was killed by the sandbox's memory limit", output)
    if Limit.PIDS in limits and output.exit_code != 0:
        raise ProcessLimitError("the run hit the sandbox's process limit (too many processes)", output)
    if output.exit_code == SIGXFSZ_EXIT:
        raise DiskLimitError("the run wrote a file larger than the sandbox's file-size limit", output)
    return output


def _log_chunk(stream_name: str) -> OutputCallback:
    stream_logger = logging.getLogger(f"llm_sandbox.output.{stream_name}")

    def emit(text: str) -> None:
        stream_logger.info("%s", text.rstrip("\n"))

    return emit
