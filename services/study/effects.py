"""Effect sizes with 95 % intervals, and agreement of subgroups with a reference.

* :func:`mean_difference`: difference of means (group minus reference) with
  Welch's interval (Welch 1947; t quantile by the Cornish-Fisher expansion)
  and a seeded percentile bootstrap (Efron & Tibshirani 1993), plus Hedges' g
  (Hedges 1981);
* :func:`proportion`: a proportion with the Wilson score interval (Wilson 1927);
* :func:`adjusted_rand_index`: agreement of two labelings corrected for
  chance (Hubert & Arabie 1985): 1 identical, about 0 for random labels;
  :func:`random_ari` gives that chance baseline by permuting labels;
* :func:`sensitivity_specificity` with Wilson intervals.

>>> diff = mean_difference([5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0], resamples=200, seed=1)
>>> diff.estimate, round(diff.lower, 2), round(diff.upper, 2)
(4.0, 1.77, 6.23)
>>> adjusted_rand_index(["a", "a", "b", "b"], [1, 1, 2, 2])
1.0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from statistics import fmean, stdev
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def t_quantile(df: float, z: float = Z95) -> float:
    """The t quantile matching normal quantile ``z`` (Cornish-Fisher, good for df >= 3).

    >>> round(t_quantile(10), 3), round(t_quantile(1e9), 3)
    (2.228, 1.96)
    """
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class Difference:
    """A difference of means with Welch and bootstrap 95 % intervals."""

    estimate: float
    lower: float
    upper: float
    boot_lower: float | None
    boot_upper: float | None
    hedges_g: float | None
    n: int
    n_reference: int
    mean: float
    mean_reference: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (rounded)."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def mean_difference(
    values: Sequence[float], reference: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> Difference:
    """``mean(values) - mean(reference)`` with Welch's and a bootstrap 95 % interval."""
    if len(values) < 2 or len(reference) < 2:
        raise ValueError(
            f"a difference of means needs >= 2 values per group, got {len(values)} and "
            f"{len(reference)}"
        )
    a, b = [float(v) for v in values], [float(v) for v in reference]
    ma, mb = fmean(a), fmean(b)
    va, vb = stdev(a) ** 2, stdev(b) ** 2
    se2 = va / len(a) + vb / len(b)
    estimate = ma - mb
    if se2 > 0:
        df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
        half = t_quantile(max(df, 1.0)) * math.sqrt(se2)
    else:
        half = 0.0
    pooled = ((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2)
    g = None
    if pooled > 0:
        correction = 1 - 3 / (4 * (len(a) + len(b)) - 9)
        g = estimate / math.sqrt(pooled) * correction
    lo_b = hi_b = None
    if resamples > 0:
        rng = np.random.default_rng(seed)
        xa, xb = np.array(a), np.array(b)
        boots = xa[rng.integers(0, len(xa), (resamples, len(xa)))].mean(axis=1) - xb[
            rng.integers(0, len(xb), (resamples, len(xb)))
        ].mean(axis=1)
        lo_b, hi_b = (float(q) for q in np.quantile(boots, [0.025, 0.975]))
    return Difference(
        estimate, estimate - half, estimate + half, lo_b, hi_b, g, len(a), len(b), ma, mb
    )


@dataclass(frozen=True)
class Proportion:
    """A proportion with its Wilson score 95 % interval."""

    successes: int
    n: int
    estimate: float | None
    lower: float | None
    upper: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (rounded)."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def proportion(successes: int, n: int) -> Proportion:
    """``successes / n`` with the Wilson interval (``None`` for n = 0).

    >>> p = proportion(8, 10)
    >>> p.estimate, round(p.lower, 3), round(p.upper, 3)
    (0.8, 0.49, 0.943)
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} must lie in 0..n ({n})")
    if n == 0:
        return Proportion(0, 0, None, None, None)
    p = successes / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Proportion(successes, n, p, max(0.0, centre - half), min(1.0, centre + half))


def _pairs(count: int) -> float:
    return count * (count - 1) / 2


def adjusted_rand_index(labels: Sequence[Hashable], reference: Sequence[Hashable]) -> float:
    """The adjusted Rand index of two labelings of the same items (Hubert & Arabie 1985).

    >>> round(adjusted_rand_index([1, 1, 2, 2, 3], [1, 1, 2, 3, 3]), 3)
    0.375
    """
    if len(labels) != len(reference):
        raise ValueError(f"labelings differ in length: {len(labels)} and {len(reference)}")
    n = len(labels)
    if n < 2:
        return 1.0
    table = Counter(zip(labels, reference, strict=True))
    index = sum(_pairs(c) for c in table.values())
    rows = sum(_pairs(c) for c in Counter(labels).values())
    cols = sum(_pairs(c) for c in Counter(reference).values())
    expected = rows * cols / _pairs(n)
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def random_ari(
    labels: Sequence[Hashable], reference: Sequence[Hashable], *, repeats: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Mean and SD of the ARI when ``labels`` are shuffled: the chance baseline."""
    rng = np.random.default_rng(seed)
    values = []
    shuffled = list(labels)
    for _ in range(repeats):
        order = rng.permutation(len(shuffled))
        values.append(adjusted_rand_index([shuffled[i] for i in order], reference))
    return float(np.mean(values)), float(np.std(values))


def sensitivity_specificity(
    predicted: Sequence[bool], actual: Sequence[bool]
) -> dict[str, dict[str, Any]]:
    """Sensitivity and specificity of ``predicted`` against ``actual``, with Wilson intervals.

    >>> result = sensitivity_specificity([True, True, False, False], [True, False, False, False])
    >>> result["sensitivity"]["estimate"], round(result["specificity"]["estimate"], 3)
    (1.0, 0.667)
    """
    tp = sum(1 for p, a in zip(predicted, actual, strict=True) if p and a)
    fn = sum(1 for p, a in zip(predicted, actual, strict=True) if not p and a)
    tn = sum(1 for p, a in zip(predicted, actual, strict=True) if not p and not a)
    fp = sum(1 for p, a in zip(predicted, actual, strict=True) if p and not a)
    return {
        "sensitivity": proportion(tp, tp + fn).as_dict(),
        "specificity": proportion(tn, tn + fp).as_dict(),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }
