"""Given a patient who comes to meet a specifier, then the optional subgroup risk inputs follow.

``RiskConfig.subgroup_inputs`` adds ``specifier_<name>`` and ``cluster_<label>``
flags to each closed day's relapse-risk inputs (streams/models/features.py);
off, the inputs and assessments are exactly those of a core without it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from schemas.events import RiskAssessment
from streams import CoreConfig
from streams.config import RiskConfig
from streams.models.features import INPUTS, inputs_for
from streams.models.snapshot import ModelSnapshot
from streams.stratification.snapshot import SubgroupSnapshot
from tests.unit.streams.core_history import lab, replay, score, wearable_day

D0 = date(2026, 2, 1)
SPECIFIER = "specifier_inflammatory_depression"
CLUSTERS = SubgroupSnapshot(
    features=("crp_log",), centre=(0.5,), scale=(0.8,), labels=("c1", "c2"),
    weights=(0.7, 0.3), means=((-0.6,), (1.5,)), variances=((0.3,), (0.2,)),
    descriptions=("lower CRP", "higher CRP"),
)  # fmt: skip


def noon(n: int) -> datetime:
    return datetime(D0.year, D0.month, D0.day, 11, tzinfo=UTC) + timedelta(days=n)


def history() -> list:
    """Three weeks of wearable days; a MADRS of 24 on day 2, raised CRP on days 3 and 10."""
    days = [wearable_day(D0 + timedelta(days=n), sleep=440.0) for n in range(22)]
    clinic = [(2, score("madrs", noon(2), 24)), (3, lab("crp", 4.8, noon(3)))]
    clinic += [(10, lab("crp", 5.6, noon(10)))]
    events: list = []
    for n, upload in enumerate(days):
        events += [e for when, e in clinic if when == n] + [upload]
    return events


def model(features: tuple[str, ...]) -> ModelSnapshot:
    weights = tuple(1.0 if f == SPECIFIER else 0.0 for f in features)
    n = len(features)
    return ModelSnapshot(
        features=features, weights=weights, bias=-3.0, means=(0.0,) * n, scales=(1.0,) * n
    )


def risks(outputs: list) -> list[RiskAssessment]:
    return [o for o in outputs if isinstance(o, RiskAssessment)]


def test_off_by_default_and_then_nothing_changes() -> None:
    assert inputs_for(CoreConfig()) == INPUTS
    base = CoreConfig(model=model(INPUTS))
    _, plain = replay(history(), base)
    on = base.model_copy(update={"risk": RiskConfig(subgroup_inputs=True)})
    _, with_inputs = replay(history(), on)
    # A model that does not list the subgroup inputs scores exactly as before.
    assert plain == with_inputs and risks(plain)


def test_the_specifier_flag_turns_on_once_the_specifier_is_met() -> None:
    config = CoreConfig(risk=RiskConfig(subgroup_inputs=True)).with_subgroups(CLUSTERS)
    names = inputs_for(config)
    assert names == (*INPUTS, SPECIFIER, "cluster_c1", "cluster_c2")
    _, outputs = replay(history(), config.with_model(model(names)))
    assessed = sorted(risks(outputs), key=lambda r: r.observed_at)
    assert assessed, "no day was assessed"
    inputs = [{c.feature: c.value for c in r.contributions} for r in assessed]
    flags = [v[SPECIFIER] for v in inputs]
    # Off until the second raised CRP arrived (day 10), on from then: a day closes once
    # the next day's upload is in, so day 9 already saw it; nothing earlier did.
    assert flags == sorted(flags) and flags[0] == 0.0 and flags[-1] == 1.0
    first_on = assessed[flags.index(1.0)].observed_at.date()
    assert D0 + timedelta(days=9) <= first_on <= D0 + timedelta(days=11)
    # The higher-CRP cluster, once confirmed, is the one cluster flag on.
    assert (inputs[-1]["cluster_c1"], inputs[-1]["cluster_c2"]) == (0.0, 1.0)
    # The model weighs the flag: every flagged day scores above every other.
    on = [r.probability for r, f in zip(assessed, flags, strict=True) if f]
    off = [r.probability for r, f in zip(assessed, flags, strict=True) if not f]
    assert min(on) > max(off)
