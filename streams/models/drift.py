"""Change detection on one daily feature: a two-sided CUSUM on robust z-scores.

A feature's robust z-score against the patient's own baseline has mean 0 and
SD about 1 while nothing changes, so Page's cumulative sum (Page 1954) needs
no learnt mean: ``up = max(0, up + z - k)``, ``down = max(0, down - z - k)``,
and a change is signalled when either passes the decision interval ``h``.
Both sums are capped at ``2 h`` so that they come back within days once the
change ends (river's ``PageHinkley`` restarts instead; its pickle is ~400
bytes per feature, these two floats ~20).

>>> cusum = Cusum()
>>> [cusum.learn_one(z, k=0.5, h=4.0) for z in [0.3, -0.2, 1.8, 2.1, 1.9, 1.7, 0.1]]
[0, 0, 0, 0, 1, 0, 0]
>>> round(cusum.statistic(4.0), 3)
1.275
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Cusum:
    """Two-sided CUSUM of one feature's z-scores; ``learn_one`` folds in one day.

    ``up`` and ``down`` are the cumulative sums of upward and downward
    deviations beyond ``k`` (robust SD).

    >>> cusum = Cusum()
    >>> [cusum.learn_one(z, k=0.5, h=2.0) for z in [-1.5, -1.5, -1.5, 0.0]]
    [0, 0, -1, 0]
    >>> cusum.up, cusum.down
    (0.0, 2.5)
    """

    up: float = 0.0
    down: float = 0.0

    def learn_one(self, z: float, *, k: float, h: float) -> int:
        """Fold in one z-score; +1 when an upward change is signalled, -1 downward, else 0.

        A change is signalled on the day its sum first passes ``h``; it is
        signalled again only after the sum has fallen back below ``h``.
        """
        was_up, was_down = self.up > h, self.down > h
        self.up = min(max(0.0, self.up + z - k), 2 * h)
        self.down = min(max(0.0, self.down - z - k), 2 * h)
        if self.up > h and not was_up:
            return 1
        if self.down > h and not was_down:
            return -1
        return 0

    def statistic(self, h: float) -> float:
        """The signed drift in units of ``h``: positive upwards, in [-2, 2]."""
        return (self.up - self.down) / h

    def clone(self) -> Cusum:
        """An independent copy."""
        return Cusum(self.up, self.down)
