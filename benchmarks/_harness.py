"""Timing helpers: interleaved repeats, medians, and ratios against a same-run baseline."""

from __future__ import annotations

import gc
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "Table", "caller_cpu_ns", "machine", "per_call_ns"]


def per_call_ns(
    candidates: dict[str, Callable[[], object]],
    *,
    number: int = 20_000,
    repeats: int = 15,
) -> dict[str, float]:
    """Return the median time per call (ns) of each candidate.

    The candidates run interleaved (A B C A B C ...), so that a noisy neighbour slows
    them alike; each sample is a tight loop of ``number`` calls, and the median of
    ``repeats`` samples is kept. GC is disabled while timing.
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    loops = {name: _loop(fn, number) for name, fn in candidates.items()}
    for loop in loops.values():  # warm-up: caches, lazy starts, branch predictors
        loop()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, loop in loops.items():
                samples[name].append(loop() / number * 1e9)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def _loop(fn: Callable[[], object], number: int) -> Callable[[], float]:
    rng = range(number)

    def loop() -> float:
        start = time.perf_counter()
        for _ in rng:
            fn()
        return time.perf_counter() - start

    return loop


def caller_cpu_ns(
    candidates: dict[str, Callable[..., object]],
    args: Sequence[tuple[Any, ...]],
    *,
    repeats: int = 9,
    between: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Return the median CPU time per call (ns) of the calling thread for each candidate.

    Each sample calls the candidate once per tuple of ``args`` (``fn(*a)``) and is timed
    with :func:`time.thread_time_ns`: only this thread's CPU counts, not the sender's
    worker or I/O threads running meanwhile, nor the time spent waiting for the GIL.
    Candidates run interleaved (A B C A B C ...) after one untimed warm-up pass each;
    the median of ``repeats`` samples is kept. GC is disabled while timing.
    ``between`` runs untimed after every round (e.g. to let a sender catch up).
    """
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    loops = {name: _cpu_loop(fn, args) for name, fn in candidates.items()}
    for loop in loops.values():
        loop()
    if between is not None:
        between()
    n = len(args)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for name, loop in loops.items():
                samples[name].append(loop() / n)
            if between is not None:
                between()
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def _cpu_loop(fn: Callable[..., object], args: Sequence[tuple[Any, ...]]) -> Callable[[], int]:
    clock = time.thread_time_ns

    def loop() -> int:
        start = clock()
        for a in args:
            fn(*a)
        return clock() - start

    return loop


@dataclass
class Result:
    """One line of the results table."""

    benchmark: str
    measured: str
    baseline: str
    ratio: float | None
    target: str = ""
    ok: bool | None = None


@dataclass
class Table:
    """The results table printed at the end of a run."""

    rows: list[Result] = field(default_factory=list)

    def add(self, row: Result) -> None:
        self.rows.append(row)
        print(
            f"  {row.benchmark}: {row.measured} | {row.baseline} | ratio {_fmt_ratio(row.ratio)}"
            f" {row.target} {_verdict(row.ok)}",
            flush=True,
        )

    def markdown(self) -> str:
        lines = [
            "| benchmark | measured | baseline (same run) | ratio | target | |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(
                f"| {r.benchmark} | {r.measured} | {r.baseline} | {_fmt_ratio(r.ratio)} "
                f"| {r.target} | {_verdict(r.ok)} |"
            )
        return "\n".join(lines)


def _fmt_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def machine() -> str:
    """A one-line description of this machine and interpreter."""
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
