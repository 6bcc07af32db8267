"""The personal anomaly rate: how often the patient's days leave their own baseline.

Barnett 2018 (Beiwe, schizophrenia) flagged each day's behavioural and
data-quality features that lay far from the patient's own distribution and
found the rate of such anomalies 71 % higher in the two weeks before a
relapse than at other times; Cohen 2023 (mindLAMP) saw anomalies 2.12 times
as often in the month before relapse. :class:`AnomalyRate` keeps, for each
of the last ``days`` days, how many features were observed and how many lay
beyond ``|z| > anomaly_z``, and reports anomalous feature-days over observed
feature-days.

>>> rate = AnomalyRate()
>>> round(rate.learn_one([0.5, -2.5, 1.0, None], z=2.0, days=14), 4)
0.3333
>>> round(rate.learn_one([3.0, 0.1, -0.2, 0.0], z=2.0, days=14), 4)
0.2857
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Each day is packed into one small int: anomalies * _PACK + observed features.
_PACK = 64


@dataclass(slots=True)
class AnomalyRate:
    """Anomalous and observed feature counts of the last days; ``learn_one`` adds one day.

    ``recent`` packs each day as ``anomalies * 64 + observed`` (one small int
    a day keeps the patient state small).

    >>> rate = AnomalyRate()
    >>> rate.learn_one([2.5, 2.5], z=2.0, days=2), rate.learn_one([0.0, 0.0], z=2.0, days=2)
    (1.0, 0.5)
    >>> rate.learn_one([0.0, 0.0], z=2.0, days=2)  # the anomalous day has left the window
    0.0
    >>> rate.skip(3, days=2), rate.value()  # days without any feature
    (None, 0.0)
    """

    recent: list[int] = field(default_factory=list)

    def learn_one(self, deviations: Iterable[float | None], *, z: float, days: int) -> float:
        """Fold in one day's z-scores (None: feature not observed); return the rate."""
        observed = anomalies = 0
        for deviation in deviations:
            if deviation is None:
                continue
            observed += 1
            anomalies += abs(deviation) > z
        self.recent.append(min(anomalies, _PACK - 1) * _PACK + min(observed, _PACK - 1))
        del self.recent[:-days]
        return self.value()

    def skip(self, count: int, *, days: int) -> None:
        """Days that passed without any closed day (no features): they count as unobserved."""
        self.recent.extend([0] * min(count, days))
        del self.recent[:-days]

    def value(self) -> float:
        """Anomalous feature-days over observed feature-days in the window (0 if none)."""
        observed = sum(day % _PACK for day in self.recent)
        anomalies = sum(day // _PACK for day in self.recent)
        return anomalies / observed if observed else 0.0

    def clone(self) -> AnomalyRate:
        """An independent copy."""
        return AnomalyRate(list(self.recent))
