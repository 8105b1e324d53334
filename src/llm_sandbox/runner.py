"""Runs code and commands through the guest helper, and turns its replies into results or errors.

The helper is started once per session over one attached stream; its first request (info) tells it what the
sandbox guarantees. A run is then one request: the code file, the argv, the limits; the helper writes the file into
a fresh temporary folder, runs, relays output, enforces the timeout and output cap, kills every leftover process,
sends back the files asked for, and removes the folder. Requests and replies are the typed ones of ``messages``.

What separates the helper from the code on each kind of sandbox (created on Docker or Podman: a root helper out
of the code's reach, the code dropped to its uid, a lease; created on Kubernetes: the code's own uid; attached: the
container's user) is written down, with the test that proves each line, in ``docs/security.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from llm_sandbox.backends.base import Backend, BackendCapabilities, Command, DuplexStream, ExecOutput
from llm_sandbox.backends.install_step import SeparateInstalls
from llm_sandbox.config import RunPolicy, SandboxSpec
from llm_sandbox.data import ConsoleOutput
from llm_sandbox.errors import (
    ContainerError,
    SandboxDiedError,
    SandboxError,
)
from llm_sandbox.guest import BOOTSTRAP, agent_payload
from llm_sandbox.helper_launch import LAUNCHER, PYTHON_LOOKUP, ROOT, SYSTEM_PATH, numeric_ids, refusal
from llm_sandbox.languages.base import USER_PREFIX
from llm_sandbox.link import GuestLink, GuestLinkError, OutputCallback
from llm_sandbox.messages import (
    DEFAULT_COLLECT_BUDGET,
    DEFAULT_COLLECT_COUNT,
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
from llm_sandbox.run_outcome import log_chunk, outcome
from llm_sandbox.writable_places import disk_plan

logger = logging.getLogger(__name__)

INFO_TIMEOUT_S = 30.0
PUT_TIMEOUT_S = 300.0
RESET_TIMEOUT_S = 60.0
CONTROL_TIMEOUT_S = 30.0  # spawn and close: no user code runs to its end meanwhile
# Beyond the workdir and the temporary folder, what a reset empties of the code's files: its library prefix (the
# next user must not import the last one's libraries) and the other temporary folder.
RESET_FOLDERS = (USER_PREFIX, "/var/tmp", "/run/lock")  # noqa: S108 - a folder to empty of the code's files, not to write

ReplyType = TypeVar("ReplyType")


class HelperHost(Protocol):
    """What the runner needs of the sandbox it serves (``sandbox.Sandbox`` is one)."""

    spec: SandboxSpec
    capabilities: BackendCapabilities
    prefix: tuple[str, ...]
    backend: Backend

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

    @property
    def separated(self) -> bool:
        """Whether the helper runs as root, out of the code's reach (see the module's docstring)."""
        return self.separated_ids is not None

    @property
    def separated_ids(self) -> tuple[int, int] | None:
        """The code's (uid, gid) when the helper is separated from the code; None when it runs as the code does."""
        capabilities = self._sandbox.capabilities
        if not (self._sandbox.owned and capabilities.user_switch and capabilities.own_uid):
            return None
        return numeric_ids(self._spec.code_user)

    def start(self) -> None:
        sandbox = self._sandbox
        capabilities = sandbox.capabilities
        ids = self.separated_ids
        environment = {"HOME": self._spec.workdir} if sandbox.owned else {}
        command = Command(
            ["/bin/sh", "-c", LAUNCHER, "llm-sandbox-guest", BOOTSTRAP],
            user=ROOT if ids is not None else self._spec.code_user if sandbox.owned else None,
            environment=environment,
        )
        # A separated helper is not started through the sandbox's command prefix (an environment wrapper found on
        # the container's PATH, where the code may write): root runs nothing the code can replace. It gets the
        # prefix in its first request instead, for the code's interpreter lookup; the runs carry it in their argv.
        stream = sandbox.backend.open_stream(command) if ids is not None else sandbox.open_stream(command)
        self._link = GuestLink(stream)
        # What the sandbox guarantees goes to the guest in its first request, and nothing else tells it: kill(-1)
        # as the code's uid reaches only the code's processes when the sandbox has a pid namespace and the uid to
        # itself; the cgroup's counters tell a limit hit when the cgroup is the sandbox's own; the code's ids and
        # the lease when it is separated; the seccomp filter wherever the sandbox is the library's (unless the
        # caller relaxed it by name).
        confine = capabilities.pid_namespace and capabilities.own_uid and "seccomp" not in self._spec.relaxed
        disk = disk_plan(self._spec) if sandbox.owned else None
        request = InfoRequest(
            workdir=self._spec.workdir,
            kill_all=capabilities.pid_namespace and capabilities.own_uid,
            own_cgroup=capabilities.own_cgroup,
            code_user=ids,
            seccomp=confine,
            lease=ids is not None,
            prefix=sandbox.prefix if ids is not None else (),
            # The code's own library prefix: its programs on the code's PATH (never on the helper's or root's).
            code_path=tuple(self._spec.language.user_paths()) if sandbox.owned else (),
            # The places the code writes, capped each by the engine, held together to the cap by the guest.
            disk_paths=disk.places if disk is not None else (),
            disk_limit=disk.limit if disk is not None else 0,
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
                "could not start the library's helper in the container: it needs /bin/sh and /usr/bin/python3 (or "
                f"python3 or python in {SYSTEM_PATH}) ({error}{'; it said: ' + said if said else ''})"
            ) from error
        refused = refusal(info, separated=ids is not None, confine=confine)
        if refused:
            self._link.close()
            self._link = None
            raise ContainerError(refused)
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
        if self._sandbox.owned:  # never restarted: a created sandbox whose helper was lost is replaced
            raise self._lost("its link is closed or broken")
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
            raise self.link_error(error) from error

    @property
    def link_ready(self) -> bool:
        """Whether the link to the helper is up (``link()`` then does no engine work)."""
        return self._link is not None and not self._link.broken

    def link(self) -> GuestLink:
        """The link to the helper for a request driven elsewhere (``AsyncSandboxSession``); a lost helper of an
        attached sandbox is restarted first, as for the runner's own requests."""
        return self._ensure_link()

    def link_error(self, error: GuestLinkError) -> SandboxError:
        """What a lost link means for the caller: a created sandbox is done for (it is replaced), an attached one's
        helper is restarted on the next call."""
        if self._sandbox.owned:
            self.close()
            return self._lost(str(error))
        if not self._sandbox.is_running():
            return self._died()
        return ContainerError(f"the sandbox's helper stopped answering ({error}); it is restarted on the next call")

    def read_reply(self, reply: Reply, read: Callable[[Reply], ReplyType]) -> ReplyType:
        """A reply read by ``read`` (see ``_typed_request``), for requests driven elsewhere."""
        try:
            return _typed(reply, read)
        except GuestLinkError as error:
            self.close()
            if self._sandbox.owned:
                raise self._lost(str(error)) from error
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
        the protocol breaks the link and raises SandboxDiedError in a created sandbox (it is replaced on the next
        call), ContainerError in an attached one (the helper is restarted on the next call)."""
        reply = self._request(
            request,
            timeout=timeout,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            payload=payload,
            encoding_errors=encoding_errors,
        )
        return self.read_reply(reply, read)

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
        collect_count: int = DEFAULT_COLLECT_COUNT,
        extra_files: Sequence[CodeFile] = (),
        wrap_argv: Callable[[list[str]], list[str]] | None = None,
    ) -> ExecRequest:
        """The request that runs ``code`` in the session's language (``collect``: files to send back, as glob
        patterns relative to ``{tmp}`` or absolute). ``extra_files`` are written beside the code file, and
        ``wrap_argv`` may change the language's argv (to start a launcher that runs the code file)."""
        language = self._spec.language
        path = language.code_path()
        argv = language.run_argv({"file": path, "dir": "{tmp}", "python": self.python, "workdir": self.workdir})
        if wrap_argv is not None:
            argv = wrap_argv(argv)
        # A wrapped argv that is no longer the plain run (another program in front) does not match the recipe,
        # and starts cold: the spare was not started the way the wrapper starts the interpreter.
        spare = language.spare_recipe({"dir": "{tmp}", "python": self.python, "workdir": self.workdir})
        return self._exec_request(
            argv,
            self.workdir,
            policy,
            timeout,
            files=(CodeFile(path, code), *extra_files),
            spare=spare,
            collect=collect,
            collect_budget=collect_budget,
            collect_count=collect_count,
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
        collect_count: int = DEFAULT_COLLECT_COUNT,
    ) -> ExecRequest:
        """The request that runs ``argv`` in ``cwd`` (the workdir when None)."""
        return self._exec_request(
            argv,
            cwd or self.workdir,
            policy,
            timeout,
            collect=collect,
            collect_budget=collect_budget,
            collect_count=collect_count,
        )

    def _exec_request(
        self,
        argv: Sequence[str],
        cwd: str,
        policy: RunPolicy,
        timeout: float | None,
        *,
        files: tuple[CodeFile, ...] = (),
        spare: dict[str, Any] | None = None,
        collect: Sequence[str] = (),
        collect_budget: int = DEFAULT_COLLECT_BUDGET,
        collect_count: int = DEFAULT_COLLECT_COUNT,
    ) -> ExecRequest:
        return ExecRequest(
            argv=(*self._sandbox.prefix, *argv),
            cwd=cwd,
            env=self._environment(),
            timeout=timeout,
            output_limit=policy.output_limit,
            files=files,
            spare=spare,
            collect=tuple(collect),
            collect_budget=collect_budget,
            collect_count=collect_count,
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
            on_stdout = log_chunk("stdout")
        if on_stderr is None and policy.stream:
            on_stderr = log_chunk("stderr")
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

    def reset(
        self,
        folders: Sequence[str] = RESET_FOLDERS,
        keep: Sequence[str] = (),
        since: float | None = None,
        *,
        warm: bool = False,
    ) -> ResetReply:
        """Kill every process the code left (long-lived ones included) and remove what it wrote in the workdir, the
        temporary folder and ``folders``; check that nothing in ``keep`` changed after ``since`` (the guest's
        clock: a previous reply's ``now``); ``warm``: ready a fresh waiting interpreter afterwards. The helper does
        it: it survives the kill, and it never follows a link the code planted."""
        if not self._sandbox.capabilities.own_uid:
            # The folders beyond the workdir and TMPDIR are absolute paths: they are the sandbox's own only where the
            # sandbox has a filesystem (and the uid) to itself. Elsewhere (the engine-free local backend runs on the
            # host) they are the host's, and what the caller's uid owns there is not the code's to remove.
            folders, keep = (), ()
        request = ResetRequest(self.workdir, tuple(folders), tuple(keep), since, warm)
        try:
            reply = self._typed_request(request, _fields_of(ResetReply.from_fields), timeout=RESET_TIMEOUT_S)
        except ContainerError as error:
            if isinstance(error, SandboxDiedError):
                raise
            raise ContainerError(f"could not reset the sandbox: {error}") from error
        if reply.left:
            logger.debug("reset left %s", ", ".join(reply.left))
        return reply

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
        trailer: bool = False,
        interrupt: bool = False,
        grace: float = 0.0,
        output_limit: int = 0,
        collect_from: str | None = None,
        collect: Sequence[str] = (),
        collect_budget: int = 0,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        encoding_errors: str = "replace",
    ) -> FeedReply:
        """Write ``data`` to a long-lived process's stdin and relay its output until ``marker`` shows on its
        stdout, it exits, or ``timeout`` passes (the reply says which). ``trailer``: the line after the marker
        comes back in the reply; ``interrupt``: at the time limit (or past ``output_limit`` bytes a stream) what
        runs under the process is killed and the process gets SIGINT and ``grace`` seconds to show its marker;
        ``collect_from``: the files there matching ``collect`` come back once the marker shows."""
        request = FeedRequest(
            handle,
            data,
            marker,
            timeout,
            trailer=trailer,
            interrupt=interrupt,
            grace=grace,
            output_limit=output_limit,
            collect_from=collect_from,
            collect=tuple(collect),
            collect_budget=collect_budget,
        )
        return self._typed_request(
            request,
            FeedReply.from_reply,
            timeout=None if timeout is None else timeout + (grace if interrupt else 0.0),
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            encoding_errors=encoding_errors,
        )

    def close_process(self, handle: int) -> CloseReply:
        """Kill a long-lived process and everything under it."""
        return self._typed_request(CloseRequest(handle), _fields_of(CloseReply.from_fields), timeout=CONTROL_TIMEOUT_S)

    def install_argv(self, libraries: list[str]) -> list[str]:
        """The install argv: in a clean environment in a sandbox the library created (``languages.base``), as the
        owner set the container up in an attached one. The interpreter that runs pip is the sandbox's, unless that
        is one the code can write (a venv in the workdir or the code's prefix): then the system's python3."""
        attached = not self._sandbox.owned
        python = self.python
        if not attached and python.startswith((self.workdir.rstrip("/") + "/", USER_PREFIX + "/")):
            python = "python3"
        return self._spec.language.install_argv(
            libraries, {"python": python, "workdir": self.workdir}, attached=attached
        )

    def run_install(self, argv: list[str], *, timeout: float, encoding_errors: str = "replace") -> ConsoleOutput:
        """Run an install argv as the language's install user: the code user through the helper, else the engine."""
        user = self._spec.language.install_user
        backend = self._sandbox.backend
        # A backend that cannot give the running sandbox a network runs the install as a step of its own.
        apart = self._sandbox.owned and isinstance(backend, SeparateInstalls)
        if user is None and not apart:
            policy = RunPolicy(encoding_errors=encoding_errors)
            request = self.argv_request(argv, policy, cwd=None, timeout=timeout)
            if self._sandbox.owned:
                # The argv's first word (an environment wrapper such as micromamba) is looked up on the system
                # folders only: the code's own folders, on its PATH, are never searched while the network
                # is on.
                request = replace(request, env={**request.env, "PATH": SYSTEM_PATH})
            return outcome(self.execute(request, policy), timeout)
        # Another user (root, for system package managers) runs through the engine, never the helper. The argv
        # starts by absolute path with its whole environment (``/usr/bin/env -i ...``) and bounds its own time.
        started = time.monotonic()
        environment = {} if self._sandbox.owned else self._spec.language.environment_for({"workdir": self.workdir})
        # The argv's own bound (``/usr/bin/timeout``) ends it first; the exec's deadline is the backstop. Root's
        # argv never goes through the sandbox's command prefix (a wrapper found on the container's PATH).
        command = Command(argv, user=user or self._spec.code_user, environment=environment, timeout=timeout + 60)
        if isinstance(backend, SeparateInstalls) and apart:
            result = backend.install_step(command)
        else:
            result = backend.exec(command) if self._sandbox.owned else self._sandbox.exec(command)
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

    def _lost(self, why: str) -> SandboxDiedError:
        """The helper of a created sandbox is lost: the sandbox is done for (its lease ends with the link)."""
        self.died = True
        return SandboxDiedError(
            f"the sandbox's helper was lost ({why}); the sandbox is replaced by a new one on the next call"
        )

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
