"""The web views in a real browser: headless Chromium against uvicorn and embedded PostgreSQL.

A small cohort (scores, labs, wearable data and daily features, risk, alerts,
an outcome) is stored through the sink's writer. A clinician signs in, sees
the cohort sorted by risk, follows the riskiest patient, sees the charts drawn
with data, acknowledges an alert and sees its status change; a researcher
sees the inbox without buttons. Screenshots go to test-artifacts/.

Chromium is Debian's (``/usr/bin/chromium``; ``apt-get install chromium``),
driven by the ``playwright`` package; ``playwright install`` is never run.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from schemas.envelope import Source
from schemas.events import (
    Alert,
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    LabResult,
    RiskAssessment,
    WearableUpload,
)
from schemas.examples import EXAMPLE_KEY
from schemas.identity import event_id_for, pseudonymise
from services.api.app import create_app
from services.api.auth import TokenStore
from services.api.database import Database
from services.embedded.postgres import EmbeddedPostgres, free_port
from services.store.migrate import migrate
from services.store.tables import Storable
from services.store.writer import StoreWriter
from tests.integration.pg_fixtures import create_database, drop_database

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--headless=new",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

#: Each patient's final relapse risk; the cohort page must list them in this order.
FINAL_RISK = (0.82, 0.55, 0.31, 0.12)
DAYS = 28


def cohort(now: datetime) -> tuple[list[Storable], list[str]]:
    """Four patients over four weeks, ending at ``now``; the events and the pseudonyms."""
    start = (now - timedelta(days=DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    events: list[Storable] = []
    patients = []
    for p, final in enumerate(FINAL_RISK):
        patient = pseudonymise(f"e2e-{p}", EXAMPLE_KEY, system="e2e")
        patients.append(patient)
        events += patient_events(p, patient, final, start)
    return events, patients


def patient_events(p: int, patient: str, final: float, start: datetime) -> list[Storable]:
    """One patient's four weeks: daily wearable data, features and risk; weekly PHQ-9 and labs."""
    source = Source(system="e2e", device="watch")
    events: list[Storable] = []

    def env(day: datetime, *parts: object) -> dict[str, Any]:
        return {
            "event_id": event_id_for("e2e", patient, *map(str, parts)),
            "patient_id": patient,
            "observed_at": day,
            "received_at": day + timedelta(minutes=30),
            "source": source,
        }

    for d in range(DAYS):
        day = start + timedelta(days=d, hours=8)
        if p == 3 and DAYS - 14 <= d < DAYS - 1 and d % 2:
            continue  # patient 3's watch is often off: lower data coverage
        readings = [
            {
                "event_id": event_id_for("e2e-steps", patient, str(d), str(i)),
                "metric": "steps",
                "value": 300.0 + 50 * i + 20 * p,
                "unit": "{steps}",
                "start": day + timedelta(hours=i),
                "end": day + timedelta(hours=i, minutes=59),
            }
            for i in range(8)
        ]
        upload = WearableUpload(
            **env(day, "upload", d), window_end=day + timedelta(hours=8), readings=readings
        )
        events.append(upload)
        trend = d / (DAYS - 1)
        derived = {**env(day, "x", d), "source": Source(system="psymon")}
        derived["caused_by"] = upload.event_id
        for feature, value, unit in (
            ("sleep_duration", 420 - 90 * trend * final + 15 * math.sin(d), "min"),
            ("steps", 7000 - 3000 * trend * final + 400 * math.cos(d), "{steps}"),
            ("resting_hr", 62 + 8 * trend * final + math.sin(d / 2), "/min"),
        ):
            events.append(
                CourseUpdate(
                    **{**derived, "event_id": event_id_for("e2e-f", patient, feature, str(d))},
                    signal=feature,
                    signal_kind="wearable",
                    value=round(value, 2),
                    unit=unit,
                    day=day.date(),
                    coverage=0.9,
                )
            )
        risk = 0.1 + (final - 0.1) * trend + 0.02 * math.sin(d)
        events.append(
            RiskAssessment(
                **{**derived, "event_id": event_id_for("e2e-risk", patient, str(d))},
                probability=round(min(max(risk, 0.0), 1.0), 3) if d < DAYS - 1 else final,
                horizon_days=28,
                model_name="relapse-logistic",
                model_version=2,
            )
        )
        if d % 7 == 0 or d == DAYS - 1:
            level = min(3, round(3 * trend * final + (p == 0)))
            items = {str(i): min(3, level + (i % 2)) for i in range(1, 10)}
            score = ClinicalScore(
                **env(day, "phq9", d), instrument="phq9", rater="self", items=items
            )
            events.append(score)
            course = {
                **derived,
                "event_id": event_id_for("e2e-c", patient, str(d)),
                "caused_by": score.event_id,
            }
            events.append(
                CourseUpdate(
                    **course,
                    signal="phq9",
                    signal_kind="instrument",
                    value=score.total,
                    status="relapse" if p == 0 and d >= 21 else "active",
                )
            )
            analyte, value, unit = (
                ("lithium", 0.7 + 0.6 * trend * final, "mmol/L")
                if p < 2
                else ("crp", 2.0 + 6 * trend * final, "mg/L")
            )
            events.append(
                LabResult(**env(day, "lab", d), analyte=analyte, value=round(value, 2), unit=unit)
            )

    def alert(name: str, severity: str, message: str, d: int, status: str = "open") -> Alert:
        at = start + timedelta(days=d, hours=9)
        return Alert(
            **{**env(at, "alert", name, status), "source": Source(system="psymon")},
            caused_by=event_id_for("e2e", patient, "cause", name),
            alert_id=event_id_for("e2e-alert", patient, name),
            rule=name,
            severity=severity,
            status=status,
            message=message,
            evidence={"day": d},
            first_seen=start + timedelta(days=d - 2, hours=9),
            last_seen=at,
            config_version="e2e",
        )

    if p == 0:
        events.append(alert("phq9_item9", "urgent", "PHQ-9 item 9 answered 2", 21))
        events.append(alert("sleep_drop", "warning", "Sleep 90 min below baseline", 24))
        events.append(
            ClinicalOutcome(**env(start + timedelta(days=25), "outcome"), outcome="relapse")
        )
    if p == 1:
        events.append(alert("lithium_high", "warning", "Lithium 1.3 mmol/L above range", 22))
    if p == 2:
        events.append(alert("steps_drop", "info", "Activity below baseline", 10))
        events.append(alert("steps_drop", "info", "Activity back to baseline", 12, "closed"))
    return events


class Server:
    """uvicorn serving ``app`` on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start in 20 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def site(
    embedded_pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.fail(
            "the browser test needs Debian's Chromium at /usr/bin/chromium: "
            "apt-get update && apt-get install -y chromium"
        )
    name = create_database(embedded_pg, prefix="e2e")
    url = embedded_pg.url_for(name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    events, patients = cohort(datetime.now(UTC) - timedelta(days=1))
    with psycopg.connect(url) as conn:
        StoreWriter(conn).write(events)
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    store = TokenStore.load(path)
    tokens = {role: store.issue(f"e2e-{role}", role) for role in ("clinician", "researcher")}
    database = Database(url)
    try:
        with Server(create_app(tokens=TokenStore.load(path), database=database)) as server:
            yield {"url": server.url, "tokens": tokens, "db": url, "patients": patients}
    finally:
        database.close()
        drop_database(embedded_pg, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module", autouse=True)
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS / "web", ignore_errors=True)
    (ARTIFACTS / "web").mkdir(parents=True)
    return ARTIFACTS / "web"


def sign_in(browser: Any, site: dict[str, Any], role: str) -> Any:
    """A new page, signed in as ``role`` through the login form."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} for {r.url}") if r.status >= 400 else None,
    )
    page.on(
        "request",
        lambda r: (
            problems.append(f"off-site request {r.url}")
            if not r.url.startswith(site["url"])
            else None
        ),
    )
    page.problems = problems
    page.goto(site["url"] + "/cohort")
    assert "/login" in page.url
    page.fill("#token", site["tokens"][role])
    page.click("button[type=submit]")
    page.wait_for_url("**/cohort")
    return page


def test_a_clinician_follows_the_riskiest_patient_and_acknowledges_an_alert(
    browser: Any, site: dict[str, Any], artifacts: Path
) -> None:
    page = sign_in(browser, site, "clinician")
    risks = [
        float(v)
        for v in page.eval_on_selector_all(
            "table.cohort meter[max='1'][low='0.2']", "m => m.map(x => x.value)"
        )
    ]
    assert risks == list(FINAL_RISK), "the cohort is sorted by latest risk"
    assert page.locator("table.cohort tbody tr").count() == 4
    assert "1 urgent" in page.locator("table.cohort tbody tr").first.inner_text()
    page.screenshot(path=str(artifacts / "1-cohort.png"), full_page=True)

    page.click(f"a[href='/patients/{site['patients'][0]}']")
    page.wait_for_selector("body[data-charts-drawn]", timeout=30_000)
    charts = page.locator(".chart")
    assert charts.count() >= 6, "risk, PHQ-9, lithium and three wearable features"
    for chart_id in (
        "chart-risk",
        "chart-score-phq9",
        "chart-lab-lithium",
        "chart-wearable-sleep_duration",
    ):
        points = page.locator(f"#{chart_id} .scatterlayer .trace .points path")
        assert points.count() > 0, f"{chart_id} has no points drawn"
    assert page.locator("#chart-risk .scatterlayer .trace .points path").count() >= DAYS + 2, (
        "a risk point per day plus the alert markers"
    )
    assert page.locator("#chart-score-phq9 .shapelayer path").count() == 4, "PHQ-9 band lines"
    assert "moderately severe" in page.locator("#chart-score-phq9").inner_text()
    page.screenshot(path=str(artifacts / "2-patient.png"), full_page=True)

    row = page.locator("tr.alert", has_text="phq9_item9")
    assert row.get_attribute("data-status") == "open"
    row.locator("input[name=note]").fill("Called the patient; safety plan reviewed")
    row.locator("button[value=acknowledge]").click()
    page.wait_for_selector("body[data-charts-drawn]")
    row = page.locator("tr.alert", has_text="phq9_item9")
    assert row.get_attribute("data-status") == "acknowledged"
    assert "acknowledged by clinician:e2e-clinician" in row.inner_text()
    assert row.locator("button[value=acknowledge]").count() == 0
    page.screenshot(path=str(artifacts / "3-acknowledged.png"), full_page=True)

    with psycopg.connect(site["db"]) as conn:
        history = conn.execute("SELECT action, actor, note FROM alert_history").fetchall()
    assert history == [
        ("acknowledged", "clinician:e2e-clinician", "Called the patient; safety plan reviewed")
    ]

    page.goto(site["url"] + "/alerts")
    inbox = page.locator("tr.alert")
    assert inbox.count() == 3, "closed alerts are not in the inbox"
    page.locator("tr.alert", has_text="lithium_high").locator("button[value=resolve]").click()
    page.wait_for_url("**/alerts?show=active")
    assert page.locator("tr.alert").count() == 2
    page.screenshot(path=str(artifacts / "4-inbox.png"), full_page=True)
    assert page.problems == [], page.problems


def test_a_researcher_reads_the_inbox_without_buttons(
    browser: Any, site: dict[str, Any], artifacts: Path
) -> None:
    page = sign_in(browser, site, "researcher")
    page.goto(site["url"] + "/alerts?show=all")
    assert page.locator("tr.alert").count() >= 3
    assert (
        page.locator("td.act").count() == 0 and page.locator("button[value=resolve]").count() == 0
    )
    page.screenshot(path=str(artifacts / "5-researcher-inbox.png"), full_page=True)
    page.click("button.link")  # sign out
    page.wait_for_url("**/login")
    page.goto(site["url"] + "/cohort")
    assert "/login" in page.url
    assert page.problems == [], page.problems
