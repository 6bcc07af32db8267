"""Every dashboard query runs on a real store and returns what its panel reads.

A small simulated cohort (the simulator's events, the outputs the stream core
derives from them, a few risk assessments, dead letters and a care-team
acknowledgement) is written through the store writer into the embedded
PostgreSQL. Each panel target, annotation and variable query of the
generated dashboards is then expanded as Grafana would (``dashboards.macros``)
for the cohort's time range and a patient, and run as a role that may read
the ``v_*`` views and nothing else (like Grafana's ``psymon_grafana``, it
cannot read the tables). The result must have the shape the panel needs:

* time series: a ``time`` column first, never null, in ascending order (Grafana
  refuses unsorted long frames), and at least one numeric value column;
* annotations: ``time`` and ``text`` (``timeend``, ``tags`` optional);
* variables: ``__value``/``__text`` or a single column;
* stat and bar gauge panels: a numeric column;
* every column or series an override names must be one the SQL returns.

The same queries are run on the TimescaleDB engine (WASM build, see
test_timescale_ddl.py) with the data source's ``timescaledb: true`` expansion,
where ``$__timeGroup`` becomes ``time_bucket(...)``: one statement at a time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from dashboards.build import DASHBOARDS, Query, queries, render
from dashboards.macros import expand
from dashboards.thresholds import RISK_BANDS
from dashboards.vocabulary import OPEN_STATUSES, SEVERITIES
from schemas.dispatch import dead_letter
from schemas.envelope import Source
from schemas.events import ClinicalScore, RiskAssessment
from schemas.identity import event_id_for
from schemas.topics import CLINICAL_SCORES, LAB_RESULTS
from services.embedded.postgres import EmbeddedPostgres
from services.simulator import simulate_cohort
from services.store import StoreWriter, migrate, recorded_flavour
from services.store.tables import Storable
from streams.config import CoreConfig
from streams.core import process
from streams.state import PatientState
from tests.integration.pg_fixtures import create_database, drop_database
from tests.integration.test_timescale_ddl import timescale_url  # noqa: F401 (fixture)

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 70
TIME_FROM, TIME_TO = START, START + timedelta(days=DAYS)
SEED = 6  # two bipolar, two depressed, one with schizophrenia; relapses, lithium

TIME_TYPES = {"timestamp with time zone", "date", "double precision", "numeric"}
NUMERIC_TYPES = {"bigint", "integer", "smallint", "double precision", "numeric", "real"}

#: Names an override may use for a category that a small cohort need not show.
CATEGORIES = {*SEVERITIES, *(label for _, label, _ in RISK_BANDS)}

#: Panels that must show data for the simulated cohort (title, refId).
MUST_SHOW = {
    ("psymon-cohort-overview", "Patients monitored", "A"),
    ("psymon-cohort-overview", "All patients", "A"),
    ("psymon-cohort-overview", "Open alerts", "A"),
    ("psymon-cohort-overview", "Patients by current relapse risk", "A"),
    ("psymon-cohort-overview", "Patients by course status", "A"),
    ("psymon-cohort-overview", "Wearable data coverage", "A"),
    ("psymon-cohort-overview", "Wearable data coverage", "B"),
    ("psymon-cohort-overview", "Ratings received per day", "A"),
    ("psymon-patient-course", "Relapse risk now", "A"),
    ("psymon-patient-course", "Where the patient stands", "A"),
    ("psymon-patient-course", "Relapse risk", "A"),
    ("psymon-patient-course", "PHQ-9", "A"),
    ("psymon-patient-course", "PHQ-9", "B"),
    ("psymon-patient-course", "PHQ-9", "C"),
    ("psymon-patient-course", "GAD-7", "A"),
    ("psymon-patient-course", "MADRS", "A"),
    ("psymon-patient-course", "YMRS", "A"),
    ("psymon-patient-course", "PANSS", "A"),
    ("psymon-patient-course", "Wearable: $feature", "A"),
    ("psymon-patient-course", "Deviation from personal baseline", "A"),
    ("psymon-patient-course", "Wearable data coverage", "A"),
    ("psymon-patient-course", "Wearable data coverage", "B"),
    ("psymon-patient-course", "CRP (mg/L)", "A"),
    ("psymon-patient-course", "lithium (mmol/L)", "A"),
    ("psymon-patient-course", "Alerts", "Anno"),
    ("psymon-patient-course", "Clinical outcomes", "Anno"),
    ("psymon-patient-course", "patient", "var"),
    ("psymon-patient-course", "feature", "var"),
    ("psymon-alert-inbox", "Inbox", "A"),
    ("psymon-alert-inbox", "Alerts raised per day", "A"),
    ("psymon-alert-inbox", "Alert burden", "A"),
    ("psymon-pipeline-health", "Events per second, by topic", "A"),
    ("psymon-pipeline-health", "From observation to arrival", "A"),
    ("psymon-pipeline-health", "Dead letters, by topic", "A"),
    ("psymon-pipeline-health", "Latest dead letters", "A"),
}

ALL_QUERIES: list[Query] = [q for build in DASHBOARDS.values() for q in queries(render(build()))]


def query_id(query: Query) -> str:
    return f"{query.dashboard}/{query.kind}/{query.title}/{query.ref_id}"


# --------------------------------------------------------------------------- the cohort


def simulated_history(
    patients: int = 5, days: int = DAYS, seed: int = SEED, samples_per_hour: int = 1
) -> list[Storable]:
    """What the store holds after psymon ran on a simulated cohort.

    The simulator's events, everything the stream core derives from them (in
    arrival order, per patient, as a worker would), a weekly risk estimate per
    patient (no risk model runs in the core yet) and two dead letters.
    """
    cohort = simulate_cohort(patients, days, seed, START, samples_per_hour=samples_per_hour)
    inputs = list(cohort.events())
    config, states = CoreConfig(), dict[str, PatientState]()
    derived: list[Storable] = []
    for event in inputs:
        state = states.get(event.patient_id) or PatientState(patient_id=event.patient_id)
        states[event.patient_id], outputs = process(state, event, config)
        derived.extend(outputs)
    return [*inputs, *derived, *risk_estimates(inputs, seed), *dead_letters()]


def risk_estimates(inputs: Sequence[Storable], seed: int) -> list[RiskAssessment]:
    """One estimate per patient and week, caused by that week's first rating."""
    rng = random.Random(seed)
    estimates = []
    seen: set[tuple[str, int]] = set()
    for event in sorted(
        (e for e in inputs if isinstance(e, ClinicalScore)), key=lambda e: e.observed_at
    ):
        week = (event.observed_at - START).days // 7
        if (event.patient_id, week) in seen:
            continue
        seen.add((event.patient_id, week))
        probability = round(rng.random(), 3)
        estimates.append(
            RiskAssessment(
                event_id=event_id_for("dashboard-test-risk", str(event.event_id)),
                patient_id=event.patient_id,
                observed_at=event.observed_at,
                received_at=event.received_at,
                source=Source(system="psymon-core"),
                caused_by=event.event_id,
                probability=probability,
                horizon_days=28,
                model_name="relapse-logistic",
                model_version=1,
                contributions=[{"feature": "phq9", "value": 1.0, "contribution": probability}],
            )
        )
    return estimates


def dead_letters() -> list[Storable]:
    return [
        dead_letter(b'{"instrument": "phq9", "total": 99}', CLINICAL_SCORES,
                    START + timedelta(days=3), "field 'total': value 99 is out of range (0-27)"),
        dead_letter(b"not json", LAB_RESULTS, START + timedelta(days=9, hours=2),
                    "the record is not JSON"),
    ]  # fmt: skip


def acknowledge_first_open_alert(conn: psycopg.Connection[Any]) -> bool:
    """What the alert API writes when a clinician acknowledges an alert; False if none is open."""
    row = conn.execute(
        "SELECT alert_id, patient_id, updated_at FROM v_alerts_open ORDER BY updated_at LIMIT 1"
    ).fetchone()
    if row is None:
        return False
    alert_id, patient_id, updated_at = row
    acted = updated_at + timedelta(hours=2)
    conn.execute(
        """INSERT INTO alert_history (event_id, alert_id, patient_id, observed_at, received_at,
               source_system, action, actor, note, payload)
           VALUES (%s, %s, %s, %s, %s, 'psymon-api', 'acknowledged', 'nurse-1', NULL, '{}')""",
        (uuid.uuid4(), alert_id, patient_id, acted, acted),
    )
    return True


def create_view_reader(conn: psycopg.Connection[Any]) -> str:
    """A role that may read the ``v_*`` views and nothing else; its name."""
    role = f"dashboards_{uuid.uuid4().hex[:10]}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    views = [
        r[0]
        for r in conn.execute(
            "SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'v\\_%'"
        )
    ]
    for view in views:
        conn.execute(
            sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(view), sql.Identifier(role))
        )
    return role


@pytest.fixture(scope="module")
def dashboard_store(embedded_pg: EmbeddedPostgres) -> Iterator[tuple[str, str]]:
    """A store filled with the simulated cohort: its URL and the view-reader role."""
    name = create_database(embedded_pg, "dashboards")
    url = embedded_pg.url_for(name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        StoreWriter(conn).write(simulated_history())
        assert acknowledge_first_open_alert(conn), "the simulated cohort raised no open alert"
        role = create_view_reader(conn)
    yield url, role
    drop_database(embedded_pg, name)
    with psycopg.connect(embedded_pg.url_for("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --------------------------------------------------------------------------- running queries


class Result:
    """Columns (name, type) and rows of one query."""

    def __init__(self, columns: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> None:
        self.columns = columns
        self.rows = rows
        self.names = [name for name, _ in columns]


def run(conn: psycopg.Connection[Any], statement: str) -> Result:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        description = cursor.description or []
        rows = cursor.fetchall()
        types = {
            oid: name
            for oid, name in conn.execute(
                "SELECT oid, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)",
                ([d.type_code for d in description],),
            )
        }
    return Result([(d.name, types[d.type_code]) for d in description], rows)


def choices(conn: psycopg.Connection[Any], query: Query, values: dict[str, Any]) -> list[str]:
    """The options a query variable offers."""
    result = run(conn, expand(query.sql, TIME_FROM, TIME_TO, values))
    column = result.names.index("__value") if "__value" in result.names else 0
    return [str(row[column]) for row in result.rows]


def selections(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Variable values as a user would pick them: every patient in turn, every feature."""
    variables = {q.title: q for q in ALL_QUERIES if q.kind == "variable"}
    base: dict[str, Any] = {"severity": list(SEVERITIES), "status": list(OPEN_STATUSES)}
    patients = choices(conn, variables["patient"], base)
    assert patients, "the patient variable offers no patient"
    picked = []
    for patient in patients:
        values = {**base, "patient": patient}
        values["feature"] = choices(conn, variables["feature"], values) or ["none"]
        picked.append(values)
    return picked


def check_shape(query: Query, result: Result) -> None:
    """The result has the shape Grafana needs for this query's panel, annotation or variable."""
    where = query_id(query)
    types = dict(result.columns)
    if query.kind == "variable":
        assert "__value" in types or len(result.columns) == 1, f"{where}: {result.names}"
        return
    if query.kind == "annotation":
        assert {"time", "text"} <= set(types), f"{where}: {result.names}"
        assert types["time"] in TIME_TYPES, f"{where}: time is {types['time']}"
        assert all(row[result.names.index("time")] is not None for row in result.rows), where
        return
    if query.format == "time_series":
        assert result.names[0] == "time", f"{where}: first column {result.names[0]!r}"
        assert types["time"] in TIME_TYPES, f"{where}: time is {types['time']}"
        times = [row[0] for row in result.rows]
        assert None not in times, f"{where}: a null time"
        assert times == sorted(times), f"{where}: rows not in time order"
        values = [t for n, t in result.columns[1:] if n != "metric"]
        assert any(t in NUMERIC_TYPES for t in values), f"{where}: no numeric value column"
    if query.panel.get("type") in ("stat", "bargauge"):
        assert any(t in NUMERIC_TYPES for _, t in result.columns), f"{where}: nothing to show"


def shown_names(query: Query, result: Result) -> set[str]:
    """Field names the panel can show from this result: columns, series and row labels."""
    names = set(result.names)
    for column, kind in result.columns:
        if kind == "text":  # a metric column names series; a label column names bars
            index = result.names.index(column)
            names |= {str(row[index]) for row in result.rows}
    return names


def override_names(panel: dict[str, Any]) -> set[str]:
    return {
        str(o["matcher"]["options"])
        for o in panel.get("fieldConfig", {}).get("overrides", [])
        if o["matcher"]["id"] == "byName"
    }


# --------------------------------------------------------------------------- the tests


Results = dict[str, tuple[Query, list[Result]]]


def run_all(
    conn: psycopg.Connection[Any], time_to: datetime, *, timescaledb: bool = False
) -> tuple[Results, list[str]]:
    """Every query for the range: once, or once per patient if it reads ``$patient``."""
    picked = selections(conn)
    found: Results = {}
    failures = []
    for query in ALL_QUERIES:
        runs = picked if "$patient" in query.sql else picked[:1]
        repeat = query.panel.get("repeat")
        if repeat:  # Grafana draws one panel per value, each with that value alone
            runs = [{**v, repeat: [one]} for v in runs for one in v[repeat]]
        found[query_id(query)] = (query, [])
        for values in runs:
            statement = expand(query.sql, START, time_to, values, timescaledb=timescaledb)
            try:
                found[query_id(query)][1].append(run(conn, statement))
            except psycopg.Error as error:
                failures.append(f"{query_id(query)}: {error}\n{statement}")
                break
    return found, failures


@pytest.fixture(scope="module")
def results(dashboard_store: tuple[str, str]) -> Results:
    """Every query of every dashboard, run as the view reader for the cohort's range."""
    url, role = dashboard_store
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute("SET default_transaction_read_only = on")
        found, failures = run_all(conn, TIME_TO)
    assert not failures, "queries failed:\n\n" + "\n\n".join(failures)
    return found


def test_the_reader_role_may_read_the_views_but_not_the_tables(
    dashboard_store: tuple[str, str],
) -> None:
    url, role = dashboard_store
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        assert conn.execute("SELECT count(*) FROM v_patient_scores").fetchone() != (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM clinical_scores")


def test_every_query_runs_as_a_view_reader_with_the_shape_its_panel_needs(
    results: Results,
) -> None:
    assert len(results) == len(ALL_QUERIES)
    for query, runs in results.values():
        for result in runs:
            check_shape(query, result)


def test_every_override_names_something_the_panel_shows(
    results: Results,
) -> None:
    by_panel: dict[tuple[str, str], tuple[dict[str, Any], set[str]]] = {}
    for query, runs in results.values():
        if query.kind != "panel":
            continue
        key = (query.dashboard, query.title)
        names = by_panel.get(key, (query.panel, set()))[1]
        for result in runs:
            names = names | shown_names(query, result)
        by_panel[key] = (query.panel, names)
    for (uid, title), (panel, names) in by_panel.items():
        unknown = override_names(panel) - names - CATEGORIES
        assert not unknown, f"{uid}/{title}: overrides name {sorted(unknown)}, not in {names}"


def test_the_cohort_fills_the_panels_that_matter(
    results: Results,
) -> None:
    empty = sorted(
        f"{uid}/{title}/{ref}"
        for uid, title, ref in MUST_SHOW
        if not any(
            q.dashboard == uid and q.title == title and q.ref_id == ref and r.rows
            for q, runs in results.values()
            for r in runs
        )
    )
    assert not empty, f"no rows: {empty}"


def test_an_acknowledged_alert_shows_in_the_inbox_with_its_age(
    results: Results,
) -> None:
    inbox = next(runs[0] for q, runs in results.values() if q.title == "Inbox")
    rows = [dict(zip(inbox.names, row, strict=True)) for row in inbox.rows]
    assert {r["status"] for r in rows} >= {"open", "acknowledged"}
    acknowledged = next(r for r in rows if r["status"] == "acknowledged")
    assert acknowledged["last_actor"] == "nurse-1"
    assert all(r["age"] > 0 for r in rows)
    ranks = [SEVERITIES.index(r["severity"]) for r in rows]
    assert ranks == sorted(ranks), "the most urgent alerts come first"


def test_a_patient_panel_shows_only_that_patient(dashboard_store: tuple[str, str]) -> None:
    url, role = dashboard_store
    panel = next(q for q in ALL_QUERIES if q.title == "PHQ-9" and q.ref_id == "A")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        totals: dict[str, int] = dict(
            conn.execute(
                "SELECT patient_id, count(*) FROM v_patient_scores WHERE instrument = 'phq9' "
                "GROUP BY 1"
            ).fetchall()
        )
        for patient, expected in totals.items():
            shown = run(conn, expand(panel.sql, TIME_FROM, TIME_TO, {"patient": patient}))
            assert len(shown.rows) == expected
        nobody = run(conn, expand(panel.sql, TIME_FROM, TIME_TO, {"patient": "p-x' OR 'a'='a"}))
    assert nobody.rows == []  # a quote in the value cannot widen the query


# --------------------------------------------------------------------------- TimescaleDB


def test_the_queries_run_on_timescaledb_with_time_bucket(
    timescale_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    history = simulated_history(patients=2, days=14)
    with psycopg.connect(timescale_url, autocommit=True) as conn:
        migrate(conn)
        writer = StoreWriter(conn, copy=False)
        writer.INSERT_CHUNK = 10  # the socket server drops statements of several MB
        writer.write(history)
        acknowledge_first_open_alert(conn)
        assert recorded_flavour(conn) == "timescale"
        found, failures = run_all(conn, START + timedelta(days=14), timescaledb=True)
    assert not failures, "queries failed on TimescaleDB:\n\n" + "\n\n".join(failures)
    for query, runs in found.values():
        for result in runs:
            check_shape(query, result)
    bucketed = [(q, runs) for q, runs in found.values() if "$__timeGroup" in q.sql]
    assert all("time_bucket(" in expand(q.sql, START, START, timescaledb=True) for q, _ in bucketed)
    assert sum(len(r.rows) for _, runs in bucketed for r in runs) > 0
