"""Workload definitions, samples and the printed table of ``compare_reference.py``."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

SIDES = ("ours", "reference")


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    op: str
    warmups: int
    share: float  # repetitions as a share of --reps
    target: float | None  # minimum ratio reference/ours; None: a report without a target
    timeout: float  # seconds one operation may take before the bench gives up

    def reps(self, scale: int) -> int:
        return max(1, round(scale * self.share))


WORKLOADS = (
    Workload("run", "run(\"print('hi')\") in an open session", "run", 2, 1.0, 10.0, 120.0),
    Workload("exec", 'execute_command("echo hi") in an open session', "exec", 2, 1.0, 5.0, 120.0),
    Workload("new", "new container: open + run + close", "new", 1, 5 / 30, 15.0, 900.0),
    Workload("attach", "existing container: attach + run + close", "attach", 2, 10 / 30, 2.0, 300.0),
    Workload("languages", "hello world per language in an open session", "lang_run", 2, 10 / 30, None, 120.0),
    Workload("plot", "one matplotlib plot, shown, in an open artifact session", "plot_run", 2, 20 / 30, 1.0, 300.0),
)
CLOSE_LIMIT_S = 1.0


@dataclass
class Samples:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {side: [] for side in SIDES})
    phases: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {side: {} for side in SIDES})

    def add(self, side: str, answer: dict[str, object]) -> None:
        self.seconds[side].append(float(answer["seconds"]))  # type: ignore[arg-type]
        phases = answer.get("phases")
        if isinstance(phases, dict):
            for phase, value in phases.items():
                self.phases[side].setdefault(str(phase), []).append(float(value))

    def values(self, side: str, phase: str | None) -> list[float]:
        return self.seconds[side] if phase is None else self.phases[side].get(phase, [])

    def median_ms(self, side: str, phase: str | None = None) -> float:
        values = self.values(side, phase)
        return statistics.median(values) * 1000 if values else float("nan")

    def min_ms(self, side: str, phase: str | None = None) -> float:
        values = self.values(side, phase)
        return min(values) * 1000 if values else float("nan")


@dataclass
class Row:
    title: str
    n: int
    ours_ms: float
    ref_ms: float
    target: str
    passed: bool
    ratio: float | None = None
    ours_min: float = float("nan")
    ref_min: float = float("nan")

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


def ratio_row(workload: Workload, samples: Samples) -> Row:
    if workload.target is None:
        raise ValueError(f"{workload.name} has no target: it is reported in its own table")
    ours, ref = samples.median_ms("ours"), samples.median_ms("reference")
    ratio = ref / ours if ours > 0 else float("inf")
    n = min(len(samples.seconds[side]) for side in SIDES)
    mins = samples.min_ms("ours"), samples.min_ms("reference")
    return Row(workload.title, n, ours, ref, f">= {workload.target:g}x", ratio >= workload.target, ratio, *mins)


def close_row(samples: Samples) -> Row:
    ours, ref = samples.median_ms("ours", "close"), samples.median_ms("reference", "close")
    n = len(samples.phases["ours"].get("close", []))
    mins = samples.min_ms("ours", "close"), samples.min_ms("reference", "close")
    target = f"< {CLOSE_LIMIT_S * 1000:g} ms"
    return Row("our close() of a new container", n, ours, ref, target, ours < CLOSE_LIMIT_S * 1000, None, *mins)


def fmt_ms(value: float) -> str:
    return f"{value:10.1f}" if value >= 100 else f"{value:10.2f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return f"{'-':>8}"
    return f"{value:7.1f}x" if value >= 10 else f"{value:7.2f}x"


def render_table(rows: list[Row]) -> str:
    width = max([len("workload"), *(len(row.title) for row in rows)])
    head = (
        f"{'workload':<{width}}  {'n':>3}  {'ours ms':>10}  {'ref ms':>10}  {'ratio':>8}  {'target':>10}  result"
        f"  {'ours min':>10}  {'ref min':>10}"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        ratio = fmt_ratio(row.ratio)
        lines.append(
            f"{row.title:<{width}}  {row.n:>3}  {fmt_ms(row.ours_ms)}  {fmt_ms(row.ref_ms)}  {ratio}  "
            f"{row.target:>10}  {row.verdict:<6}  {fmt_ms(row.ours_min)}  {fmt_ms(row.ref_min)}"
        )
    lines.append(
        "(ms columns are medians; the min columns show the floor each side reached under this machine's noise)"
    )
    return "\n".join(lines)


def render_phases(what: str, samples: Samples) -> str:
    """Where the time of an open + run + close cycle goes on each side (medians)."""
    lines = [f"{what}, median per phase (ms):", f"  {'side':<10} {'open':>10} {'run':>10} {'close':>10}"]
    for side in SIDES:
        cells = " ".join(fmt_ms(samples.median_ms(side, phase)) for phase in ("open", "run", "close"))
        lines.append(f"  {side:<10} {cells}")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    failed = [row for row in rows if not row.passed]
    head = f"SUMMARY: {len(rows) - len(failed)}/{len(rows)} targets met"
    if not failed:
        return head + " - all PASS"
    details = "; ".join(
        f"{row.title} ({row.ratio:.2f}x, target {row.target})"
        if row.ratio is not None
        else f"{row.title} ({row.ours_ms:.0f} ms, target {row.target})"
        for row in failed
    )
    return f"{head} - FAIL: {details}"
