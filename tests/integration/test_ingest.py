"""Ingest through the CLI and HTTP into a real broker: valid events on their topics,
rejected records answered with reasons and on the dead-letter topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.examples import envelope_fields
from schemas.topics import CLINICAL_SCORES, DEAD_LETTER, LAB_RESULTS, WEARABLE_SAMPLES
from services.api.app import create_app
from services.api.auth import TokenStore
from services.embedded import EmbeddedBroker
from services.producer import KafkaEventSink
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration
KEY = "integration-key-" + "k" * 32


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with EmbeddedBroker(partitions=2) as broker:
        yield broker.bootstrap


def _doc(n: int, **fields: object) -> dict[str, object]:
    env = envelope_fields(event_id=f"00000000-0000-4000-8000-{n:012d}")
    doc = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in env.items()}
    return doc | fields


def test_cli_ingest_sends_events_and_dead_letters(bootstrap: str, tmp_path: Path) -> None:
    csv = tmp_path / "clinic.csv"
    csv.write_text(
        "kind,source_patient_id,observed_at,instrument,rater,item_1,item_2,analyte,value,unit\n"
        "clinical_score,MRN-4711,2026-03-02T09:00:00+01:00,phq2,self,2,3,,,\n"
        "lab_result,MRN-4711,2026-03-03T08:00:00Z,,,,,crp,0.45,mg/dL\n"
        "lab_result,MRN-4711,2026-03-03T08:00:00Z,,,,,crp,0.45,furlongs\n"
    )
    env = os.environ | {"PSYMON_KAFKA_BOOTSTRAP": bootstrap, "PSYMON_PSEUDONYM_KEY": KEY}
    script = Path(sys.executable).with_name("psymon")
    result = subprocess.run(
        [str(script), "ingest", str(csv)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "3 records: 2 accepted (2 events sent), 1 rejected" in result.stdout
    assert "MRN-4711" not in result.stdout + result.stderr

    scores = read_topic(bootstrap, CLINICAL_SCORES, expect=1)
    labs = read_topic(bootstrap, LAB_RESULTS, expect=1)
    letters = read_topic(bootstrap, DEAD_LETTER, expect=1)
    assert [s["total"] for s in scores] == [5]
    assert labs[0]["value"] == pytest.approx(4.5) and labs[0]["unit"] == "mg/L"
    assert scores[0]["_key"] == scores[0]["patient_id"] == labs[0]["patient_id"]
    assert "furlongs" in letters[0]["reason"] and "mg/L" in letters[0]["reason"]
    everything = json.dumps(scores + labs + letters)
    assert "MRN-4711" not in everything


@pytest.fixture
def api(bootstrap: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    path = tmp_path / "tokens.json"
    store = TokenStore.load(path)
    tokens = {role: store.add(path, f"{role}-test", role) for role in ("ingest", "researcher")}  # type: ignore[arg-type]
    with KafkaEventSink(bootstrap) as sink:
        yield TestClient(create_app(sink=sink, tokens=TokenStore.load(path))), tokens


def test_http_ingest_requires_a_token_with_the_ingest_role(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = api
    batch = {"events": [_doc(1, kind="clinical_score", instrument="gad7", rater="self", total=3)]}
    assert client.post("/v1/events", json=batch).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert client.post("/v1/events", json=batch, headers=bad).status_code == 401
    researcher = {"Authorization": f"Bearer {tokens['researcher']}"}
    assert client.post("/v1/events", json=batch, headers=researcher).status_code == 403


def test_http_ingest_produces_valid_and_dead_letters_invalid(
    api: tuple[TestClient, dict[str, str]], bootstrap: str
) -> None:
    client, tokens = api
    upload_start = "2026-03-02T08:00:00+00:00"
    batch = {
        "events": [
            _doc(11, kind="clinical_score", instrument="gad7", rater="self", total=17),
            _doc(12, kind="clinical_score", instrument="gad7", rater="self", total=99),
            _doc(
                13,
                kind="wearable_upload",
                observed_at=upload_start,
                window_end="2026-03-02T08:02:00+00:00",
                readings=[
                    {
                        "event_id": f"00000000-0000-4000-9000-00000000000{i}",
                        "metric": "heart_rate",
                        "value": 61 + i,
                        "unit": "bpm",
                        "start": f"2026-03-02T08:0{i}:00+00:00",
                        "end": f"2026-03-02T08:0{i + 1}:00+00:00",
                    }
                    for i in range(2)
                ],
            ),
        ]
    }
    response = client.post(
        "/v1/events", json=batch, headers={"Authorization": f"Bearer {tokens['ingest']}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1]
    assert "99" in body["rejected"][0]["reason"] and "0-21" in body["rejected"][0]["reason"]

    scores = read_topic(bootstrap, CLINICAL_SCORES, expect=2)
    assert 17 in [s["total"] for s in scores]
    uploads = read_topic(bootstrap, WEARABLE_SAMPLES, expect=1)
    assert uploads[-1]["kind"] == "wearable_upload" and len(uploads[-1]["readings"]) == 2
    letters = read_topic(bootstrap, DEAD_LETTER, expect=2)
    assert body["rejected"][0]["dead_letter_id"] in [letter["event_id"] for letter in letters]


def test_http_rejects_oversized_batches(api: tuple[TestClient, dict[str, str]]) -> None:
    client, tokens = api
    batch = {"events": [{"kind": "clinical_score"}] * 1001}
    response = client.post(
        "/v1/events", json=batch, headers={"Authorization": f"Bearer {tokens['ingest']}"}
    )
    assert response.status_code == 422
