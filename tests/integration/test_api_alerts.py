"""The alert workflow over HTTP, against a real embedded PostgreSQL.

Alerts and scores are stored through the sink's writer (real events); the API
acts on them as each role. Every action must leave an ``alert_history`` row
naming who acted and when, written with the status change; a repeated action
must change nothing; a role that may not act gets 403; no or a bad token 401.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from schemas.events import Alert
from schemas.identity import event_id_for
from services.api.app import create_app
from services.api.auth import ROLES, TokenStore
from services.api.database import Database
from services.api.guards import api_principal, web_session
from services.store.tables import Storable
from services.store.writer import StoreWriter
from tests.integration.pg_fixtures import cohort_events

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    url: str
    urgent: Alert  # the latest event of patient 0's alert (urgent)
    warning: Alert  # the latest event of patient 1's alert (warning)

    def as_(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def write(self, events: list[Storable]) -> None:
        with psycopg.connect(self.url) as conn:
            StoreWriter(conn).write(events)

    def history(self, alert_id: UUID) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT action, actor, note, observed_at, event_id, payload FROM alert_history "
                "WHERE alert_id = %s ORDER BY observed_at",
                [alert_id],
            ).fetchall()


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[Api]:
    path = tmp_path / "tokens.json"
    store = TokenStore.load(path)
    tokens: dict[str, str] = {role: store.issue(f"{role}-one", role) for role in ROLES}
    events = cohort_events(patients=2, days=3)
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write(events)
    alerts = [e for e in events if isinstance(e, Alert)]
    database = Database(store_url)
    try:
        client = TestClient(create_app(tokens=TokenStore.load(path), database=database))
        yield Api(client, tokens, store_url, alerts[2], alerts[5])
    finally:
        database.close()


def follow_up(alert: Alert, *, status: str, hours: int) -> Alert:
    """The rule's next word on ``alert``, as the stream would send it."""
    at = alert.observed_at + timedelta(hours=hours)
    return alert.model_copy(
        update={
            "event_id": event_id_for("follow-up", str(alert.alert_id), status, str(hours)),
            "observed_at": at,
            "received_at": at,
            "last_seen": at,
            "status": status,
        }
    )


# --------------------------------------------------------------------------- workflow


def test_clinician_acknowledges_once_and_the_history_says_who_and_when(api: Api) -> None:
    listed = api.client.get("/v1/alerts", params={"status": "open"}, headers=api.as_("clinician"))
    assert listed.status_code == 200, listed.text
    assert [a["severity"] for a in listed.json()] == ["urgent", "warning"]

    alert_id = api.urgent.alert_id
    before = datetime.now(UTC)
    first = api.client.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"note": "seen, calling patient"},
        headers=api.as_("clinician"),
    )
    after = datetime.now(UTC)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["changed"] is True
    assert body["alert"]["status"] == "acknowledged"
    assert body["alert"]["last_actor"] == "clinician:clinician-one"

    again = api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=api.as_("clinician"))
    assert again.status_code == 200
    assert again.json()["changed"] is False

    history = api.history(alert_id)
    assert len(history) == 1, "acknowledging twice must store one acknowledgement"
    action, actor, note, at, event_id, payload = history[0]
    assert (action, actor, note) == (
        "acknowledged",
        "clinician:clinician-one",
        "seen, calling patient",
    )
    assert before - timedelta(seconds=1) <= at <= after + timedelta(seconds=1)
    assert event_id == event_id_for("alert-action", str(alert_id), "acknowledge")
    assert payload["actor_role"] == "clinician" and payload["status_before"] == "open"


def test_a_stream_update_does_not_undo_the_care_teams_status(api: Api) -> None:
    alert_id = api.urgent.alert_id
    response = api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=api.as_("clinician"))
    assert response.status_code == 200

    api.write([follow_up(api.urgent, status="open", hours=2)])
    current = api.client.get(f"/v1/alerts/{alert_id}", headers=api.as_("clinician")).json()
    assert current["status"] == "acknowledged"
    assert current["rule_status"] == "open"
    assert current["last_seen"].startswith(
        (api.urgent.observed_at + timedelta(hours=2)).date().isoformat()
    )

    api.write([follow_up(api.urgent, status="closed", hours=4)])
    closed = api.client.get(f"/v1/alerts/{alert_id}", headers=api.as_("clinician")).json()
    assert closed["status"] == "closed", "the rule seeing recovery closes the alert for good"
    refused = api.client.post(f"/v1/alerts/{alert_id}/resolve", headers=api.as_("clinician"))
    assert refused.status_code == 409
    assert "closed" in refused.json()["detail"]


def test_escalate_resolve_and_what_a_final_alert_still_accepts(api: Api) -> None:
    alert_id = api.warning.alert_id
    clinician = api.as_("clinician")
    escalated = api.client.post(f"/v1/alerts/{alert_id}/escalate", headers=clinician)
    assert escalated.json()["alert"]["status"] == "escalated"
    late_ack = api.client.post(f"/v1/alerts/{alert_id}/acknowledge", headers=clinician)
    assert late_ack.status_code == 200 and late_ack.json()["changed"] is False
    assert late_ack.json()["alert"]["status"] == "escalated", "acknowledging must not step back"

    resolved = api.client.post(
        f"/v1/alerts/{alert_id}/resolve",
        json={"note": "reviewed in clinic"},
        headers=api.as_("admin"),
    )
    assert resolved.json()["alert"]["status"] == "resolved"
    assert (
        api.client.post(f"/v1/alerts/{alert_id}/resolve", headers=clinician).json()["changed"]
        is False
    )
    assert api.client.post(f"/v1/alerts/{alert_id}/escalate", headers=clinician).status_code == 409

    note = {"note": "patient called back"}
    first = api.client.post(f"/v1/alerts/{alert_id}/notes", json=note, headers=clinician)
    repeat = api.client.post(f"/v1/alerts/{alert_id}/notes", json=note, headers=clinician)
    keyed = api.client.post(
        f"/v1/alerts/{alert_id}/notes",
        json=note,
        headers={**clinician, "Idempotency-Key": "visit-2"},
    )
    assert (first.status_code, repeat.status_code, keyed.status_code) == (201, 201, 201)
    assert (first.json()["changed"], repeat.json()["changed"], keyed.json()["changed"]) == (
        True,
        False,
        True,
    )
    assert keyed.json()["alert"]["status"] == "resolved", "a note never changes the status"
    actions = [(row[0], row[1]) for row in api.history(alert_id)]
    assert actions == [
        ("escalated", "clinician:clinician-one"),
        ("resolved", "admin:admin-one"),
        ("commented", "clinician:clinician-one"),
        ("commented", "clinician:clinician-one"),
    ]
    detail = api.client.get(f"/v1/alerts/{alert_id}", headers=clinician).json()
    assert [h["action"] for h in detail["history"]] == [a for a, _ in actions]


def test_simultaneous_acknowledgements_store_one(api: Api) -> None:
    alert_id = api.urgent.alert_id
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def press() -> None:
        barrier.wait()
        response = api.client.post(
            f"/v1/alerts/{alert_id}/acknowledge", headers=api.as_("clinician")
        )
        results.append(response.json()["changed"])

    threads = [threading.Thread(target=press) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    assert len(api.history(alert_id)) == 1


def test_unknown_alert_is_404_and_a_bad_note_is_422(api: Api) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    clinician = api.as_("clinician")
    assert (
        api.client.post(f"/v1/alerts/{missing}/acknowledge", headers=clinician).status_code == 404
    )
    assert api.client.get(f"/v1/alerts/{missing}", headers=clinician).status_code == 404
    empty = api.client.post(
        f"/v1/alerts/{api.urgent.alert_id}/notes", json={"note": ""}, headers=clinician
    )
    assert empty.status_code == 422
    assert api.history(api.urgent.alert_id) == []


# --------------------------------------------------------------------------- reading


def test_filters_narrow_the_list_and_never_echo_a_bad_patient_id(api: Api) -> None:
    reader = api.as_("researcher")

    def ids(**params: Any) -> list[str]:
        response = api.client.get("/v1/alerts", params=params, headers=reader)
        assert response.status_code == 200, response.text
        return [a["alert_id"] for a in response.json()]

    urgent, warning = str(api.urgent.alert_id), str(api.warning.alert_id)
    assert ids() == [urgent, warning]
    assert ids(severity="warning") == [warning]
    assert ids(severity=["warning", "urgent"]) == [urgent, warning]
    assert ids(patient_id=api.urgent.patient_id) == [urgent]
    assert ids(rule="phq9_worsening") == [urgent, warning]
    assert ids(rule="no_such_rule") == []
    last_seen = api.urgent.last_seen
    assert ids(since=(last_seen + timedelta(days=1)).isoformat()) == []
    assert ids(until=(api.urgent.first_seen - timedelta(days=1)).isoformat()) == []
    assert ids(since=last_seen.isoformat(), until=last_seen.isoformat()) == [urgent, warning]
    assert ids(status="resolved") == []
    assert ids(limit=1, offset=1) == [warning]

    bad = api.client.get("/v1/alerts", params={"patient_id": "MRN-0042"}, headers=reader)
    assert bad.status_code == 422
    assert "MRN-0042" not in bad.text and "patient_id" in bad.text
    naive = api.client.get("/v1/alerts", params={"since": "2026-03-02T00:00:00"}, headers=reader)
    assert naive.status_code == 422 and "time zone" in naive.text


def test_cohort_and_patient_record(api: Api) -> None:
    cohort = api.client.get("/v1/cohort", headers=api.as_("clinician"))
    assert cohort.status_code == 200
    rows = cohort.json()
    risks = [row["risk_probability"] for row in rows]
    assert len(rows) == 2 and risks == sorted(risks, reverse=True)
    assert sum(row["open_alerts"]["urgent"] + row["open_alerts"]["warning"] for row in rows) == 2
    assert all(row["coverage"] == pytest.approx(3 / 14) for row in rows)

    patient = api.urgent.patient_id
    record = api.client.get(f"/v1/patients/{patient}", headers=api.as_("researcher")).json()
    assert len(record["scores"]) == 3 and len(record["labs"]) == 3 and len(record["risk"]) == 3
    assert record["wearable_source"] == "daily_rollup"
    assert {w["feature"] for w in record["wearable"]} == {"heart_rate"}
    assert [a["alert_id"] for a in record["alerts"]] == [str(api.urgent.alert_id)]
    unknown = api.client.get(
        "/v1/patients/p-000000000000000000000000", headers=api.as_("clinician")
    )
    assert unknown.status_code == 404


# --------------------------------------------------------------------------- roles


def test_what_each_role_may_do(api: Api) -> None:
    alert_id = api.urgent.alert_id
    act = f"/v1/alerts/{alert_id}/acknowledge"
    note = f"/v1/alerts/{alert_id}/notes"
    events: dict[str, list[object]] = {"events": []}

    for role in ("researcher", "ingest"):
        assert api.client.post(act, headers=api.as_(role)).status_code == 403, role
        assert api.client.post(note, json={"note": "x"}, headers=api.as_(role)).status_code == 403
        assert api.client.get("/v1/tokens", headers=api.as_(role)).status_code == 403
    for path in ("/v1/alerts", f"/v1/alerts/{alert_id}", "/v1/cohort"):
        assert api.client.get(path, headers=api.as_("ingest")).status_code == 403, path
        assert api.client.get(path, headers=api.as_("researcher")).status_code == 200, path
    assert (
        api.client.post("/v1/events", json=events, headers=api.as_("clinician")).status_code == 403
    )
    assert api.history(alert_id) == [], "a refused action must leave no trace in the history"

    assert api.client.get("/v1/alerts").status_code == 401
    assert api.client.post(act).status_code == 401
    wrong = {"Authorization": "Bearer not-a-token"}
    assert api.client.get("/v1/alerts", headers=wrong).status_code == 401
    assert api.client.post(act, headers=wrong).status_code == 401
    assert api.client.get("/v1/alerts", headers={"Authorization": "Basic eDp5"}).status_code == 401
    # The web session cookie does not authenticate the JSON API.
    cookie_only = TestClient(api.client.app, cookies={"psymon_session": api.tokens["admin"]})
    assert cookie_only.post(act).status_code == 401

    assert api.client.post(act, headers=api.as_("admin")).status_code == 200
    assert [row[1] for row in api.history(alert_id)] == ["admin:admin-one"]


def test_researchers_see_neither_names_nor_notes(api: Api) -> None:
    alert_id = api.urgent.alert_id
    api.client.post(
        f"/v1/alerts/{alert_id}/escalate",
        json={"note": "spoke with Mrs Example's daughter"},
        headers=api.as_("clinician"),
    )
    seen = api.client.get(f"/v1/alerts/{alert_id}", headers=api.as_("researcher"))
    assert "clinician-one" not in seen.text and "daughter" not in seen.text
    body = seen.json()
    assert body["last_actor"] == "clinician"
    assert body["history"][0]["actor"] == "clinician" and body["history"][0]["note"] == "(withheld)"
    listed = api.client.get("/v1/alerts", headers=api.as_("researcher")).text
    assert "clinician-one" not in listed
    full = api.client.get(f"/v1/alerts/{alert_id}", headers=api.as_("clinician")).json()
    assert full["history"][0]["note"] == "spoke with Mrs Example's daughter"


def test_admins_manage_tokens_and_see_them_once(api: Api) -> None:
    admin = api.as_("admin")
    created = api.client.post(
        "/v1/tokens", json={"name": "ward-7", "role": "clinician"}, headers=admin
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert len(token) >= 40
    listed = api.client.get("/v1/tokens", headers=admin)
    assert {"name": "ward-7", "role": "clinician"} in listed.json()
    assert token not in listed.text and "sha256" not in listed.text
    assert (
        api.client.get("/v1/alerts", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )

    duplicate = api.client.post(
        "/v1/tokens", json={"name": "ward-7", "role": "admin"}, headers=admin
    )
    assert duplicate.status_code == 409
    assert (
        api.client.post(
            "/v1/tokens", json={"name": "x", "role": "clinician"}, headers=api.as_("clinician")
        ).status_code
        == 403
    )

    assert api.client.delete("/v1/tokens/ward-7", headers=admin).status_code == 204
    assert (
        api.client.get("/v1/alerts", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    assert api.client.delete("/v1/tokens/ward-7", headers=admin).status_code == 404
    last_admin = api.client.delete("/v1/tokens/admin-one", headers=admin)
    assert last_admin.status_code == 409 and "last admin" in last_admin.text


# --------------------------------------------------------------------------- every route


#: Routes anyone may call: liveness, the API's own docs, the login form, static assets.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static/plotly.min.js"),
    ("GET", "/static/{name}"),
}


def all_routes(app: Any) -> list[tuple[str, Any, Any]]:
    """(method, path, route) of every route, through included routers."""
    try:
        from fastapi.routing import iter_route_contexts

        contexts = [(c.methods, c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:  # FastAPI before lazily included routers
        contexts = [(r.methods, r.path, r) for r in app.routes]
    return [
        (method, path, route)
        for methods, path, route in contexts
        for method in sorted(methods or ())
        if method != "HEAD"
    ]


def calls(dependant: Any) -> set[Any]:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= calls(sub)
    return found


def test_every_route_but_the_public_ones_needs_a_token(api: Api) -> None:
    routes = all_routes(api.client.app)
    assert len(routes) > 20
    unguarded = []
    for method, path, route in routes:
        if (method, path) in PUBLIC:
            continue
        guarded = isinstance(route, APIRoute) and bool(
            calls(route.dependant) & {api_principal, web_session}
        )
        concrete = (
            path.replace("{alert_id}", str(api.urgent.alert_id))
            .replace("{patient_id}", api.urgent.patient_id)
            .replace("{name}", "someone")
        )
        response = api.client.request(method, concrete, follow_redirects=False)
        refused = response.status_code == 401 or (
            response.status_code == 303 and response.headers["location"].startswith("/login")
        )
        if not (guarded and refused):
            unguarded.append(f"{method} {path} -> {response.status_code}")
    assert unguarded == [], "routes answering without a token: " + ", ".join(unguarded)
    assert api.history(api.urgent.alert_id) == []
