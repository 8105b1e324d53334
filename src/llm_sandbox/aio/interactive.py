"""AsyncInteractiveSandboxSession: the asyncio form of ``InteractiveSandboxSession``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_sandbox.config import UNSET, Timeout
from llm_sandbox.interactive import InteractiveSandboxSession
from llm_sandbox.interactive.session import CellResult
from llm_sandbox.link import OutputCallback

from .session import AsyncSandboxSession


class AsyncInteractiveSandboxSession(AsyncSandboxSession):
    """``InteractiveSandboxSession`` for asyncio, with the same options: ``run`` is the next cell of the one
    interpreter the sandbox keeps. A cell is the interactive session's own logic (the cell's protocol with its
    interpreter, lost interpreters replaced, ``%pip`` lines), which blocks, so it runs on a worker thread;
    cancelling the awaiting task interrupts the cell in the sandbox as its time limit would (the interpreter keeps
    its state), waits for the cell to end and raises ``CancelledError``. Output callbacks are called on that
    thread."""

    def __init__(self, **options: Any) -> None:
        self.interactive = InteractiveSandboxSession(**options)
        self._bind(self.interactive)

    async def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> CellResult:
        """Run ``code`` as the next cell (``InteractiveSandboxSession.run``)."""
        return await self._in_thread(self.interactive.run, code, libraries, timeout, on_stdout, on_stderr)

    async def restart(self) -> None:
        """Start a fresh interpreter (its state is gone)."""
        await self._in_thread(self.interactive.restart)
