"""AsyncSandboxSession on every backend: runs, streams, real cancellation, close during a run."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import pytest

from harness import ABOVE_THE_COMMAND_PATH, Harness
from llm_sandbox import AsyncSandboxSession, NotOpenSessionError, SandboxTimeoutError
from llm_sandbox.aio import AsyncInteractiveSandboxSession, StreamEvent

pytestmark = ABOVE_THE_COMMAND_PATH

# A run that leaves a detached grandchild behind and then waits: cancelling it must end both.
LINGERING = (
    "import subprocess, time\n"
    "subprocess.Popen(['sleep', '303'], start_new_session=True)\n"
    "print('started', flush=True)\n"
    "time.sleep(300)\n"
)
# Lists the command lines of the sandbox's processes (no ps needed).
PROCESSES = (
    "import os\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try: print(open(f'/proc/{pid}/cmdline').read().replace('\\0', ' '))\n"
    "    except OSError: pass\n"
)


def session_on(backend: Harness, **options: Any) -> AsyncSandboxSession:
    return AsyncSandboxSession(**{**backend.session_defaults, "lang": "python", **options})


async def start_and_wait(session: AsyncSandboxSession, code: str) -> asyncio.Task[Any]:
    """A task running ``code``, returned once the code said 'started'."""
    started = asyncio.Event()
    task = asyncio.create_task(session.run(code, on_stdout=lambda text: started.set() if "started" in text else None))
    await asyncio.wait_for(started.wait(), 30)
    return task


async def lingering_processes(session: AsyncSandboxSession) -> list[str]:
    listing = await session.run(PROCESSES)
    return [line for line in listing.stdout.splitlines() if "sleep 303" in line or "time.sleep(300)" in line]


def test_run_command_and_stream(backend: Harness) -> None:
    async def scenario() -> None:
        async with session_on(backend) as session:
            result = await session.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
            assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
            command = await session.execute_command("echo $((6 * 7))")
            assert (command.exit_code, command.stdout) == (0, "42\n")
            chained = await session.execute_commands(["true", "exit 4", "echo never"])
            assert chained.exit_code == 4

            events: list[tuple[StreamEvent, float]] = []
            code = "import sys, time\nprint('a', flush=True)\ntime.sleep(1)\nprint('b', file=sys.stderr)\nsys.exit(2)"
            async for event in session.stream(code):
                events.append((event, time.monotonic()))
            # The output comes in pieces as it is written (an engine may split a line), then the exit.
            kinds = [event.kind for event, _ in events]
            assert kinds == sorted(kinds, key=["stdout", "stderr", "exit"].index)
            assert "".join(event.data for event, _ in events if event.kind == "stdout") == "a\n"
            assert "".join(event.data for event, _ in events if event.kind == "stderr") == "b\n"
            assert kinds.count("exit") == 1
            assert events[-1][0].exit_code == 2
            # 'a' came while the run was still going, not with its end.
            assert events[-1][1] - events[0][1] > 0.8

    asyncio.run(scenario())


def test_a_cancelled_run_is_killed_in_the_sandbox_and_the_session_goes_on(backend: Harness) -> None:
    async def scenario() -> None:
        async with session_on(backend) as session:
            task = await start_and_wait(session, LINGERING)
            assert not task.done()
            began = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - began < 10
            assert await lingering_processes(session) == []

            # asyncio.timeout and wait_for cancel the same way, and raise TimeoutError to their caller.
            if sys.version_info >= (3, 11):
                with pytest.raises(TimeoutError) as caught:
                    async with asyncio.timeout(1):
                        await session.run(LINGERING)
                assert not isinstance(caught.value, SandboxTimeoutError)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(session.execute_command("sleep 303"), 1)
            assert await lingering_processes(session) == []
            assert (await session.run("print('still here')")).stdout == "still here\n"

            # The session's own time limit still ends a run as it does for SandboxSession.
            with pytest.raises(SandboxTimeoutError):
                await session.run("import time; time.sleep(30)", timeout=1)

    asyncio.run(scenario())


def test_closing_during_a_run_ends_it(backend: Harness) -> None:
    async def scenario() -> None:
        session = await session_on(backend).open()
        task = await start_and_wait(session, LINGERING)
        began = time.monotonic()
        await session.close()
        assert time.monotonic() - began < 15
        with pytest.raises(NotOpenSessionError, match="closed"):
            await task
        assert not session.is_open
        with pytest.raises(NotOpenSessionError):
            await session.run("print(1)")

    asyncio.run(scenario())


@pytest.mark.backends("docker", "podman", "bubblewrap")
def test_sixteen_sessions_run_at_once_from_one_loop(backend: Harness) -> None:
    count = 16

    async def scenario() -> None:
        sessions = [session_on(backend) for _ in range(count)]
        try:
            await asyncio.gather(*(session.open() for session in sessions))
            threads_before = set(threading.enumerate())
            began = time.monotonic()
            runs = asyncio.gather(
                *(
                    session.run(f"import time\ntime.sleep(2)\nprint({index} * {index})")
                    for index, session in enumerate(sessions)
                )
            )
            await asyncio.sleep(1)
            # Every run is in flight now, and the loop waits on their sockets itself: no thread was started.
            threads_during = set(threading.enumerate())
            results = await runs
            elapsed = time.monotonic() - began
        finally:
            await asyncio.gather(*(session.close() for session in sessions))
        assert [result.stdout for result in results] == [f"{index * index}\n" for index in range(count)]
        assert all(result.exit_code == 0 for result in results)
        # One after the other they would take 32 s; at once, a little over 2.
        assert elapsed < count * 2 / 4, elapsed
        assert threads_during - threads_before == set()

    asyncio.run(scenario())


def test_an_interactive_cell_cancelled_is_interrupted_and_the_state_kept(backend: Harness) -> None:
    async def scenario() -> None:
        options = {**backend.session_defaults, "lang": "python"}
        async with AsyncInteractiveSandboxSession(**options) as session:
            await session.run("answer = 41")
            loop = asyncio.get_running_loop()
            started = asyncio.Event()

            def on_stdout(text: str) -> None:  # called on the cell's worker thread
                if "started" in text:
                    loop.call_soon_threadsafe(started.set)

            cell = "import time\nprint('started', flush=True)\ntime.sleep(300)"
            task = asyncio.create_task(session.run(cell, on_stdout=on_stdout))
            await asyncio.wait_for(started.wait(), 30)
            began = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - began < 15
            assert (await session.run("print(answer + 1)")).stdout == "42\n"

    asyncio.run(scenario())


def test_a_cancelled_open_leaves_nothing_open(backend: Harness) -> None:
    async def scenario() -> None:
        session = session_on(backend)
        opening = asyncio.create_task(session.open())
        await asyncio.sleep(0.05)  # the engine is making the sandbox now
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert not session.is_open  # and the run's leak check finds no container of it

    asyncio.run(scenario())
