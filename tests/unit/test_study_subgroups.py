"""The subgroup trainer, and subgroups recovered from a simulated cohort with planted ones.

The simulator plants an inflammatory subgroup among depressed patients (27 %,
Osimo 2019): a usual CRP around 5.5 mg/L instead of 1 mg/L. A model trained
on one simulated cohort assigns the patients of another (no patient in both);
the assignments are compared with the planted truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from schemas.events import SubgroupAssigned
from services.replay import run_core
from services.simulator import Cohort, SimulationConfig, simulate_cohort
from services.study.effects import adjusted_rand_index, random_ari, sensitivity_specificity
from services.study.subgroups import (
    OnlineSubgroupTrainer,
    fit_subgroups,
    match_labels,
    profile_vectors,
)
from streams import CoreConfig, PatientState
from streams.stratification.config import StratificationConfig
from streams.stratification.snapshot import SubgroupSnapshot

START = datetime(2026, 1, 5, tzinfo=UTC)
KINDS = {"clinical_score", "lab_result", "clinical_outcome"}  # wearables cost the most to build
CORE = CoreConfig(stratification=StratificationConfig(emit_events=True))


def _planted(n_low: int, n_high: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    low = [
        {"crp_log": float(c), "sleep_duration": float(s), "hrv_log": float(h)}
        for c, s, h in zip(
            rng.normal(0.0, 0.45, n_low),
            rng.normal(430, 35, n_low),
            rng.normal(3.6, 0.3, n_low),
            strict=True,
        )
    ]
    high = [
        {"crp_log": float(c), "sleep_duration": float(s)}  # no HRV: missing features are fine
        for c, s in zip(rng.normal(1.7, 0.3, n_high), rng.normal(430, 35, n_high), strict=True)
    ]
    return low + high


def test_the_mixture_finds_the_planted_groups_and_describes_them() -> None:
    vectors = _planted(120, 50, seed=1)
    snap = fit_subgroups(vectors, seed=2)  # k chosen by BIC
    assert snap.labels == ("c1", "c2") and snap.version == 0 and snap.examples == 170
    assigned = [max(snap.posterior(v), key=lambda lp: lp[1])[0] for v in vectors]
    truth = [0] * 120 + [1] * 50
    assert adjusted_rand_index(assigned, truth) > 0.8
    high = snap.labels[int(np.argmax([m[snap.features.index("crp_log")] for m in snap.means]))]
    assert "higher CRP" in snap.description(high)


def test_labels_follow_the_components_across_versions() -> None:
    first = fit_subgroups(_planted(120, 50, seed=1), k=2, seed=2)
    # A new cohort where the high-CRP group is now the larger one: components come out in
    # another order, but each keeps its label.
    second = fit_subgroups(_planted(40, 140, seed=3), k=2, seed=4, previous=first)
    crp = first.features.index("crp_log")
    assert [round(w, 1) for w in first.weights] == [0.7, 0.3]
    assert [round(w, 1) for w in second.weights] == [0.2, 0.8]  # the order of size changed
    high_first = max(first.labels, key=lambda lb: first.means[first.labels.index(lb)][crp])
    high_second = max(second.labels, key=lambda lb: second.means[second.labels.index(lb)][crp])
    assert high_first == high_second
    assert second.version == 1


def test_a_new_component_gets_a_new_label() -> None:
    first = fit_subgroups(_planted(120, 50, seed=1), k=2, seed=2)
    centre, scale = np.array(first.centre), np.array(first.scale)
    means = np.array([*first.means, [5.0] * len(first.features)])
    assert match_labels(first, list(first.features), centre, scale, means) == ["c1", "c2", "c3"]


def test_the_online_trainer_follows_a_drifting_group_and_keeps_labels() -> None:
    base = fit_subgroups(_planted(120, 50, seed=1), k=2, seed=2)
    trainer = OnlineSubgroupTrainer(base)
    rng = np.random.default_rng(5)
    for c in rng.normal(2.3, 0.3, 300):  # the high group moves up
        trainer.learn_one({"crp_log": float(c), "sleep_duration": 430.0})
    snap = trainer.snapshot()
    crp = snap.features.index("crp_log")
    high = max(range(2), key=lambda i: snap.means[i][crp])
    old_high = max(range(2), key=lambda i: base.means[i][crp])
    assert snap.labels == base.labels and high == old_high
    assert snap.means[high][crp] > base.means[old_high][crp] + 0.3
    assert snap.version == base.version + 1 and snap.examples == base.examples + 300


def test_a_trainer_refuses_profiles_without_any_varying_feature() -> None:
    with pytest.raises(ValueError, match="no profile feature varies"):
        fit_subgroups([{"crp_log": 1.0}, {"crp_log": 1.0}, {}])


# --------------------------------------------------------------------------- planted subgroups


def _depression_cohort(seed: int) -> Cohort:
    base = SimulationConfig()
    config = replace(base, diagnoses=(replace(base.profile("depression"), share=1.0),))
    return simulate_cohort(90, 180, seed=seed, start=START, samples_per_hour=1, config=config)


Assigned = tuple[Cohort, dict[str, PatientState], list[SubgroupAssigned], str, SubgroupSnapshot]


@pytest.fixture(scope="module")
def assigned() -> Assigned:
    train, states = _depression_cohort(seed=1), {}
    for _ in run_core(train.events(kinds=KINDS), CORE, states):
        pass
    profiles = {p: s.strata.profile for p, s in states.items() if s.strata is not None}
    snap = fit_subgroups(profile_vectors(profiles).values(), seed=0)
    test = _depression_cohort(seed=2)
    states, changes = {}, []
    config = CORE.with_subgroups(snap)
    for _, outputs in run_core(test.events(kinds=KINDS), config, states):
        changes += [o for o in outputs if isinstance(o, SubgroupAssigned)]
    crp = snap.features.index("crp_log")
    high = max(snap.labels, key=lambda lb: snap.means[snap.labels.index(lb)][crp])
    return test, states, changes, high, snap


def test_online_subgroups_recover_the_planted_inflammatory_subgroup(assigned: Assigned) -> None:
    test, states, _, _, _ = assigned
    patients = sorted(test.ground_truth)
    labels = [
        (states[p].strata.cluster.label if states[p].strata else None) or "unassigned"
        for p in patients
    ]
    truth = [test.ground_truth[p].inflammatory for p in patients]
    ari = adjusted_rand_index(labels, truth)
    chance, spread = random_ari(labels, truth, repeats=200)
    assert ari > 0.6, Counter(zip(labels, truth, strict=True))
    assert ari > chance + 8 * spread


def test_the_specifier_flags_the_inflammatory_patients(assigned: Assigned) -> None:
    test, states, _, _, _ = assigned
    patients = sorted(test.ground_truth)
    flagged = [
        "inflammatory_depression" in (states[p].strata.specifiers if states[p].strata else [])
        for p in patients
    ]
    result = sensitivity_specificity(flagged, [test.ground_truth[p].inflammatory for p in patients])
    assert result["sensitivity"]["estimate"] > 0.7
    assert result["specificity"]["estimate"] > 0.9


def test_patients_do_not_flip_between_clusters(assigned: Assigned) -> None:
    _, _, changes, high, _ = assigned
    per_patient = Counter(c.patient_id for c in changes if c.scheme == "cluster")
    assert per_patient and sum(n > 2 for n in per_patient.values()) == 0
    described = {c.description for c in changes if c.subgroup == high}
    assert described and all("higher CRP" in d for d in described)


def test_assignment_is_the_same_when_replayed_from_a_rebuilt_state(assigned: Assigned) -> None:
    test, _, changes, _, snap = assigned
    patient = next(c.patient_id for c in changes if c.scheme == "cluster")
    events = [e for e in test.events(kinds=KINDS) if e.patient_id == patient]
    snap_config = CORE.with_subgroups(snap)
    states: dict[str, PatientState] = {}
    whole = [o for _, outs in run_core(events, snap_config, states) for o in outs]
    half = len(events) // 2
    first_states: dict[str, PatientState] = {}
    first = [o for _, outs in run_core(events[:half], snap_config, first_states) for o in outs]
    rebuilt = {patient: PatientState.model_validate_json(first_states[patient].model_dump_json())}
    second = [o for _, outs in run_core(events[half:], snap_config, rebuilt) for o in outs]
    assert first + second == whole
    assert rebuilt[patient] == states[patient]
