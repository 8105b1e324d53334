"""What the framework adapters share: one tool call run in a sandbox, and its outcome as text for a model.

A call runs in the session the caller handed over when the call's language is that session's (state then carries
over from call to call), else in a new sandbox opened for that call alone and removed after it. Errors the library
raises (a time limit, a language it does not know, a policy violation) come back as text the model can act on,
with whatever the code printed before; cancellation and programming errors propagate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_sandbox.aio import AsyncArtifactSandboxSession, AsyncSandboxSession
from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.const import SupportedLanguage
from llm_sandbox.data import ConsoleOutput, ExecutionResult, FileType, PlotOutput
from llm_sandbox.errors import SandboxError
from llm_sandbox.session import SandboxSession

TOOL_NAME = "execute_code"
LANGUAGES = tuple(language.value for language in SupportedLanguage)
# The languages whose figures the artifact capture brings back (matplotlib and friends; R's graphics devices).
PLOTTING_LANGUAGES = ("python", "r")
DESCRIPTION = (
    "Run a complete program in an isolated sandbox with no network access and return its exit code, stdout and "
    f"stderr. Languages: {', '.join(LANGUAGES)}. Print whatever you need to see. Figures a Python (matplotlib) or "
    "R program draws come back as images."
)
CODE_HELP = "The complete program to run; it runs as a file, so print the results you need."
LANGUAGE_HELP = f"The program's language, one of: {', '.join(LANGUAGES)}."
# The figure formats models take as images; figures in other formats (a PDF, say) are only counted in the text.
IMAGE_TYPES = {FileType.PNG: "image/png", FileType.JPEG: "image/jpeg"}

SyncSession = SandboxSession | ArtifactSandboxSession


@dataclass(frozen=True)
class ToolRun:
    """One call's outcome: the text for the model, the plots drawn, and the result (None when the run raised)."""

    text: str
    plots: tuple[PlotOutput, ...] = ()
    result: ExecutionResult | None = None

    def images(self) -> list[tuple[str, PlotOutput]]:
        """The plots a model can take as images, with their MIME types."""
        return [(IMAGE_TYPES[plot.format], plot) for plot in self.plots if plot.format in IMAGE_TYPES]


def describe(output: ConsoleOutput, plots: int = 0) -> str:
    """The text a model reads for a run's output."""
    parts = [f"exit code: {output.exit_code}"]
    if output.stdout:
        parts.append("stdout:\n" + output.stdout.rstrip("\n"))
    if output.stderr:
        parts.append("stderr:\n" + output.stderr.rstrip("\n"))
    if not (output.stdout or output.stderr):
        parts.append("(no output)")
    if output.truncated:
        parts.append("(output cut at the session's output limit)")
    if plots:
        parts.append(f"({plots} plot{'s' if plots > 1 else ''} drawn)")
    return "\n".join(parts)


def describe_error(error: SandboxError) -> str:
    """The text a model reads for a run that raised: the error, then what the code printed before it."""
    text = f"error: {type(error).__name__}: {error}"
    output = getattr(error, "output", None)
    if isinstance(output, ConsoleOutput):
        text += "\n" + describe(output)
    return text


def _outcome(result: ExecutionResult) -> ToolRun:
    return ToolRun(describe(result, len(result.plots)), tuple(result.plots), result)


def _language_of(session: SyncSession | AsyncSandboxSession) -> str:
    options = session.session.options if isinstance(session, AsyncSandboxSession) else session.options
    return options.language.name


def _chosen(language: str | None, session: SyncSession | AsyncSandboxSession | None) -> str:
    if language:
        return language.strip().lower()
    return _language_of(session) if session is not None else "python"


def run_code(
    code: str, language: str | None = None, session: SyncSession | None = None, options: Mapping[str, Any] = {}
) -> ToolRun:
    """Run one call (blocking); see the module."""
    chosen = _chosen(language, session)
    try:
        if session is not None and _language_of(session) == chosen:
            return _outcome(session.run(code))
        with ArtifactSandboxSession(lang=chosen, enable_plotting=chosen in PLOTTING_LANGUAGES, **options) as fresh:
            return _outcome(fresh.run(code))
    except SandboxError as error:
        return ToolRun(describe_error(error))


async def arun_code(
    code: str,
    language: str | None = None,
    session: AsyncSandboxSession | None = None,
    options: Mapping[str, Any] = {},
) -> ToolRun:
    """Run one call on the event loop; cancelling it cancels the run in the sandbox. See the module."""
    chosen = _chosen(language, session)
    try:
        if session is not None and _language_of(session) == chosen:
            return _outcome(await session.run(code))
        plotting = chosen in PLOTTING_LANGUAGES
        async with AsyncArtifactSandboxSession(lang=chosen, enable_plotting=plotting, **options) as fresh:
            return _outcome(await fresh.run(code))
    except SandboxError as error:
        return ToolRun(describe_error(error))
