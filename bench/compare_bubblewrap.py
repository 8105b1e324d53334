"""Bubblewrap against Docker, side by side: a new sandbox's open + run + close, and a warm run.

Run from the repository root, as root, with Docker running and the python image built::

    .venv/bin/python bench/compare_bubblewrap.py [--reps 10] [--warm-reps 30] [--lang python]

Both backends are this package's, so both run in this process. For each repetition of ``new``, each backend
opens a session (``lang=--lang``, its default image), runs the hello world and closes it, timed as a whole; the
backend that goes first alternates, so machine noise hits both alike. ``warm`` runs the hello world in a session
opened once per backend, after 2 warm-ups. Every output is checked (``stdout == "hello\\n"``). The first Bubblewrap
session of an image exports the image's filesystem (once per host): one untimed session per backend comes first.
Ratio = docker / bubblewrap. Exit code 0 when the measurement completed; 1 on a wrong output.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from llm_sandbox import SandboxSession  # noqa: E402

BACKENDS = ("bubblewrap", "docker")
HELLO = {
    "python": "print('hello')",
    "javascript": "console.log('hello');",
    "ruby": 'puts "hello"',
    "r": 'cat("hello\\n")',
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10, help="open + run + close cycles per backend (default 10)")
    parser.add_argument("--warm-reps", type=int, default=30, help="warm runs per backend (default 30)")
    parser.add_argument("--lang", choices=sorted(HELLO), default="python")
    return parser.parse_args(argv)


def check(backend: str, stdout: str) -> None:
    if stdout != "hello\n":
        raise SystemExit(f"{backend}: wrong output {stdout!r}")


def new_cycle(backend: str, lang: str) -> float:
    started = time.perf_counter()
    with SandboxSession(backend=backend, lang=lang) as session:
        output = session.run(HELLO[lang]).stdout
    elapsed = time.perf_counter() - started
    check(backend, output)
    return elapsed


def alternate(reps: int, measure: Callable[[str], float]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    for rep in range(reps):
        order = BACKENDS if rep % 2 == 0 else tuple(reversed(BACKENDS))
        for backend in order:
            samples[backend].append(measure(backend))
    return samples


def warm_runs(lang: str, warm_reps: int) -> dict[str, list[float]]:
    sessions = {backend: SandboxSession(backend=backend, lang=lang) for backend in BACKENDS}
    try:
        for session in sessions.values():
            session.open()
            for _ in range(2):
                session.run(HELLO[lang])

        def measure(backend: str) -> float:
            started = time.perf_counter()
            output = sessions[backend].run(HELLO[lang]).stdout
            elapsed = time.perf_counter() - started
            check(backend, output)
            return elapsed

        return alternate(warm_reps, measure)
    finally:
        for session in sessions.values():
            session.close()


def row(name: str, samples: dict[str, list[float]]) -> str:
    medians = {backend: statistics.median(values) * 1000 for backend, values in samples.items()}
    floors = {backend: min(values) * 1000 for backend, values in samples.items()}
    ratio = medians["docker"] / medians["bubblewrap"]
    return (
        f"| {name} | {medians['bubblewrap']:.1f} (min {floors['bubblewrap']:.1f}) | "
        f"{medians['docker']:.1f} (min {floors['docker']:.1f}) | {ratio:.1f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for backend in BACKENDS:  # untimed: the first Bubblewrap session of an image exports its filesystem
        new_cycle(backend, args.lang)
    new = alternate(args.reps, lambda backend: new_cycle(backend, args.lang))
    warm = warm_runs(args.lang, args.warm_reps)
    print(f"\n{args.lang}, medians in ms ({args.reps} new cycles, {args.warm_reps} warm runs per backend)\n")
    print("| workload | bubblewrap | docker | docker / bubblewrap |")
    print("| --- | --- | --- | --- |")
    print(row("open + run + close", new))
    print(row("warm run", warm))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
