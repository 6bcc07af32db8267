"""`psymon validate` on JSONL, CSV and FHIR, through the one intake path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.examples import EXAMPLE_PATIENT, envelope_fields
from services.cli import cli
from services.intake import read_verdicts
from tests.factories import T0

DATA = Path(__file__).parents[1] / "data"
KEY = "k" * 40


def _line(**fields: object) -> str:
    env = {
        k: (v.isoformat() if hasattr(v, "isoformat") else str(v) if k == "event_id" else v)
        for k, v in envelope_fields().items()
    }
    return json.dumps(env | fields)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PSYMON_PSEUDONYM_KEY", KEY)
    return CliRunner()


def test_jsonl_prints_each_event_or_reason_and_exits_1_on_rejects(
    runner: CliRunner, tmp_path: Path
) -> None:
    good = _line(kind="clinical_score", instrument="gad7", rater="self", total=11)
    bad = _line(kind="clinical_score", instrument="gad7", rater="self", total=22)
    path = tmp_path / "scores.jsonl"
    path.write_text(f"{good}\n\n{bad}\n{{broken\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert '"total":11' in result.output
    assert "line 3" in result.output and "22" in result.output and "0-21" in result.output
    assert "line 4" in result.output and "not valid JSON" in result.output
    assert "3 records: 1 accepted, 2 rejected; 1 events" in result.output


def test_all_valid_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_text(_line(kind="lab_result", analyte="lithium", value=0.8, unit="mmol/L") + "\n")
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 records: 1 accepted; 1 events" in result.output


def test_csv_mapping_pseudonymises_source_ids_and_never_prints_them(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "clinic.csv"
    path.write_text(
        "kind,source_patient_id,observed_at,instrument,rater,item_1,item_2\n"
        "clinical_score,MRN-4711,2026-03-02T09:00:00+01:00,phq2,self,2,3\n"
        "clinical_score,MRN-4712,2026-03-02T09:00:00+01:00,phq2,self,2,5\n"
        "lab_result,MRN-4711,2026-03-03T08:00:00Z,,,,\n"
    )
    result = runner.invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert '"total":5' in result.output
    assert "row 3" in result.output and "5" in result.output
    assert "MRN-47" not in result.output
    assert re.search(r'"patient_id":"p-[0-9a-f]{24}"', result.output)


def test_csv_reimport_gives_identical_event_ids(tmp_path: Path) -> None:
    data = (
        b"kind,patient_id,observed_at,analyte,value,unit,record_id\n"
        + f"lab_result,{EXAMPLE_PATIENT},2026-03-03T08:00:00Z,crp,4.2,mg/L,lab-77\n".encode()
    )
    first = [
        e.event_id
        for v in read_verdicts(data, name="a.csv", received_at=T0, key=None)
        for e in v.events
    ]
    again = [
        e.event_id
        for v in read_verdicts(data, name="a.csv", received_at=T0, key=None)
        for e in v.events
    ]
    assert first == again and len(first) == 1


def test_fhir_bundle_with_item_scores_in_extensions(runner: CliRunner) -> None:
    bundle = DATA / "fhir" / "phq9_questionnaire_extensions.json"
    result = runner.invoke(cli, ["validate", str(bundle)])
    assert result.exit_code == 0, result.output
    totals = sorted(
        int(t) for t in re.findall(r'"instrument":"phq9".*?"total":(\d+)', result.output)
    )
    assert totals == [14, 21]
    assert "UNSUPPORTED" in result.output and "Patient" in result.output


def test_missing_key_for_ingest_style_use_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(
        "kind,source_patient_id,observed_at\nclinical_score,MRN-1,2026-03-02T09:00:00Z\n"
    )
    verdicts = list(read_verdicts(path.read_bytes(), name="a.csv", received_at=T0, key=None))
    assert verdicts[0].status == "rejected"
    assert "PSYMON_PSEUDONYM_KEY" in (verdicts[0].reason or "")
    assert "MRN-1" not in verdicts[0].dead_letter.model_dump_json()  # type: ignore[union-attr]


def test_malformed_setting_stops_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PSYMON_PARTITIONS", "many")
    path = tmp_path / "x.jsonl"
    path.write_text("")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code != 0
    assert "PSYMON_PARTITIONS" in result.output


def test_console_script_is_installed_and_answers_help() -> None:
    script = Path(sys.executable).with_name("psymon")
    result = subprocess.run(
        [str(script), "validate", "--help"], capture_output=True, text=True, check=True
    )
    assert "FHIR" in result.stdout and "Exit code 1" in result.stdout


def test_a_received_at_from_the_future_of_the_edge_is_refused() -> None:
    line = _line(kind="lab_result", analyte="crp", value=1.0, unit="mg/L")
    document = json.loads(line) | {
        "observed_at": "9999-01-01T00:00:00+00:00",
        "received_at": "9999-01-01T00:00:00+00:00",
    }
    (verdict,) = read_verdicts(
        json.dumps(document).encode(), name="x.jsonl", received_at=T0, key=None
    )
    assert verdict.status == "rejected" and "received_at" in (verdict.reason or "")
