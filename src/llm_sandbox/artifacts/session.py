"""ArtifactSandboxSession: a SandboxSession whose runs bring back the plots they draw and the files they write into
the outputs folder, in the same reply as their output."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from llm_sandbox.artifacts.capture import (
    DEFAULT_ARTIFACT_BYTES,
    DEFAULT_ARTIFACT_COUNT,
    OUTPUTS_FOLDER,
    ArtifactCapture,
    ArtifactLimits,
)
from llm_sandbox.config import UNSET, SessionOptions, Timeout, reject_unknown
from llm_sandbox.data import ConsoleOutput, ExecutionResult, PlotOutput
from llm_sandbox.errors import ValidationError
from llm_sandbox.link import OutputCallback
from llm_sandbox.sandbox import Sandbox
from llm_sandbox.security import SecurityPattern
from llm_sandbox.session import OPTION_NAMES, SandboxSession

logger = logging.getLogger(__name__)

ARTIFACT_OPTIONS = ("enable_plotting", "artifact_count_limit", "artifact_limit", "outputs_folder")
# A folder of the workdir: plain path segments, so that it is never a glob pattern or a way out of the workdir.
_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")


class ArtifactSandboxSession:
    """A sandbox session whose ``run`` returns the figures the code drew (``result.plots``) and the files it wrote
    into the workdir's outputs folder (``result.files``), with its output, in one round trip.

    Takes every ``SandboxSession`` option, plus: ``enable_plotting`` (capture figures; Python and R can, other
    languages raise ``LanguageNotSupportPlotError`` unless it is False), ``artifact_count_limit`` and
    ``artifact_limit`` (how many artifacts, and how many bytes of them, one run may bring back; the rest are named
    in ``result.skipped_artifacts``), ``outputs_folder`` (the workdir's folder whose new files come back; None for
    none). Plots add up across runs, as ``clear_plots()`` or ``run(..., clear_plots=True)`` start over::

        with ArtifactSandboxSession(lang="python") as session:
            result = session.run("import matplotlib.pyplot as plt; plt.plot([1, 3, 2]); plt.show()")
            png = result.plots[0].content
    """

    def __init__(
        self,
        *,
        enable_plotting: bool = True,
        artifact_count_limit: int = DEFAULT_ARTIFACT_COUNT,
        artifact_limit: int = DEFAULT_ARTIFACT_BYTES,
        outputs_folder: str | None = OUTPUTS_FOLDER,
        **options: Any,
    ) -> None:
        reject_unknown({name: value for name, value in options.items() if name not in OPTION_NAMES}, ALL_OPTIONS)
        if outputs_folder is not None and not (isinstance(outputs_folder, str) and _FOLDER.fullmatch(outputs_folder)):
            raise ValidationError(
                f"outputs_folder must be a folder of the workdir (plain names joined by '/'), not {outputs_folder!r}"
            )
        limits = ArtifactLimits(artifact_count_limit, artifact_limit)
        self.session = SandboxSession(**options)
        self.enable_plotting = bool(enable_plotting)
        self.capture = ArtifactCapture(
            self.session.options.language,
            self.session.options.workdir,
            plotting=self.enable_plotting,
            limits=limits,
            outputs=outputs_folder,
        )
        self._plots: list[PlotOutput] = []

    # Runs --------------------------------------------------------------------------------------------------------

    def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        clear_plots: bool = False,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its output with the plots drawn since the last ``clear_plots`` (this run's
        last) and the files this run wrote into the outputs folder."""
        if clear_plots:
            self.clear_plots()
        result = self.session.run_with(self.capture, code, libraries, timeout, on_stdout, on_stderr)
        self._plots = newest_within([*self._plots, *result.plots], self.capture.limits)
        return replace(result, plots=list(self._plots))

    def clear_plots(self) -> None:
        """Forget the plots of earlier runs: the next result holds only what its own run draws."""
        self._plots = []

    # The session's own calls -----------------------------------------------------------------------------------

    def open(self) -> ArtifactSandboxSession:
        self.session.open()
        return self

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ArtifactSandboxSession:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self.session.is_open

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def options(self) -> SessionOptions:
        return self.session.options

    @property
    def container_id(self) -> str | None:
        return self.session.container_id

    @property
    def sandbox(self) -> Sandbox | None:
        return self.session.sandbox

    @property
    def committed_image(self) -> str | None:
        return self.session.committed_image

    def execute_command(
        self,
        command: str | Sequence[str],
        workdir: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        timeout: Timeout = UNSET,
    ) -> ConsoleOutput:
        return self.session.execute_command(command, workdir, on_stdout, on_stderr, timeout)

    def execute_commands(self, commands: Sequence[str | Sequence[str]], workdir: str | None = None) -> ConsoleOutput:
        return self.session.execute_commands(commands, workdir)

    def install(self, libraries: Sequence[str]) -> ConsoleOutput:
        return self.session.install(libraries)

    def copy_to_runtime(self, src: str, dest: str) -> None:
        self.session.copy_to_runtime(src, dest)

    def copy_from_runtime(self, src: str, dest: str) -> None:
        self.session.copy_from_runtime(src, dest)

    def is_safe(self, code: str) -> tuple[bool, list[SecurityPattern]]:
        return self.session.is_safe(code)


ALL_OPTIONS = (*OPTION_NAMES, *ARTIFACT_OPTIONS)


def newest_within(plots: list[PlotOutput], limits: ArtifactLimits) -> list[PlotOutput]:
    """The newest plots that fit the caps together (what a session keeps across runs is bounded as a run is)."""
    kept: list[PlotOutput] = []
    total = 0
    for plot in reversed(plots):
        size = len(base64.b64decode(plot.content_base64))
        if len(kept) == limits.count or total + size > limits.total_bytes:
            logger.debug("dropping %d plot(s) of earlier runs: the caps are reached", len(plots) - len(kept))
            break
        kept.append(plot)
        total += size
    kept.reverse()
    return kept
