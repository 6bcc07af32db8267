"""A numbered, immutable version of the population subgroup model (a Gaussian mixture).

Data-driven subgroups are learnt across patients, so, like the population
risk model (:class:`~streams.models.snapshot.ModelSnapshot`), the model does
not live in any patient's state: the trainer (``services.study.subgroups``)
publishes numbered :class:`SubgroupSnapshot` versions and the core reads the
one it is given in ``CoreConfig.subgroups``.

A snapshot is a mixture of Gaussians with diagonal covariance over
standardised profile features ``z = (x - centre) / scale``. A patient's
profile usually lacks some features (no PANSS for a depressed patient, no
wearable): the posterior is computed over the features present only, which
is the exact marginal of a diagonal Gaussian (Ghahramani & Jordan 1994).

Component labels (``c1``, ``c2`` ...) are kept from version to version by
matching new components to old ones (``services.study.subgroups``), so a
patient's label changes only when the patient, not the numbering, changes.
Each component carries a plain-words description of what sets it apart.

>>> snap = SubgroupSnapshot(
...     version=2, features=("crp_log", "sleep_duration"), centre=(0.5, 420.0),
...     scale=(0.8, 40.0), labels=("c1", "c2"), weights=(0.7, 0.3),
...     means=((-0.5, 0.0), (1.5, 0.1)), variances=((0.4, 1.0), (0.3, 1.0)),
...     descriptions=("lower CRP (-0.5 SD)", "higher CRP (+1.5 SD)"))
>>> [(label, round(p, 3)) for label, p in snap.posterior({"crp_log": 1.7})]
[('c1', 0.013), ('c2', 0.987)]
>>> snap.posterior({})  # nothing to go on
[]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

SnapshotName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
]
Label = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_.-]+$")]

_LOG_2PI = math.log(2 * math.pi)

#: How each profile feature reads in words: (name, word when higher, word when lower).
FEATURE_WORDS: dict[str, tuple[str, str, str]] = {
    "phq_somatic": ("somatic depressive symptoms", "more", "fewer"),
    "phq_cognitive": ("cognitive-affective depressive symptoms", "more", "fewer"),
    "phq_somatic_share": ("somatic share of depressive symptoms", "higher", "lower"),
    "panss_positive": ("positive psychotic symptoms", "more", "fewer"),
    "panss_negative": ("negative symptoms", "more", "fewer"),
    "panss_general": ("general psychopathology", "more", "less"),
    "panss_negative_share": ("negative share of psychotic symptoms", "higher", "lower"),
    "crp_log": ("CRP", "higher", "lower"),
    "il6_log": ("IL-6", "higher", "lower"),
    "sleep_duration": ("sleep", "longer", "shorter"),
    "sleep_midpoint": ("sleep timing", "later", "earlier"),
    "sleep_irregularity": ("sleep timing", "more irregular", "more regular"),
    "steps_log": ("daily activity", "more", "less"),
    "step_variability": ("day-to-day activity", "more variable", "steadier"),
    "resting_hr": ("resting heart rate", "higher", "lower"),
    "hrv_log": ("heart-rate variability", "higher", "lower"),
}


class SubgroupSnapshot(BaseModel):
    """One version of the population subgroup model.

    Attributes
    ----------
    name, version
        Named in every :class:`~schemas.events.SubgroupAssigned` event.
    features, centre, scale
        The profile features, and the population mean and SD used to standardise them.
    labels, weights, means, variances
        One entry per component: its stable label, mixing weight, and mean and
        variance per feature in standard units.
    descriptions
        What sets each component apart, in plain words (:func:`describe`).
    examples
        Patient profiles the version was fitted on.
    trained_until
        The trainer's clock (event time) when the version was published.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: SnapshotName = "profile_mixture"
    version: int = Field(default=0, ge=0)
    features: tuple[str, ...] = Field(min_length=1)
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    labels: tuple[Label, ...] = Field(min_length=1)
    weights: tuple[float, ...]
    means: tuple[tuple[float, ...], ...]
    variances: tuple[tuple[float, ...], ...]
    descriptions: tuple[str, ...]
    examples: int = Field(default=0, ge=0)
    trained_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SubgroupSnapshot:
        d, k = len(self.features), len(self.labels)
        if len(set(self.features)) != d:
            raise ValueError("features must be unique names")
        if len(set(self.labels)) != k:
            raise ValueError("labels must be unique")
        for name, values, size in (
            ("centre", self.centre, d),
            ("scale", self.scale, d),
            ("weights", self.weights, k),
            ("means", self.means, k),
            ("variances", self.variances, k),
            ("descriptions", self.descriptions, k),
        ):
            if len(values) != size:
                raise ValueError(
                    f"{name} has {len(values)} entries; accepted: {size} (one per "
                    f"{'feature' if size == d and name in ('centre', 'scale') else 'component'})"
                )
        for label, mean, var in zip(self.labels, self.means, self.variances, strict=True):
            if len(mean) != d or len(var) != d:
                raise ValueError(f"component {label!r}: means and variances need {d} entries each")
            if any(not math.isfinite(v) for v in mean) or any(not v > 0 for v in var):
                raise ValueError(
                    f"component {label!r}: means must be finite and variances positive"
                )
        if any(not s > 0 for s in self.scale) or any(not math.isfinite(c) for c in self.centre):
            raise ValueError("scale must be positive and centre finite for every feature")
        if any(not w > 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-6:
            raise ValueError(
                f"weights {self.weights} must be positive and sum to 1; accepted: a probability "
                "per component"
            )
        return self

    def standardise(self, x: Mapping[str, float]) -> list[float | None]:
        """``x`` in standard units, in feature order (None where a feature is missing)."""
        return [
            None if x.get(f) is None else (x[f] - c) / s
            for f, c, s in zip(self.features, self.centre, self.scale, strict=True)
        ]

    def posterior(self, x: Mapping[str, float]) -> list[tuple[str, float]]:
        """``(label, probability)`` per component given profile ``x``; ``[]`` with no feature."""
        z = self.standardise(x)
        if all(v is None for v in z):
            return []
        logs = []
        for weight, mean, var in zip(self.weights, self.means, self.variances, strict=True):
            total = math.log(weight)
            for value, m, v in zip(z, mean, var, strict=True):
                if value is not None:
                    total -= 0.5 * (_LOG_2PI + math.log(v) + (value - m) ** 2 / v)
            logs.append(total)
        top = max(logs)
        exps = [math.exp(v - top) for v in logs]
        norm = sum(exps)
        return [(label, e / norm) for label, e in zip(self.labels, exps, strict=True)]

    def description(self, label: str) -> str:
        """The plain-words description of the component ``label``."""
        return self.descriptions[self.labels.index(label)]


def describe(
    features: Sequence[str],
    mean: Sequence[float],
    weight: float,
    *,
    threshold: float = 0.5,
    most: int = 3,
) -> str:
    """What sets a component apart, from its mean in standard units.

    Names the ``most`` features furthest from the population mean (at least
    ``threshold`` SD away), largest first.

    >>> describe(["crp_log", "sleep_duration", "steps_log"], [1.8, -0.7, 0.1], 0.27)
    '27 % of patients: higher CRP (+1.8 SD), shorter sleep (-0.7 SD)'
    >>> describe(["crp_log"], [0.2], 0.5)
    '50 % of patients: close to the population average on every feature'
    """
    ranked = sorted(
        ((abs(m), f, m) for f, m in zip(features, mean, strict=True) if abs(m) >= threshold),
        key=lambda t: (-t[0], t[1]),
    )[:most]
    share = f"{round(100 * weight)} % of patients"
    if not ranked:
        return f"{share}: close to the population average on every feature"
    parts = []
    for _, feature, m in ranked:
        name, higher, lower = FEATURE_WORDS.get(feature, (feature, "higher", "lower"))
        parts.append(f"{higher if m > 0 else lower} {name} ({m:+.1f} SD)")
    return f"{share}: " + ", ".join(parts)
