"""Runs code and commands through the guest helper, and turns its replies into results or errors.

The helper is started once per session over one attached stream. A run is then one request: the code file, the
argv, the limits; the helper writes the file into a fresh temporary folder, runs, relays output, enforces the
timeout and output cap, kills every leftover process, and removes the folder.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from llm_sandbox.backends.base import Command
from llm_sandbox.config import RunPolicy
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
from llm_sandbox.link import GuestLink, GuestLinkError, OutputCallback, Reply

if TYPE_CHECKING:
    from llm_sandbox.sandbox import Sandbox

logger = logging.getLogger(__name__)

# Finds an interpreter for the helper without assuming where the image keeps it.
# -I keeps the workdir and PYTHON* variables from shadowing the helper's stdlib modules; -S skips site-packages,
# which the helper does not use (the code it runs gets the normal interpreter).
LAUNCHER = (
    'for p in python3 python; do if command -v "$p" >/dev/null 2>&1; then exec "$p" -I -S -c "$1"; fi; done; '
    'echo "llm_sandbox: no python3 or python on PATH in this container" >&2; exit 127'
)
PYTHON_LOOKUP = "command -v python3 || command -v python || exit 127"
# "Kill and wipe": every process of the code's uid but this shell and the helper, then what the code left in the
# workdir and the temporary folder. (The guest protects the helper; kill -9 -1 skips the caller itself.)
RESET_SCRIPT = (
    "kill -9 -1 2>/dev/null; kill -9 -1 2>/dev/null; "
    'find "$1" /tmp -mindepth 1 -maxdepth 1 -user "$(id -u)" -exec rm -rf -- {} + 2>/dev/null; exit 0'
)
SIGXFSZ_EXIT = 128 + 25
SIGKILL_EXIT = 128 + 9


class GuestRunner:
    """The sandbox's helper process and the requests it serves; each run is governed by a ``RunPolicy``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._spec = sandbox.spec
        self._link: GuestLink | None = None
        self.info: dict[str, Any] = {}
        self.died = False  # the container stopped: a new one is needed (the session makes it, for owned ones)

    def start(self) -> None:
        sandbox = self._sandbox
        capabilities = sandbox.capabilities
        # kill(-1) as the code's uid reaches only the code's processes when the sandbox has a pid namespace and
        # the uid to itself: the guest may then use it (and nothing else tells it so).
        kill_all = capabilities.pid_namespace and capabilities.own_uid
        environment = {"LLM_SANDBOX_OWNED": "1" if kill_all else "0"}
        if sandbox.owned:
            environment["HOME"] = self._spec.workdir
        stream = sandbox.open_stream(
            Command(
                ["/bin/sh", "-c", LAUNCHER, "llm-sandbox-guest", BOOTSTRAP],
                user=self._spec.code_user if sandbox.owned else None,
                environment=environment,
            )
        )
        self._link = GuestLink(stream)
        try:
            stream.send(agent_payload())
            reply = self._link.request({"op": "info", "workdir": self._spec.workdir}, timeout=30)
        except (GuestLinkError, OSError) as error:
            self._link.close()
            self._link = None
            said = self._diagnose() or getattr(stream, "stderr_tail", b"").decode("utf-8", "replace").strip()
            raise ContainerError(
                "could not start the library's helper in the container: it needs /bin/sh and python3 (or python) "
                f"on PATH ({error}{'; it said: ' + said if said else ''})"
            ) from error
        self.info = reply.fields
        logger.debug("guest helper: %s", self.info)

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
        language = self._spec.language
        path = language.code_path()
        argv = language.run_argv({"file": path, "dir": "{tmp}", "python": self.python, "workdir": self.workdir})
        files = [{"path": path, "content": code}]
        warm = self.python if language.warm_interpreter else None
        return self._exec(argv, self.workdir, policy, timeout, on_stdout, on_stderr, files=files, warm_python=warm)

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
        return self._exec(argv, cwd or self.workdir, policy, timeout, on_stdout, on_stderr)

    def put(self, parent: str, archive: bytes) -> dict[str, Any]:
        """Unpack a tar into ``parent`` as the code user; the reply names errno and the deepest existing folder."""
        return self._ensure_link().request({"op": "put", "parent": parent}, timeout=300, payload=archive).fields

    def reset(self) -> None:
        """Kill every process the code left and remove what it wrote in the workdir and temporary folder."""
        argv = ["/bin/sh", "-c", RESET_SCRIPT, "sh", self.workdir]
        output = self.run_argv(argv, RunPolicy(), cwd="/", timeout=60)
        if output.exit_code != 0:
            raise ContainerError(f"could not reset the sandbox: {output.stderr.strip() or output.stdout.strip()}")

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
        return str(self.info.get("python") or "python3")

    def _exec(
        self,
        argv: list[str],
        cwd: str,
        policy: RunPolicy,
        timeout: float | None,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
        files: list[dict[str, Any]] | None = None,
        warm_python: str | None = None,
    ) -> ConsoleOutput:
        request: dict[str, Any] = {
            "warm_python": warm_python,
            "op": "exec",
            "argv": [*self._sandbox.prefix, *argv],
            "cwd": cwd,
            "env": self._spec.language.environment_for({"workdir": self.workdir}),
            "timeout": timeout,
            "output_limit": policy.output_limit,
            "tempdir": True,
            "files": files or [],
        }
        if on_stdout is None and policy.stream:
            on_stdout = _log_chunk("stdout")
        if on_stderr is None and policy.stream:
            on_stderr = _log_chunk("stderr")
        link = self._ensure_link()
        try:
            reply = link.request(
                request,
                timeout=timeout,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                encoding_errors=policy.encoding_errors,
            )
        except GuestLinkError as error:
            if not self._sandbox.is_running():
                raise self._died() from error
            raise ContainerError(
                f"the sandbox's helper stopped answering ({error}); it is restarted on the next call"
            ) from error
        return _outcome(reply, timeout)

    def _died(self) -> SandboxDiedError:
        self.died = True
        if self._sandbox.owned:
            return SandboxDiedError("the sandbox container stopped running; the next call creates a new one")
        return SandboxDiedError("the attached container stopped running; start it and open a new session")


def _outcome(reply: Reply, timeout: float | None) -> ConsoleOutput:
    fields = reply.fields
    if "error" in fields:
        raise ContainerError(f"the sandbox's helper failed: {fields['error']}")
    output = ConsoleOutput(
        exit_code=int(fields.get("exit_code", -1)),
        stdout=reply.stdout,
        stderr=reply.stderr,
        timed_out=bool(fields.get("timed_out")),
        truncated=bool(fields.get("truncated")),
        duration_s=float(fields.get("duration_s", 0.0)),
    )
    limits = set(fields.get("limits") or ())
    if output.timed_out:
        raise SandboxTimeoutError(
            f"the run exceeded its timeout of {timeout:g} s; its processes were killed", output, timeout
        )
    if "oom" in limits and output.exit_code == SIGKILL_EXIT:
        raise MemoryLimitError("the run was killed by the sandbox's memory limit", output)
    if "pids" in limits and output.exit_code != 0:
        raise ProcessLimitError("the run hit the sandbox's process limit (too many processes)", output)
    if output.exit_code == SIGXFSZ_EXIT:
        raise DiskLimitError("the run wrote a file larger than the sandbox's file-size limit", output)
    return output


def _log_chunk(stream_name: str) -> OutputCallback:
    stream_logger = logging.getLogger(f"llm_sandbox.output.{stream_name}")

    def emit(text: str) -> None:
        stream_logger.info("%s", text.rstrip("\n"))

    return emit
