"""The artifacts of a run, captured in the run itself: its request asks the guest for the plot files and the output
files, and they come back in the same reply as the run's output (no engine round trip of their own).

``ArtifactCapture`` stands on the runner only, so any session that runs code through one (a plain, pooled or
interactive session) returns artifacts the same way: ``request`` shapes the run's request, ``result`` reads the
artifacts from its reply. Plot files are made inside the sandbox by the language's capture (``plotters``); output
files are the ones the run wrote or changed under the outputs folder of the workdir. Both are bounded by one
``ArtifactLimits``: the guest stops at the cap, the host refuses more than it asked for, and the result names what
was left out.
"""

from __future__ import annotations

import base64
import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from llm_sandbox.artifacts.images import file_type, image_size
from llm_sandbox.artifacts.plotters import PLOTS_FOLDER, Plotter, plotter_for
from llm_sandbox.config import RunPolicy
from llm_sandbox.data import ConsoleOutput, ExecutionResult, OutputFile, PlotOutput
from llm_sandbox.errors import ValidationError
from llm_sandbox.languages.base import Language
from llm_sandbox.messages import ExecReply, ExecRequest
from llm_sandbox.runner import GuestRunner

logger = logging.getLogger(__name__)

DEFAULT_ARTIFACT_COUNT = 64
DEFAULT_ARTIFACT_BYTES = 32 * 1024 * 1024
OUTPUTS_FOLDER = "outputs"  # in the workdir


@dataclass(frozen=True)
class ArtifactLimits:
    """At most ``count`` artifacts (plots and output files together) and ``total_bytes`` of them per run."""

    count: int = DEFAULT_ARTIFACT_COUNT
    total_bytes: int = DEFAULT_ARTIFACT_BYTES

    def __post_init__(self) -> None:
        for name, value in (("artifact_count_limit", self.count), ("artifact_limit", self.total_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValidationError(f"{name} must be a positive whole number, not {value!r}")


@dataclass(frozen=True)
class Artifacts:
    """What one run brought back: plots in the order they were made, output files by their path under the outputs
    folder, and the names of what the caps left out."""

    plots: tuple[PlotOutput, ...] = ()
    files: tuple[OutputFile, ...] = ()
    skipped: tuple[str, ...] = ()


class ArtifactCapture:
    """The artifacts of runs in one language and workdir: plots when ``plotting`` (LanguageNotSupportPlotError
    for a language without a capture), and output files of ``outputs`` (a folder of the workdir; None: none)."""

    def __init__(
        self,
        language: Language,
        workdir: str,
        *,
        plotting: bool = True,
        limits: ArtifactLimits | None = None,
        outputs: str | None = OUTPUTS_FOLDER,
    ) -> None:
        self.plotter: Plotter | None = plotter_for(language.name, language.file_name) if plotting else None
        self.limits = limits or ArtifactLimits()
        self.workdir = workdir
        self.outputs_dir = posixpath.join(workdir, outputs) if outputs else None

    def patterns(self) -> tuple[str, ...]:
        """What the guest sends back: the plot files (relative to the run's temporary folder), then the output
        files (absolute; the guest sends only those the run changed)."""
        patterns: list[str] = []
        if self.plotter is not None:
            patterns.append(f"{PLOTS_FOLDER}/*")
        if self.outputs_dir is not None:
            patterns.append(f"{self.outputs_dir}/**")
        return tuple(patterns)

    def request(self, runner: GuestRunner, code: str, policy: RunPolicy, timeout: float | None) -> ExecRequest:
        """The request that runs ``code`` with its figures captured and its artifacts sent back with the reply."""
        plotter = self.plotter
        request = runner.code_request(
            code,
            policy,
            timeout=timeout,
            collect=self.patterns(),
            collect_budget=self.limits.total_bytes,
            collect_count=self.limits.count,
            extra_files=plotter.files if plotter is not None else (),
            wrap_argv=plotter.wrap if plotter is not None else None,
        )
        if plotter is None or not plotter.environment:
            return request
        return replace(request, env={**request.env, **plotter.environment})

    def read(self, files: Mapping[str, bytes], skipped: Sequence[str] = ()) -> Artifacts:
        """The artifacts among the files a reply brought (named as the guest sent them)."""
        plots: list[PlotOutput] = []
        outputs: list[OutputFile] = []
        prefix = f"{self.outputs_dir}/" if self.outputs_dir is not None else None
        for name in sorted(files):
            data = files[name]
            if prefix is not None and name.startswith(prefix):
                outputs.append(OutputFile(name[len(prefix) :], base64.b64encode(data).decode("ascii")))
            elif name.startswith(f"{PLOTS_FOLDER}/"):
                plot = plot_output(name, data)
                if plot is not None:
                    plots.append(plot)
            else:
                logger.debug("ignoring a collected file the capture did not ask for: %s", name)
        workdir = self.workdir.rstrip("/") + "/"
        # Output files left out are named from the workdir (``outputs/big.csv``), as the code wrote them.
        left_out = tuple(name[len(workdir) :] if name.startswith(workdir) else name for name in skipped)
        return Artifacts(tuple(plots), tuple(outputs), left_out)

    def result(self, output: ConsoleOutput, reply: ExecReply) -> ExecutionResult:
        """The run's result with the artifacts its reply brought."""
        artifacts = self.read(reply.files, reply.skipped)
        if artifacts.skipped:
            logger.warning(
                "the run made more artifacts than the caps allow (%d files, %d bytes); left out: %s",
                self.limits.count,
                self.limits.total_bytes,
                ", ".join(artifacts.skipped),
            )
        return ExecutionResult(
            **output.to_dict(),
            plots=list(artifacts.plots),
            files=list(artifacts.files),
            artifacts_truncated=bool(artifacts.skipped),
            skipped_artifacts=list(artifacts.skipped),
        )


def plot_output(name: str, data: bytes) -> PlotOutput | None:
    """A plot file as a PlotOutput (None for a format the library does not know)."""
    kind = file_type(name)
    if kind is None:
        logger.warning("ignoring a plot file of an unknown format: %s", name)
        return None
    size = image_size(kind, data)
    return PlotOutput(
        format=kind,
        content_base64=base64.b64encode(data).decode("ascii"),
        width=size.width,
        height=size.height,
        dpi=size.dpi,
    )
