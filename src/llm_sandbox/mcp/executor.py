"""``execute_code``'s engine room: one warm pool per language, made on first use (or at start for the languages
the server warms), each call a fresh sandbox taken from it, so a call costs a run, not a container start.

Figures are captured only for code that could draw one. In Python, a capture that may draw makes the sandbox's
waiting interpreter import pyplot ahead, and a run that follows a reset closely waits for that import (measured:
0.2-2.5 s instead of 20-80 ms for ``print(1)``); code that names no plotting library and no plotting call cannot
draw, so it runs without the figure capture (its output files still come back). R code can draw with any base
function, so R runs are always captured."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llm_sandbox.artifacts import ArtifactSandboxSession
from llm_sandbox.data import ExecutionResult
from llm_sandbox.errors import SandboxTimeoutError
from llm_sandbox.languages.registry import get_language
from llm_sandbox.mcp.languages import PLOTTING_LANGUAGES
from llm_sandbox.mcp.settings import ServerSettings
from llm_sandbox.pool import ContainerPoolManager, ExhaustionStrategy, PoolConfig, create_pool_manager

logger = logging.getLogger(__name__)

# What Python code that draws names: a plotting library (matplotlib, pylab, seaborn, plotly) or a plotting call
# (pandas' df.plot() and df.hist() draw through matplotlib without the code importing it).
PYTHON_DRAWING = re.compile(r"matplotlib|pylab|seaborn|plotly|plot|hist|figure|savefig")
# A call waits this long for a sandbox when every one of its language's is busy.
ACQUISITION_TIMEOUT_S = 120.0


class PooledExecutor:
    """Runs one piece of code in a fresh sandbox of its language's pool and returns its result with its plots."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._pools: dict[str, ContainerPoolManager] = {}
        self._lock = threading.Lock()
        self._closed = False

    def warm(self, languages: Sequence[str]) -> None:
        """Make the pools of ``languages`` now: each starts a sandbox in the background."""
        for language in languages:
            self._pool(get_language(language).name)

    def execute(
        self, code: str, language: str, libraries: Sequence[str] | None, timeout: float | None
    ) -> tuple[ExecutionResult, dict[str, Any]]:
        """The run's result, and what else the client should know of it (the image it was saved as)."""
        name = get_language(language).name
        options: dict[str, Any] = {"enable_plotting": may_draw(name, code), "libraries": list(libraries or [])}
        if not self.settings.commit_container:
            with ArtifactSandboxSession(pool=self._pool(name), **options) as session:
                return _run(session, code, timeout), {}
        # A sandbox saved as an image is never handed to anyone else: it is made for this call alone.
        session = ArtifactSandboxSession(
            lang=name,
            commit_container=True,
            keep_template=self.settings.keep_template,
            **options,
            **self.settings.sandbox_options(),
        )
        with session:
            result = _run(session, code, timeout)
        return result, {"committed_image": session.committed_image}

    def _pool(self, language: str) -> ContainerPoolManager:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            pool = self._pools.get(language)
            if pool is None:
                # Two kept ready: one serves the next call while the last one's sandbox is being reset.
                config = PoolConfig(
                    max_pool_size=self.settings.pool_size,
                    min_pool_size=min(2, self.settings.pool_size),
                    acquisition_timeout=ACQUISITION_TIMEOUT_S,
                    exhaustion_strategy=ExhaustionStrategy.WAIT,
                )
                pool = create_pool_manager(lang=language, config=config, **self.settings.sandbox_options())
                self._pools[language] = pool
                logger.info("pool of %s sandboxes made (at most %d)", language, self.settings.pool_size)
            return pool

    def close(self) -> None:
        """Remove every sandbox of every pool (the pools close side by side: each takes about a second)."""
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
            self._pools.clear()
        if not pools:
            return
        with ThreadPoolExecutor(max_workers=len(pools)) as closing:
            for failure in closing.map(_close_quietly, pools):
                if failure is not None:
                    logger.warning("closing a pool failed: %s", failure)


def may_draw(language: str, code: str) -> bool:
    """Whether a run of ``code`` could draw a figure the capture would bring back."""
    if language not in PLOTTING_LANGUAGES:
        return False
    if language != "python":
        return True
    return PYTHON_DRAWING.search(code) is not None


def _run(session: ArtifactSandboxSession, code: str, timeout: float | None) -> ExecutionResult:
    try:
        return session.run(code, timeout=timeout, clear_plots=True)
    except SandboxTimeoutError as error:
        return timed_out_result(error)


def timed_out_result(error: SandboxTimeoutError) -> ExecutionResult:
    """The result a timed-out run still has: what it printed before it was stopped, marked as timed out."""
    output = error.output
    if isinstance(output, ExecutionResult):
        return output
    if output is None:
        return ExecutionResult(exit_code=-1, stderr=str(error), timed_out=True)
    return ExecutionResult(**output.to_dict())


def _close_quietly(pool: ContainerPoolManager) -> str | None:
    try:
        pool.close()
    except Exception as error:  # noqa: BLE001 - reported; every pool must get its turn to close
        return f"{type(error).__name__}: {error}"
    return None
