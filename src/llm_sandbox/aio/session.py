"""AsyncSandboxSession: a ``SandboxSession`` driven by asyncio, whose runs are cancelled in the sandbox itself.

A run (``run``, ``execute_command``, ``stream``) is one request to the sandbox's helper, sent and awaited on the
event loop (``async_link``): on Docker, Podman and Micromamba the loop waits on the exec socket itself, so a waiting
run holds no thread and one loop drives many sessions; on Kubernetes (whose client only blocks) each link has one
reader thread. Cancelling the awaiting task sends the helper a ``CANCEL``: it kills the run's whole process tree,
answers, and the session is ready for the next call; the caller gets ``CancelledError``.

What is engine work rather than a request to the helper (open, close, installs with their network switch, copies)
runs the synchronous session's code on a worker thread. Cancelling one of those cancels the helper's request it is
in (an install's package manager, say) and waits for the call to end before ``CancelledError`` goes on, so the
session is never left half way. One call runs at a time per session (the helper serves one request at a time);
``close()`` from another task cancels the call in flight first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from llm_sandbox.async_link import AsyncGuestLink, finish
from llm_sandbox.config import UNSET, Timeout
from llm_sandbox.data import ConsoleOutput, ExecutionResult
from llm_sandbox.errors import NotOpenSessionError, SandboxError
from llm_sandbox.link import GuestLinkError, OutputCallback
from llm_sandbox.messages import ExecReply, ExecRequest
from llm_sandbox.run_outcome import log_chunk, outcome
from llm_sandbox.sandbox import Sandbox
from llm_sandbox.security import SecurityPattern
from llm_sandbox.session import RunCapture, SandboxSession

from .events import EventKind, StreamEvent

logger = logging.getLogger(__name__)

Result = TypeVar("Result")
# How often the cancel of a call on a worker thread is repeated until the call ends (it may not have reached its
# request to the helper yet when it is first asked).
CANCEL_RETRY_S = 0.5


class AsyncSandboxSession:
    """``SandboxSession`` for asyncio, with the same options::

    async with AsyncSandboxSession(lang="python") as session:
        result = await session.run("print(1 + 1)")
        async for event in session.stream("print('a'); print('b')"):
            print(event.kind, event.data, event.exit_code)
    """

    def __init__(self, **options: Any) -> None:
        self._bind(SandboxSession(**options))

    def _bind(self, session: SandboxSession) -> None:
        self.session = session
        self._lock = asyncio.Lock()  # one call at a time: the helper serves one request at a time
        self._link: AsyncGuestLink | None = None
        self._thread_call: asyncio.Future[Any] | None = None
        self._closing = False

    # Lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        return self.session.session_id

    @property
    def is_open(self) -> bool:
        return self.session.is_open

    @property
    def container_id(self) -> str | None:
        return self.session.container_id

    async def open(self) -> AsyncSandboxSession:
        """Create (or attach to) the sandbox, on a worker thread; on failure, or when cancelled, nothing is left."""
        try:
            await self._in_thread(self.session.open)
        except asyncio.CancelledError:
            await finish(asyncio.to_thread(self.session.close))  # the open went through: undo it
            raise
        return self

    async def close(self) -> None:
        """Cancel the call in flight, if any (its caller gets an error saying the session closed), then give the
        sandbox back as ``SandboxSession.close`` does. Idempotent."""
        self._closing = True
        acquiring = asyncio.ensure_future(self._lock.acquire())
        try:
            # The call in flight may not have reached its request yet when first asked: ask until it ends.
            while True:
                await self._cancel_in_flight()
                if (await asyncio.wait([acquiring], timeout=CANCEL_RETRY_S))[0]:
                    break
        except BaseException:
            acquiring.cancel()
            if acquiring.done() and not acquiring.cancelled():
                self._lock.release()
            self._closing = False
            raise
        try:
            await asyncio.to_thread(self.session.close)
            self._drop_link()
        finally:
            self._closing = False
            self._lock.release()

    async def __aenter__(self) -> AsyncSandboxSession:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Runs ----------------------------------------------------------------------------------------------------------

    async def run(
        self,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in the session's language, as ``SandboxSession.run``; cancellable (see the module)."""
        return await self.run_with(None, code, libraries, timeout, on_stdout, on_stderr)

    async def run_with(
        self,
        capture: RunCapture | None,
        code: str,
        libraries: Sequence[str] | None = None,
        timeout: Timeout = UNSET,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
    ) -> ExecutionResult:
        """``run`` with a capture that shapes the request and reads the reply (``SandboxSession.run_with``)."""
        if libraries:
            await self.install(libraries)
        async with self._lock:
            sandbox, limit = await self._ready(lambda: self.session.prepare_run(code, timeout))
            policy = self.session.options.run
            runner = sandbox.runner
            if capture is None:
                request = runner.code_request(code, policy, timeout=limit)
            else:
                request = capture.request(runner, code, policy, limit)
            reply = await self._execute(sandbox, request, on_stdout, on_stderr)
            if capture is None:
                return ExecutionResult(**outcome(reply, limit).to_dict())
            return capture.result(outcome(reply, limit), reply)

    async def execute_command(
        self,
        command: str | Sequence[str],
        workdir: str | None = None,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        timeout: Timeout = UNSET,
    ) -> ConsoleOutput:
        """A shell command (a string, through ``/bin/sh -c``) or an argv list; cancellable (see the module)."""
        async with self._lock:
            sandbox, argv, limit = await self._ready(lambda: self.session.prepare_command(command, timeout))
            policy = self.session.options.run
            request = sandbox.runner.argv_request(argv, policy, cwd=workdir, timeout=limit)
            return outcome(await self._execute(sandbox, request, on_stdout, on_stderr), limit)

    async def execute_commands(
        self, commands: Sequence[str | Sequence[str]], workdir: str | None = None
    ) -> ConsoleOutput:
        """Commands in order; stops at the first that fails and returns its output (else the last one's)."""
        if not commands:
            return await self.execute_command("", workdir)  # the same CommandEmptyError as the blocking session
        output = ConsoleOutput()
        for command in commands:
            output = await self.execute_command(command, workdir=workdir)
            if output.exit_code != 0:
                break
        return output

    async def stream(
        self, code: str, libraries: Sequence[str] | None = None, timeout: Timeout = UNSET
    ) -> AsyncIterator[StreamEvent]:
        """Run ``code`` and yield its output as it happens, then an "exit" event with the exit code. Leaving the
        loop early cancels the run in the sandbox; a run that hits a limit raises as ``run`` does, after its
        output."""
        events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def relay(kind: EventKind) -> OutputCallback:
            def put(text: str) -> None:
                # Through the loop: a run on a worker thread (an interactive cell) calls back from that thread.
                loop.call_soon_threadsafe(events.put_nowait, StreamEvent(kind, text))

            return put

        running = asyncio.ensure_future(self.run(code, libraries, timeout, relay("stdout"), relay("stderr")))
        running.add_done_callback(lambda _: loop.call_soon(events.put_nowait, None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield StreamEvent("exit", "", running.result().exit_code)
        finally:
            if not running.done():
                running.cancel()
                await finish(_settled(running))

    # The sandbox's other calls ---------------------------------------------------------------------------------

    async def install(self, libraries: Sequence[str]) -> ConsoleOutput:
        """Install libraries with the language's package manager (engine work: on a worker thread)."""
        return await self._in_thread(self.session.install, libraries)

    async def copy_to_runtime(self, src: str, dest: str) -> None:
        await self._in_thread(self.session.copy_to_runtime, src, dest)

    async def copy_from_runtime(self, src: str, dest: str) -> None:
        await self._in_thread(self.session.copy_from_runtime, src, dest)

    def is_safe(self, code: str) -> tuple[bool, list[SecurityPattern]]:
        return self.session.is_safe(code)

    # The request on the loop -----------------------------------------------------------------------------------

    async def _ready(self, check: Callable[[], Result]) -> Result:
        """The session's checks before a call; on a worker thread when they may be engine work (a dead sandbox is
        replaced, an attached one's lost helper restarted)."""
        sandbox = self.session.sandbox
        if sandbox is None or sandbox.died or not sandbox.runner.link_ready:
            return await asyncio.to_thread(check)
        return check()

    async def _execute(
        self,
        sandbox: Sandbox,
        request: ExecRequest,
        on_stdout: OutputCallback | None,
        on_stderr: OutputCallback | None,
    ) -> ExecReply:
        policy = self.session.options.run
        if on_stdout is None and policy.stream:
            on_stdout = log_chunk("stdout")
        if on_stderr is None and policy.stream:
            on_stderr = log_chunk("stderr")
        runner = sandbox.runner
        link = runner.link()
        if self._link is None or self._link.link is not link:
            self._drop_link()
            self._link = AsyncGuestLink(link)
        try:
            reply = await self._link.request(
                request,
                timeout=request.timeout,
                on_stdout=on_stdout,
                on_stderr=on_stderr,
                encoding_errors=policy.encoding_errors,
            )
        except GuestLinkError as error:
            raise await asyncio.to_thread(runner.link_error, error) from error
        typed = runner.read_reply(reply, ExecReply.from_reply)
        if typed.cancelled:
            raise NotOpenSessionError("the session was closed while this call ran; its processes were killed")
        return typed

    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    # Calls on a worker thread ----------------------------------------------------------------------------------

    async def _in_thread(self, call: Callable[..., Result], *args: Any) -> Result:
        """A call of the blocking session on a worker thread (engine SDKs block). Cancelling it cancels the
        helper's request it is in and waits for the call to end (see the module)."""
        async with self._lock:
            if self._closing:
                raise NotOpenSessionError("the session is closing")
            done = self._thread_call = asyncio.ensure_future(asyncio.to_thread(call, *args))
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                await finish(self._stop_thread_call(done))
                raise
            finally:
                self._thread_call = None

    async def _stop_thread_call(self, done: asyncio.Future[Any]) -> None:
        while not done.done():
            sandbox = self.session.sandbox
            if sandbox is not None and sandbox.runner.link_ready:
                await asyncio.to_thread(sandbox.runner.link().cancel)
            await asyncio.wait([done], timeout=CANCEL_RETRY_S)
        if not done.cancelled() and done.exception() is not None:
            logger.debug("a cancelled call ended with %r", done.exception())

    async def _cancel_in_flight(self) -> None:
        """Ask the guest to stop whatever call is in flight (close() from another task)."""
        if self._link is not None:
            await self._link.cancel()
        if self._thread_call is not None and not self._thread_call.done():
            sandbox = self.session.sandbox
            if sandbox is not None and sandbox.runner.link_ready:
                await asyncio.to_thread(sandbox.runner.link().cancel)


async def _settled(task: asyncio.Future[Any]) -> None:
    """Wait for a task to end, whatever its outcome (its error is its own caller's)."""
    await asyncio.wait([task])
    if not task.cancelled() and isinstance(task.exception(), SandboxError):
        logger.debug("a stream's run ended with %r after its reader left", task.exception())
