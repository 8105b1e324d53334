"""A kernel: one long-lived interpreter in a sandbox that runs cells and keeps its state between them.

The kernel is a long-lived child of the sandbox's helper (``runner.spawn``), started as the code's own process
(the code's uid, its seccomp filter, in a sandbox the library created). A cell is one ``feed``: its source goes to
the kernel's stdin, its output streams back as the kernel writes it, and the kernel's end line (a tag made for
that cell alone, then the cell's status) ends it. The tag is random per cell, so output of the cell itself cannot
end it early by accident. At its time limit, or past its output limit, the helper kills everything the cell
started and interrupts the kernel with SIGINT (each language's own interrupt: Python's KeyboardInterrupt, node's
``breakEvalOnSigint``, Ruby's Interrupt, R's interrupt condition); the kernel then has a grace period to end the
cell, keeping its state. A kernel that does not come back, or that exited, is gone with its state: the session
starts a new one and says so.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sandbox.artifacts.capture import plot_output
from llm_sandbox.config import RunPolicy
from llm_sandbox.data import PlotOutput
from llm_sandbox.errors import ContainerError, SandboxError
from llm_sandbox.interactive.kernel_types import KERNELS, KernelType
from llm_sandbox.link import OutputCallback
from llm_sandbox.messages import DEFAULT_COLLECT_BUDGET, FeedReply
from llm_sandbox.sandbox import Sandbox

logger = logging.getLogger(__name__)

END = b"\x1e"
START_TIMEOUT_S = 120.0  # importing IPython on a busy machine can take seconds
INTERRUPT_GRACE_S = 3.0  # how long an interrupted cell gets to end before the kernel is given up
CLEAN_UP_TIMEOUT_S = 30.0
TEMP_FOLDER = "/tmp"  # noqa: S108 - a folder of the code's inside the sandbox, not the host's


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended in the kernel: its status (0: completed), whether it timed out, whether the kernel is
    gone (exited, or not back from the interrupt), what it printed and the plots it drew."""

    status: int
    timed_out: bool
    kernel_lost: bool
    stdout: str
    stderr: str
    truncated: bool
    plots: list[PlotOutput] = field(default_factory=list)


class Kernel:
    """One interpreter of ``language`` in ``sandbox``, started by ``start()`` and ended by ``close()``."""

    def __init__(
        self,
        sandbox: Sandbox,
        language: str,
        *,
        kernel_type: KernelType = KernelType.IPYTHON,
        history_size: int = 1000,
        encoding_errors: str = "replace",
    ) -> None:
        self.sandbox = sandbox
        self.language = language
        self.program = KERNELS[language]
        self.kernel_type = kernel_type
        self.history_size = history_size
        self.encoding_errors = encoding_errors
        self.handle: int | None = None
        self.kind = ""  # what the kernel said it is ("ipython", "python", "node", "ruby", "r")
        self.plot_folder = f"{TEMP_FOLDER}/llm-sandbox-plots-{secrets.token_hex(6)}"

    @property
    def started(self) -> bool:
        return self.handle is not None

    def start(self) -> None:
        """Spawn the kernel and wait until it says it is ready; a kernel that cannot start is a ContainerError
        carrying what it printed."""
        runner = self.sandbox.runner
        ready = secrets.token_hex(8)
        values = {
            "interpreter": self.program.interpreter or runner.python,
            "source": self.program.source,
            "plots": self.plot_folder,
            "history": str(self.history_size),
            "mode": self.kernel_type.value,
            "ready": ready,
        }
        argv = [part.format(**values) if part.startswith("{") else part for part in self.program.argv]
        # IPython keeps its profile out of the workdir, where it would show among the user's files.
        environment = {"IPYTHONDIR": f"{self.plot_folder}/ipython", "MPLBACKEND": "Agg"}
        spawned = runner.spawn(argv, env=environment)
        self.handle = spawned.handle
        reply = runner.feed(
            spawned.handle,
            b"",
            marker=END + ready.encode() + END,
            trailer=True,
            timeout=START_TIMEOUT_S,
            encoding_errors=self.encoding_errors,
        )
        if not reply.marker_seen or reply.trailer is None:
            said = (reply.stderr or reply.stdout).strip()[-2000:]
            self.close()
            how = "timed out" if reply.timed_out else f"exited with status {reply.exit_code}"
            raise ContainerError(
                f"the {self.language} kernel could not start in the sandbox ({how})"
                + (f": {said}" if said else "; is its interpreter in the image?")
            )
        self.kind = reply.trailer
        logger.debug("%s kernel ready (%s), handle %s", self.language, self.kind, self.handle)

    def run_cell(
        self,
        code: str,
        *,
        timeout: float | None,
        output_limit: int,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> CellOutcome:
        """Run one cell. A kernel that is gone afterwards (``kernel_lost``) is closed here."""
        if self.handle is None:
            raise ContainerError("the kernel is not running")
        tag = secrets.token_hex(8)
        source = code.encode("utf-8", "surrogateescape")
        reply = self.sandbox.runner.feed(
            self.handle,
            f"{tag} {len(source)}\n".encode("ascii") + source,
            marker=END + tag.encode() + END,
            trailer=True,
            timeout=timeout,
            interrupt=True,
            grace=INTERRUPT_GRACE_S,
            output_limit=output_limit,
            collect_from=f"{self.plot_folder}/{tag}",
            collect=("*.png",),
            collect_budget=DEFAULT_COLLECT_BUDGET,
            on_stdout=on_stdout,
            on_stderr=on_stderr,
            encoding_errors=self.encoding_errors,
        )
        lost = not reply.marker_seen
        if lost:
            self.close()
        return CellOutcome(
            status=_status(reply),
            timed_out=reply.timed_out,
            kernel_lost=lost,
            stdout=reply.stdout,
            stderr=reply.stderr,
            truncated=reply.truncated,
            plots=_plots(reply.files),
        )

    def responds(self, timeout: float = 10.0) -> bool:
        """Whether the kernel is there and answers an empty cell (False closes what is left of it)."""
        if self.handle is None:
            return False
        try:
            outcome = self.run_cell("", timeout=timeout, output_limit=0)
        except ContainerError:  # the helper no longer holds it (the sandbox was reset)
            self.handle = None
            return False
        return not outcome.kernel_lost

    def close(self) -> None:
        """End the kernel and everything it started (nothing when it is gone already)."""
        handle, self.handle = self.handle, None
        if handle is None:
            return
        try:
            self.sandbox.runner.close_process(handle)
            if not self.sandbox.owned:
                # An attached container outlives the session: the kernel's folder (IPython's profile, figures
                # not collected) goes now. A created one goes whole with its container.
                self.sandbox.runner.run_argv(
                    ["rm", "-rf", "--", self.plot_folder], RunPolicy(), cwd=None, timeout=CLEAN_UP_TIMEOUT_S
                )
        except SandboxError as error:  # the helper or the sandbox is gone, and the kernel with it
            logger.debug("closing the kernel: %s", error)


def _plots(files: Mapping[str, bytes]) -> list[PlotOutput]:
    """The figures a cell drew, in the order drawn (the kernel numbers their files), decoded as artifact capture
    decodes a run's plots."""
    plots = (plot_output(name, files[name]) for name in sorted(files))
    return [plot for plot in plots if plot is not None]


def _status(reply: FeedReply) -> int:
    """The cell's status: what the kernel's end line said, else the kernel's exit status, else 1."""
    if reply.trailer is not None and reply.trailer.strip().lstrip("-").isdigit():
        return int(reply.trailer.strip())
    if reply.exit_code:
        return reply.exit_code
    return 1
