"""SandboxSession: one entry point for every backend and language, written once on top of the Backend contract."""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from llm_sandbox.backends.registry import BackendEntry
from llm_sandbox.config import (
    DEFAULT_COPY_LIMIT,
    DEFAULT_DISK_LIMIT,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_WORKDIR,
    UNSET,
    Network,
    RunPolicy,
    SessionOptions,
    Timeout,
    build_options,
    pooled_options,
    reject_unknown,
)
from llm_sandbox.console_logging import enable_console_logging
from llm_sandbox.const import SandboxBackend
from llm_sandbox.copying import copy_from_runtime, copy_to_runtime
from llm_sandbox.data import ConsoleOutput, ContainerRef, ExecutionResult
from llm_sandbox.errors import (
    ArgumentTypeError,
    CommandEmptyError,
    NotOpenSessionError,
    SandboxTimeoutError,
    SecurityViolationError,
    ValidationError,
)
from llm_sandbox.link import OutputCallback
from llm_sandbox.messages import ExecReply, ExecRequest
from llm_sandbox.providers import AttachedContainer, NewSandboxes, SandboxProvider
from llm_sandbox.run_outcome import outcome
from llm_sandbox.runner import GuestRunner
from llm_sandbox.sandbox import Sandbox
from llm_sandbox.security import SecurityPattern, evaluate
from llm_sandbox.tracking import track, untrack

logger = logging.getLogger(__name__)


class RunCapture(Protocol):
    """What ``run_with`` needs of a capture: the request that runs the code, and the result read from its reply
    (``llm_sandbox.artifacts.ArtifactCapture`` is one)."""

    def request(self, runner: GuestRunner, code: str, policy: RunPolicy, timeout: float | None) -> ExecRequest: ...

    def result(self, output: ConsoleOutput, reply: ExecReply) -> ExecutionResult: ...


class SandboxSession:
    """A sandbox for running untrusted code: created (or attached to) on ``open()``, removed on ``close()``.

    The session takes its sandbox from a provider (a new container, or the caller's own with ``container_id``)
    and applies its run policy (timeouts, output limits, callbacks, the security policy) to every call.
    Construction validates every option and does no container work. Use it as a context manager::

        with SandboxSession(lang="python") as session:
            print(session.run("print(1 + 1)").stdout)
    """

    def __init__(
        self,
        *,
        backend: SandboxBackend | str | BackendEntry = SandboxBackend.DOCKER,
        lang: str = "python",
        image: str | None = None,
        dockerfile: str | None = None,
        container_id: str | None = None,
        client: Any = None,
        kube_namespace: str | None = None,
        pod_manifest: dict[str, Any] | None = None,
        environment: str | None = None,
        workdir: str = DEFAULT_WORKDIR,
        network: str = Network.INSTALL_ONLY.value,
        runtime_configs: dict[str, Any] | None = None,
        default_timeout: Timeout = UNSET,
        execution_timeout: Timeout = UNSET,
        session_timeout: Timeout = UNSET,
        libraries: Sequence[str] | None = None,
        keep_template: bool = False,
        commit_container: bool = False,
        skip_environment_setup: bool = False,
        security_policy: Any = None,
        verbose: bool = False,
        stream: bool = False,
        encoding_errors: str = "replace",
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        copy_limit: int = DEFAULT_COPY_LIMIT,
        disk_limit: int | str = DEFAULT_DISK_LIMIT,
        relax_hardening: Sequence[str] | None = None,
        pool: Any = None,
        **unknown: Any,
    ) -> None:
        reject_unknown(unknown, OPTION_NAMES)
        raw = dict(locals())
        del raw["self"], raw["unknown"], raw["pool"]
        self.options: SessionOptions = build_options(raw)
        self.pool = pool
        # With a pool, the session's libraries pick the pool's sandboxes prepared with them.
        self._pool_libraries = self.options.sandbox.libraries
        if pool is not None:
            self.options = pooled_options(self.options, pool.spec, raw)
        if self.options.verbose:
            enable_console_logging()
        if self.options.container_id and self.options.sandbox.libraries:
            logger.warning(
                "libraries=%s are not installed at open for an existing container; call install() to add them",
                list(self.options.sandbox.libraries),
            )
        self.session_id = uuid.uuid4().hex
        self.committed_image: str | None = None
        self._provider = self._make_provider()
        self._sandbox: Sandbox | None = None
        self._opened_at = 0.0

    def _make_provider(self) -> SandboxProvider:
        options = self.options
        if self.pool is not None:
            from llm_sandbox.pool.session import PooledSandboxes  # the pool package builds on this module

            return PooledSandboxes(self.pool, self._pool_libraries)
        if options.container_id is not None:
            return AttachedContainer(options.sandbox, options.container_id, client=options.client)
        return NewSandboxes(
            options.sandbox,
            client=options.client,
            sandbox_id=self.session_id,
            lifetime_s=options.session_timeout,
            keep_template=options.keep_template,
        )

    # Lifecycle ---------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._sandbox is not None

    @property
    def sandbox(self) -> Sandbox | None:
        """The sandbox the session holds while it is open."""
        return self._sandbox

    @property
    def container_id(self) -> str | None:
        return None if self._sandbox is None else self._sandbox.container_id

    @property
    def container(self) -> ContainerRef | None:
        """The container the open session uses (``.id``), as the reference's ``session.container``; None when
        closed."""
        container_id = self.container_id
        return None if container_id is None else ContainerRef(container_id)

    def open(self) -> SandboxSession:
        """Take a sandbox from the provider (created or attached, helper started); on failure nothing is left."""
        if self.is_open:
            return self
        started = time.monotonic()
        self._sandbox = self._provider.acquire()
        track(self)
        self._opened_at = time.monotonic()
        logger.info("session %s open in %.3f s", self.session_id[:12], time.monotonic() - started)
        return self

    def close(self) -> None:
        """Give the sandbox back: one the session created is removed, an attached one only let go. Idempotent."""
        sandbox = self._sandbox
        if sandbox is None:
            return
        try:
            if sandbox.owned and self.options.commit_container:
                self.committed_image = sandbox.commit(
                    f"llm-sandbox-commit/{self.options.language.name}", self.session_id[:12]
                )
        finally:
            self._release()

    def _release(self) -> None:
        sandbox, self._sandbox = self._sandbox, None
        untrack(self)
        if sandbox is not None:
            self._provider.release(sandbox)

    def __enter__(self) -> SandboxSession:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sandbox", None) is not None:
            logger.warning("session %s was not closed; closing it now", self.session_id[:12])
            try:
                self.close()
            except Exception:
                logger.debug("closing an abandoned session failed", exc_info=True)

    def _require_sandbox(self) -> Sandbox:
        sandbox = self._sandbox
        if sandbox is None:
            raise NotOpenSessionError("the session is not open: use `with SandboxSession(...)` or call open() first")
        if sandbox.died and self._provider.replaces_dead:
            # The sandbox the session created is gone (killed, or its engine restarted): make a fresh one.
            logger.warning("session %s: the sandbox died; creating a new one", self.session_id[:12])
            self._release()
            self.open()
            assert self._sandbox is not None
            sandbox = self._sandbox
        timeout = self.options.session_timeout
        if timeout is not None and time.monotonic() - self._opened_at > timeout:
            self.close()
            raise SandboxTimeoutError(f"the session exceeded its session_timeout of {timeout:g} s and was closed")
        return sandbox

    # Running -----------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in the session's language and return its real exit code and output."""
        return self.run_with(None, code, libraries, timeout, on_stdout, on_stderr)

    def run_with(
        self,
        capture: RunCapture | None,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """``run``, with a capture that shapes the run's request and reads what else its reply brought (the
        artifacts of ``llm_sandbox.artifacts``): the same policy, installs and limits, still one request."""
        sandbox, limit = self.prepare_run(code, timeout)
        if libraries:
            self.install(list(libraries))
        policy = self.options.run
        runner = sandbox.runner
        if capture is None:
            output = runner.run_code(code, policy, timeout=limit, on_stdout=on_stdout, on_stderr=on_stderr)
            return ExecutionResult(**output.to_dict())
        request = capture.request(runner, code, policy, limit)
        reply = runner.execute(request, policy, on_stdout=on_stdout, on_stderr=on_stderr)
        return capture.result(outcome(reply, limit), reply)

    def prepare_run(self, code: str, timeout: Timeout = UNSET) -> tuple[Sandbox, float | None]:
        """What a run checks before its installs and its request: the open sandbox (a dead one the session created
        is replaced), the code's type and the security policy; with the run's time limit. (``AsyncSandboxSession``
        sends the request itself.)"""
        sandbox = self._require_sandbox()
        if not isinstance(code, str):
            raise ArgumentTypeError(f"code must be a string, not {type(code).__name__}")
        self._enforce_policy(code)
        return sandbox, self.options.run.run_timeout if timeout is UNSET else timeout

    def execute_command(
        self,
        command: str | Sequence[str],
        workdir: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        timeout: Timeout = UNSET,
    ) -> ConsoleOutput:
        """Run a shell command (a string, through ``/bin/sh -c``) or an argv list (no shell)."""
        sandbox, argv, limit = self.prepare_command(command, timeout)
        policy = self.options.run
        return sandbox.runner.run_argv(
            argv, policy, cwd=workdir, timeout=limit, on_stdout=on_stdout, on_stderr=on_stderr
        )

    def prepare_command(
        self, command: str | Sequence[str], timeout: Timeout = UNSET
    ) -> tuple[Sandbox, list[str], float | None]:
        """What a command checks before its request: the open sandbox, the command's argv (``command_argv``) and
        its time limit."""
        argv = command_argv(command)
        sandbox = self._require_sandbox()
        return sandbox, argv, self.options.run.default_timeout if timeout is UNSET else timeout

    def execute_commands(self, commands: Sequence[str | Sequence[str]], workdir: str | None = None) -> ConsoleOutput:
        """Run commands in order; stop at the first that fails and return its output (else the last one's)."""
        if not commands:
            raise CommandEmptyError("no commands given")
        output = ConsoleOutput()
        for command in commands:
            output = self.execute_command(command, workdir=workdir)
            if output.exit_code != 0:
                break
        return output

    def install(self, libraries: Sequence[str]) -> ConsoleOutput:
        """Install libraries with the language's package manager; failures raise with its output."""
        sandbox = self._require_sandbox()
        names = [libraries] if isinstance(libraries, str) else list(libraries)
        return sandbox.install(names, encoding_errors=self.options.run.encoding_errors)

    # Files -------------------------------------------------------------------------------------------------

    def copy_to_runtime(self, src: str, dest: str) -> None:
        """Copy a local file or directory into the sandbox at ``dest``, creating missing parents."""
        copy_to_runtime(self._require_sandbox(), src, dest)

    def copy_from_runtime(self, src: str, dest: str) -> None:
        """Copy a file out of the sandbox to the local path ``dest``, or a directory to ``dest/<its name>/``."""
        copy_from_runtime(self._require_sandbox(), src, dest, self.options.run.copy_limit)

    # Security ----------------------------------------------------------------------------------------------

    def is_safe(self, code: str) -> tuple[bool, list[SecurityPattern]]:
        """Evaluate the session's security policy on ``code`` without running anything."""
        policy = self.options.run.security_policy
        if policy is None:
            return True, []
        violations = evaluate(policy, code, self.options.language.name)
        return not violations, violations

    def _enforce_policy(self, code: str) -> None:
        safe, violations = self.is_safe(code)
        if not safe:
            described = "; ".join(f"{item.description} ({item.severity.name})" for item in violations)
            raise SecurityViolationError(f"the code breaks the security policy: {described}", violations)


def command_argv(command: str | Sequence[str]) -> list[str]:
    """The argv of a command: a string runs through ``/bin/sh -c``, a list as it is (no shell)."""
    if isinstance(command, str):
        if not command.strip():
            raise CommandEmptyError("the command is empty: pass a shell command string or a non-empty argv list")
        argv = ["/bin/sh", "-c", command]
    else:
        argv = [str(part) for part in command]
        if not argv:
            raise CommandEmptyError("the command is empty: pass a shell command string or a non-empty argv list")
    if any("\0" in part for part in argv):
        raise ValidationError("the command contains a NUL character, which no process argument can hold")
    return argv


# The reference's session module also names its factory, its other sessions and its pool's classes; ours live in
# llm_sandbox.compat and the capability packages, which build on this module: they are read on first use.
_REFERENCE_NAMES_ELSEWHERE = {
    "create_session": "llm_sandbox.compat",
    "ArtifactSandboxSession": "llm_sandbox.artifacts",
    "InteractiveSandboxSession": "llm_sandbox.interactive",
    "ContainerPoolManager": "llm_sandbox.pool",
    "PooledSandboxSession": "llm_sandbox.pool",
}


def __getattr__(name: str) -> object:
    if name in _REFERENCE_NAMES_ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_REFERENCE_NAMES_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The options SandboxSession takes, read from its signature (for "did you mean" hints): one list, not two.
OPTION_NAMES = tuple(inspect.signature(SandboxSession.__init__).parameters)[1:-1]
