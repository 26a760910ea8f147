"""The book's few statistics, one definition each: Spearman's rank correlation, mean ± sample std over seeds,
and the finiteness test every table uses before it prints a number."""

from __future__ import annotations

import math

import numpy as np


def spearman(a, b, min_points: int = 3) -> float:
    """Spearman's rank correlation of two equal-length sequences (average ranks for ties); NaN with fewer
    than ``min_points`` pairs, where a rank correlation says nothing."""
    from scipy.stats import spearmanr
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"spearman needs sequences of one length, got {len(a)} and {len(b)}")
    if len(a) < min_points:
        return float("nan")
    return float(spearmanr(np.asarray(a, float), np.asarray(b, float)).statistic)


def mean_std(values) -> tuple[float, float]:
    """(mean, sample std over the values); the std of a single value is NaN (one seed has no spread)."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


def finite(x) -> bool:
    """A real number that is neither NaN nor infinite (bools and strings are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
