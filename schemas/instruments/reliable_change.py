"""Reliable change (Jacobson & Truax 1991): how large a change exceeds measurement error.

>>> rc = ReliableChange(sd=5.5, reliability=0.84, citation="Kroenke 2001", practice_points=6)
>>> round(rc.threshold, 1), rc.is_reliable(before=16, after=10)
(6.1, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Two-sided 95 % normal quantile used by the Reliable Change Index
#: (Jacobson & Truax 1991).
Z_95 = 1.96


@dataclass(frozen=True)
class ReliableChange:
    """Parameters of the Reliable Change Index (Jacobson & Truax 1991).

    ``S_diff = sqrt(2) * sd * sqrt(1 - r)``; the index of a change is
    ``(after - before) / S_diff`` and a change is reliable at the 95 % level
    when ``|RC| > 1.96``, i.e. when it exceeds :attr:`threshold` points.
    Negative indices are improvements (every catalogued scale rises with
    severity).

    ``practice_points`` is the whole-point rule a service applies instead,
    where one is published (NHS Talking Therapies: a change of >= 6 on PHQ-9,
    >= 4 on GAD-7); :meth:`is_reliable` uses it when set.

    >>> rc = ReliableChange(sd=5.5, reliability=0.84, citation="Kroenke 2001")
    >>> round(rc.threshold, 2)
    6.1
    >>> round(rc.index(before=18, after=10), 2)
    -2.57
    """

    sd: float
    reliability: float
    citation: str
    practice_points: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sd) and self.sd > 0):
            raise ValueError(f"reliable change: sd must be a positive number, got {self.sd!r}")
        if not 0 <= self.reliability < 1:
            raise ValueError(
                f"reliable change: reliability must be in [0, 1), got {self.reliability!r}"
            )

    @property
    def s_diff(self) -> float:
        """Standard error of the difference between two scores."""
        return math.sqrt(2) * self.sd * math.sqrt(1 - self.reliability)

    @property
    def threshold(self) -> float:
        """Smallest change (in points) that is reliable at the 95 % level: ``1.96 * S_diff``."""
        return Z_95 * self.s_diff

    def index(self, before: float, after: float) -> float:
        """The Reliable Change Index ``(after - before) / S_diff``."""
        return (after - before) / self.s_diff

    def is_reliable(self, before: float, after: float) -> bool:
        """Whether the change from ``before`` to ``after`` is reliable (in either direction).

        Uses ``practice_points`` when set (``|after - before| >= practice_points``),
        otherwise ``|RC| > 1.96``.

        >>> rc = ReliableChange(5.5, 0.84, "Kroenke 2001", practice_points=6)
        >>> rc.is_reliable(15, 9), rc.is_reliable(15, 10)
        (True, False)
        """
        if self.practice_points is not None:
            return abs(after - before) >= self.practice_points
        return abs(self.index(before, after)) > Z_95
