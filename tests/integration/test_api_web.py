"""The web views over HTTP (no browser): sign-in, cookies, CSRF, escaping, roles, assets.

The browser test (tests/e2e/test_web_views.py) checks that the pages draw;
this one checks what a browser is told, quickly, against a real PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from schemas.events import Alert
from services.api.app import create_app
from services.api.auth import ROLES, TokenStore
from services.api.database import Database
from services.api.web import plotly_js_path
from services.store.writer import StoreWriter
from tests.integration.pg_fixtures import cohort_events

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

HOSTILE = "<script>alert('x')</script> & <b>bold</b>"


@dataclass
class Site:
    app: Any
    tokens: dict[str, str]
    url: str
    alert: Alert

    def signed_in(self, role: str) -> TestClient:
        client = TestClient(self.app, follow_redirects=False)
        form = client.get("/login?next=/alerts")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce is not None
        response = client.post(
            "/login", data={"token": self.tokens[role], "nonce": nonce[1], "next": "/alerts"}
        )
        assert response.status_code == 303 and response.headers["location"] == "/alerts"
        return client

    def history(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute("SELECT action, actor, note FROM alert_history").fetchall()


@pytest.fixture
def site(store_url: str, tmp_path: Path) -> Iterator[Site]:
    path = tmp_path / "tokens.json"
    store = TokenStore.load(path)
    tokens: dict[str, str] = {role: store.issue(f"{role}-one", role) for role in ROLES}
    events = cohort_events(patients=2, days=2)
    alerts = [e for e in events if isinstance(e, Alert)]
    hostile = alerts[-1].model_copy(update={"message": HOSTILE})
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write([*events[:-2], hostile])
    database = Database(store_url)
    try:
        yield Site(
            create_app(tokens=TokenStore.load(path), database=database), tokens, store_url, hostile
        )
    finally:
        database.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found is not None, "the page has no CSRF field"
    return found[1]


def test_pages_send_strangers_to_the_login_form(site: Site) -> None:
    client = TestClient(site.app, follow_redirects=False)
    for path in ("/cohort", "/alerts?show=all", f"/patients/{site.alert.patient_id}", "/"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=%2F"), path
    assert client.post(f"/alerts/{site.alert.alert_id}/action", data={}).status_code == 401
    wrong = client.post("/login", data={"token": "nope", "nonce": "x"})
    assert wrong.status_code == 303 and "psymon_session" not in wrong.headers.get("set-cookie", "")


def test_login_sets_a_strict_httponly_cookie_and_rejects_a_bad_token(site: Site) -> None:
    client = TestClient(site.app, follow_redirects=False)
    form = client.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce is not None
    bad = client.post("/login", data={"token": "not-a-token", "nonce": nonce[1]})
    assert bad.status_code == 303 and "failed=true" in bad.headers["location"]
    good = client.post("/login", data={"token": site.tokens["clinician"], "nonce": nonce[1]})
    cookie = good.headers["set-cookie"].lower()
    assert "psymon_session=" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert client.get("/cohort").status_code == 200
    # The form's nonce is spent; and an open redirect is not followed, only local paths.
    again = client.post("/login", data={"token": site.tokens["clinician"], "nonce": nonce[1]})
    assert again.headers["location"].startswith("/login")
    fresh = re.search(r'name="nonce" value="([^"]+)"', client.get("/login").text)
    assert fresh is not None
    evil = client.post(
        "/login",
        data={"token": site.tokens["clinician"], "nonce": fresh[1], "next": "//evil.example/"},
    )
    assert evil.headers["location"] == "/cohort"


def test_a_button_press_needs_the_pages_csrf_token(site: Site) -> None:
    client = site.signed_in("clinician")
    inbox = client.get("/alerts")
    assert inbox.status_code == 200
    action = f"/alerts/{site.alert.alert_id}/action"
    forged = client.post(action, data={"action": "acknowledge", "csrf": "0" * 64})
    assert forged.status_code == 403 and site.history() == []
    pressed = client.post(
        action,
        data={
            "action": "acknowledge",
            "csrf": csrf_of(inbox.text),
            "note": "on it",
            "next": "/alerts",
        },
    )
    assert pressed.status_code == 303 and pressed.headers["location"] == "/alerts"
    assert site.history() == [("acknowledged", "clinician:clinician-one", "on it")]
    after = client.get("/alerts").text
    row = re.search(rf'data-alert-id="{site.alert.alert_id}" data-status="(\w+)"', after)
    assert row is not None and row[1] == "acknowledged"


def test_stored_text_is_escaped_everywhere(site: Site) -> None:
    client = site.signed_in("clinician")
    for path in ("/alerts", f"/alerts/{site.alert.alert_id}", f"/patients/{site.alert.patient_id}"):
        page = client.get(path).text
        assert "<script>alert('x')</script>" not in page, path
        assert "<b>bold</b>" not in page, path
    inbox = client.get("/alerts").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in inbox
    patient = client.get(f"/patients/{site.alert.patient_id}").text
    # Chart labels are HTML-escaped for plotly, then JSON-escaped inside the page.
    assert "\\u0026lt;script\\u0026gt;" in patient


def test_researchers_read_without_buttons_and_ingest_tokens_see_nothing(site: Site) -> None:
    clinician = site.signed_in("clinician")
    inbox = clinician.get("/alerts").text
    clinician.post(
        f"/alerts/{site.alert.alert_id}/action",
        data={"action": "escalate", "csrf": csrf_of(inbox), "note": "called the family"},
    )
    researcher = site.signed_in("researcher")
    page = researcher.get("/alerts?show=all").text
    assert "escalated by clinician" in page and "clinician-one" not in page
    assert 'value="acknowledge"' not in page and 'value="resolve"' not in page
    detail = researcher.get(f"/alerts/{site.alert.alert_id}").text
    assert "called the family" not in detail and "(withheld)" in detail
    pressed = researcher.post(
        f"/alerts/{site.alert.alert_id}/action", data={"action": "resolve", "csrf": csrf_of(page)}
    )
    assert pressed.status_code == 403
    assert [row[0] for row in site.history()] == ["escalated"]

    ingest = site.signed_in("ingest")
    assert ingest.get("/cohort").status_code == 403
    assert ingest.get("/alerts").status_code == 403


def test_plotly_comes_from_the_installed_package_and_pages_carry_a_strict_policy(
    site: Site,
) -> None:
    client = site.signed_in("clinician")
    script = client.get("/static/plotly.min.js")
    assert script.status_code == 200
    assert script.content == plotly_js_path().read_bytes()
    assert script.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/charts.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/secret.txt").status_code == 404
    page = client.get(f"/patients/{site.alert.patient_id}")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert "cdn" not in page.text and "https://" not in page.text
