"""Latency of a trivial cell in an open interactive session, ours against the reference release, per language.

Run from the repository root::

    .venv/bin/python bench/compare_interactive.py [--reps 30] [--langs python,javascript,ruby,r]

Each side runs in its own worker (``interactive_worker.py``): ours on this interpreter, the reference (0.3.46) on
``.bench/ref-venv`` (created or reused as ``compare_reference.py`` does). For each language both sides open one
interactive session on the language's image, run the cell twice to warm up, then run it ``--reps`` times,
alternating which side goes first; each worker times ``run`` alone. The reference's interactive session knows
Python only: for the other languages ours is measured alone. Ratio = median(reference) / median(ours). Exit code 0
when the measurement completed; 1 when a side produced a wrong output or a worker failed.
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
WORKER_SCRIPT = Path(__file__).resolve().parent / "interactive_worker.py"
IMAGES = {lang: f"llm-sandbox/{lang}:bookworm" for lang in ("python", "javascript", "ruby", "r")}
REFERENCE_LANGUAGES = ("python",)  # the reference's InteractiveSandboxSession refuses every other language
TARGET_MS = 15.0
OPEN_TIMEOUT_S = 900.0
CELL_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30, help="measured cells per language and side (default 30)")
    parser.add_argument("--langs", default=",".join(IMAGES), help="comma-separated languages (default: all four)")
    return parser.parse_args(argv)


def measure(workers: dict[str, WorkerProcess], lang: str, reps: int) -> dict[str, list[float]]:
    sides = [side for side in ("ours", "reference") if side == "ours" or lang in REFERENCE_LANGUAGES]
    for side in sides:
        log(f"{side}: opening a {lang} interactive session")
        workers[side].call("open", OPEN_TIMEOUT_S, lang=lang, image=IMAGES[lang])
    samples: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for rep in range(reps + 2):
            order = sides if rep % 2 == 0 else list(reversed(sides))
            for side in order:
                seconds = float(workers[side].call("cell", CELL_TIMEOUT_S, lang=lang)["seconds"])
                if rep >= 2:
                    samples[side].append(seconds)
    finally:
        for side in sides:
            workers[side].call("close", OPEN_TIMEOUT_S, lang=lang)
    return samples


def render(results: dict[str, dict[str, list[float]]]) -> str:
    lines = [
        f"| language | ours median | ours min | reference median | ratio | ours <= {TARGET_MS:g} ms |",
        "|---|---|---|---|---|---|",
    ]
    for lang, samples in results.items():
        ours = statistics.median(samples["ours"]) * 1000
        reference = samples.get("reference")
        ref_ms = statistics.median(reference) * 1000 if reference else None
        lines.append(
            f"| {lang} | {ours:.2f} ms | {min(samples['ours']) * 1000:.2f} ms | "
            + (f"{ref_ms:.1f} ms | {ref_ms / ours:.0f}x" if ref_ms else "— (no interactive session) | —")
            + f" | {'yes' if ours <= TARGET_MS else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    langs = [lang.strip() for lang in args.langs.split(",") if lang.strip()]
    unknown = [lang for lang in langs if lang not in IMAGES]
    if unknown:
        log(f"unknown languages {unknown}; known: {list(IMAGES)}")
        return 1
    SCRATCH.mkdir(exist_ok=True)
    ours_log = SCRATCH / "interactive-ours.log"
    workers = {"ours": WorkerProcess("ours", Path(sys.executable), WORKER_SCRIPT, ours_log, ROOT)}
    if any(lang in REFERENCE_LANGUAGES for lang in langs):
        reference_python = ensure_reference_venv(SCRATCH / "ref-venv")
        workers["reference"] = WorkerProcess(
            "reference", reference_python, WORKER_SCRIPT, SCRATCH / "interactive-reference.log", ROOT
        )
    try:
        for side, worker in workers.items():
            module = worker.call("hello", 120.0)["module"]
            log(f"{side} imports llm_sandbox from {module}")
            if (side == "ours") != str(module).startswith(str(ROOT / "src")):
                log(f"the {side} worker loaded the wrong package")
                return 1
        results = {lang: measure(workers, lang, args.reps) for lang in langs}
    except WorkerError as error:
        log(f"the benchmark broke: {error}")
        return 1
    finally:
        for worker in workers.values():
            worker.stop(120.0)
    print(f"A trivial cell in an open interactive session ({args.reps} cells per side, after 2 warm-ups):\n")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
