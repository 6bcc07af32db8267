"""Bad input on every path: each record accepted or dead-lettered with a reason, nothing crashes.

The records: the curated corpus (tests/reliability/corpus), big generated
ones (a 5 MB upload, 100,000 levels of nesting, a full week of minutes) and
records hypothesis makes by mutating valid events. They go through

* the CLI: ``psymon validate`` and ``psymon ingest`` as subprocesses;
* HTTP: ``POST /v1/events`` of the FastAPI app with a real
  :class:`~services.producer.KafkaEventSink` on an embedded broker, one request
  per record;
* the broker: produced raw to the input topics, read by a real worker (and
  the sink), followed by a good record that must still be processed.

On each path the counts add up: records sent = accepted + dead-lettered
(+ requests refused whole with a 4xx and a reason, on HTTP), no process dies,
no request gets a 5xx, and the curated records get the verdict their
manifest names.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from schemas.events import RAW_KINDS, ClinicalScore
from schemas.examples import EXAMPLE_PATIENT
from schemas.identity import PSEUDONYM_PATTERN
from schemas.topics import ALERTS, CLINICAL_SCORES, DEAD_LETTER, INPUT_TOPICS, topic_for_kind
from services.api.app import create_app
from services.api.auth import TokenStore
from services.intake import read_verdicts
from services.producer import KafkaEventSink
from tests.reliability.harness import (
    BrokerProbe,
    StateWrites,
    clean_env,
    psymon_script,
    record_figures,
    wait_until,
)
from tests.reliability.hostile import (
    Hostile,
    corpus,
    generated,
    generated_records,
    hostile_documents,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

KEY = "reliability-pseudonym-key-" + "r" * 32
#: Records hypothesis makes for the end-to-end paths (the in-process property tries more).
GENERATED = 150
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def hostile() -> list[Hostile]:
    """Every hostile record once (by its bytes): corpus, big ones, generated ones."""
    seen: set[bytes] = set()
    records = []
    for record in [*corpus(), *generated(), *generated_records(GENERATED)]:
        if record.data not in seen:
            seen.add(record.data)
            records.append(record)
    return records


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    FIGURES.clear()
    FIGURES.update(title="bad input: CLI, HTTP, broker", bad_inputs=0, crashes=0)
    started = time.monotonic()
    yield FIGURES
    FIGURES["seconds"] = round(time.monotonic() - started, 1)
    record_figures("bad_input", FIGURES)


def _sending(path: str, sent: int) -> None:
    """Count the records tried on ``path`` before sending them (a crash still counts them)."""
    FIGURES[path] = {"sent": sent}
    FIGURES["bad_inputs"] += sent


def _tried(path: str, sent: int, **counts: Any) -> None:
    FIGURES[path] = {"sent": sent, **counts}


# --------------------------------------------------------------------------- in process


@settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(hostile_documents())
def test_the_edge_gives_every_generated_record_one_verdict_and_never_raises(data: bytes) -> None:
    FIGURES["in_process"] = FIGURES.get("in_process", 0) + 1
    FIGURES["bad_inputs"] += 1
    verdicts = list(
        read_verdicts(data, name="x.jsonl", received_at=datetime.now(UTC), key=KEY.encode())
    )
    assert len(verdicts) == 1
    verdict = verdicts[0]
    assert verdict.status in ("accepted", "rejected")
    if verdict.status == "rejected":
        assert verdict.dead_letter is not None and verdict.reason
    else:
        assert len(verdict.events) == 1


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [psymon_script(), *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _rejected_lines(output: str) -> set[int]:
    return {int(n) for n in re.findall(r"^REJECTED  line (\d+): \S", output, re.MULTILINE)}


def test_cli_validate_and_ingest_judge_every_hostile_record(
    hostile: list[Hostile], make_broker: Any, scratch: Path
) -> None:
    file = scratch / "hostile.jsonl"
    file.write_bytes(b"\n".join(r.data for r in hostile) + b"\n")
    sent = len(hostile)

    _sending("cli_validate", sent)
    validate = _cli("validate", "--quiet", str(file), PSYMON_PSEUDONYM_KEY=KEY)
    broker = make_broker(partitions=2)
    _sending("cli_ingest", sent)
    ingest = _cli(
        "ingest", str(file), PSYMON_PSEUDONYM_KEY=KEY, PSYMON_KAFKA_BOOTSTRAP=broker.bootstrap
    )
    FIGURES["crashes"] += ("Traceback" in validate.stderr) + ("Traceback" in ingest.stderr)

    assert "Traceback" not in validate.stderr, validate.stderr[-3000:]
    assert validate.returncode == 1, validate.stderr[-3000:]
    summary = re.search(
        r"^(\d+) records: (\d+) accepted, (\d+) rejected; (\d+) events$",
        validate.stdout,
        re.MULTILINE,
    )
    assert summary, validate.stdout[-2000:]
    total, accepted, rejected, _ = map(int, summary.groups())
    rejected_lines = _rejected_lines(validate.stdout)
    assert total == sent and accepted + rejected == sent and len(rejected_lines) == rejected
    _check_expectations(hostile, {n - 1 for n in rejected_lines}, "psymon validate")

    assert "Traceback" not in ingest.stderr, ingest.stderr[-3000:]
    assert ingest.returncode == 1, ingest.stderr[-3000:]
    found = re.search(
        r"^(\d+) records: (\d+) accepted \((\d+) events sent\), (\d+) rejected",
        ingest.stdout,
        re.MULTILINE,
    )
    assert found, ingest.stdout[-2000:]
    i_total, i_accepted, i_events, i_rejected = map(int, found.groups())
    assert (i_total, i_accepted, i_rejected) == (sent, accepted, rejected)
    assert _rejected_lines(ingest.stdout) == rejected_lines

    records = BrokerProbe(broker.bootstrap).records()
    on_inputs = [r for r in records if r[0] in INPUT_TOPICS]
    letters = [json.loads(r[2]) for r in records if r[0] == DEAD_LETTER]
    assert len(on_inputs) == i_events
    assert len({letter["event_id"] for letter in letters}) == i_rejected
    assert all(letter["reason"] for letter in letters)
    _no_identifier_leaks(letters)
    _tried("cli_validate", sent, accepted=accepted, dead_lettered=rejected)
    _tried("cli_ingest", sent, accepted=i_accepted, dead_lettered=i_rejected)


# --------------------------------------------------------------------------- HTTP


def test_http_ingest_answers_every_hostile_record_without_a_server_error(
    hostile: list[Hostile], make_broker: Any, scratch: Path
) -> None:
    broker = make_broker(partitions=2)
    tokens_path = scratch / "tokens.json"
    token = TokenStore.load(tokens_path).issue("hostile-ingest", "ingest")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accepted = rejected = refused = 0
    server_errors: list[str] = []
    letter_ids: set[str] = set()
    verdicts: dict[int, str] = {}
    _sending("http", len(hostile))
    with KafkaEventSink(broker.bootstrap, client_id="psymon-api") as sink:
        app = create_app(sink=sink, tokens=TokenStore.load(tokens_path))
        client = TestClient(app, raise_server_exceptions=False)
        for index, record in enumerate(hostile):
            body = b'{"events": [' + record.data + b"]}"
            response = client.post("/v1/events", content=body, headers=headers)
            if response.status_code >= 500:
                server_errors.append(f"{record.name}: {response.status_code} {response.text[:200]}")
            elif response.status_code == 200:
                answer = response.json()
                accepted += answer["accepted"]
                rejected += len(answer["rejected"])
                letter_ids |= {r["dead_letter_id"] for r in answer["rejected"]}
                assert all(r["reason"] for r in answer["rejected"])
                verdicts[index] = "rejected" if answer["rejected"] else "accepted"
            else:
                assert 400 <= response.status_code < 500 and response.json().get("detail"), (
                    record.name,
                    response.status_code,
                    response.text[:300],
                )
                refused += 1
                verdicts[index] = "refused"
        oversized = client.post(
            "/v1/events", json={"events": [{"kind": "lab_result"}] * 1001}, headers=headers
        )
    FIGURES["http_server_errors"] = server_errors
    _tried(
        "http",
        len(hostile),
        accepted=accepted,
        dead_lettered=rejected,
        refused_whole=refused,
        server_errors=len(server_errors),
    )
    FIGURES["crashes"] += len(server_errors)
    assert not server_errors, "HTTP 5xx for hostile records:\n" + "\n".join(server_errors)
    assert accepted + rejected + refused == len(hostile)
    assert oversized.status_code == 422, oversized.text[:300]
    records = BrokerProbe(broker.bootstrap).records()
    letters = [json.loads(r[2]) for r in records if r[0] == DEAD_LETTER]
    assert {letter["event_id"] for letter in letters} == letter_ids
    assert sum(1 for r in records if r[0] in INPUT_TOPICS) == accepted
    _no_identifier_leaks(letters)
    not_accepted = {i for i, v in verdicts.items() if v != "accepted"}
    _check_expectations(hostile, not_accepted, "POST /v1/events")


# --------------------------------------------------------------------------- broker


def _topic_and_key(record: Hostile) -> tuple[str, bytes]:
    document = record.document
    kind = document.get("kind") if isinstance(document, dict) else None
    topic = topic_for_kind(kind) if isinstance(kind, str) and kind in RAW_KINDS else CLINICAL_SCORES
    patient = document.get("patient_id") if isinstance(document, dict) else None
    valid = isinstance(patient, str) and PSEUDONYM_PATTERN.fullmatch(patient)
    return topic, (patient.encode() if valid and isinstance(patient, str) else b"hostile")


def _produce_raw(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=16 * 1024 * 1024
    )
    try:
        futures = [producer.send(t, key=k, value=v) for t, k, v in records]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def _canary() -> ClinicalScore:
    """A good PHQ-9 with item 9 answered: it must still raise its alert afterwards."""
    now = datetime.now(UTC).replace(microsecond=0)
    return ClinicalScore(
        event_id=uuid.uuid4(),
        patient_id=EXAMPLE_PATIENT,
        observed_at=now - timedelta(minutes=5),
        received_at=now,
        source={"system": "reliability-canary"},
        instrument="phq9",
        rater="self",
        items={**{str(i): 1 for i in range(1, 9)}, "9": 2},
    )


def test_hostile_records_on_the_input_topics_neither_stop_the_worker_nor_the_sink(
    hostile: list[Hostile], make_broker: Any, make_pipeline: Any, store_url: str
) -> None:
    broker = make_broker(partitions=2)
    pipeline = make_pipeline(broker.bootstrap)
    worker = pipeline.add_worker()
    pipeline.start_sink()
    worker.wait_ready()
    routed = [(*_topic_and_key(r), r.data) for r in hostile]
    keys = {key.decode() for _, key, _ in routed if key != b"hostile"}
    writes = StateWrites(broker.bootstrap, pipeline.app_id, keys)
    digests = {hashlib.sha256(r.data).hexdigest(): n for n, r in enumerate(hostile)}
    _sending("broker", len(hostile))
    _produce_raw(broker.bootstrap, routed)
    probe = BrokerProbe(broker.bootstrap)

    def worker_letters() -> set[int]:
        found = set()
        for topic, _, value in probe.records([DEAD_LETTER]):
            letter = json.loads(value)
            if topic == DEAD_LETTER and letter["raw_sha256"] in digests:
                assert letter["reason"], letter
                found.add(digests[letter["raw_sha256"]])
        return found

    def settled() -> bool:
        for batch in writes.consumer.poll(timeout_ms=200).values():
            writes.count += sum(1 for m in batch if m.key in writes.keys)
        return writes.count + len(worker_letters()) >= len(hostile) or not worker.running

    try:
        wait_until(settled, "the worker to judge every hostile record", timeout=45)
    except AssertionError as timeout:
        judged = worker_letters()
        FIGURES["worker_agent_crashes"] = worker.log().count("Crashed reason=")
        FIGURES["crashes"] += FIGURES["worker_agent_crashes"]
        missing = [r.name for n, r in enumerate(hostile) if n not in judged]
        raise AssertionError(
            f"{timeout}: {writes.count} applied, {len(judged)} dead-lettered of {len(hostile)}; "
            f"worker alive: {worker.running}; not dead-lettered: {missing[:40]}\n"
            f"{worker.log_tail(6000)}"
        ) from None
    finally:
        writes.close()
    dead_lettered = worker_letters()
    worker_accepted = writes.count
    canary = _canary()
    with KafkaEventSink(broker.bootstrap) as producer:
        producer.send(canary)

    def canary_alerted() -> bool:
        return (
            any(
                json.loads(v).get("caused_by") == str(canary.event_id)
                for _, _, v in probe.records([ALERTS])
            )
            or not worker.running
        )

    wait_until(canary_alerted, "the worker to process a good record after the hostile ones", 60)
    alive = pipeline.processes_alive()
    FIGURES["worker_agent_crashes"] = worker.log().count("Crashed reason=")
    FIGURES["crashes"] += FIGURES["worker_agent_crashes"]
    in_store = _store_verdicts(store_url, hostile, lambda: pipeline.processes_alive()["sink"])
    _tried(
        "broker",
        len(hostile),
        accepted=worker_accepted,
        dead_lettered=len(dead_lettered),
        store_accepted=in_store["accepted"],
        store_dead_lettered=in_store["dead_lettered"],
    )
    FIGURES["crashes"] += sum(1 for up in alive.values() if not up)
    assert all(alive.values()), f"a process died: {alive}\n{pipeline.logs()}"
    assert worker_accepted + len(dead_lettered) == len(hostile), (
        f"worker: {worker_accepted} applied + {len(dead_lettered)} dead-lettered "
        f"of {len(hostile)} records"
    )
    assert in_store["accepted"] + in_store["dead_lettered"] == len(hostile), in_store
    assert not in_store["unaccounted"], f"neither stored nor dead-lettered: {in_store}"
    _check_expectations(hostile, dead_lettered, "the stream worker", only=corpus_names())


def _store_verdicts(url: str, hostile: list[Hostile], sink_alive: Any) -> dict[str, Any]:
    """Per record: its event stored (accepted) or a dead letter for it (by digest or id)."""

    def read() -> dict[str, Any]:
        with psycopg.connect(url) as conn:
            inputs = {str(r[0]) for r in conn.execute("SELECT event_id FROM v_input_events")}
            letters = conn.execute("SELECT raw_sha256, raw FROM dead_letters").fetchall()
        digests = {row[0] for row in letters}
        counts: Counter[str] = Counter()
        unaccounted = []
        for record in hostile:
            document = record.document
            event_id = str(document.get("event_id")) if isinstance(document, dict) else None
            if hashlib.sha256(record.data).hexdigest() in digests:
                counts["dead_lettered"] += 1
            elif event_id in inputs:
                counts["accepted"] += 1
            elif event_id and any(event_id in (raw or "") for _, raw in letters):
                counts["dead_lettered"] += 1  # refused by the database: re-encoded, same id
            else:
                unaccounted.append(record.name)
        return {**counts, "unaccounted": unaccounted}

    result: dict[str, Any] = {}

    def complete() -> bool:
        result.clear()
        result.update(read())
        return not result["unaccounted"] or not sink_alive()

    wait_until(complete, "the sink to store or dead-letter every hostile record", timeout=60)
    result.setdefault("accepted", 0)
    result.setdefault("dead_lettered", 0)
    return result


# --------------------------------------------------------------------------- helpers


def corpus_names() -> set[str]:
    return {r.name for r in corpus()} | {r.name for r in generated()}


def _check_expectations(
    hostile: list[Hostile], not_accepted: set[int], path: str, *, only: set[str] | None = None
) -> None:
    """The curated records get the verdict their manifest names."""
    wrong = []
    for index, record in enumerate(hostile):
        if only is not None and record.name not in only:
            continue
        if record.expect == "reject" and index not in not_accepted:
            wrong.append(f"{record.name} ({record.what}) was accepted")
        if record.expect == "accept" and index in not_accepted:
            wrong.append(f"{record.name} ({record.what}) was refused")
    FIGURES.setdefault("wrong_verdicts", {})[path] = wrong
    assert not wrong, f"{path}: " + "; ".join(wrong)


def _no_identifier_leaks(letters: list[dict[str, Any]]) -> None:
    """The MRN of the corpus never reaches the dead-letter topic."""
    text = json.dumps(letters)
    assert "MRN-HOSTILE-0042" not in text
