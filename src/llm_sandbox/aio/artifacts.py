"""AsyncArtifactSandboxSession: the asyncio form of ``ArtifactSandboxSession`` (plots and files with each run)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.artifacts.session import newest_within
from llm_sandbox.config import UNSET, Timeout
from llm_sandbox.data import ExecutionResult, PlotOutput
from llm_sandbox.link import OutputCallback

from .session import AsyncSandboxSession


class AsyncArtifactSandboxSession(AsyncSandboxSession):
    """``ArtifactSandboxSession`` for asyncio: the same options; ``run`` returns the plots drawn since the last
    ``clear_plots`` and the files written into the outputs folder, and is cancelled in the sandbox as every run of
    ``AsyncSandboxSession`` is::

        async with AsyncArtifactSandboxSession(lang="python") as session:
            result = await session.run("import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show()")
    """

    def __init__(self, **options: Any) -> None:
        self.artifacts = ArtifactSandboxSession(**options)
        self._bind(self.artifacts.session)
        self._plots: list[PlotOutput] = []

    async def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        *,
        clear_plots: bool = False,
    ) -> ExecutionResult:
        """Run ``code``; the result holds the plots since the last ``clear_plots`` and this run's output files."""
        if clear_plots:
            self.clear_plots()
        capture = self.artifacts.capture
        result = await self.run_with(capture, code, libraries, timeout, on_stdout, on_stderr)
        self._plots = newest_within([*self._plots, *result.plots], capture.limits)
        return replace(result, plots=list(self._plots))

    def clear_plots(self) -> None:
        """Forget the plots of earlier runs: the next result holds only what its own run draws."""
        self._plots = []
