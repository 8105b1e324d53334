"""The ``languages`` workload of ``compare_reference.py``: a warm hello world in each of the seven languages.

For every language, each side opens one session with ``SandboxSession(lang=LANG, image="llm-sandbox/<lang>:bookworm")``,
runs the hello world twice to warm up, then times ``session.run(HELLO[lang])`` (see ``bench_worker.HELLO``) for the
repetitions, alternating which side goes first. For C++, Go and Java it then times as many runs of the same program
with a comment that changes at every run (``lang_run_changed``), which no cache of built programs can answer; and
it reads, on our side, the resident memory of the spare that waits for the next run (``lang_spare_rss``: the code
user's processes between two runs). Then both sessions are closed before the next language starts.
Our side must print exactly ``"hello\\n"`` with exit code 0, or the benchmark stops. The reference is measured where
it works: a failure of its ``open()`` or ``run()`` (the library's error, a wrong output, a worker that stopped
answering) becomes the reason shown in its column, and our side is still measured. There is no target: it is a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.bench_report import SIDES, Samples, Workload, fmt_ms, fmt_ratio
from bench.bench_support import WorkerError, log
from bench.bench_worker import CHANGED_SOURCE_LANGUAGES

LANGUAGES = ("python", "javascript", "java", "cpp", "go", "ruby", "r")
OPEN_TIMEOUT_S = 900.0
REASON_WIDTH = 70


def image_of(lang: str) -> str:
    return f"llm-sandbox/{lang}:bookworm"


IMAGES = tuple(image_of(lang) for lang in LANGUAGES)


class Caller(Protocol):
    def call(self, side: str, op: str, timeout: float, **fields: Any) -> dict[str, Any]: ...


@dataclass
class LanguageResult:
    lang: str
    samples: Samples = field(default_factory=Samples)
    changed: Samples = field(default_factory=Samples)  # a fresh source at every run (C++, Go, Java)
    spare_kb: int | None = None  # RSS of our waiting spare; None: the language has none
    open_ms: dict[str, float] = field(default_factory=dict)
    reference_problem: str | None = None  # why the reference has no timing for this language
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        counts = [len(self.samples.seconds[side]) for side in SIDES if self.samples.seconds[side]]
        return min(counts) if counts else 0


class LanguageRun:
    """Measures the languages one after the other; remembers whether (and since when) the reference failed."""

    def __init__(self, bench: Caller, workload: Workload, scale: int) -> None:
        self.bench = bench
        self.workload = workload
        self.reps = workload.reps(scale)
        self.reference_failed = False
        self.reference_gone: str | None = None  # the reference worker stopped answering: do not talk to it again

    def measure_all(self) -> list[LanguageResult]:
        log(f"languages: per language, {self.workload.warmups} warm-up(s) + {self.reps} reps per side")
        return [self.measure(lang) for lang in LANGUAGES]

    def measure(self, lang: str) -> LanguageResult:
        result = LanguageResult(lang)
        opened: list[str] = []
        try:
            for side in SIDES:
                answer = self.attempt(side, "lang_open", OPEN_TIMEOUT_S, result, lang=lang, image=image_of(lang))
                if answer is not None:
                    opened.append(side)
                    result.open_ms[side] = float(answer["seconds"]) * 1000
            running = list(opened)
            for index in range(self.workload.warmups + self.reps):
                order = SIDES if index % 2 == 0 else SIDES[::-1]
                for side in order:
                    if side not in running:
                        continue
                    answer = self.attempt(side, "lang_run", self.workload.timeout, result, lang=lang)
                    if answer is None:
                        running.remove(side)  # the reference failed; its reason is recorded, ours goes on
                    elif index >= self.workload.warmups:
                        result.samples.add(side, answer)
            if "ours" in opened:
                answer = self.attempt("ours", "lang_spare_rss", self.workload.timeout, result, lang=lang)
                result.spare_kb = None if answer is None or answer["rss_kb"] is None else int(answer["rss_kb"])
            if lang in CHANGED_SOURCE_LANGUAGES:
                self.measure_changed(result, running)
        finally:
            for side in opened:
                self.attempt(side, "lang_close", OPEN_TIMEOUT_S, result, lang=lang)
        log(f"languages: {lang} done ({result.n} reps{'' if result.reference_problem is None else ', ours only'})")
        return result

    def measure_changed(self, result: LanguageResult, running: list[str]) -> None:
        for index in range(self.workload.warmups + self.reps):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for side in order:
                if side not in running:
                    continue
                answer = self.attempt(side, "lang_run_changed", self.workload.timeout, result, lang=result.lang)
                if answer is None:
                    running.remove(side)
                elif index >= self.workload.warmups:
                    result.changed.add(side, answer)

    def attempt(
        self, side: str, op: str, timeout: float, result: LanguageResult, **fields: Any
    ) -> dict[str, Any] | None:
        """One call; a failure of ours propagates, a failure of the reference is recorded and answers None."""
        if side == "reference" and self.reference_gone is not None:
            result.reference_problem = result.reference_problem or self.reference_gone
            return None
        try:
            return self.bench.call(side, op, timeout, **fields)
        except WorkerError as error:
            if side == "ours":
                raise
            self.reference_failed = True
            reason = error.reason.removeprefix("BenchmarkError: ")
            if error.answer is None:
                self.reference_gone = f"worker stopped answering (during {result.lang} {op}): {reason}"
                reason = self.reference_gone
            if op == "lang_close":
                result.notes.append(f"reference close() of the {result.lang} session failed: {reason}")
            elif result.reference_problem is None:
                result.reference_problem = f"{op.removeprefix('lang_')}(): {reason}"
            log(f"languages: reference failed {op} for {result.lang}: {reason}")
            return None


def short(reason: str) -> str:
    line = " ".join(reason.split())
    return line if len(line) <= REASON_WIDTH else line[: REASON_WIDTH - 3] + "..."


def render_languages(results: list[LanguageResult], workload: Workload, scale: int) -> str:
    lines = [
        "languages: warm hello world, session.run(HELLO[lang]) in a session opened once per language and side,",
        f"image llm-sandbox/<lang>:bookworm; {workload.warmups} warm-ups + {workload.reps(scale)} reps per side;"
        " no target (a report); ratio = median reference / median ours",
        "our default sandbox has one CPU (NanoCpus); the reference sets no CPU limit",
        "",
    ]
    head = (
        f"{'language':<10}  {'n':>3}  {'ours ms':>10}  {'ref ms':>10}  {'ratio':>8}  {'ours min':>10}  {'ref min':>10}"
        f"  {'ours open':>10}  {'ref open':>10}  {'spare RSS':>10}"
    )
    lines += [head, "-" * len(head)]
    full: list[str] = []
    for result in results:
        samples = result.samples
        ours, ours_min = samples.median_ms("ours"), samples.min_ms("ours")
        cells = f"{result.lang:<10}  {result.n:>3}  {fmt_ms(ours)}  "
        ours_open = fmt_ms(result.open_ms.get("ours", float("nan")))
        spare = f"{'—':>10}" if result.spare_kb is None else f"{result.spare_kb / 1024:7.1f} MB"
        if result.reference_problem is None:
            ref = samples.median_ms("reference")
            ratio = fmt_ratio(ref / ours if ours > 0 else float("inf"))
            ref_open = fmt_ms(result.open_ms.get("reference", float("nan")))
            cells += f"{fmt_ms(ref)}  {ratio}  {fmt_ms(ours_min)}  {fmt_ms(samples.min_ms('reference'))}  "
            cells += f"{ours_open}  {ref_open}  {spare}"
        else:
            cells += f"{'-':>10}  {'-':>8}  {fmt_ms(ours_min)}  {'-':>10}  {ours_open}  {'-':>10}  {spare}"
            cells += f"  reference: {short(result.reference_problem)}"
            if short(result.reference_problem) != result.reference_problem:
                full.append(f"  {result.lang}: reference: {result.reference_problem}")
        lines.append(cells)
        full += [f"  {result.lang}: {note}" for note in result.notes]
    lines.append("(ms columns are medians of run(); 'open' is the one open() of that language's session on each side;")
    lines.append(" 'spare RSS' is the resident memory of the process ours keeps waiting for the next run, — for none)")
    measured = sum(result.reference_problem is None for result in results)
    lines.append(f"the reference ran {measured} of {len(results)} languages with our images")
    lines += render_changed(results)
    if full:
        lines += ["reference problems in full:", *full]
    return "\n".join(lines)


def render_changed(results: list[LanguageResult]) -> list[str]:
    """The second table: the compile (or source launch) cost, with a fresh source at every run."""
    changed = [result for result in results if result.lang in CHANGED_SOURCE_LANGUAGES]
    if not changed:
        return []
    lines = [
        "",
        "changed source: the same hello world with a comment that differs at every run (no built-program cache)",
    ]
    head = (
        f"{'language':<10}  {'n':>3}  {'ours ms':>10}  {'ref ms':>10}  {'ratio':>8}  {'ours min':>10}  {'ref min':>10}"
    )
    lines += [head, "-" * len(head)]
    for result in changed:
        samples = result.changed
        counts = [len(samples.seconds[side]) for side in SIDES if samples.seconds[side]]
        ours = samples.median_ms("ours")
        cells = f"{result.lang:<10}  {min(counts) if counts else 0:>3}  {fmt_ms(ours)}  "
        if samples.seconds["reference"]:
            ref = samples.median_ms("reference")
            cells += f"{fmt_ms(ref)}  {fmt_ratio(ref / ours if ours > 0 else float('inf'))}  "
        else:
            cells += f"{'-':>10}  {'-':>8}  "
        cells += f"{fmt_ms(samples.min_ms('ours'))}  {fmt_ms(samples.min_ms('reference'))}"
        lines.append(cells)
    return lines
