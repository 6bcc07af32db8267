"""What the core remembers about a patient's subgroups: the profile and the current labels.

:class:`StratificationState` sits in :class:`~streams.state.PatientState`
(``state.strata``): the :class:`~streams.stratification.profile.BiomarkerProfile`,
the specifiers the patient currently meets, and the cluster label with its
hysteresis (:class:`SubgroupHysteresis`). The population model is not here:
it arrives in ``CoreConfig.subgroups``.

>>> strata = StratificationState()
>>> strata.clone() == strata and strata.clone() is not strata
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.stratification.config import StratificationConfig
from streams.stratification.profile import BiomarkerProfile


@dataclass(slots=True)
class SubgroupHysteresis:
    """A patient's cluster label, changed only on repeated, confident evidence.

    The most probable cluster replaces the current label only when it has been
    the most probable, with posterior >= ``switch_probability``, on
    ``confirm_days`` distinct days in a row. A day on which the current label
    is the most probable again (or no cluster is confident) resets the count,
    so one noisy day never moves a patient.

    >>> from streams.stratification.config import StratificationConfig
    >>> config, labels = StratificationConfig(confirm_days=2), SubgroupHysteresis()
    >>> [labels.observe(best, p, day, config) for best, p, day in
    ...  [("c1", 0.9, 1), ("c1", 0.9, 1), ("c1", 0.9, 2), ("c2", 0.95, 3), ("c1", 0.8, 4),
    ...   ("c2", 0.9, 5), ("c2", 0.9, 6)]]
    [False, False, True, False, False, False, True]
    >>> labels.label
    'c2'
    """

    label: str | None = None
    candidate: str | None = None
    streak: int = 0
    streak_day: int = -1

    def observe(
        self, best: str, probability: float, day: int, config: StratificationConfig
    ) -> bool:
        """Weigh today's most probable cluster; True when the label changed."""
        if best == self.label or probability < config.switch_probability:
            self.candidate, self.streak, self.streak_day = None, 0, -1
            return False
        if best != self.candidate:
            self.candidate, self.streak, self.streak_day = best, 1, day
        elif day > self.streak_day:
            self.streak, self.streak_day = self.streak + 1, day
        if self.streak < config.confirm_days:
            return False
        self.label = best
        self.candidate, self.streak, self.streak_day = None, 0, -1
        return True

    def clone(self) -> SubgroupHysteresis:
        """An independent copy."""
        return SubgroupHysteresis(self.label, self.candidate, self.streak, self.streak_day)


@dataclass(slots=True)
class StratificationState:
    """The profile, the specifiers met and the cluster label of one patient.

    Pickles as one flat tuple (no field names, no nested class references):
    the whole patient state must stay within 8 KB.

    >>> import pickle
    >>> strata = StratificationState(specifiers=["inflammatory_depression"])
    >>> strata.cluster.label = "c2"
    >>> pickle.loads(pickle.dumps(strata)) == strata
    True
    """

    profile: BiomarkerProfile = field(default_factory=BiomarkerProfile)
    specifiers: list[str] = field(default_factory=list)
    cluster: SubgroupHysteresis = field(default_factory=SubgroupHysteresis)

    def clone(self) -> StratificationState:
        """An independent copy."""
        return StratificationState(
            self.profile.clone(), list(self.specifiers), self.cluster.clone()
        )

    def __reduce__(self) -> tuple[Callable[..., StratificationState], tuple[object, ...]]:
        profile = tuple(getattr(self.profile, f) for f in BiomarkerProfile.__slots__)
        cluster = tuple(getattr(self.cluster, f) for f in SubgroupHysteresis.__slots__)
        return (restore, (profile, self.specifiers, cluster))


def restore(
    profile: tuple[Any, ...], specifiers: list[str], cluster: tuple[Any, ...]
) -> StratificationState:
    """A :class:`StratificationState` from its pickled tuples (see ``__reduce__``)."""
    return StratificationState(BiomarkerProfile(*profile), specifiers, SubgroupHysteresis(*cluster))
