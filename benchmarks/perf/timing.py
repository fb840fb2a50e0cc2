"""Timing that survives a shared, oversubscribed CPU: interleaved rounds, paired ratios, two clocks.

Every candidate runs once per round, in a rotating order, so drift in machine load hits all of them
alike; a round's ratio (candidate / reference) is taken inside the round, and the reported ratio is
the median of those paired ratios. Two clocks per call:

* wall: `time.perf_counter`, what a user waits (inflated whenever another process takes the core);
* cpu:  `time.process_time`, CPU seconds of this process. With one torch thread this is the compute
        itself and is barely touched by other load (the most reproducible figure); with more threads
        it is the sum over threads (a cost, not a latency).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, cpu s) of one call."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                min_seconds: float = 0.0) -> dict[str, Samples]:
    """Time every fn once per round (rotating order) for `rounds` rounds, after `warmup` untimed rounds.
    With min_seconds, keep adding rounds until the reference (first fn) has run that long in total."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    out = {n: Samples() for n in names}
    r = 0
    while r < rounds or sum(out[names[0]].wall) < min_seconds:
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            w, c = timed(fns[n])
            out[n].wall.append(w)
            out[n].cpu.append(c)
        r += 1
        if r >= 50 * max(rounds, 1):
            break
    return out


def paired_ratio(a: Samples, b: Samples, clock: str = "wall") -> float:
    """Median over rounds of a/b (a and b from the same `interleaved` call)."""
    xs, ys = getattr(a, clock), getattr(b, clock)
    return statistics.median(x / y for x, y in zip(xs, ys))


def iqr(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return q[0], q[2]


def env_prefix() -> str:
    """The environment settings that change timings, as a command-line prefix (for the results' Command line)."""
    import os

    keys = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
    return "".join(f"{k}={os.environ[k]} " for k in keys if k in os.environ)
