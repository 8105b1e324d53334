"""16 runs in 16 sessions from one event loop at once, against the same runs one after the other.

Run from the repository root::

    .venv/bin/python bench/compare_async.py [--sessions 16] [--reps 3] [--backend docker]

Opens ``--sessions`` AsyncSandboxSessions (Python, the default image) from one loop, then, ``--reps`` times for each
workload, times the runs awaited one after the other (sequential) and all at once with ``asyncio.gather``
(concurrent), alternating which goes first. Workloads: ``print`` (a trivial run: what one loop's overhead and the
engine allow) and ``sleep`` (a run that waits one second: the runs' own time overlapping). Every output is checked;
a wrong one stops the bench with exit code 1. Reported: the median wall time of each side and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from llm_sandbox import AsyncSandboxSession

WORKLOADS = {
    "print": "print({index} * {index})",
    "sleep": "import time\ntime.sleep(1)\nprint({index} * {index})",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=16, help="sessions, one run each per timing (default 16)")
    parser.add_argument("--reps", type=int, default=3, help="timings per side and workload (default 3)")
    parser.add_argument("--backend", default="docker", help="docker (default), podman or micromamba")
    return parser.parse_args(argv)


async def timed(step: Callable[[], Awaitable[list[str]]], expected: list[str]) -> float:
    began = time.perf_counter()
    outputs = await step()
    elapsed = time.perf_counter() - began
    if outputs != expected:
        raise SystemExit(f"wrong output: {outputs!r}")
    return elapsed


async def measure(options: argparse.Namespace) -> None:
    sessions = [AsyncSandboxSession(lang="python", backend=options.backend) for _ in range(options.sessions)]
    began = time.perf_counter()
    await asyncio.gather(*(session.open() for session in sessions))
    print(f"opened {len(sessions)} sessions at once in {time.perf_counter() - began:.1f} s", flush=True)
    expected = [f"{index * index}\n" for index in range(len(sessions))]
    try:
        for name, template in WORKLOADS.items():
            codes = [template.format(index=index) for index in range(len(sessions))]

            async def sequential(codes: list[str] = codes) -> list[str]:
                return [(await session.run(code)).stdout for session, code in zip(sessions, codes, strict=True)]

            async def concurrent(codes: list[str] = codes) -> list[str]:
                runs = (session.run(code) for session, code in zip(sessions, codes, strict=True))
                return [result.stdout for result in await asyncio.gather(*runs)]

            await concurrent()  # warm-up: each session's interpreter is ready
            times: dict[str, list[float]] = {"sequential": [], "concurrent": []}
            for rep in range(options.reps):
                order = [("sequential", sequential), ("concurrent", concurrent)]
                for side, step in order if rep % 2 == 0 else reversed(order):
                    times[side].append(await timed(step, expected))
            one_by_one, at_once = (statistics.median(times[side]) for side in ("sequential", "concurrent"))
            print(
                f"{name:>6}: {len(sessions)} sequential {one_by_one:6.2f} s, concurrent {at_once:6.2f} s, "
                f"{one_by_one / at_once:4.1f}x (median of {options.reps})",
                flush=True,
            )
    finally:
        await asyncio.gather(*(session.close() for session in sessions))


def main(argv: list[str] | None = None) -> int:
    asyncio.run(measure(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
