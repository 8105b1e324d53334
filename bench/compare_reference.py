"""Compare our ``llm_sandbox`` with the reference release (llm-sandbox==0.3.46 from PyPI) on the same engine and image.

Run from the repository root::

    .venv/bin/python bench/compare_reference.py [--reps 30] [--only run,exec,new,attach,languages,plot] [--profile]

Both packages are imported as ``llm_sandbox``, so each side lives in its own worker process (ours on this
interpreter, the reference on a venv under ``.bench/ref-venv`` that this script creates or reuses). The script
sends the workers the same operations, alternating which side goes first at every repetition so machine noise hits
both alike; each worker times the library call itself. The printed ratios are median(reference) / median(ours).
The exit code is 0 whenever the measurement completed, whether or not the targets were met; it is 1 when the
benchmark itself could not run (a wrong output, a worker failure, no engine).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_languages import IMAGES, LanguageRun, render_languages  # noqa: E402
from bench.bench_report import (  # noqa: E402
    SIDES,
    WORKLOADS,
    Row,
    Samples,
    Workload,
    close_row,
    ratio_row,
    render_phases,
    render_table,
    summary,
)
from bench.bench_support import (  # noqa: E402
    WorkerError,
    WorkerProcess,
    ensure_reference_venv,
    image_ids,
    log,
    start_attach_target,
    sweep,
)

IMAGE = "llm-sandbox/python:bookworm"
SCRATCH = ROOT / ".bench"
WORKER_SCRIPT = Path(__file__).resolve().parent / "bench_worker.py"
OPEN_TIMEOUT_S = 900.0
PROFILE_REPS = {"run": 20, "exec": 20, "new": 3, "attach": 5, "plot": 5}


class Bench:
    def __init__(self, workers: dict[str, WorkerProcess]) -> None:
        self.workers = workers
        self.containers: set[str] = set()
        self.info: list[str] = []
        self.reference_failed = False  # the reference failed somewhere: look for its unreported containers too

    def call(self, side: str, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        try:
            answer = self.workers[side].call(op, timeout, **fields)
        except WorkerError as error:
            self.containers.update(error.containers)
            raise
        self.containers.update(answer.get("containers", []))
        return answer

    def measure(self, workload: Workload, scale: int, **fields: Any) -> Samples:
        samples = Samples()
        reps = workload.reps(scale)
        total = workload.warmups + reps
        log(f"{workload.name}: {workload.warmups} warm-up(s) + {reps} reps per side")
        for index in range(total):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                answer = self.call(side, workload.op, workload.timeout, **fields)
                if index >= workload.warmups:
                    samples.add(side, answer)
        return samples

    def open_sessions(self) -> None:
        for side in SIDES:
            seconds = self.call(side, "open", OPEN_TIMEOUT_S, image=IMAGE)["seconds"]
            self.info.append(f"open of the long-lived session: {side} {seconds * 1000:.0f} ms")

    def close_sessions(self) -> None:
        for side in SIDES:
            seconds = self.call(side, "close", OPEN_TIMEOUT_S)["seconds"]
            self.info.append(f"close of the long-lived session: {side} {seconds * 1000:.0f} ms")

    def profile(self, workload: Workload, **fields: Any) -> str:
        reps = PROFILE_REPS[workload.name]
        answer = self.call("ours", "profile", workload.timeout * reps, target=workload.op, reps=reps, **fields)
        return f"--- cProfile of ours, {workload.name} x{reps} (cumulative) ---\n{str(answer['profile']).rstrip()}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30, help="repetitions of the fast workloads (others scale: /6, /3)")
    parser.add_argument("--only", default="", help="comma-separated workloads: " + ",".join(w.name for w in WORKLOADS))
    parser.add_argument("--profile", action="store_true", help="after measuring, cProfile our side and print it")
    parser.add_argument("--keep-logs", action="store_true", help="keep the worker logs under .bench/")
    args = parser.parse_args(argv)
    names = {w.name for w in WORKLOADS}
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or [w.name for w in WORKLOADS]
    unknown = sorted(set(chosen) - names)
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {sorted(names)}")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    args.chosen = chosen
    return args


def run_workloads(bench: Bench, args: argparse.Namespace, client: Any) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    extra: list[str] = []
    tables: list[str] = []
    selected = [w for w in WORKLOADS if w.name in args.chosen]
    persistent = [w for w in selected if w.name in {"run", "exec"}]
    if persistent:
        bench.open_sessions()
        for workload in persistent:
            rows.append(ratio_row(workload, bench.measure(workload, args.reps)))
            if args.profile:
                extra.append(bench.profile(workload))
        bench.close_sessions()
    for workload in selected:
        if workload.name == "new":
            samples = bench.measure(workload, args.reps, image=IMAGE)
            rows += [ratio_row(workload, samples), close_row(samples)]
            extra.insert(0, render_phases("new container", samples))
            if args.profile:
                extra.append(bench.profile(workload, image=IMAGE))
        elif workload.name == "attach":
            target = start_attach_target(client, IMAGE)
            bench.containers.add(target.id)
            try:
                samples = bench.measure(workload, args.reps, container_id=target.id)
                rows.append(ratio_row(workload, samples))
                extra.insert(0, render_phases("existing container", samples))
                if args.profile:
                    extra.append(bench.profile(workload, container_id=target.id))
            finally:
                target.remove(force=True)
        elif workload.name == "plot":
            row, profile = measure_plots(bench, workload, args)
            rows.append(row)
            extra += profile
        elif workload.name == "languages":
            run = LanguageRun(bench, workload, args.reps)
            try:
                tables.append(render_languages(run.measure_all(), workload, args.reps))
            finally:
                bench.reference_failed |= run.reference_failed
    return rows, tables + extra


def measure_plots(bench: Bench, workload: Workload, args: argparse.Namespace) -> tuple[Row, list[str]]:
    """The one-plot run, in an artifact session each side opens once (on the same image); with --profile, our
    side profiled while the session is still open."""
    for side in SIDES:
        seconds = bench.call(side, "plot_open", OPEN_TIMEOUT_S, image=IMAGE)["seconds"]
        bench.info.append(f"open of the artifact session: {side} {seconds * 1000:.0f} ms")
    try:
        row = ratio_row(workload, bench.measure(workload, args.reps))
        return row, [bench.profile(workload)] if args.profile else []
    finally:
        for side in SIDES:
            bench.call(side, "plot_close", OPEN_TIMEOUT_S)


def start_workers(reference_python: Path) -> dict[str, WorkerProcess]:
    workers: dict[str, WorkerProcess] = {}
    pythons = {"ours": Path(sys.executable), "reference": reference_python}
    for side in SIDES:
        workers[side] = WorkerProcess(side, pythons[side], WORKER_SCRIPT, SCRATCH / f"{side}-worker.log", ROOT)
    return workers


def check_workers(bench: Bench) -> None:
    """Each side must have imported its own package, never the other's."""
    expected = {"ours": ROOT / "src", "reference": SCRATCH / "ref-venv"}
    for side in SIDES:
        hello = bench.call(side, "hello", 120.0)
        module = Path(str(hello["module"])).resolve()
        if not module.is_relative_to(expected[side].resolve()):
            raise RuntimeError(f"the {side} worker imported llm_sandbox from {module}, not from {expected[side]}")
        log(f"{side}: llm_sandbox from {module.parent}")


def cleanup(client: Any, bench: Bench, started: float, ids: set[str], our_pid: int | None, *, by_shape: bool) -> None:
    try:
        removed = sweep(
            client,
            window=(started, time.time()),
            images={IMAGE, *IMAGES},
            image_ids=ids | image_ids(client, IMAGE, *IMAGES),
            known=bench.containers,
            our_pid=our_pid,
            by_shape=by_shape,
        )
    except Exception as error:
        log(f"cleanup failed: {error}")
        return
    if removed:
        log(f"removed {len(removed)} leftover container(s): {', '.join(removed)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import docker

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    client = docker.from_env()
    for image in [IMAGE, *(IMAGES if "languages" in args.chosen else ())]:
        client.images.get(image)  # fails loudly when an image is missing: nothing can be pulled here
    SCRATCH.mkdir(exist_ok=True)
    reference_python = ensure_reference_venv(SCRATCH / "ref-venv")
    started = time.time()
    load_before = os.getloadavg()[0]
    ids = image_ids(client, IMAGE, *IMAGES)
    workers: dict[str, WorkerProcess] = {}
    bench = Bench(workers)
    our_pid: int | None = None
    rows: list[Row] = []
    extra: list[str] = []
    completed = False
    try:
        workers.update(start_workers(reference_python))
        our_pid = workers["ours"].process.pid
        check_workers(bench)
        rows, extra = run_workloads(bench, args, client)
        completed = True
    except Exception as error:
        print(f"BENCHMARK ERROR: {error}", file=sys.stderr)
        return 1
    finally:
        for worker in workers.values():
            worker.stop(timeout=120.0)
        cleanup(client, bench, started, ids, our_pid, by_shape=not completed or bench.reference_failed)
        if not args.keep_logs:
            for worker in workers.values():
                worker.log_path.unlink(missing_ok=True)
    print()
    print(f"llm_sandbox (ours, {ROOT / 'src'}) vs llm-sandbox==0.3.46 (reference), image {IMAGE}")
    counts = ", ".join(f"{w.name} {w.warmups}+{w.reps(args.reps)}" for w in WORKLOADS if w.name in args.chosen)
    print(f"ratio = median reference / median ours; warm-ups+reps per side: {counts}")
    load = f"{load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end, on {os.cpu_count()} CPUs"
    print(f"1-minute load average: {load} (other work on the machine inflates the small timings most)")
    if rows:
        print()
        print(render_table(rows))
    if bench.info:
        print()
        print("\n".join(bench.info))
    for block in extra:
        print()
        print(block)
    if rows:
        print()
        print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
