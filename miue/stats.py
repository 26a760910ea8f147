"""The book's few statistics, one definition each: Spearman's rank correlation, mean ± sample std over seeds,
and the finiteness test every table uses before it prints a number."""

from __future__ import annotations

import math

import numpy as np


def spearman(a, b, min_points: int = 3) -> float:
    """Spearman's rank correlation of two equal-length sequences (average ranks for ties); NaN with fewer
    than ``min_points`` pairs or a constant sequence, where a rank correlation says nothing."""
    from scipy.stats import spearmanr
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"spearman needs sequences of one length, got {len(a)} and {len(b)}")
    if len(a) < min_points or len(set(a)) < 2 or len(set(b)) < 2:  # a constant input ranks nothing
        return float("nan")
    return float(spearmanr(np.asarray(a, float), np.asarray(b, float)).statistic)


def mean_std(values) -> tuple[float, float]:
    """(mean, sample std over the values); the std of a single value is NaN (one seed has no spread)."""
    v = np.asarray(list(values), dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


def finite(x) -> bool:
    """A real number that is neither NaN nor infinite (bools and strings are not)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ------------------------------------------------------------------------------------------------ verdicts
# A claim's verdict comes from an interval, never a point: HOLDS where the 95% interval of the quantity the
# rule compares lies on the rule's side of its threshold, FAILS where it lies on the other, INCONCLUSIVE where
# it crosses the threshold (or where there is no interval: one seed and no spread measured for the method).
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
LEVEL = 0.95


class Measure:
    """A quantity measured at one or more victim seeds (an accuracy in %, an MI in nats, a log det).

    ``spread``: the seed standard deviation to use when only one seed was run, borrowed from the same method
    measured at several seeds (its undefended victims at the profile), with ``spread_n`` the number of seeds
    it comes from; the interval of such a value uses Student's t with ``spread_n - 1`` degrees of freedom."""

    def __init__(self, values, spread: float | None = None, spread_n: int = 0):
        self.values = tuple(float(v) for v in values)
        if not self.values:
            raise ValueError("a Measure needs at least one value")
        self.spread, self.spread_n = spread, spread_n

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def variance_of_mean(self) -> tuple[float, float]:
        """(variance of the mean, its degrees of freedom); NaN where no spread is known."""
        if self.n > 1:
            return float(np.var(self.values, ddof=1)) / self.n, self.n - 1.0
        if self.spread is not None and self.spread_n > 1 and math.isfinite(self.spread):
            return self.spread ** 2, self.spread_n - 1.0
        return float("nan"), float("nan")

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        """The t-interval of the mean (NaN, NaN where no spread is known)."""
        from scipy.stats import t as student
        var, df = self.variance_of_mean()
        if not math.isfinite(var):
            return float("nan"), float("nan")
        half = float(student.ppf(0.5 + level / 2, df)) * math.sqrt(var) if var else 0.0
        return self.mean - half, self.mean + half

    def __repr__(self):
        return f"Measure({list(self.values)}, spread={self.spread}, spread_n={self.spread_n})"


def difference(a: Measure, b: Measure, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean of a − mean of b, low, high): Welch's t-interval, its degrees of freedom by Welch–Satterthwaite
    (a one-seed value contributes its borrowed spread and that spread's degrees of freedom)."""
    from scipy.stats import t as student
    d = a.mean - b.mean
    (va, fa), (vb, fb) = a.variance_of_mean(), b.variance_of_mean()
    var = va + vb
    if not math.isfinite(var):
        return d, float("nan"), float("nan")
    if var == 0:
        return d, d, d
    df = var ** 2 / ((va ** 2 / fa if va else 0.0) + (vb ** 2 / fb if vb else 0.0))
    half = float(student.ppf(0.5 + level / 2, df)) * math.sqrt(var)
    return d, d - half, d + half


def above(low: float, high: float, threshold: float) -> str:
    """The verdict on "the quantity exceeds ``threshold``" from its interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    return HOLDS if low > threshold else FAILS if high <= threshold else INCONCLUSIVE


def within(low: float, high: float, bound: float) -> str:
    """The verdict on "|quantity| < ``bound``" from its interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if -bound < low and high < bound:
        return HOLDS
    return FAILS if low >= bound or high <= -bound else INCONCLUSIVE


def all_of(verdicts) -> str:
    """Three-valued "and": fails if any fails, holds if all hold, else inconclusive."""
    v = list(verdicts)
    return FAILS if FAILS in v else HOLDS if v and all(x == HOLDS for x in v) else INCONCLUSIVE


def any_of(verdicts) -> str:
    """Three-valued "or": holds if any holds, fails if all fail, else inconclusive."""
    v = list(verdicts)
    return HOLDS if HOLDS in v else FAILS if v and all(x == FAILS for x in v) else INCONCLUSIVE


def bootstrap_interval(statistic, points: list, draws: int = 2000, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """(statistic at the seed means, low, high): a percentile bootstrap for a statistic over points (a rank
    correlation over methods or architectures). Each point is a list of its per-seed observations (tuples,
    e.g. (accuracy gap, MI gap) at one seed); a draw resamples the points with replacement and, within each,
    one of its seeds. Deterministic (``seed``); draws where the statistic is undefined (NaN: too few distinct
    points) are left out, and with more than half of them undefined the interval is (NaN, NaN)."""
    rng = np.random.default_rng(seed)
    points = [[tuple(np.atleast_1d(o).astype(float)) for o in obs] for obs in points]
    observed = statistic([tuple(np.mean(obs, axis=0)) for obs in points])
    values = []
    for _ in range(draws):
        idx = rng.integers(len(points), size=len(points))
        s = statistic([points[i][rng.integers(len(points[i]))] for i in idx])
        if math.isfinite(s):
            values.append(s)
    if len(values) < draws / 2:
        return float(observed), float("nan"), float("nan")
    lo, hi = np.quantile(values, [0.5 - level / 2, 0.5 + level / 2])
    return float(observed), float(lo), float(hi)
