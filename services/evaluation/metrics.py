"""Detection metrics for rare positive days, and a bootstrap by patient.

Days before a relapse are rare (about 1 in 20 here), so ROC-AUC alone flatters
a detector; PR-AUC (average precision) and F2 (recall weighted over
precision) say more, and lead time and alert burden say what a care team
would live with (CLINICAL.md). Confidence intervals resample whole patients,
because days of one patient are not independent.

>>> roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True])
0.75
>>> round(average_precision([0.1, 0.4, 0.35, 0.8], [False, False, True, True]), 4)
0.8333
>>> f_beta(tp=3, fp=11, fn=1, beta=2.0)
0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _arrays(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape:
        raise ValueError(f"scores has shape {s.shape} but labels has {y.shape}; they must match")
    return s, y


def _ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], len(ordered)]
    average = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); NaN if one class."""
    s, y = _arrays(scores, labels)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _ranks(s)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _steps(s: NDArray[np.float64], y: NDArray[np.bool_]) -> tuple[NDArray[np.float64], ...]:
    """True and false positives at each distinct threshold, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1 - tp).astype(np.float64)
    return tp, fp, s[last]


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """PR-AUC as average precision: sum over thresholds of (recall gain x precision)."""
    s, y = _arrays(scores, labels)
    positives = int(y.sum())
    if positives == 0 or len(y) == 0:
        return float("nan")
    tp, fp, _ = _steps(s, y)
    recall = tp / positives
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """False and true positive rates at each distinct threshold, from (0, 0) to (1, 1)."""
    s, y = _arrays(scores, labels)
    tp, fp, _ = _steps(s, y)
    return np.r_[0.0, fp / max(1, len(y) - y.sum())], np.r_[0.0, tp / max(1, y.sum())]


def pr_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], ...]:
    """Recall and precision at each distinct threshold, highest threshold first."""
    s, y = _arrays(scores, labels)
    tp, fp, _ = _steps(s, y)
    return tp / max(1, y.sum()), tp / np.maximum(tp + fp, 1)


def f_beta(*, tp: int, fp: int, fn: int, beta: float = 2.0) -> float:
    """F-beta of counts (beta 2: recall counts four times as much as precision); 0 if empty."""
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return (1 + b2) * tp / denominator if denominator else 0.0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""

    value: float
    low: float
    high: float

    def text(self, digits: int = 2) -> str:
        """``value [low, high]``, or ``n/a`` when the value is undefined.

        >>> Interval(0.5, 0.41, 0.6).text()
        '0.50 [0.41, 0.60]'
        """
        if not np.isfinite(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap(
    statistic: Callable[[Sequence[int]], dict[str, float]],
    units: int,
    *,
    resamples: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Every statistic of all ``units``, with percentile intervals over resampled units.

    ``statistic`` receives the indices of the units drawn (with replacement)
    and returns named values; every name is resampled with the same draws, so
    differences between methods are paired.

    >>> values = [1.0, 2.0, 3.0, 4.0]
    >>> def mean(idx):
    ...     return {"mean": float(np.mean([values[i] for i in idx]))}
    >>> result = bootstrap(mean, 4, seed=1)["mean"]
    >>> result.value, result.low <= 2.5 <= result.high
    (2.5, True)
    """
    rng = np.random.default_rng(seed)
    values = statistic(list(range(units)))
    draws: dict[str, list[float]] = {name: [] for name in values}
    for _ in range(resamples):
        drawn = statistic(rng.integers(0, units, size=units).tolist())
        for name in values:
            draws[name].append(drawn[name])
    tail = (1 - level) / 2 * 100
    out: dict[str, Interval] = {}
    for name, value in values.items():
        finite = np.asarray([d for d in draws[name] if np.isfinite(d)], dtype=np.float64)
        if not len(finite):
            out[name] = Interval(value, float("nan"), float("nan"))
            continue
        low, high = np.percentile(finite, [tail, 100 - tail])
        out[name] = Interval(value, float(low), float(high))
    return out
