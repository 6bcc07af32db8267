"""A smoothed level with uncertainty for irregularly spaced ratings.

Visits are irregular: two ratings a day apart say more about each other than
two ratings three months apart. :class:`LocalLevel` is the local-level
(random-walk plus noise) Kalman filter (Harvey 1989, ch. 2; Durbin & Koopman
2012, sec. 2.1) whose process variance grows linearly with the days elapsed
since the last rating, so a long gap widens the uncertainty and lets the next
rating move the level further.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_DAY_US = 86_400_000_000


@dataclass(slots=True)
class LocalLevel:
    """Local-level Kalman filter over event time.

    ``update(value, at, noise_var, drift_var_per_day)`` folds in one rating
    measured with variance ``noise_var`` at ``at`` (epoch microseconds) and
    returns the filtered level and its standard deviation.

    >>> level = LocalLevel()
    >>> level.update(20.0, at=0, noise_var=4.0, drift_var_per_day=0.5)
    (20.0, 2.0)
    >>> day = 86_400_000_000
    >>> m, sd = level.update(10.0, at=1 * day, noise_var=4.0, drift_var_per_day=0.5)
    >>> round(m, 2), round(sd, 2)  # a day later: the two ratings are averaged
    (14.71, 1.46)
    >>> fresh = LocalLevel()
    >>> _ = fresh.update(20.0, at=0, noise_var=4.0, drift_var_per_day=0.5)
    >>> m, sd = fresh.update(10.0, at=90 * day, noise_var=4.0, drift_var_per_day=0.5)
    >>> round(m, 2)  # three months later the new rating dominates
    10.75
    """

    mean: float | None = None
    variance: float = 0.0
    at: int = 0

    def update(
        self, value: float, at: int, noise_var: float, drift_var_per_day: float
    ) -> tuple[float, float]:
        """Fold in ``value`` observed at ``at``; return ``(level, level_sd)``."""
        if self.mean is None:
            self.mean, self.variance, self.at = float(value), noise_var, at
            return self.mean, math.sqrt(self.variance)
        days = max(0, at - self.at) / _DAY_US
        prior = self.variance + drift_var_per_day * days
        gain = prior / (prior + noise_var)
        self.mean += gain * (value - self.mean)
        self.variance = (1 - gain) * prior
        self.at = max(self.at, at)
        return self.mean, math.sqrt(self.variance)

    def clone(self) -> LocalLevel:
        """An independent copy."""
        return LocalLevel(self.mean, self.variance, self.at)
