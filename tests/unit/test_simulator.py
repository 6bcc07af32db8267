"""The cohort simulator: deterministic, valid, faithful to its ground truth, realistic artefacts."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from statistics import mean
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from schemas.events import ClinicalScore, RawEvent, WearableUpload
from schemas.identity import PSEUDONYM_PATTERN, event_id_for, pseudonymise
from services.simulator import (
    SIMULATOR_KEY,
    Arm,
    Cohort,
    SimulatedEvent,
    SimulationConfig,
    cli_simulate,
    simulate_cohort,
    stream,
)
from services.simulator.ids import IdFactory

START = datetime(2026, 3, 2, tzinfo=UTC)
RAW = TypeAdapter(RawEvent)


@pytest.fixture(scope="module")
def mid() -> Cohort:
    """A mid-size cohort: 30 patients over 100 days (hourly readings keep it quick)."""
    return simulate_cohort(30, 100, seed=11, start=START, samples_per_hour=1)


@pytest.fixture(scope="module")
def mid_events(mid: Cohort) -> list[SimulatedEvent]:
    return list(mid.events())


@pytest.fixture(scope="module")
def relapsing() -> Cohort:
    """A cohort with a raised hazard, so that relapses and their signatures are plentiful."""
    config = SimulationConfig(relapse_hazard_scale=4.0)
    return simulate_cohort(60, 150, seed=5, start=START, samples_per_hour=1, config=config)


@pytest.fixture(scope="module")
def relapsing_events(relapsing: Cohort) -> list[SimulatedEvent]:
    """The relapsing cohort's scores, labs and outcomes (wearables are streamed where needed)."""
    return list(relapsing.events(kinds={"clinical_score", "lab_result", "clinical_outcome"}))


# -- determinism -----------------------------------------------------------------------------


def _jsonl(tmp_path: Path, name: str, seed: int) -> bytes:
    cohort = simulate_cohort(6, 21, seed=seed, start=START, samples_per_hour=2)
    path = tmp_path / name
    cohort.write_jsonl(path)
    return path.read_bytes()


def test_same_seed_gives_byte_identical_jsonl(tmp_path: Path) -> None:
    first = _jsonl(tmp_path, "a.jsonl", seed=3)
    assert first == _jsonl(tmp_path, "b.jsonl", seed=3)
    assert first.count(b"\n") > 1000


def test_different_seeds_give_different_cohorts(tmp_path: Path) -> None:
    assert _jsonl(tmp_path, "a.jsonl", seed=3) != _jsonl(tmp_path, "b.jsonl", seed=4)


def test_same_seed_gives_identical_ground_truth_and_gzip(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        cohort = simulate_cohort(4, 30, seed=9, start=START, samples_per_hour=1)
        cohort.write_ground_truth(tmp_path / f"{name}.json")
        cohort.write_jsonl(tmp_path / f"{name}.jsonl.gz")
        runs.append(
            ((tmp_path / f"{name}.json").read_bytes(), (tmp_path / f"{name}.jsonl.gz").read_bytes())
        )
    assert runs[0] == runs[1]
    lines = gzip.decompress(runs[0][1]).decode().splitlines()
    assert len(lines) == len(simulate_cohort(4, 30, seed=9, start=START, samples_per_hour=1))


def test_a_patient_does_not_change_when_the_cohort_grows() -> None:
    small = simulate_cohort(3, 40, seed=2, start=START, samples_per_hour=1)
    large = simulate_cohort(6, 40, seed=2, start=START, samples_per_hour=1)
    for patient_id, truth in small.ground_truth.items():
        assert large.ground_truth[patient_id] == truth
    small_events = [e for e in small.events()]
    large_events = [e for e in large.events() if e.patient_id in small.ground_truth]
    assert small_events == large_events


def test_iterating_twice_gives_equal_events() -> None:
    cohort = simulate_cohort(2, 10, seed=1, start=START, samples_per_hour=2)
    assert list(cohort.events()) == list(cohort.events())


def test_events_can_leave_out_wearables(mid: Cohort, mid_events: list[SimulatedEvent]) -> None:
    clinical = list(mid.events(kinds={"clinical_score", "clinical_outcome", "lab_result"}))
    assert clinical == [e for e in mid_events if e.kind != "wearable_upload"]
    assert mid.counts() == dict(sorted(Counter(e.kind for e in mid_events).items()))
    with pytest.raises(ValueError, match="unknown event kind 'wearable_sample'; accepted: "):
        next(mid.events(kinds={"wearable_sample"}))


# -- validity and order ----------------------------------------------------------------------


def test_every_event_validates_against_the_contract(mid_events: list[SimulatedEvent]) -> None:
    for event in mid_events:
        text = event.model_dump_json()
        again = RAW.validate_json(text)
        assert again == event
        assert again.model_dump_json() == text


def test_every_wearable_reading_is_a_valid_sample() -> None:
    cohort = simulate_cohort(8, 30, seed=4, start=START, samples_per_hour=12)
    metrics: Counter[str] = Counter()
    for event in cohort.events():
        if isinstance(event, WearableUpload):
            for sample in event.samples():  # validates metric, unit and plausible range
                metrics[sample.metric] += 1
                assert (
                    sample.unit
                    == {
                        "sleep": "min",
                        "steps": "{steps}",
                        "heart_rate": "/min",
                        "hrv_rmssd": "ms",
                    }[sample.metric]
                )
    assert set(metrics) == {"sleep", "steps", "heart_rate", "hrv_rmssd"}
    assert metrics["heart_rate"] > metrics["steps"] > metrics["sleep"] > metrics["hrv_rmssd"]


def test_events_come_in_arrival_order(mid_events: list[SimulatedEvent]) -> None:
    keys = [(e.received_at, e.event_id) for e in mid_events]
    assert keys == sorted(keys)


def test_patients_are_pseudonymised_with_the_simulator_key(mid: Cohort) -> None:
    expected = {
        pseudonymise(f"sim-patient-{n}", SIMULATOR_KEY, system="simulator") for n in range(1, 31)
    }
    assert set(mid.ground_truth) == expected
    assert all(PSEUDONYM_PATTERN.fullmatch(p) for p in expected)


def test_fast_ids_equal_event_id_for() -> None:
    ids = IdFactory("simulator", "11", "sim-patient-3", "sim-watch", "heart_rate")
    for last in ("0", "17", "123456"):
        assert ids(last) == str(
            event_id_for("simulator", "11", "sim-patient-3", "sim-watch", "heart_rate", last)
        )


def test_readings_have_unique_ids_across_the_cohort(mid_events: list[SimulatedEvent]) -> None:
    seen: dict[str, object] = {}
    for event in mid_events:
        if isinstance(event, WearableUpload):
            for reading in event.readings:
                key = str(reading.event_id)
                assert seen.setdefault(key, event.event_id) == event.event_id


# -- ground truth ----------------------------------------------------------------------------


def test_every_relapse_has_a_late_outcome_event_and_a_prodrome(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    outcomes = defaultdict(list)
    for event in relapsing_events:
        if event.kind == "clinical_outcome" and event.outcome == "relapse":
            outcomes[event.patient_id].append(event)
    relapses = 0
    for patient_id, truth in relapsing.ground_truth.items():
        reported = sorted(outcomes[patient_id], key=lambda e: e.observed_at)
        assert [e.observed_at.date() for e in reported] == [r.onset for r in truth.relapses]
        assert [e.episode for e in reported] == [r.episode for r in truth.relapses]
        for event, relapse in zip(reported, truth.relapses, strict=True):
            relapses += 1
            assert event.received_at - event.observed_at >= timedelta(days=2)
            assert 7 <= relapse.prodrome_days <= 21
            assert truth.state_on(relapse.prodrome_start) == "prodrome"
            assert truth.state_on(relapse.onset) == "relapse"
            before = relapse.prodrome_start - timedelta(days=1)
            if before >= START.date():
                assert truth.state_on(before) in ("stable", "recovery")
    assert relapses >= 30


def test_hospitalisations_and_medication_changes_follow_relapses(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    admissions: Counter[str] = Counter()
    medication: Counter[str] = Counter()
    for event in relapsing_events:
        if event.kind == "clinical_outcome" and event.outcome == "hospitalisation":
            admissions[event.patient_id] += 1
            assert event.received_at > event.observed_at + timedelta(days=7)
        if event.kind == "clinical_outcome" and event.medication is not None:
            medication[event.patient_id] += event.medication.name != "lithium"
    for patient_id, truth in relapsing.ground_truth.items():
        admitted = [r for r in truth.relapses if r.hospital_admission is not None]
        assert admissions[patient_id] == len(admitted)
        assert medication[patient_id] == len(truth.relapses)
    assert sum(admissions.values()) > 0


def test_ground_truth_json_describes_each_patient(relapsing: Cohort, tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    relapsing.write_ground_truth(path)
    document = json.loads(path.read_text())
    assert document["seed"] == 5 and document["days"] == 150
    assert len(document["truth"]) == 60
    patient = document["truth"][0]
    assert {"diagnosis", "inflammatory", "on_lithium", "relapses", "arm", "daily_states"} <= set(
        patient
    )
    assert len(patient["daily_states"]) == 150


# -- clinical content ------------------------------------------------------------------------


def test_diagnoses_get_their_instruments(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    by_diagnosis: dict[str, set[str]] = defaultdict(set)
    for event in relapsing_events:
        if event.kind == "clinical_score":
            diagnosis = relapsing.ground_truth[event.patient_id].diagnosis
            by_diagnosis[diagnosis].add(event.instrument)
    assert by_diagnosis["depression"] == {"phq9", "gad7", "madrs"}
    assert by_diagnosis["bipolar"] == {"phq9", "gad7", "ymrs", "madrs"}
    assert by_diagnosis["schizophrenia"] == {"phq9", "panss"}


def test_scores_rise_in_relapse_and_item9_appears_there(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    totals: dict[tuple[str, str], list[int]] = defaultdict(list)
    item9_states: Counter[str] = Counter()
    for event in relapsing_events:
        if not isinstance(event, ClinicalScore):
            continue
        truth = relapsing.ground_truth[event.patient_id]
        day = event.observed_at.astimezone(UTC).date()
        if not 0 <= (day - START.date()).days < relapsing.days:
            continue
        state = truth.state_on(day)
        assert event.total is not None
        totals[(event.instrument, state)].append(event.total)
        if event.instrument == "phq9" and event.items is not None and event.items["9"] > 0:
            item9_states[state] += 1
    assert mean(totals[("phq9", "relapse")]) > mean(totals[("phq9", "stable")]) + 5
    assert mean(totals[("phq9", "prodrome")]) > mean(totals[("phq9", "stable")])
    assert mean(totals[("madrs", "relapse")]) > mean(totals[("madrs", "stable")]) + 10
    assert mean(totals[("panss", "relapse")]) > 1.25 * mean(totals[("panss", "stable")])
    assert item9_states["relapse"] > 0
    assert item9_states["stable"] == 0


def test_prodrome_shows_in_wearables_and_missing_data(relapsing: Cohort) -> None:
    """Nightly HR is higher, HRV lower and fewer hours are worn in the prodrome."""
    hr: dict[str, list[float]] = defaultdict(list)
    hrv: dict[str, list[float]] = defaultdict(list)
    hours: Counter[str] = Counter()
    days: Counter[str] = Counter()
    for truth in relapsing.ground_truth.values():
        days.update(truth.daily_states)
    seen = set()
    for event in relapsing.events(kinds={"wearable_upload"}):
        if not isinstance(event, WearableUpload) or event.event_id in seen:
            continue
        seen.add(event.event_id)
        truth = relapsing.ground_truth[event.patient_id]
        day = event.observed_at.astimezone(UTC).date()
        if not 0 <= (day - START.date()).days < relapsing.days:
            continue
        state = truth.state_on(day)
        hours[state] += 1
        for reading in event.readings:
            baseline = truth.wearable_baseline
            if reading.metric == "heart_rate":
                hr[state].append(reading.value - baseline.resting_hr)
            elif reading.metric == "hrv_rmssd":
                hrv[state].append(reading.value / baseline.rmssd_ms)
    assert mean(hr["prodrome"]) > mean(hr["stable"]) + 0.5
    assert mean(hr["relapse"]) > mean(hr["prodrome"])
    assert mean(hrv["relapse"]) < mean(hrv["prodrome"]) < mean(hrv["stable"])
    worn = {s: hours[s] / (24 * days[s]) for s in ("stable", "prodrome", "relapse")}
    assert worn["prodrome"] < worn["stable"] - 0.03
    assert worn["relapse"] < worn["prodrome"]


def test_inflammatory_subgroup_is_about_27_percent_of_depressed_patients() -> None:
    cohort = simulate_cohort(600, 1, seed=8, start=START, samples_per_hour=1)
    depressed = [t for t in cohort.ground_truth.values() if t.diagnosis == "depression"]
    share = sum(t.inflammatory for t in depressed) / len(depressed)
    assert 0.20 <= share <= 0.34
    others = [t for t in cohort.ground_truth.values() if t.diagnosis != "depression"]
    assert not any(t.inflammatory for t in others)
    bipolar = [t for t in cohort.ground_truth.values() if t.diagnosis == "bipolar"]
    assert 0.35 <= sum(t.on_lithium for t in bipolar) / len(bipolar) <= 0.65


def test_crp_separates_the_inflammatory_subgroup(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    high: dict[bool, list[bool]] = defaultdict(list)
    for event in relapsing_events:
        if event.kind == "lab_result" and event.analyte == "crp":
            assert event.unit == "mg/L"
            truth = relapsing.ground_truth[event.patient_id]
            high[truth.inflammatory].append(event.value > 3)
    assert mean(high[True]) > 0.8
    assert mean(high[False]) < 0.15


def test_lithium_only_for_patients_on_lithium_with_occasional_toxicity() -> None:
    bipolar = replace(SimulationConfig().profile("bipolar"), share=1.0)
    config = SimulationConfig(diagnoses=(bipolar,))
    cohort = simulate_cohort(40, 360, seed=21, start=START, samples_per_hour=1, config=config)
    assert 10 < sum(t.on_lithium for t in cohort.ground_truth.values()) < 30
    levels = []
    reductions = 0
    for event in cohort.events(kinds={"lab_result", "clinical_outcome"}):
        if event.kind == "clinical_outcome" and event.medication is not None:
            reductions += event.medication.name == "lithium"
        if event.kind == "lab_result" and event.analyte == "lithium":
            assert cohort.ground_truth[event.patient_id].on_lithium
            assert event.hours_since_dose is not None
            levels.append(event.value)
    assert levels and min(levels) > 0
    toxic = sum(level > 1.5 for level in levels)
    assert toxic > 0 and reductions == toxic
    assert 0.6 <= sorted(levels)[len(levels) // 2] <= 1.0


# -- artefacts -------------------------------------------------------------------------------


def test_duplicates_late_uploads_travel_and_clock_errors_are_present(
    mid: Cohort, mid_events: list[SimulatedEvent]
) -> None:
    ids = Counter(e.event_id for e in mid_events)
    duplicated = [e for e in mid_events if ids[e.event_id] > 1]
    assert {e.kind for e in duplicated} >= {"wearable_upload", "clinical_score"}
    firsts: dict[UUID, SimulatedEvent] = {}
    for event in duplicated:
        first = firsts.setdefault(event.event_id, event)
        if first is not event:
            assert event.model_copy(update={"received_at": first.received_at}) == first
            assert event.received_at > first.received_at

    uploads = [e for e in mid_events if isinstance(e, WearableUpload)]
    late = [e for e in uploads if e.received_at - e.window_end > timedelta(hours=3)]
    assert any(e.received_at - e.window_end > timedelta(days=1) for e in late)
    assert 0.005 < len(late) / len(uploads) < 0.3

    zones: dict[str, set[str | None]] = defaultdict(set)
    for event in uploads:
        zones[event.patient_id].add(event.time_zone)
    travellers = {p for p, t in mid.ground_truth.items() if t.travel}
    assert travellers
    assert {p for p, z in zones.items() if len(z) > 1} == travellers

    skewed = {p for p, t in mid.ground_truth.items() if t.clock_skews}
    assert skewed
    ahead = {e.patient_id for e in uploads if e.observed_at > e.received_at}
    assert ahead <= skewed

    outcomes = [e for e in mid_events if e.kind == "clinical_outcome"]
    assert all(e.received_at > e.observed_at for e in outcomes)


def test_self_reports_are_missed_more_in_the_prodrome(
    relapsing: Cohort, relapsing_events: list[SimulatedEvent]
) -> None:
    """Reports per patient-day fall in prodrome and relapse (missing data is a signal)."""
    reports: Counter[str] = Counter()
    days: Counter[str] = Counter()
    for truth in relapsing.ground_truth.values():
        days.update(truth.daily_states)
    for event in relapsing_events:
        if event.kind == "clinical_score" and event.rater == "self":
            day = event.observed_at.astimezone(UTC).date()
            if 0 <= (day - START.date()).days < relapsing.days:
                reports[relapsing.ground_truth[event.patient_id].state_on(day)] += 1
    rate = {s: reports[s] / days[s] for s in ("stable", "prodrome", "relapse")}
    assert rate["relapse"] < rate["stable"]
    assert rate["prodrome"] < rate["stable"]


# -- arms, streaming, CLI, errors ------------------------------------------------------------


def test_arms_are_randomised_and_recorded() -> None:
    arms = (Arm("control"), Arm("anti-inflammatory", hazard_ratio=0.5, subgroup="inflammatory"))
    cohort = simulate_cohort(40, 5, seed=1, start=START, samples_per_hour=1, arms=arms)
    assigned = Counter(t.arm for t in cohort.ground_truth.values())
    assert set(assigned) == {"control", "anti-inflammatory"}
    assert cohort.truth_json()["arms"][1]["hazard_ratio"] == 0.5


def test_stream_is_lazy_paced_and_in_arrival_order() -> None:
    cohort = simulate_cohort(2, 3, seed=6, start=START, samples_per_hour=1)
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    paced = list(cohort.stream(speedup=3600.0, sleep=sleep, clock=lambda: now[0]))
    assert paced == list(cohort.events())
    span = (paced[-1].received_at - paced[0].received_at).total_seconds() / 3600
    assert now[0] == pytest.approx(span, rel=1e-6)
    assert all(s > 0 for s in slept)

    lazy = stream(3, 4, seed=6, start=START, samples_per_hour=1)
    first = next(lazy)
    assert first == next(iter(simulate_cohort(3, 4, seed=6, start=START, samples_per_hour=1)))


def test_cli_simulate_writes_events_and_ground_truth(tmp_path: Path) -> None:
    summary = cli_simulate(3, 10, 4, tmp_path / "cohort.jsonl", samples_per_hour=2)
    lines = (tmp_path / "cohort.jsonl").read_text().splitlines()
    assert summary.events == len(lines) == sum(summary.counts.values())
    for line in lines[:50]:
        RAW.validate_json(line)
    truth = json.loads((tmp_path / "cohort.truth.json").read_text())
    assert truth["patients"] == 3
    assert summary.lines()[0].startswith(f"{len(lines)} events")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples_per_hour": 7}, "samples_per_hour 7 does not divide the hour"),
        ({"start": datetime(2026, 1, 1)}, "has no time zone"),
        ({"patients": 0}, "patients must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"patients": 2, "days": 3, "seed": 1, "start": START} | kwargs
    with pytest.raises(ValueError, match=message):
        simulate_cohort(**arguments)


def test_start_in_another_zone_is_taken_in_utc_on_the_hour() -> None:
    start = datetime(2026, 3, 2, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    cohort = simulate_cohort(1, 2, seed=1, start=start, samples_per_hour=1)
    assert cohort.start == datetime(2026, 3, 2, 7, tzinfo=UTC)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32), days=st.integers(1, 6), sph=st.sampled_from([1, 4, 12]))
def test_any_seed_gives_valid_events_in_order(seed: int, days: int, sph: int) -> None:
    cohort = simulate_cohort(2, days, seed=seed, start=START, samples_per_hour=sph)
    events = list(cohort.events())
    assert len(events) == len(cohort)
    keys = [(e.received_at, e.event_id) for e in events]
    assert keys == sorted(keys)
    for event in events[:: max(1, len(events) // 20)]:
        RAW.validate_json(event.model_dump_json())
