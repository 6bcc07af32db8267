"""``run_study`` on simulated trials: planted effects are found within their CI, absent ones not.

One simulated cohort is randomised to three arms: ``control``, ``null``
(hazard ratio 1.0: no effect) and ``treated`` (hazard ratio 0.5 on relapse).
The study compares each arm with control from the landmark (day 28) on.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.replay.query import InputEvent
from services.simulator import Arm, Cohort, SimulationConfig, simulate_cohort
from services.study import StudySpec, load_attributes, run_study
from services.study.spec import Endpoint

START = datetime(2026, 1, 5, tzinfo=UTC)
KINDS = {"clinical_score", "lab_result", "clinical_outcome"}
SPEC = {
    "name": "simulated-trial",
    "title": "Simulated three-arm trial",
    "landmark_days": 28,
    "arms": {"attribute": "arm", "reference": "control"},
    "endpoints": [
        {"name": "relapse", "kind": "time_to_event", "by_subgroup": True},
        {"name": "phq9-change", "kind": "score_change", "instrument": "phq9"},
        {
            "name": "inflammation",
            "kind": "subgroup_transitions",
            "scheme": "inflammatory_depression",
        },
    ],
    "bootstrap_resamples": 300,
}


@pytest.fixture(scope="module")
def trial() -> Cohort:
    config = SimulationConfig(relapse_hazard_scale=3.0)  # enough relapses in a small cohort
    arms = [Arm("control"), Arm("null", hazard_ratio=1.0), Arm("treated", hazard_ratio=0.5)]
    return simulate_cohort(150, 150, seed=11, start=START, samples_per_hour=1, config=config,
                           arms=arms)  # fmt: skip


@pytest.fixture(scope="module")
def events(trial: Cohort) -> list[InputEvent]:
    return list(trial.events(kinds=KINDS))


@pytest.fixture(scope="module")
def study(
    trial: Cohort, events: list[InputEvent], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:  # type: ignore[type-arg]
    folder = tmp_path_factory.mktemp("study")
    trial.write_ground_truth(folder / "truth.json")
    spec_path = folder / "trial.json"
    spec_path.write_text(json.dumps(SPEC | {"attributes_file": "truth.json"}), encoding="utf-8")
    out = folder / "out"
    manifest = run_study(events, spec_path, out)
    return out, manifest.data


def _some(trial: Cohort, n: int) -> list[str]:
    return sorted(trial.ground_truth)[:n]


def _comparison(results: dict, endpoint: str, arm: str, subgroup: str = "all") -> dict:  # type: ignore[type-arg]
    return next(
        c
        for c in results["endpoints"][endpoint]["comparisons"]
        if c["arm"] == arm and c.get("subgroup", "all") == subgroup
    )


def test_the_planted_effect_lies_within_its_interval(study: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, _ = study
    results = json.loads((out / "results.json").read_text())
    treated = _comparison(results, "relapse", "treated")
    assert treated["hr_lower_95"] < 0.5 < treated["hr_upper_95"]
    assert treated["hr_upper_95"] < 1.0  # and the cohort is large enough to see it
    assert treated["logrank_p_value"] < 0.05


def test_no_effect_is_found_where_none_was_planted(study: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, _ = study
    results = json.loads((out / "results.json").read_text())
    null = _comparison(results, "relapse", "null")
    assert null["hr_lower_95"] < 1.0 < null["hr_upper_95"]
    assert null["logrank_p_value"] > 0.05


def test_every_output_is_written_and_in_the_manifest(study: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, manifest = study
    names = {f["name"] for f in manifest["files"]}
    for name in (
        "patients.csv",
        "endpoint-relapse.csv",
        "km-relapse.csv",
        "km-relapse.png",
        "endpoint-phq9-change.csv",
        "transitions-inflammation.csv",
        "transitions-inflammation.png",
        "treatment-episodes.csv",
        "treatment-response.csv",
        "results.json",
    ):
        assert name in names and (out / name).stat().st_size > 0
    assert (out / "manifest.json").exists()
    assert (out / "km-relapse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["kind"] == "study" and manifest["events"]["count"] > 1000
    assert len(manifest["events"]["ids_sha256"]) == 64
    assert manifest["config"]["settings"]["stratification"]["emit_events"] is True
    assert manifest["code"]["psymon"]
    with (out / "km-relapse.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["group"] for r in rows} == {"control", "null", "treated"}
    assert all(0 <= float(r["lower_95"]) <= float(r["survival"]) <= float(r["upper_95"]) <= 1
               for r in rows)  # fmt: skip


def test_the_same_events_give_the_same_results(
    trial: Cohort,
    events: list[InputEvent],
    tmp_path: Path,
    study: tuple[Path, dict],  # type: ignore[type-arg]
) -> None:
    out, _ = study
    attributes = load_attributes(out.parent / "truth.json")
    spec = StudySpec.model_validate(SPEC | {"cohort": {"patients": _some(trial, 40)}})
    runs = [run_study(events, spec, tmp_path / name, attributes=attributes) for name in "ab"]
    assert runs[0].data["events"] == runs[1].data["events"]
    assert runs[0].data["events"]["patients"] == 40
    first, second = ({f["name"]: f["sha256"] for f in run.data["files"]} for run in runs)
    assert first == second  # figures included: no time stamp in them


def test_score_change_and_transitions_are_reported(study: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, _ = study
    results = json.loads((out / "results.json").read_text())
    change = _comparison(results, "phq9-change", "treated")
    assert change["welch_lower_95"] <= change["difference"] <= change["welch_upper_95"]
    assert change["bootstrap_lower_95"] is not None
    transitions = results["endpoints"]["inflammation"]
    assert transitions["labels"][-1] == "none"
    assert transitions["stability"] > 0.8
    response = results["treatment_response"]
    assert response["note"].startswith("observational")
    assert all(row["note"].startswith("observational") for row in response["summary"])


def test_a_cohort_restricted_to_a_diagnosis_and_a_biomarker(
    trial: Cohort,
    events: list[InputEvent],
    study: tuple[Path, dict],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    out, _ = study
    spec = StudySpec.model_validate(
        SPEC
        | {
            "landmark_days": 60,
            "cohort": {
                "diagnoses": ["depression"],
                "biomarkers": [{"feature": "crp_log", "op": ">", "value": 1.0}],
            },
            "endpoints": [{"name": "relapse", "kind": "time_to_event"}],
            "treatment_response": None,
        }
    )
    attributes = load_attributes(out.parent / "truth.json")
    manifest = run_study(events, spec, tmp_path / "crp", attributes=attributes)
    with (tmp_path / "crp" / "patients.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    included = [r for r in rows if r["included"] == "true"]
    truth = {t.patient_id: t for t in trial.ground_truth.values()}
    assert included and all(truth[r["patient_id"]].diagnosis == "depression" for r in included)
    assert all(float(r["profile_crp_log"]) > 1.0 for r in included)
    inflamed = sum(truth[r["patient_id"]].inflammatory for r in included)
    assert inflamed / len(included) > 0.8  # CRP at the landmark finds the planted subgroup
    assert manifest.data["files"]


def test_exposure_groups_from_medication_changes(
    trial: Cohort, events: list[InputEvent], tmp_path: Path
) -> None:
    bipolar = [p for p, t in trial.ground_truth.items() if t.diagnosis == "bipolar"]
    spec = StudySpec.model_validate(
        {
            "name": "exposure",
            "cohort": {"patients": bipolar},
            "landmark_days": 100,
            "arms": {"exposure": {"quetiapine": "quetiapine"}, "reference": "unexposed"},
            "endpoints": [{"name": "relapse", "kind": "time_to_event"}],
        }
    )
    run_study(events, spec, tmp_path / "exposure")
    results = json.loads((tmp_path / "exposure" / "results.json").read_text())
    arms = results["cohort"]["arms"]
    assert set(arms) <= {"quetiapine", "unexposed"} and arms["unexposed"] > 0
    assert results["cohort"]["considered"] == len(bipolar)


def test_a_study_writes_into_a_fresh_directory_only(trial: Cohort, study) -> None:  # type: ignore[no-untyped-def]
    out, _ = study
    with pytest.raises(FileExistsError, match="manifest"):
        run_study([], StudySpec.model_validate(SPEC), out)


def test_spec_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "x"\n[arms]\nreference = "a"\n[[endpoints]]\nname = "e"\nkind = "score_change"\n'
    )
    with pytest.raises(ValueError, match=r"bad.toml: arms: .*exactly one of attribute"):
        StudySpec.load(path)
    with pytest.raises(ValueError, match="score_change needs instrument"):
        Endpoint(name="e", kind="score_change")
    with pytest.raises(ValueError, match="unknown profile feature 'crp'"):
        StudySpec.model_validate(
            SPEC | {"cohort": {"biomarkers": [{"feature": "crp", "op": ">", "value": 3}]}}
        )


def test_a_toml_spec_reads_its_files_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    path = tmp_path / "specs" / "s.toml"
    path.write_text(
        'name = "t"\nattributes_file = "arms.csv"\n[window]\n'
        f'until = "{(START + timedelta(days=90)).isoformat()}"\n'
        '[arms]\nattribute = "arm"\nreference = "a"\n'
        '[[endpoints]]\nname = "r"\nkind = "time_to_event"\n'
    )
    spec = StudySpec.load(path)
    assert spec.attributes_file == tmp_path / "specs" / "arms.csv"
    assert spec.window.until == START + timedelta(days=90)
