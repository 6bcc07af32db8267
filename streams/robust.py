"""The patient's own robust baseline: median and MAD over a bounded window.

A deviation is the robust z-score ``(x - median) / (1.4826 * MAD)``: 1.4826
makes the MAD estimate the SD of normal data (Rousseeuw & Croux 1993), and
unlike mean and SD a few extreme days cannot drag the baseline with them
(Leys 2013). A floor on the scale keeps a very regular patient from turning
every small change into a huge deviation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: Makes the MAD a consistent estimator of the SD for normal data.
MAD_TO_SD = 1.4826


@dataclass(frozen=True, slots=True)
class RobustBaseline:
    """Median and robust SD of a window of values.

    ``of(values, min_count, min_scale)`` is None with fewer than ``min_count``
    values; ``z(x)`` is the robust z-score of ``x`` against the baseline.

    >>> base = RobustBaseline.of([420, 400, 450, 430, 410, 415, 440], min_count=7, min_scale=15)
    >>> base.median, base.scale, round(base.z(300), 2)
    (420, 15, -8.0)
    >>> RobustBaseline.of([1.0, 2.0], min_count=3, min_scale=0.1) is None
    True
    """

    median: float
    scale: float
    count: int

    @classmethod
    def of(
        cls, values: Iterable[float | None], min_count: int, min_scale: float
    ) -> RobustBaseline | None:
        """The baseline of the non-missing ``values``, or None if there are too few."""
        present = [v for v in values if v is not None]
        if len(present) < max(1, min_count):
            return None
        middle = _middle(sorted(present))
        mad = _middle(sorted([abs(v - middle) for v in present]))
        return cls(middle, max(MAD_TO_SD * mad, min_scale), len(present))

    def z(self, value: float) -> float:
        """Robust z-score of ``value``."""
        return (value - self.median) / self.scale


def _middle(ordered: list[float]) -> float:
    """``statistics.median`` of values already sorted (at least one), without sorting again.

    >>> from statistics import median
    >>> _middle([1.0, 2.0, 4.0, 8.0]) == median([8.0, 1.0, 4.0, 2.0])
    True
    """
    n = len(ordered)
    if n % 2:
        return ordered[n // 2]
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2
