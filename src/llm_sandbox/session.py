"""SandboxSession: one entry point for every backend and language, written once on top of the Backend contract."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from llm_sandbox import lifecycle
from llm_sandbox.backends.base import Backend
from llm_sandbox.config import (
    DEFAULT_COPY_LIMIT,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_WORKDIR,
    UNSET,
    Network,
    SessionOptions,
    Timeout,
    build_options,
    reject_unknown,
)
from llm_sandbox.const import SandboxBackend
from llm_sandbox.data import ConsoleOutput, ExecutionResult
from llm_sandbox.errors import (
    CommandEmptyError,
    LibraryInstallationError,
    NotOpenSessionError,
    SandboxTimeoutError,
    SecurityViolationError,
    ValidationError,
)
from llm_sandbox.guest_link import OutputCallback
from llm_sandbox.runner import GuestRunner
from llm_sandbox.security import SecurityPattern, evaluate
from llm_sandbox.session_files import copy_from_runtime, copy_to_runtime

logger = logging.getLogger(__name__)

# Installing can legitimately take minutes (large wheels); it gets its own bound instead of the run timeout.
INSTALL_TIMEOUT_S = 900.0


class SandboxSession:
    """A sandbox for running untrusted code: created (or attached to) on ``open()``, removed on ``close()``.

    Construction validates every option and does no container work. Use it as a context manager::

        with SandboxSession(lang="python") as session:
            print(session.run("print(1 + 1)").stdout)
    """

    def __init__(
        self,
        *,
        backend: SandboxBackend | str = SandboxBackend.DOCKER,
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
        **unknown: Any,
    ) -> None:
        reject_unknown(unknown)
        raw = dict(locals())
        del raw["self"], raw["unknown"]
        self.options: SessionOptions = build_options(raw)
        if self.options.verbose:
            lifecycle.enable_console_logging()
        if self.options.container_id and self.options.libraries:
            logger.warning(
                "libraries=%s are not installed at open for an existing container; call install() to add them",
                list(self.options.libraries),
            )
        self.session_id = uuid.uuid4().hex
        self.committed_image: str | None = None
        self._backend: Backend | None = None
        self._runner: GuestRunner | None = None
        self._built_image: str | None = None
        self._opened_at = 0.0

    # Lifecycle ---------------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._runner is not None

    @property
    def container_id(self) -> str | None:
        return None if self._backend is None else self._backend.container_id

    def open(self) -> SandboxSession:
        """Create (or attach to) the sandbox and start its helper; on failure remove whatever was created."""
        if self.is_open:
            return self
        started = time.monotonic()
        try:
            self._backend, self._built_image = lifecycle.bind(self.options, self.session_id)
            self._runner = GuestRunner(self._backend, self.options)
            self._runner.start()
            lifecycle.track(self)
            self._opened_at = time.monotonic()
            if self.options.libraries and self._backend.owned and not self.options.skip_environment_setup:
                self.install(list(self.options.libraries))
        except BaseException:
            self._teardown()
            raise
        logger.info("session %s open in %.3f s", self.session_id[:12], time.monotonic() - started)
        return self

    def close(self) -> None:
        """Remove the sandbox the session created (attached containers are only let go). Idempotent."""
        if self._backend is None:
            return
        try:
            if self._backend.owned and self.options.commit_container and self._runner is not None:
                self.committed_image = self._backend.commit(
                    f"llm-sandbox-commit/{self.options.language.name}", self.session_id[:12]
                )
        finally:
            self._teardown()

    def _teardown(self) -> None:
        runner, backend, built = self._runner, self._backend, self._built_image
        self._runner, self._backend, self._built_image = None, None, None
        lifecycle.untrack(self)
        try:
            if runner is not None:
                runner.close()
        finally:
            if backend is not None:
                try:
                    backend.remove()
                    if built is not None and not self.options.keep_template:
                        backend.remove_image(built)
                finally:
                    backend.close()

    def __enter__(self) -> SandboxSession:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_backend", None) is not None:
            logger.warning("session %s was not closed; closing it now", self.session_id[:12])
            try:
                self.close()
            except Exception:
                logger.debug("closing an abandoned session failed", exc_info=True)

    def _require_runner(self) -> GuestRunner:
        runner = self._runner
        if runner is None:
            raise NotOpenSessionError("the session is not open: use `with SandboxSession(...)` or call open() first")
        if runner.died and self._backend is not None and self._backend.owned:
            # The sandbox the session created is gone (killed, or its engine restarted): make a fresh one.
            logger.warning("session %s: the sandbox died; creating a new one", self.session_id[:12])
            self._teardown()
            self.open()
            assert self._runner is not None
            runner = self._runner
        timeout = self.options.session_timeout
        if timeout is not None and time.monotonic() - self._opened_at > timeout:
            self.close()
            raise SandboxTimeoutError(f"the session exceeded its session_timeout of {timeout:g} s and was closed")
        return runner

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
        runner = self._require_runner()
        if not isinstance(code, str):
            raise TypeError(f"code must be a string, not {type(code).__name__}")
        self._enforce_policy(code)
        if libraries:
            self.install(list(libraries))
        limit = self.options.run_timeout if timeout is UNSET else timeout
        output = runner.run_code(code, timeout=limit, on_stdout=on_stdout, on_stderr=on_stderr)
        return ExecutionResult(**output.to_dict())

    def execute_command(
        self,
        command: str | Sequence[str],
        workdir: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        timeout: Timeout = UNSET,
    ) -> ConsoleOutput:
        """Run a shell command (a string, through ``/bin/sh -c``) or an argv list (no shell)."""
        runner = self._require_runner()
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
        limit = self.options.default_timeout if timeout is UNSET else timeout
        return runner.run_argv(argv, cwd=workdir, timeout=limit, on_stdout=on_stdout, on_stderr=on_stderr)

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
        runner = self._require_runner()
        if isinstance(libraries, str):
            libraries = [libraries]
        names = list(libraries)
        if not names:
            return ConsoleOutput()
        argv = runner.install_argv(names)
        with self._network_for_install():
            output = runner.run_install(argv, timeout=INSTALL_TIMEOUT_S)
        if output.exit_code != 0:
            tail = (output.stderr or output.stdout).strip()[-2000:]
            raise LibraryInstallationError(
                f"installing {', '.join(names)} failed (exit {output.exit_code}):\n{tail}", output=output
            )
        return output

    def _network_for_install(self) -> lifecycle.NetworkWindow:
        backend = self._backend
        enabled = backend is not None and backend.owned and self.options.network is Network.INSTALL_ONLY
        return lifecycle.NetworkWindow(backend if enabled else None)

    # Files -------------------------------------------------------------------------------------------------

    def copy_to_runtime(self, src: str, dest: str) -> None:
        """Copy a local file or directory into the sandbox at ``dest``, creating missing parents."""
        runner = self._require_runner()
        assert self._backend is not None
        copy_to_runtime(self._backend, runner, src, dest)

    def copy_from_runtime(self, src: str, dest: str) -> None:
        """Copy a file or directory out of the sandbox to the local path ``dest`` (a directory's contents)."""
        self._require_runner()
        assert self._backend is not None
        copy_from_runtime(self._backend, self.options.workdir, src, dest, self.options.copy_limit)

    # Security ----------------------------------------------------------------------------------------------

    def is_safe(self, code: str) -> tuple[bool, list[SecurityPattern]]:
        """Evaluate the session's security policy on ``code`` without running anything."""
        policy = self.options.security_policy
        if policy is None:
            return True, []
        violations = evaluate(policy, code, self.options.language.name)
        return not violations, violations

    def _enforce_policy(self, code: str) -> None:
        safe, violations = self.is_safe(code)
        if not safe:
            described = "; ".join(f"{item.description} ({item.severity.name})" for item in violations)
            raise SecurityViolationError(f"the code breaks the security policy: {described}", violations)
