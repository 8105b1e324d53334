"""InteractiveSandboxSession: a session whose runs are cells of one long-lived interpreter that keeps its state.

Everything else is a ``SandboxSession``'s (every option, commands, files, installs); ``run`` sends the code to the
session's kernel (``kernel.py``) instead of starting a new process. State lives as long as the kernel: a cell that
raises keeps it; a cell that times out is interrupted and keeps it; a kernel that is gone (it exited, it did not
come back from an interrupt, an install ended it) is replaced by a fresh one, and the first result after that says
so (``state_lost``, and a line on stderr).

Installs and the kernel: in a sandbox the library created on Docker or Podman, an install's network window opens
only once every process of the code has been killed, and the kernel is one of them. It is not spared: a kernel
left alive, even stopped, could act while the network is on (a stopped process's io_uring requests still run), and
that guarantee is worth more than the state. So an install there restarts the kernel, and the next cell's result
says the state was lost; where no window is opened (Kubernetes, an attached container, ``network="full"``) the
kernel lives on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_sandbox.config import UNSET, Timeout
from llm_sandbox.data import ConsoleOutput, ExecutionResult
from llm_sandbox.errors import (
    ArgumentTypeError,
    LanguageNotSupportedError,
    NotOpenSessionError,
    SandboxTimeoutError,
    UnknownOptionError,
    ValidationError,
)
from llm_sandbox.interactive.kernel import INTERRUPT_GRACE_S, Kernel
from llm_sandbox.interactive.kernel_types import KERNELS, KernelType
from llm_sandbox.interactive.pip_lines import leading_pip_installs
from llm_sandbox.interactive.settings import InteractiveSettings
from llm_sandbox.link import OutputCallback
from llm_sandbox.sandbox import Sandbox
from llm_sandbox.session import SandboxSession

logger = logging.getLogger(__name__)

NOTE_PREFIX = "[llm-sandbox] "
_MEMORY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass(frozen=True)
class CellResult(ExecutionResult):
    """One cell's result. ``state_lost``: the interpreter that ran it is not the one that ran the cells before
    (it was restarted before or during this cell, and a line on stderr says why); what they defined is gone."""

    state_lost: bool = False


class InteractiveSandboxSession(SandboxSession):
    """A sandbox session whose ``run`` calls are cells of one interpreter that keeps variables, functions, classes
    and imports between them: Python (IPython where installed), JavaScript (node), Ruby and R.

    ``kernel_type``: ``KernelType.IPYTHON`` (default) or ``KernelType.PLAIN`` (Python's plain interpreter
    semantics even where IPython is installed); ``max_memory``: the sandbox's memory limit (``"1GB"``, ``"512m"``;
    default: the library's own limit); ``history_size``: how many cell values IPython keeps (``Out``); ``timeout``:
    each cell's time limit (default: the session's ``execution_timeout`` / ``default_timeout``);
    ``interactive_settings``: these four as one :class:`InteractiveSettings` (it wins over them). Every other option
    is ``SandboxSession``'s::

        with InteractiveSandboxSession(lang="python") as session:
            session.run("import math\\nradius = 2")
            print(session.run("print(math.pi * radius ** 2)").stdout)
    """

    def __init__(
        self,
        *,
        lang: str = "python",
        kernel_type: KernelType | str = KernelType.IPYTHON,
        max_memory: str | int | None = None,
        history_size: int = 1000,
        timeout: Timeout = UNSET,
        interactive_settings: InteractiveSettings | None = None,
        **options: Any,
    ) -> None:
        if interactive_settings is not None:  # the reference's way to give the four settings at once
            if not isinstance(interactive_settings, InteractiveSettings):
                raise ValidationError(f"interactive_settings must be InteractiveSettings, not {interactive_settings!r}")
            kernel_type = interactive_settings.kernel_type
            max_memory = interactive_settings.max_memory
            history_size = interactive_settings.history_size
            timeout = interactive_settings.timeout
        name = lang.lower() if isinstance(lang, str) else str(lang)
        if name not in KERNELS:
            raise LanguageNotSupportedError(
                f"interactive sessions support {', '.join(KERNELS)}; {lang!r} has no kernel (use SandboxSession)"
            )
        try:
            self.kernel_type = KernelType(kernel_type)
        except ValueError:
            known = ", ".join(item.value for item in KernelType)
            raise ValidationError(f"kernel_type must be one of {known}, not {kernel_type!r}") from None
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 0:
            raise ValidationError(f"history_size must be a whole number >= 0, not {history_size!r}")
        if max_memory is not None:
            options["runtime_configs"] = _with_memory(options, max_memory)
        super().__init__(lang=name, **options)
        backend = self.options.sandbox.backend
        if not backend.capabilities.interactive:
            raise UnknownOptionError(
                f"the {backend.name} backend does not declare interactive sessions; use SandboxSession on it, or "
                "an interactive session on a backend that declares them (docker, podman, kubernetes)"
            )
        if timeout is not UNSET and timeout is not None and (isinstance(timeout, bool) or timeout <= 0):
            raise ValidationError(f"timeout must be a positive number of seconds or None, not {timeout!r}")
        self.history_size = history_size
        self.max_memory = max_memory
        self.cell_timeout = timeout
        self._kernel: Kernel | None = None
        self._lost_because: str | None = None  # why the state went, for the next cell's result

    # Lifecycle ---------------------------------------------------------------------------------------------

    def open(self) -> InteractiveSandboxSession:
        """Open the sandbox and start its kernel; on failure nothing is left."""
        previous = self._kernel
        if self.is_open and previous is not None:
            return self
        super().open()
        try:
            self._start_kernel()
        except BaseException:
            self.close()
            raise
        if previous is not None:  # the session replaced a sandbox that died, and its kernel with it
            previous.close()
            self._lost_because = "the sandbox was replaced: a new interpreter runs and the earlier state is gone"
        return self

    def close(self) -> None:
        kernel, self._kernel = self._kernel, None
        if kernel is not None:
            kernel.close()
        super().close()

    def __enter__(self) -> InteractiveSandboxSession:
        return self.open()

    def restart(self) -> None:
        """A fresh interpreter in the same sandbox: every name the cells defined is gone (files stay)."""
        sandbox = self._require_sandbox()
        if self._kernel is not None:
            self._kernel.close()
        self._lost_because = None
        self._start_kernel(sandbox)

    def is_kernel_alive(self) -> bool:
        """Whether the interpreter that holds the state is running and answers (an empty cell, a few ms)."""
        if self._sandbox is None or self._kernel is None or self._kernel.sandbox is not self._sandbox:
            return False
        return self._kernel.responds()

    @property
    def kernel(self) -> str:
        """Which kernel runs the cells: "ipython", "python", "node", "ruby" or "r" ("" before open)."""
        return "" if self._kernel is None else self._kernel.kind

    # Running -----------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> CellResult:
        """Run ``code`` as the next cell: exit code 0 when it completed, non-zero when it raised (the traceback
        on stderr); a cell past its timeout is interrupted and raises ``SandboxTimeoutError`` carrying its
        result. Output streams to the callbacks while the cell runs; plots it draws come back in ``plots``.
        ``libraries``, and the packages of the ``%pip install`` lines a Python cell starts with (``pip_lines``),
        are installed first, by the library (pip's output leads the cell's stdout)."""
        sandbox = self._require_sandbox()
        if not isinstance(code, str):
            raise ArgumentTypeError(f"code must be a string, not {type(code).__name__}")
        self._enforce_policy(code)
        wanted = list(libraries or [])
        installed = ""
        if self.options.language.name == "python":
            from_cell, code = leading_pip_installs(code)
            wanted += from_cell
        if wanted:
            installed = self.install(wanted).stdout
            if on_stdout is not None and installed:
                on_stdout(installed)
        kernel = self._kernel_for(sandbox)
        limit = self._cell_limit(timeout)
        started = time.monotonic()
        outcome = kernel.run_cell(
            code,
            timeout=limit,
            output_limit=self.options.run.output_limit,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
        )
        notes = [] if self._lost_because is None else [self._lost_because]
        self._lost_because = None
        if outcome.kernel_lost:
            notes.append(self._replace_lost_kernel(sandbox, outcome.timed_out, outcome.status))
        stderr = outcome.stderr + "".join(f"{NOTE_PREFIX}{note}\n" for note in notes)
        result = CellResult(
            exit_code=outcome.status,
            stdout=installed + outcome.stdout,
            stderr=stderr,
            timed_out=outcome.timed_out,
            truncated=outcome.truncated,
            duration_s=time.monotonic() - started,
            plots=outcome.plots,
            state_lost=bool(notes),
        )
        if outcome.timed_out:
            kept = "the interpreter lost its state" if outcome.kernel_lost else "the interpreter kept its state"
            raise SandboxTimeoutError(
                f"the cell exceeded its timeout of {limit:g} s and was interrupted; {kept}", result, limit
            )
        return result

    def install(self, libraries: Sequence[str]) -> ConsoleOutput:
        """Install libraries (``SandboxSession.install``); where the install window ended the interpreter, a new
        one is started and the next cell's result says the state was lost."""
        output = super().install(libraries)
        kernel = self._kernel
        if kernel is not None and not kernel.responds():
            self._lost_because = (
                "libraries were installed: every process of the code ends before the install's network window "
                "opens, the interpreter too; a new one was started and the earlier state is gone"
            )
            self._start_kernel()
        return output

    # Internals ---------------------------------------------------------------------------------------------

    def _start_kernel(self, sandbox: Sandbox | None = None) -> Kernel:
        sandbox = sandbox or self._sandbox
        if sandbox is None:
            raise NotOpenSessionError("the session is not open: use `with InteractiveSandboxSession(...)`")
        kernel = Kernel(
            sandbox,
            self.options.language.name,
            kernel_type=self.kernel_type,
            history_size=self.history_size,
            encoding_errors=self.options.run.encoding_errors,
        )
        kernel.start()
        self._kernel = kernel
        return kernel

    def _kernel_for(self, sandbox: Sandbox) -> Kernel:
        """The session's kernel in ``sandbox``; a new one (the state lost, said in the result) where the sandbox
        was replaced or the kernel is gone."""
        kernel = self._kernel
        if kernel is not None and kernel.sandbox is sandbox and kernel.started:
            return kernel
        if kernel is not None:
            kernel.close()
            self._lost_because = (
                "the sandbox was replaced: a new interpreter runs and the earlier state is gone"
                if kernel.sandbox is not sandbox
                else "the interpreter had exited: a new one was started and the earlier state is gone"
            )
        return self._start_kernel(sandbox)

    def _replace_lost_kernel(self, sandbox: Sandbox, timed_out: bool, status: int) -> str:
        self._start_kernel(sandbox)
        if timed_out:
            return (
                f"the cell did not stop within {INTERRUPT_GRACE_S:g} s of its interrupt: the interpreter was "
                "replaced by a new one and the earlier state is gone"
            )
        return f"the interpreter exited (status {status}): a new one was started and the earlier state is gone"

    def _cell_limit(self, timeout: Timeout) -> float | None:
        if timeout is not UNSET:
            return timeout
        if self.cell_timeout is not UNSET:
            return self.cell_timeout
        return self.options.run.run_timeout


def _with_memory(options: dict[str, Any], max_memory: str | int) -> dict[str, Any]:
    """``runtime_configs`` with the memory limit set (unless the caller set one there): ``mem_limit`` for the
    container engines, a ``resources`` limit for Kubernetes."""
    configs = dict(options.get("runtime_configs") or {})
    if options.get("container_id") is not None:
        logger.warning("max_memory is not applied to an attached container: its owner set its limits")
        return configs
    backend = options.get("backend", "docker")
    name = str(getattr(backend, "value", getattr(backend, "name", backend))).lower()
    size = _bytes(max_memory)
    if name == "kubernetes":
        configs.setdefault("resources", {"limits": {"memory": str(size)}})
    else:
        configs.setdefault("mem_limit", size)
    return configs


def _bytes(value: str | int) -> int:
    """A memory size as the container engines read it ("1GB", "512m", "2g", bytes as a number)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValidationError(f"max_memory must be a size such as '1GB' or '512m', not {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
