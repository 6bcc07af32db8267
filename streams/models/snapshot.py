"""A numbered, immutable version of the population relapse-risk model.

The population model learns from every patient, so it cannot live in one
patient's state. The trainer (``services.training``) publishes numbered
:class:`ModelSnapshot` versions; each stream worker scores with the latest
version it has, passed to the pure core in ``CoreConfig.model``. Every
:class:`~schemas.events.RiskAssessment` names the model and version it came
from, so a replay with the same version sequence (:class:`ModelTimeline`)
gives the same assessments.

A snapshot is a logistic regression on standardised inputs:
``p = sigmoid(bias + sum_i w_i * (x_i - mean_i) / scale_i)``. The terms of the
sum are the features' contributions, named in each assessment.

>>> model = ModelSnapshot(name="demo", version=3, features=("a", "b"), weights=(2.0, -1.0),
...                       bias=-1.0, means=(0.0, 1.0), scales=(1.0, 2.0))
>>> round(model.predict_proba_one({"a": 0.5, "b": 3.0}), 4)
0.2689
>>> [(name, value, round(c, 2)) for name, value, c in model.contributions({"a": 0.5, "b": 3.0})]
[('a', 0.5, 1.0), ('b', 3.0, -1.0)]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
]

#: Terms beyond this are clipped before the sigmoid (exp overflows near 710).
_LOGIT_LIMIT = 30.0


def sigmoid(z: float) -> float:
    """The logistic function, safe for any finite ``z``.

    >>> sigmoid(0.0), round(sigmoid(2.0), 4), sigmoid(-1e9) < 1e-12
    (0.5, 0.8808, True)
    """
    z = max(-_LOGIT_LIMIT, min(_LOGIT_LIMIT, z))
    return 1.0 / (1.0 + math.exp(-z))


Contribution = tuple[str, float, float]


class ModelSnapshot(BaseModel):
    """One version of a population model: weights, standardisation, provenance.

    Attributes
    ----------
    name, version
        Named in every assessment; versions of one name are numbered from 0.
    horizon_days
        The model estimates the probability of a relapse or hospitalisation
        onset within this many days after the day scored.
    features, weights, means, scales
        One entry per input, in the same order; a missing input counts as its
        mean (no contribution).
    bias
        The intercept (log-odds at the population mean).
    examples, positives
        Labelled days the model has learnt from, and how many were positive.
    trained_until
        The trainer's clock (event time) when this version was published: no
        label that arrived later was used. Replays switch versions here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ModelName = "relapse_risk"
    version: int = Field(default=0, ge=0)
    horizon_days: int = Field(default=28, gt=0, le=365)
    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float = 0.0
    means: tuple[float, ...]
    scales: tuple[float, ...]
    examples: int = Field(default=0, ge=0)
    positives: int = Field(default=0, ge=0)
    trained_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSnapshot:
        n = len(self.features)
        for label, values in (("weights", self.weights), ("means", self.means)):
            if len(values) != n:
                raise ValueError(
                    f"{label} has {len(values)} entries but features has {n}; "
                    "accepted: one entry per feature, in the same order"
                )
        if len(self.scales) != n:
            raise ValueError(f"scales has {len(self.scales)} entries but features has {n}")
        if len(set(self.features)) != n:
            raise ValueError("features must be unique names")
        for label, values in (
            ("weights", self.weights),
            ("means", self.means),
            ("scales", self.scales),
        ):
            for name, value in zip(self.features, values, strict=True):
                if not math.isfinite(value):
                    raise ValueError(f"{label} of {name!r} is {value!r}; accepted: finite numbers")
        for name, scale in zip(self.features, self.scales, strict=True):
            if scale <= 0:
                raise ValueError(f"scale of {name!r} is {scale!r}; accepted: a positive number")
        if not math.isfinite(self.bias):
            raise ValueError(f"bias is {self.bias!r}; accepted: a finite number")
        if self.positives > self.examples:
            raise ValueError(
                f"positives ({self.positives}) exceeds examples ({self.examples}); "
                "accepted: positives <= examples"
            )
        return self

    @classmethod
    def initial(
        cls,
        features: Iterable[str],
        *,
        name: str = "relapse_risk",
        horizon_days: int = 28,
        prior: float = 0.05,
    ) -> ModelSnapshot:
        """Version 0: no weights, a constant ``prior`` probability for every day.

        A new deployment publishes it so that workers emit assessments (the
        trainer's inputs) before any label has arrived; it can raise no alert
        as long as the alert threshold is above ``prior``.

        >>> round(ModelSnapshot.initial(["a"], prior=0.1).predict_proba_one({"a": 3.0}), 6)
        0.1
        """
        if not 0 < prior < 1:
            raise ValueError(f"prior is {prior!r}; accepted: a probability strictly in (0, 1)")
        names = tuple(features)
        return cls(
            name=name,
            version=0,
            horizon_days=horizon_days,
            features=names,
            weights=(0.0,) * len(names),
            bias=math.log(prior / (1 - prior)),
            means=(0.0,) * len(names),
            scales=(1.0,) * len(names),
        )

    def contributions(self, x: Mapping[str, float]) -> list[Contribution]:
        """``(feature, value, weight * standardised value)`` for every input, in model order."""
        terms: list[Contribution] = []
        for name, weight, mean, scale in zip(
            self.features, self.weights, self.means, self.scales, strict=True
        ):
            value = x.get(name)
            if value is None:
                terms.append((name, mean, 0.0))
            else:
                terms.append((name, value, weight * (value - mean) / scale))
        return terms

    def predict_proba_one(self, x: Mapping[str, float]) -> float:
        """Probability of an onset within the horizon, given the day's inputs ``x``."""
        return sigmoid(self.bias + sum(c for _, _, c in self.contributions(x)))


@dataclass(frozen=True, slots=True)
class ModelTimeline:
    """The versions of one model in the order they were published; ``at`` picks one.

    A replay that asks for the version in force at each event's arrival time
    scores as a worker would have, had it switched at each publication.

    >>> from datetime import UTC, datetime
    >>> v0 = ModelSnapshot.initial(["a"])
    >>> v1 = v0.model_copy(update={"version": 1,
    ...                            "trained_until": datetime(2026, 3, 9, tzinfo=UTC)})
    >>> timeline = ModelTimeline.of([v1, v0])
    >>> timeline.at(datetime(2026, 3, 1, tzinfo=UTC)).version
    0
    >>> timeline.at(datetime(2026, 3, 9, tzinfo=UTC)).version
    1
    """

    versions: tuple[ModelSnapshot, ...]

    @classmethod
    def of(cls, snapshots: Iterable[ModelSnapshot]) -> ModelTimeline:
        """A timeline of one model's versions (in any order)."""
        ordered = tuple(sorted(snapshots, key=lambda s: s.version))
        if not ordered:
            raise ValueError("a model timeline needs at least one version")
        names = {s.name for s in ordered}
        if len(names) != 1:
            raise ValueError(f"a timeline holds one model's versions, got {sorted(names)}")
        if len({s.version for s in ordered}) != len(ordered):
            raise ValueError("a timeline holds each version once")
        moments = cls(ordered)._moments()
        if moments != sorted(moments):
            raise ValueError("a later version cannot have been trained until an earlier time")
        return cls(ordered)

    def _moments(self) -> list[float]:
        return [
            -math.inf if s.trained_until is None else s.trained_until.timestamp()
            for s in self.versions
        ]

    def at(self, moment: datetime) -> ModelSnapshot:
        """The newest version published at or before ``moment`` (the first one if none was)."""
        index = bisect_right(self._moments(), moment.timestamp())
        return self.versions[max(index - 1, 0)]
