"""Security: nobody let in without the right token, nothing secret written down, nothing unescaped.

* Every API route needs a token, and the right role: a table here names the
  roles of every route, and the test fails when a route is added without an
  entry (tests/integration/test_api_alerts.py checks that each route refuses
  a request without a token; this adds the roles).
* Tokens are stored hashed (the tokens file never holds a token).
* Request size and rate limits: an 8 MB body is refused, also when it is sent
  without a Content-Length (chunked); a caller that floods gets 429, also one
  that tries a new guessed token with every request.
* The web views escape data: HTML put into the store comes back as text.
* The Grafana role may only SELECT: tested on a real server by
  tests/contract/test_compose.py::test_roles_on_a_real_server_after_real_migrations
  (referenced here, not repeated).
* No source identifier, pseudonym key, API token or database password in any
  log: a CSV and FHIR exports with MRNs go through ``psymon validate`` and
  ``psymon ingest``, a worker, the sink and ``psymon api``; everything they
  print, every log file, the server log, the topics and the store are searched.
* Pseudonyms are stable for a key and differ between keys.
"""

from __future__ import annotations

import json
import re
import secrets
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.conninfo import conninfo_to_dict

from schemas.events import Alert
from schemas.identity import event_id_for
from services.api.app import MAX_BODY_BYTES, create_app
from services.api.auth import ROLES, TokenStore
from services.api.database import Database
from services.embedded import free_port, spawn_child, stop_child
from services.store.writer import StoreWriter
from tests.integration.pg_fixtures import cohort_events
from tests.integration.test_api_alerts import PUBLIC, all_routes
from tests.reliability.harness import (
    ROOT,
    BrokerProbe,
    clean_env,
    psymon_script,
    record_figures,
    wait_until,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

READ = frozenset({"clinician", "researcher", "admin"})
ACT = frozenset({"clinician", "admin"})
EVERYONE = frozenset(ROLES)
#: Who may call each route (docs/api.md). A new route must be added here.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/events"): frozenset({"ingest", "admin"}),
    ("GET", "/v1/alerts"): READ,
    ("GET", "/v1/alerts/{alert_id}"): READ,
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): ACT,
    ("POST", "/v1/alerts/{alert_id}/escalate"): ACT,
    ("POST", "/v1/alerts/{alert_id}/resolve"): ACT,
    ("POST", "/v1/alerts/{alert_id}/notes"): ACT,
    ("GET", "/v1/cohort"): READ,
    ("GET", "/v1/patients/{patient_id}"): READ,
    ("POST", "/v1/tokens"): frozenset({"admin"}),
    ("GET", "/v1/tokens"): frozenset({"admin"}),
    ("DELETE", "/v1/tokens/{name}"): frozenset({"admin"}),
    ("POST", "/logout"): EVERYONE,
    ("GET", "/"): READ,
    ("GET", "/cohort"): READ,
    ("GET", "/patients/{patient_id}"): READ,
    ("GET", "/alerts"): READ,
    ("GET", "/alerts/{alert_id}"): READ,
    ("POST", "/alerts/{alert_id}/action"): ACT,
}
HOSTILE_HTML = "<script>alert('psymon')</script>"
FIGURES: dict[str, Any] = {"title": "security: auth, limits, escaping, secrets", "crashes": 0}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[dict[str, Any]]:
    started = time.monotonic()
    yield FIGURES
    FIGURES["seconds"] = round(time.monotonic() - started, 1)
    record_figures("security", FIGURES)


class Api:
    """The app on a migrated store holding a small cohort, with a token per role."""

    def __init__(self, store_url: str, tokens_path: Path, **options: Any) -> None:
        store = TokenStore.load(tokens_path)
        self.tokens: dict[str, str] = {role: store.issue(f"{role}-sec", role) for role in ROLES}
        self.events = cohort_events(patients=2, days=2)
        with psycopg.connect(store_url) as conn:
            StoreWriter(conn).write(self.events)
        self.alert = next(e for e in self.events if isinstance(e, Alert))
        self.database = Database(store_url)
        self.app = create_app(
            tokens=TokenStore.load(tokens_path), database=self.database, **options
        )
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def concrete(self, path: str) -> str:
        return (
            path.replace("{alert_id}", str(self.alert.alert_id))
            .replace("{patient_id}", self.alert.patient_id)
            .replace("{name}", "nobody-by-this-name")
        )


@pytest.fixture
def api(store_url: str, scratch: Path) -> Iterator[Api]:
    made = Api(store_url, scratch / "tokens.json")
    try:
        yield made
    finally:
        made.database.close()


# --------------------------------------------------------------------------- who may call what


def test_every_route_admits_exactly_the_roles_it_should(api: Api) -> None:
    routes = {(method, path) for method, path, _ in all_routes(api.app)} - PUBLIC
    assert routes == set(ALLOWED), (
        f"routes without an entry in ALLOWED (add their roles): {sorted(routes - set(ALLOWED))}; "
        f"entries for routes that are gone: {sorted(set(ALLOWED) - routes)}"
    )
    wrong = []
    tried = 0
    for (method, path), allowed in sorted(ALLOWED.items()):
        for role in ROLES:
            response = api.client.request(
                method, api.concrete(path), headers=api.bearer(role), follow_redirects=False
            )
            tried += 1
            admitted = response.status_code not in (401, 403) and not (
                response.status_code == 303 and response.headers["location"].startswith("/login")
            )
            if admitted != (role in allowed) or response.status_code >= 500:
                wrong.append(f"{method} {path} as {role}: {response.status_code}")
            stranger = api.client.request(
                method,
                api.concrete(path),
                headers={"Authorization": "Bearer " + secrets.token_urlsafe(32)},
                follow_redirects=False,
            )
            if stranger.status_code not in (401, 303):
                wrong.append(f"{method} {path} with an unknown token: {stranger.status_code}")
    FIGURES["route_role_checks"] = tried
    assert not wrong, "routes answering the wrong roles:\n" + "\n".join(wrong)


def test_the_grafana_role_check_exists_where_it_is_referenced() -> None:
    """Grafana's role may only SELECT: proven on a real server by the compose contract test."""
    from tests.contract import test_compose

    assert callable(test_compose.test_roles_on_a_real_server_after_real_migrations)
    assert callable(test_compose.test_grafana_role_is_granted_select_and_nothing_more)


# --------------------------------------------------------------------------- tokens at rest


def test_tokens_are_stored_hashed_by_the_cli_and_the_api(api: Api, scratch: Path) -> None:
    path = scratch / "cli-tokens.json"
    made = subprocess.run(
        [psymon_script(), "tokens", "add", "--name", "ward-7", "--role", "clinician"],
        env=clean_env(PSYMON_API_TOKENS_FILE=str(path), PSYMON_DATA_DIR=str(scratch)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    cli_token = made.stdout.strip().splitlines()[-1]
    assert TokenStore.load(path).authenticate(cli_token) is not None
    assert cli_token not in path.read_text() and cli_token not in made.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    created = api.client.post(
        "/v1/tokens", json={"name": "feed-1", "role": "ingest"}, headers=api.bearer("admin")
    )
    assert created.status_code == 201, created.text
    api_token = created.json()["token"]
    tokens_file = Path(api.app.state.tokens._path)
    stored = tokens_file.read_text()
    for token in [api_token, *api.tokens.values()]:
        assert token not in stored
    assert all(set(entry) == {"name", "role", "sha256"} for entry in json.loads(stored))
    listed = api.client.get("/v1/tokens", headers=api.bearer("admin")).text
    assert api_token not in listed and "sha256" not in listed


# --------------------------------------------------------------------------- limits


def test_request_bodies_over_the_limit_are_refused_with_or_without_a_length(api: Api) -> None:
    headers = {**api.bearer("ingest"), "Content-Type": "application/json"}
    big = b'{"events": [' + b" " * (MAX_BODY_BYTES + 1024) + b"]}"
    declared = api.client.post("/v1/events", content=big, headers=headers)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 1 << 20):
            yield big[start : start + (1 << 20)]

    streamed = api.client.post("/v1/events", content=chunks(), headers=headers)
    FIGURES["body_limit"] = {"declared": declared.status_code, "chunked": streamed.status_code}
    assert declared.status_code == 413
    assert streamed.status_code == 413, (
        f"a {len(big):,}-byte body sent chunked (no Content-Length) got {streamed.status_code}: "
        "the body limit reads only the Content-Length header"
    )


def test_a_flood_gets_429_also_with_a_new_guessed_token_each_time(api: Api) -> None:
    answers = [api.client.get("/healthz").status_code for _ in range(700)]
    flood = answers.count(429)
    guesses = [
        api.client.get(
            "/v1/alerts", headers={"Authorization": "Bearer " + secrets.token_urlsafe(24)}
        ).status_code
        for _ in range(700)
    ]
    FIGURES["rate_limit"] = {"flood_429": flood, "guessing_429": guesses.count(429)}
    assert flood > 0, "700 requests at once from one caller were all answered"
    assert answers.index(429) >= 100, "the limit should allow a burst"
    assert guesses.count(429) > 0, (
        "700 requests, each with another guessed token, were all answered (401): the rate "
        "limit is keyed by the Authorization header, so a new guess is a new bucket"
    )


# --------------------------------------------------------------------------- escaping


def test_the_web_views_escape_what_the_store_holds(api: Api, store_url: str) -> None:
    base = api.alert
    later = base.observed_at + timedelta(hours=1)
    hostile = base.model_copy(
        update={
            "event_id": event_id_for("hostile-alert", str(base.event_id)),
            "message": HOSTILE_HTML + " & <img src=x onerror=alert(2)>",
            "evidence": {"<b>k</b>": HOSTILE_HTML},
            "observed_at": later,
            "received_at": later,
            "last_seen": later,
        }
    )
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write([hostile])
    note = api.client.post(
        f"/v1/alerts/{base.alert_id}/notes",
        json={"note": HOSTILE_HTML},
        headers=api.bearer("clinician"),
    )
    assert note.status_code == 201, note.text
    pages = ["/alerts", f"/alerts/{base.alert_id}", f"/patients/{base.patient_id}", "/cohort"]
    for page in pages:
        response = api.client.get(page, headers=api.bearer("clinician"))
        assert response.status_code == 200, (page, response.status_code)
        html = response.text
        assert "<script>alert(" not in html, f"{page} shows stored HTML unescaped"
        assert "<img src=x" not in html and "<b>k</b>" not in html, page
        assert "script-src 'self'" in response.headers.get("content-security-policy", ""), page
    alert_page = api.client.get(f"/alerts/{base.alert_id}", headers=api.bearer("clinician")).text
    assert "&lt;script&gt;" in alert_page, "the hostile text should be shown, as text"
    FIGURES["pages_checked_for_escaping"] = len(pages)


# --------------------------------------------------------------------------- secrets in logs


CSV_MRNS = ("MRN-SEC-4711", "MRN-SEC-0815", "MRN-SEC-9999", "MRN-SEC-1234")
FHIR_DIR = ROOT / "tests" / "data" / "fhir"


def fhir_identifiers() -> set[str]:
    """The patient identifiers in the FHIR test exports (identifier values, subject ids)."""
    found: set[str] = set()
    for path in FHIR_DIR.glob("*.json"):
        text = path.read_text()
        found |= set(re.findall(r'"value":\s*"(MRN-[^"]+)"', text))
        found |= set(re.findall(r'"reference":\s*"(?:[^"]*/)?Patient/([^"]+)"', text))
    return found


def write_csv(path: Path) -> None:
    a, b, c, d = CSV_MRNS
    path.write_text(
        "kind,source_patient_id,patient_id,observed_at,instrument,rater,item_1,item_2,"
        "analyte,value,unit\n"
        f"clinical_score,{a},,2026-03-02T09:00:00+01:00,phq2,self,2,3,,,\n"
        f"lab_result,{a},,2026-03-03T08:00:00Z,,,,,crp,0.45,mg/dL\n"
        f"lab_result,{b},,2026-03-03T08:00:00Z,,,,,crp,0.45,furlongs\n"
        f"clinical_score,{c},p-0123456789abcdef01234567,2026-03-02T09:00:00Z,phq2,self,1,1,,,\n"
        f"clinical_score,,{d},2026-03-02T09:00:00Z,phq2,self,1,1,,,\n"
    )


def _run(args: list[str], env: dict[str, str], transcript: list[str]) -> str:
    done = subprocess.run(
        [psymon_script(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    transcript.append(f"$ psymon {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


class ApiServer:
    """``psymon api`` as a subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = spawn_child(
                [psymon_script(), "api", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
            )
        wait_until(self._healthy, "psymon api to answer", timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        form: dict[str, str] | None = None,
        cookie: str | None = None,
    ) -> int:
        headers = {}
        data = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie:
            headers["Cookie"] = cookie
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def stop(self) -> None:
        stop_child(self.process, timeout=15)


def test_no_identifier_key_token_or_password_reaches_a_log(
    make_broker: Any, make_pipeline: Any, store_url: str, scratch: Path, embedded_pg: Any
) -> None:
    key = "sec-key-" + secrets.token_hex(24)
    other_key = "sec-key-" + secrets.token_hex(24)
    password = str(conninfo_to_dict(store_url).get("password"))
    tokens_path = scratch / "api-tokens.json"
    store = TokenStore.load(tokens_path)
    tokens = {role: store.issue(f"{role}-logs", role) for role in ROLES}
    csv = scratch / "clinic.csv"
    write_csv(csv)
    fhir = sorted(FHIR_DIR.glob("*.json"))
    identifiers = set(CSV_MRNS) | fhir_identifiers()
    assert {"MRN-00588210", "pat-4821"} <= identifiers

    broker = make_broker(partitions=2)
    pipeline = make_pipeline(broker.bootstrap)
    worker = pipeline.add_worker()
    pipeline.start_sink()
    worker.wait_ready()
    env = clean_env(
        PSYMON_PSEUDONYM_KEY=key,
        PSYMON_KAFKA_BOOTSTRAP=broker.bootstrap,
        PSYMON_DATABASE_URL=store_url,
        PSYMON_API_TOKENS_FILE=str(tokens_path),
        PSYMON_DATA_DIR=str(scratch / "data"),
    )
    transcript: list[str] = []
    validated = _run(["validate", str(csv)], env, transcript)
    again = _run(["validate", str(csv)], env, transcript)
    keyed_otherwise = _run(
        ["validate", str(csv)], {**env, "PSYMON_PSEUDONYM_KEY": other_key}, transcript
    )
    for path in fhir:
        _run(["validate", str(path)], env, transcript)
    _run(["ingest", str(csv)], env, transcript)
    for path in fhir:
        _run(["ingest", str(path)], env, transcript)

    api_log = scratch / "api.log"
    server = ApiServer(env, api_log)
    try:
        batch = {
            "events": [
                {
                    "kind": "clinical_score",
                    "patient_id": CSV_MRNS[0],
                    "instrument": "phq2",
                    "rater": "self",
                    "items": {"1": 1, "2": 1},
                    "event_id": str(event_id_for("x")),
                    "observed_at": "2026-03-02T09:00:00Z",
                    "source": {"system": "sec"},
                }
            ]
        }
        statuses = [
            server.call("POST", "/v1/events", token=tokens["ingest"], body=batch),
            server.call("GET", "/v1/alerts", token=tokens["clinician"]),
            server.call("GET", "/v1/cohort", token=tokens["researcher"]),
            server.call("GET", f"/v1/alerts?patient_id={CSV_MRNS[1]}", token=tokens["admin"]),
            server.call("GET", "/v1/alerts", token=tokens["admin"] + "x"),
            server.call(
                "POST",
                "/login",
                form={"token": tokens["clinician"], "nonce": "n"},
                cookie="psymon_login=n",
            ),
            server.call(
                "POST",
                "/login",
                form={"token": "wrong-" + tokens["admin"], "nonce": "n"},
                cookie="psymon_login=n",
            ),
            server.call("GET", "/cohort", cookie=f"psymon_session={tokens['clinician']}"),
        ]
        assert statuses[:3] == [200, 200, 200], statuses
        assert statuses[3] == 422 and statuses[4] == 401, statuses
        wait_until(
            lambda: pipeline.worker_lag() == 0 and pipeline.sink_lag() == 0,
            "the worker and the sink to take everything",
            timeout=60,
        )
    finally:
        server.stop()
    pipeline.stop()

    secrets_ = {
        **{f"identifier {i}": i for i in identifiers},
        "the pseudonym key": key,
        "the other pseudonym key": other_key,
        "the database password": password,
        **{f"the {role} token": token for role, token in tokens.items()},
    }
    places = {
        "CLI output": "\n".join(transcript),
        "worker log": worker.log(),
        "sink log": pipeline.sink.log() if pipeline.sink else "",
        "API log": api_log.read_text(errors="replace"),
        "PostgreSQL log": Path(embedded_pg.log_path).read_text(errors="replace"),
        "topics": "\n".join(
            v.decode(errors="replace") + (k or b"").decode(errors="replace")
            for _, k, v in BrokerProbe(broker.bootstrap).records()
        ),
        "store": _store_text(store_url),
    }
    leaks = [
        f"{what} in the {where}"
        for where, text in places.items()
        for what, secret in secrets_.items()
        if secret and secret in text
    ]
    FIGURES["secrets_searched"] = len(secrets_)
    FIGURES["places_searched"] = {k: len(v) for k, v in places.items()}
    FIGURES["leaks"] = leaks
    assert places.get("API log"), "the API wrote no log to search"
    assert not leaks, "secrets written down: " + "; ".join(leaks)

    mine = set(re.findall(r'"patient_id":"(p-[0-9a-f]{24})"', validated))
    assert mine and mine == set(re.findall(r'"patient_id":"(p-[0-9a-f]{24})"', again)), (
        "the same key gave other pseudonyms"
    )
    theirs = set(re.findall(r'"patient_id":"(p-[0-9a-f]{24})"', keyed_otherwise))
    fixed = {"p-0123456789abcdef01234567"}
    assert theirs - fixed and not (mine - fixed) & (theirs - fixed), (
        "another key gave the same pseudonyms"
    )


def _store_text(url: str) -> str:
    """Every payload and dead letter in the store, as text."""
    parts = []
    with psycopg.connect(url) as conn:
        for table in (
            "clinical_scores",
            "lab_results",
            "wearable_uploads",
            "clinical_outcomes",
            "course_updates",
            "alerts",
            "risk_assessments",
        ):
            parts += [r[0] for r in conn.execute(f"SELECT payload::text FROM {table}")]
        parts += [
            f"{r[0]} {r[1]} {r[2]}"
            for r in conn.execute("SELECT raw, reason, errors::text FROM dead_letters")
        ]
        parts += [r[0] for r in conn.execute("SELECT patient_id FROM patients")]
    return "\n".join(p or "" for p in parts)
