"""Warm pools, ours against the reference release: one pooled user, many users at once, pre-warming and closing.

Run from the repository root::

    .venv/bin/python bench/compare_pool.py [--reps 30] [--size 4] [--threads 8] [--per-thread 5]

Each side runs in its own worker (``pool_worker.py``): ours on this interpreter, the reference (0.3.46) on
``.bench/ref-venv`` (created or reused as ``compare_reference.py`` does). Both make a Docker pool of ``--size``
Python sandboxes on the same image and wait until all are ready (timed: pre-warm); then one user at a time
acquires, runs ``print(1)`` and releases, ``--reps`` times after 2 warm-ups, alternating which side goes first
(timed per cycle); then ``--threads`` users share the pool, ``--per-thread`` cycles each (timed: runs per
second); then the pool is closed (timed). Ratio = reference / ours for times, ours / reference for throughput.
Exit code 0 when the measurement completed; 1 when a side produced a wrong output or a worker failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_support import WorkerError, WorkerProcess, ensure_reference_venv, log  # noqa: E402

SCRATCH = ROOT / ".bench"
WORKER_SCRIPT = Path(__file__).resolve().parent / "pool_worker.py"
IMAGE = "llm-sandbox/python:bookworm"
TARGET_MS = 20.0
TARGET_RATIO = 5.0
SLOW_S = 900.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30, help="measured single-user cycles per side (default 30)")
    parser.add_argument("--size", type=int, default=4, help="sandboxes in each pool (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="users at once in the throughput run (default 8)")
    parser.add_argument("--per-thread", type=int, default=5, help="cycles per user in the throughput run")
    return parser.parse_args(argv)


def measure(workers: dict[str, WorkerProcess], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {side: {} for side in workers}
    for side, worker in workers.items():
        log(f"{side}: pre-warming a pool of {args.size}")
        results[side]["prewarm_s"] = float(worker.call("prewarm", SLOW_S, size=args.size, image=IMAGE)["seconds"])
    cycles: dict[str, list[float]] = {side: [] for side in workers}
    sides = list(workers)
    for rep in range(args.reps + 2):
        for side in sides if rep % 2 == 0 else list(reversed(sides)):
            seconds = float(workers[side].call("cycle", SLOW_S)["seconds"])
            if rep >= 2:
                cycles[side].append(seconds)
    for side, worker in workers.items():
        results[side]["cycle_ms"] = statistics.median(cycles[side]) * 1000
        results[side]["cycle_min_ms"] = min(cycles[side]) * 1000
        log(f"{side}: {args.threads} users sharing the pool")
        answer = worker.call("throughput", SLOW_S, threads=args.threads, per_thread=args.per_thread)
        results[side]["runs_per_s"] = float(answer["runs"]) / float(answer["seconds"])
        log(f"{side}: closing the pool")
        results[side]["close_s"] = float(worker.call("close", SLOW_S)["seconds"])
    return results


def render(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    ours, reference = results["ours"], results["reference"]
    cycle_ratio = reference["cycle_ms"] / ours["cycle_ms"]
    rows = [
        ("acquire + run + release, median (ms)", ours["cycle_ms"], reference["cycle_ms"], f"{cycle_ratio:.1f}x"),
        ("  the same, fastest (ms)", ours["cycle_min_ms"], reference["cycle_min_ms"], ""),
        (
            f"{args.threads} users on a pool of {args.size} (runs/s)",
            ours["runs_per_s"],
            reference["runs_per_s"],
            f"{ours['runs_per_s'] / reference['runs_per_s']:.1f}x",
        ),
        (f"pre-warm {args.size} sandboxes (s)", ours["prewarm_s"], reference["prewarm_s"], ""),
        ("close the pool (s)", ours["close_s"], reference["close_s"], ""),
    ]
    lines = ["| | ours | reference | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {mine:.2f} | {theirs:.2f} | {ratio} |" for name, mine, theirs, ratio in rows]
    met = ours["cycle_ms"] <= TARGET_MS and cycle_ratio >= TARGET_RATIO
    lines.append(
        f"\ntargets: median cycle <= {TARGET_MS:g} ms and >= {TARGET_RATIO:g}x the reference: "
        + ("met" if met else "NOT met")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    SCRATCH.mkdir(exist_ok=True)
    workers = {
        "ours": WorkerProcess("ours", Path(sys.executable), WORKER_SCRIPT, SCRATCH / "pool-ours.log", ROOT),
        "reference": WorkerProcess(
            "reference",
            ensure_reference_venv(SCRATCH / "ref-venv"),
            WORKER_SCRIPT,
            SCRATCH / "pool-reference.log",
            ROOT,
        ),
    }
    try:
        for side, worker in workers.items():
            module = worker.call("hello", 120.0)["module"]
            log(f"{side} imports llm_sandbox from {module}")
            if (side == "ours") != str(module).startswith(str(ROOT / "src")):
                log(f"the {side} worker loaded the wrong package")
                return 1
        results = measure(workers, args)
    except WorkerError as error:
        log(f"the benchmark broke: {error}")
        return 1
    finally:
        for worker in workers.values():
            worker.stop(120.0)
    print(f"Warm pools on Docker, {IMAGE}, one CPU per sandbox ({args.reps} single-user cycles per side):\n")
    print(render(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
