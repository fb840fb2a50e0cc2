"""Means and standard errors over prompts (NaN values are left out)."""
from __future__ import annotations

import math
from typing import Sequence


def finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v == v and not math.isinf(v)]


def mean(values: Sequence[float]) -> float:
    v = finite(values)
    return sum(v) / len(v) if v else float("nan")


def se(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / sqrt(n); NaN below 2 values."""
    v = finite(values)
    if len(v) < 2:
        return float("nan")
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Mean and standard error of a - b over the pairs where both are finite, and that count."""
    d = [x - y for x, y in zip(a, b) if finite([x]) and finite([y])]
    return mean(d), se(d), len(d)
