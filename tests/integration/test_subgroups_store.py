"""Subgroups end to end on a real PostgreSQL: stored, viewed, shown, fitted, audited, replayed.

A small simulated depression cohort (about a quarter with planted low-grade
inflammation; ratings, labs and outcomes only) is loaded through the sink's
writer into an embedded PostgreSQL. Then:

* ``psymon subgroups fit`` (:func:`fit_from_store`) publishes numbered
  versions of the population subgroup model, with labels kept across
  versions and every run in the audit log;
* with that model, the stored history replayed from the store gives the same
  subgroup changes every time and the same as the core over the same events,
  and a state rebuilt from the store half way goes on as if it had never been
  lost;
* the changes, stored, show in ``v_subgroups`` (the latest per scheme, members
  and those who left), on the patient page (escaped) and in the patient JSON;
* ``run_study`` on the store writes an audit row naming the manifest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from dashboards.cohort import SUBGROUP_SIZES_SQL
from dashboards.macros import expand
from schemas.events import SubgroupAssigned
from schemas.identity import event_id_for
from services.api.app import create_app
from services.api.auth import TokenStore
from services.api.database import Database
from services.embedded.postgres import EmbeddedPostgres
from services.rebuild import rebuild_state
from services.replay import replay_outputs
from services.replay.engine import run_core
from services.simulator import SimulationConfig, simulate_cohort
from services.store.writer import StoreWriter
from services.study import run_study
from services.study.subgroup_models import LatestSubgroups, SubgroupModelStore, fit_from_store
from streams import CoreConfig, PatientState
from streams.stratification.snapshot import SubgroupSnapshot
from tests.integration.pg_fixtures import arrival_order, loaded_store

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
KINDS = {"clinical_score", "lab_result", "clinical_outcome"}
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"


@pytest.fixture(scope="module")
def cohort() -> list[Any]:
    base = SimulationConfig()
    config = replace(base, diagnoses=(replace(base.profile("depression"), share=1.0),))
    simulated = simulate_cohort(24, 150, seed=3, start=START, samples_per_hour=1, config=config)
    return arrival_order(list(simulated.events(kinds=KINDS)))


@pytest.fixture(scope="module")
def loaded(embedded_pg: EmbeddedPostgres, cohort: list[Any]) -> Iterator[str]:
    with loaded_store(embedded_pg, cohort, "subgroups") as url:
        yield url


@pytest.fixture(scope="module")
def models(loaded: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SubgroupSnapshot]:
    directory = tmp_path_factory.mktemp("models")
    report = fit_from_store(loaded, directory, k=2, seed=1, who="it-fit")
    return directory, report.snapshot


def audit_rows(url: str, actor: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT action, status, parameters, row_counts, manifest_sha256 FROM audit_log "
            "WHERE actor = %s ORDER BY started_at",
            (actor,),
        ).fetchall()


# --------------------------------------------------------------------------- fit and publish


def test_fitting_from_the_store_publishes_numbered_versions_with_stable_labels(
    loaded: str, models: tuple[Path, SubgroupSnapshot]
) -> None:
    directory, first = models
    assert first.version == 0 and first.labels == ("c1", "c2")
    assert first.trained_until is not None and first.examples >= 10
    assert any("CRP" in d for d in first.descriptions), first.descriptions
    second = fit_from_store(loaded, directory, k=2, seed=1, who="it-fit").snapshot
    store = SubgroupModelStore(directory)
    assert [s.version for s in store.versions()] == [0, 1]
    assert second.labels == first.labels and second.means == first.means  # same data, same fit
    latest = LatestSubgroups(store, CoreConfig())
    assert latest.refresh() and latest.config.subgroups == second
    (action, status, parameters, counts, sha), _ = audit_rows(loaded, "it-fit")
    assert (action, status, parameters["task"]) == ("study", "completed", "subgroups fit")
    assert counts["profiles_used"] == first.examples and counts["input_events"] > 0
    assert sha is not None and len(sha) == 64


def test_fitting_an_empty_store_says_why(store_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no stored patient has a biomarker profile"):
        fit_from_store(store_url, tmp_path, who="it-empty")
    ((action, status, *_),) = audit_rows(store_url, "it-empty")
    assert (action, status) == ("study", "failed")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- replay and rebuild


def test_subgroup_changes_replayed_from_the_store_are_deterministic(
    loaded: str, cohort: list[Any], models: tuple[Path, SubgroupSnapshot]
) -> None:
    config = CoreConfig().with_subgroups(models[1])

    def changes(outputs: Any) -> list[str]:
        return [o.model_dump_json() for o in outputs if isinstance(o, SubgroupAssigned)]

    first = changes(replay_outputs(loaded, config=config, who="it-replay"))
    second = changes(replay_outputs(loaded, config=config, who="it-replay"))
    in_memory = changes(o for _, outs in run_core(cohort, config) for o in outs)
    schemes = {json.loads(c)["scheme"] for c in first}
    assert schemes == {"specifier", "cluster"}, schemes
    assert first == second == in_memory


def test_a_state_rebuilt_from_the_store_keeps_its_subgroups(
    loaded: str, cohort: list[Any], models: tuple[Path, SubgroupSnapshot]
) -> None:
    config = CoreConfig().with_subgroups(models[1])
    live: dict[str, PatientState] = {}
    whole = [(e, outs) for e, outs in run_core(cohort, config, live)]
    moved = [e.patient_id for e, outs in whole for o in outs if isinstance(o, SubgroupAssigned)]
    patient = moved[0]
    mine = [(e, outs) for e, outs in whole if e.patient_id == patient]
    half = len(mine) // 2
    rebuilt = rebuild_state(loaded, patient, config, before=mine[half][0])
    assert rebuilt.strata is not None
    states = {patient: rebuilt}
    after = [outs for _, outs in run_core([e for e, _ in mine[half:]], config, states)]
    assert after == [outs for _, outs in mine[half:]]
    assert states[patient] == live[patient]
    assert states[patient].strata == live[patient].strata


# --------------------------------------------------------------------------- stored and shown


def change(
    patient: str, n: int, scheme: str, name: str, subgroup: str | None, previous: str | None,
    description: str,
) -> SubgroupAssigned:  # fmt: skip
    when = START + timedelta(days=n)
    return SubgroupAssigned(
        event_id=event_id_for("it-subgroups", patient, str(n), name),
        patient_id=patient,
        observed_at=when,
        received_at=when + timedelta(minutes=5),
        source={"system": "psymon-core"},
        caused_by=event_id_for("it-cause", str(n)),
        scheme=scheme,  # type: ignore[arg-type]
        scheme_name=name,
        subgroup=subgroup,
        previous=previous,
        version="3" if scheme == "cluster" else "core-2026.1",
        probability=0.91 if scheme == "cluster" else None,
        description=description,
        citation="Osimo EF et al. 2019" if scheme == "specifier" else None,
    )


def test_v_subgroups_holds_the_latest_change_per_scheme(store_url: str, cohort: list[Any]) -> None:
    one, two = sorted({e.patient_id for e in cohort})[:2]
    spec = "inflammatory_depression"
    rows = [
        change(one, 10, "specifier", spec, spec, None, "raised CRP"),
        change(one, 40, "specifier", spec, None, spec, "no longer meets: raised CRP"),
        change(one, 12, "cluster", "profile_mixture", "c1", None, "lower CRP"),
        change(one, 30, "cluster", "profile_mixture", "c2", "c1", "higher CRP"),
        change(two, 20, "specifier", spec, spec, None, "raised CRP"),
    ]
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write(rows)
        StoreWriter(conn).write(rows)  # stored once
        current = conn.execute(
            "SELECT patient_id, scheme_name, subgroup, previous, since FROM v_subgroups "
            "ORDER BY patient_id, scheme_name"
        ).fetchall()
        changes = conn.execute("SELECT count(*) FROM v_subgroup_changes").fetchone()
        sizes = conn.execute(
            expand(SUBGROUP_SIZES_SQL, START, START + timedelta(days=60))
        ).fetchall()
    assert changes == (5,)
    assert sorted(current) == sorted(
        [
            (one, spec, None, spec, START + timedelta(days=40)),
            (one, "profile_mixture", "c2", "c1", START + timedelta(days=30)),
            (two, spec, spec, None, START + timedelta(days=20)),
        ]
    )
    # The cohort dashboard's sizes over time: +1 on entering, -1 on leaving.
    assert [(when - START, metric, n) for when, metric, n in sizes] == [
        (timedelta(days=10), spec, 1),
        (timedelta(days=12), "profile_mixture · c1", 1),
        (timedelta(days=20), spec, 2),
        (timedelta(days=30), "profile_mixture · c1", 0),
        (timedelta(days=30), "profile_mixture · c2", 1),
        (timedelta(days=40), spec, 1),
    ]


def signed_in(app: Any, token: str) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    form = client.get("/login?next=/cohort")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    response = client.post("/login", data={"token": token, "nonce": nonce[1], "next": "/cohort"})
    assert response.status_code == 303
    return client


def test_the_patient_page_shows_current_subgroups_in_plain_words(
    store_url: str, cohort: list[Any], tmp_path: Path
) -> None:
    patient = cohort[0].patient_id
    spec = "inflammatory_depression"
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write(
            [
                *[e for e in cohort if e.patient_id == patient],
                change(patient, 12, "cluster", "profile_mixture", "c2", None, HOSTILE),
                change(patient, 20, "specifier", spec, spec, None, "depression with raised CRP"),
            ]
        )
    path = tmp_path / "tokens.json"
    token = TokenStore.load(path).issue("clinician-one", "clinician")
    database = Database(store_url)
    try:
        app = create_app(tokens=TokenStore.load(path), database=database)
        client = signed_in(app, token)
        page = client.get(f"/patients/{patient}").text
        record = client.get(
            f"/v1/patients/{patient}", headers={"Authorization": f"Bearer {token}"}
        ).json()
    finally:
        database.close()
    assert "<h2>Subgroups</h2>" in page
    assert "inflammatory depression" in page and "depression with raised CRP" in page
    assert "cluster model v3" in page and "91%" in page
    assert (START + timedelta(days=20)).strftime("%Y-%m-%d %H:%M UTC") in page
    assert "<script>alert('x')</script>" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert [(g["scheme"], g["subgroup"]) for g in record["subgroups"]] == [
        ("specifier", spec),
        ("cluster", "c2"),
    ]


# --------------------------------------------------------------------------- studies


def test_a_study_of_the_store_is_audited(loaded: str, tmp_path: Path) -> None:
    spec = {
        "name": "audited-study",
        "landmark_days": 28,
        "arms": {"exposure": {"sertraline": "sertraline"}, "reference": "other"},
        "endpoints": [
            {"name": "inflammation", "kind": "subgroup_transitions",
             "scheme": "inflammatory_depression"},
        ],
        "bootstrap_resamples": 0,
    }  # fmt: skip
    spec_path = tmp_path / "study.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    manifest = run_study(loaded, spec_path, tmp_path / "out", who="it-study")
    ((action, status, parameters, counts, sha),) = audit_rows(loaded, "it-study")
    assert (action, status) == ("study", "completed")
    assert parameters["study"] == "audited-study"
    assert parameters["spec_sha256"] == manifest.data["spec_sha256"]
    assert sha == manifest.sha256 and manifest.data["who"] == "it-study"
    assert counts["input_events"] == manifest.data["events"]["count"] > 0
    assert counts["patients.csv"] == manifest.row_counts["patients.csv"]
