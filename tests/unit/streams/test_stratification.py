"""Stratification in the core: given these events, this profile, these subgroup changes."""

from __future__ import annotations

import math
import pickle
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import SubgroupAssigned
from streams import CoreConfig, PatientState, process, state_size
from streams.outputs import Output
from streams.stratification.config import StratificationConfig
from streams.stratification.profile import BiomarkerProfile, subscale_shares
from streams.stratification.snapshot import SubgroupSnapshot, describe
from streams.stratification.specifiers import INFLAMMATORY_DEPRESSION
from streams.stratification.state import SubgroupHysteresis
from tests.unit.streams.core_history import at, lab, outcome, phq9, replay, score, wearable_day

EMIT = CoreConfig(stratification=StratificationConfig(emit_events=True))
PANSS = {f"P{i}": 4 for i in range(1, 8)} | {f"N{i}": 2 for i in range(1, 8)}
PANSS |= {f"G{i}": 1 for i in range(1, 17)}


def _subgroups(outputs: list[Output]) -> list[SubgroupAssigned]:
    return [o for o in outputs if isinstance(o, SubgroupAssigned)]


def _crp_snapshot(version: int = 0) -> SubgroupSnapshot:
    """Two clusters on ln CRP: around 1 mg/L and around 5.5 mg/L."""
    return SubgroupSnapshot(
        version=version,
        features=("crp_log",),
        centre=(0.5,),
        scale=(0.8,),
        labels=("c1", "c2"),
        weights=(0.7, 0.3),
        means=((-0.6,), (1.5,)),
        variances=((0.3,), (0.2,)),
        descriptions=(
            describe(["crp_log"], [-0.6], 0.7),
            describe(["crp_log"], [1.5], 0.3),
        ),
    )


# --------------------------------------------------------------------------- the profile


def test_symptom_dimensions_come_from_item_level_scores() -> None:
    items = {str(i): 0 for i in range(1, 10)} | {"3": 3, "4": 3, "5": 2, "1": 1}
    state, _ = replay([score("phq9", at(0), items=items), score("panss", at(1), items=PANSS)])
    vector = state.strata.profile.vector(StratificationConfig())  # type: ignore[union-attr]
    assert vector["phq_somatic"] == pytest.approx(8 / 9)
    assert vector["phq_cognitive"] == pytest.approx(1 / 18)
    assert vector["phq_somatic_share"] == pytest.approx((8 / 9) / (8 / 9 + 1 / 18))
    assert vector["panss_positive"] == pytest.approx((28 - 7) / 42)
    assert vector["panss_negative"] == pytest.approx((14 - 7) / 42)
    assert vector["panss_general"] == 0.0
    assert subscale_shares("phq9", {"1": 1}) == {}  # incomplete items: no dimensions


def test_a_total_without_items_counts_as_a_rating_but_gives_no_dimension() -> None:
    state, _ = replay([score("madrs", at(0), 26)])
    profile = state.strata.profile  # type: ignore[union-attr]
    assert profile.ratings == profile.clinician_depression == profile.episode_ratings == 1
    assert profile.vector(StratificationConfig()) == {}


def test_crp_keeps_the_last_non_acute_results_and_counts_the_acute_ones() -> None:
    values = [2.0, 4.0, 25.0, 5.0, 6.0]
    state, _ = replay([lab("crp", v, at(7 * n)) for n, v in enumerate(values)])
    profile = state.strata.profile  # type: ignore[union-attr]
    assert profile.crp == [4.0, 5.0, 6.0]
    assert (profile.crp_results, profile.crp_acute) == (5, 1)
    assert profile.crp_log() == pytest.approx(sum(map(math.log, [4.0, 5.0, 6.0])) / 3)


def test_medication_changes_are_the_treatment_exposure() -> None:
    profile = BiomarkerProfile()
    profile.observe_medication("Lithium", "start", 1)
    profile.observe_medication("quetiapine", "dose_change", 2)  # in use, start unknown
    profile.observe_medication("lithium", "stop", 3)
    assert profile.medications == {"quetiapine": 2}
    assert profile.medication_changes == 3


def test_wearable_days_give_sleep_activity_and_autonomic_phenotype() -> None:
    days = [wearable_day(date(2026, 3, 2) + timedelta(days=n)) for n in range(12)]
    state, _ = replay([*days, phq9(at(13), 3)])
    profile = state.strata.profile  # type: ignore[union-attr]
    vector = profile.vector(StratificationConfig())
    assert vector["sleep_duration"] == pytest.approx(450.0, abs=0.5)  # seconds are rounded
    assert vector["steps_log"] == pytest.approx(math.log(15 * round(8000 / 15)), rel=1e-6)
    assert vector["hrv_log"] == pytest.approx(math.log(45.0))
    assert 60 <= vector["resting_hr"] <= 66
    assert vector["sleep_irregularity"] == pytest.approx(0.0, abs=1e-6)
    support = profile.support()
    assert support["days"] == support["worn_days"] >= 11
    assert support["ratings"] == 1


def test_too_few_worn_days_keep_wearable_features_out_of_the_vector() -> None:
    state, _ = replay([wearable_day(date(2026, 3, 2) + timedelta(days=n)) for n in range(4)])
    profile = state.strata.profile  # type: ignore[union-attr]
    assert profile.days >= 2
    assert "sleep_duration" not in profile.vector(StratificationConfig())


# --------------------------------------------------------------------------- specifiers


@pytest.mark.parametrize(
    ("episode", "clinician", "crp", "met"),
    [
        (1, 0, [4.0, 5.0], True),
        (1, 0, [4.0, 2.0, 5.0], True),
        (1, 0, [4.0, 2.0, 2.5], False),
        (1, 0, [4.0], None),
        (1, 0, [4.0, 2.0], None),
        (0, 1, [4.0, 5.0], True),
        (0, 0, [4.0, 5.0], None),
    ],
)
def test_the_inflammatory_specifier(
    episode: int, clinician: int, crp: list[float], met: bool | None
) -> None:
    profile = BiomarkerProfile(
        episode_ratings=episode, clinician_depression=clinician, crp=crp, crp_results=len(crp)
    )
    assert INFLAMMATORY_DEPRESSION.judge(profile, StratificationConfig()).met is met


def test_requiring_an_episode_ignores_a_monitoring_scale_alone() -> None:
    profile = BiomarkerProfile(clinician_depression=2, crp=[4.0, 5.0])
    strict = StratificationConfig(require_depressive_episode=True)
    assert INFLAMMATORY_DEPRESSION.judge(profile, strict).met is None
    assert "Osimo" in INFLAMMATORY_DEPRESSION.citation


def test_specifier_changes_become_events_once_each() -> None:
    history = [
        score("madrs", at(0), 24),
        lab("crp", 4.5, at(1)),
        lab("crp", 5.2, at(30)),  # 2 of 2 above 3 mg/L: met
        lab("crp", 6.0, at(60)),  # still met: no event
        lab("crp", 1.1, at(90)),  # 2 of 3: still met
        lab("crp", 1.4, at(120)),  # 1 of 3: no longer met
    ]
    _, outputs = replay(history, EMIT)
    changes = _subgroups(outputs)
    assert [(c.subgroup, c.previous) for c in changes] == [
        ("inflammatory_depression", None),
        (None, "inflammatory_depression"),
    ]
    first = changes[0]
    assert first.scheme == "specifier" and first.version == EMIT.version
    assert first.observed_at == at(30) and first.caused_by == history[2].event_id
    assert first.evidence["crp_above"] == 2 and "Osimo" in (first.citation or "")
    assert "CRP above 3 mg/L" in first.description


def test_subgroup_events_are_emitted_by_default_and_can_be_turned_off() -> None:
    history = [score("madrs", at(0), 24), lab("crp", 4.5, at(1)), lab("crp", 5.2, at(30))]
    state, outputs = replay(history)
    assert [(o.scheme_name, o.subgroup) for o in _subgroups(outputs)] == [
        ("inflammatory_depression", "inflammatory_depression")
    ]
    quiet = CoreConfig(stratification=StratificationConfig(emit_events=False))
    quiet_state, quiet_outputs = replay(history, quiet)
    assert _subgroups(quiet_outputs) == []
    assert [o for o in outputs if not isinstance(o, SubgroupAssigned)] == quiet_outputs
    # Emission changes which outputs appear, never what the state remembers.
    assert quiet_state.strata == state.strata
    assert state.strata is not None and state.strata.specifiers == ["inflammatory_depression"]


# --------------------------------------------------------------------------- clusters


def test_cluster_assignment_waits_for_confirmation_and_names_the_model() -> None:
    config = EMIT.with_subgroups(_crp_snapshot())
    history = [lab("crp", 5.5, at(7 * n)) for n in range(4)]
    _, outputs = replay(history, config)
    changes = [c for c in _subgroups(outputs) if c.scheme == "cluster"]
    assert len(changes) == 1
    change = changes[0]
    assert change.caused_by == history[2].event_id  # the third day of agreement
    assert (change.subgroup, change.previous, change.version) == ("c2", None, "0")
    assert change.probability is not None and change.probability > 0.9
    assert change.description.startswith("30 % of patients: higher CRP")
    assert change.evidence["crp_log_z"] == pytest.approx((math.log(5.5) - 0.5) / 0.8, abs=1e-3)


def test_a_new_model_version_with_the_same_labels_moves_nobody() -> None:
    history = [lab("crp", 5.5, at(7 * n)) for n in range(4)]
    state, _ = replay(history, EMIT.with_subgroups(_crp_snapshot()))
    later = [lab("crp", 5.4, at(40 + 7 * n)) for n in range(3)]
    _, outputs = replay(later, EMIT.with_subgroups(_crp_snapshot(version=1)), state)
    assert _subgroups(outputs) == []


@given(
    st.lists(
        st.tuples(st.sampled_from(["c1", "c2", "c3"]), st.floats(0.5, 1.0)),
        min_size=1,
        max_size=40,
    )
)
def test_the_label_changes_only_after_confirm_days_of_agreement(
    days: list[tuple[str, float]],
) -> None:
    config = StratificationConfig(confirm_days=3, switch_probability=0.7)
    labels = SubgroupHysteresis(label="c1")
    history: list[tuple[str, float]] = []
    for day, (best, p) in enumerate(days):
        before = labels.label
        changed = labels.observe(best, p, day, config)
        history.append((best, p))
        if changed:
            recent = history[-3:]
            assert labels.label == best != before
            assert len(recent) == 3 and all(b == best and q >= 0.7 for b, q in recent)
        else:
            assert labels.label == before


# --------------------------------------------------------------------------- determinism


def _mixed_history() -> list:
    start = date(2026, 3, 2)
    events: list = [score("madrs", at(0), 24)]
    for n in range(21):
        events.append(wearable_day(start + timedelta(days=n), sleep=420 + 5 * (n % 4)))
        if n % 7 == 0:
            events.append(phq9(at(n, hours=10), 8 + n // 7))
        if n % 5 == 1:
            events.append(lab("crp", 4.0 + n / 10, at(n, hours=11)))
    events.append(outcome("relapse", at(20), "depressive"))
    return events


def test_subgroup_assignment_is_deterministic_and_survives_a_rebuild() -> None:
    config = EMIT.with_subgroups(_crp_snapshot())
    events = _mixed_history()
    state, outputs = replay(events, config)
    again_state, again = replay(events, config)
    assert again == outputs and again_state == state
    assert _subgroups(outputs), "the history should move the patient into subgroups"
    half = len(events) // 2
    mid, first = replay(events[:half], config)
    for rebuilt in (
        pickle.loads(pickle.dumps(mid)),
        PatientState.model_validate_json(mid.model_dump_json()),
    ):
        assert rebuilt == mid
        end, second = replay(events[half:], config, rebuilt)
        assert first + second == outputs
        assert end == state


def test_a_duplicate_event_changes_no_subgroup() -> None:
    config = EMIT.with_subgroups(_crp_snapshot())
    history = [lab("crp", 5.5, at(7 * n)) for n in range(4)]
    state, _ = replay(history, config)
    again, outputs = process(state, history[-1], config)
    assert outputs == [] and again.strata == state.strata


def test_the_profile_keeps_the_state_within_its_budget() -> None:
    start = date(2026, 3, 2)
    events: list = []
    for n in range(60):
        events.append(wearable_day(start + timedelta(days=n), sleep=400 + 9 * (n % 7)))
        if n % 7 == 0:
            events.append(phq9(at(n, hours=10), 6 + n % 5))
        if n % 14 == 0:
            events += [lab("crp", 3.5, at(n, hours=11)), lab("il6", 2.5, at(n, hours=11))]
    events.append(score("panss", at(61), items=PANSS))
    config = EMIT.with_subgroups(_crp_snapshot())
    state, _ = replay(events, config)
    strata = pickle.dumps(state.strata, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(strata) < 450
    assert state_size(state) < 8 * 1024
    assert state_size(PatientState(patient_id=state.patient_id)) < 2048
