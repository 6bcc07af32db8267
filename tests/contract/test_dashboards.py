"""The dashboards' contract: generated from code, read only the store's views, provisionable.

* the JSON under dashboards/json/ is exactly what ``python -m dashboards`` generates;
* every query (panel, annotation, variable) reads only views the store's
  migrations create (``v_*``), never a table;
* every dashboard, panel, query, annotation and variable names psymon's data
  source by its provisioned uid; the provisioning files agree;
* the patient dashboard is driven by a ``$patient`` query variable, and every
  variable a query uses is one its dashboard declares;
* panels fit Grafana's 24-column grid without overlapping;
* the macros expand as Grafana's PostgreSQL data source documents them;
* ``push_dashboards`` sends what Grafana's HTTP API expects (checked against
  a local HTTP server that records the requests).
"""

from __future__ import annotations

import doctest
import importlib
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import dashboards
from dashboards.build import DASHBOARDS, JSON_DIR, Query, drift, queries, render
from dashboards.macros import MacroError, expand
from dashboards.push import PushError, push_dashboards
from dashboards.sql import DATASOURCE_TYPE, DATASOURCE_UID
from services.store.migrate import plan

ROOT = Path(__file__).resolve().parents[2]
DOCS = {name: render(build()) for name, build in DASHBOARDS.items()}
ALL_QUERIES: list[Query] = [q for doc in DOCS.values() for q in queries(doc)]
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC)


def store_views() -> set[str]:
    """The views psymon's migrations create (either flavour)."""
    created = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+(\w+)", re.IGNORECASE)
    return {
        name
        for flavour in ("postgres", "timescale")
        for migration in plan(flavour)
        for statement in migration.statements
        for name in created.findall(statement)
    }


def relations(statement: str) -> set[str]:
    """The tables or views a query reads: names after FROM or JOIN (not functions)."""
    text = re.sub(r"'(?:[^']|'')*'", "''", statement)  # string literals
    text = re.sub(r'"[^"]*"', '""', text)  # quoted identifiers (column aliases)
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(
        r"\b(extract|substring|trim|overlay)\s*\(\s*\w+\s+FROM\b", r"\1(", text, flags=re.I
    )
    found = re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)\s*(\()?", text, flags=re.IGNORECASE)
    return {name for name, call in found if not call}


def query_id(query: Query) -> str:
    return f"{query.dashboard}/{query.kind}/{query.title}/{query.ref_id}"


# --------------------------------------------------------------------------- generation


def test_the_checked_in_json_is_what_the_code_generates() -> None:
    assert drift(JSON_DIR) == []


def test_generation_is_deterministic() -> None:
    assert {n: render(b()) for n, b in DASHBOARDS.items()} == DOCS


def test_drift_is_reported_with_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "patient-course.json").write_text("{}\n")
    (tmp_path / "stray.json").write_text("{}\n")
    problems = "\n".join(drift(tmp_path))
    assert "patient-course.json: differs from the code; run `python -m dashboards`" in problems
    assert "cohort-overview.json: missing" in problems
    assert "stray.json: no dashboard in dashboards/build.py generates it" in problems


def test_the_docstring_examples_of_the_dashboards_package_run() -> None:
    # testpaths does not include dashboards/, so its doctests run from here.
    attempted = 0
    for path in sorted(Path(dashboards.__file__).parent.glob("*.py")):
        if path.stem in ("__init__", "__main__"):
            continue
        module = importlib.import_module(f"dashboards.{path.stem}")
        failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, f"dashboards/{path.name}: {failed} doctest(s) failed"
        attempted += tried
    assert attempted >= 30


# --------------------------------------------------------------------------- views only


def test_every_query_reads_only_the_stores_views() -> None:
    views = store_views()
    assert "v_cohort_overview" in views and "v_patient_scores" in views
    read: set[str] = set()
    for query in ALL_QUERIES:
        named = relations(query.sql)
        read |= named
        assert named <= views, f"{query_id(query)} reads {sorted(named - views)}, not a v_* view"
        assert all(name.startswith("v_") for name in named), query_id(query)
    assert len(read) >= 10  # the check is looking at real queries


def test_the_relation_finder_sees_tables_and_ignores_functions_and_text() -> None:
    statement = """SELECT extract(epoch FROM now() - first_seen) AS "FROM x", 'FROM y'
                   FROM v_alerts a JOIN clinical_scores s ON true, unnest(ARRAY[1]) u"""
    assert relations(statement) == {"v_alerts", "clinical_scores"}


# --------------------------------------------------------------------------- data source


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_dashboard_has_a_uid_and_uses_psymons_data_source(name: str) -> None:
    doc = DOCS[name]
    assert re.fullmatch(r"psymon-[a-z-]{3,33}", doc["uid"]), doc.get("uid")
    assert doc["title"].startswith("psymon · ")
    expected = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    panels += [n for p in doc["panels"] for n in p.get("panels", [])]
    assert panels
    for panel in panels:
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == expected
            assert target["rawQuery"] is True and target["editorMode"] == "code"
            assert target["format"] in ("time_series", "table")
    for annotation in doc["annotations"].get("list", []):
        assert annotation["datasource"] == expected
    for variable in doc["templating"].get("list", []):
        if variable["type"] == "query":
            assert variable["datasource"] == expected


def test_the_provisioning_files_match_the_dashboards() -> None:
    provisioning = ROOT / "dashboards" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "psymon.yaml").read_text())
    [source] = sources["datasources"]
    assert (source["uid"], source["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)
    providers = yaml.safe_load((provisioning / "dashboards" / "psymon.yaml").read_text())
    [provider] = providers["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts


# --------------------------------------------------------------------------- variables


def test_the_patient_dashboard_is_driven_by_a_patient_variable() -> None:
    doc = DOCS["patient-course.json"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    patient = variables["patient"]
    assert patient["type"] == "query" and patient["multi"] is False
    assert "FROM v_cohort_overview" in patient["query"]
    assert "__value" in patient["query"] and "__text" in patient["query"]
    panel_queries = [q for q in queries(doc) if q.kind != "variable"]
    patient_scoped = [q for q in panel_queries if "'$patient'" in q.sql]
    # Every patient query reads that patient's rows; the only exceptions are the
    # remission cut-off lines, which read nothing.
    assert {
        q.title for q in panel_queries if "'$patient'" not in q.sql and "FROM" in q.sql
    } == set()
    assert len(patient_scoped) >= 30


_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}")
_BUILTINS = {"__from", "__to", "__interval", "__interval_ms"}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_variable_a_query_uses_is_declared(name: str) -> None:
    doc = DOCS[name]
    declared = {v["name"] for v in doc["templating"].get("list", [])}
    for query in queries(doc):
        used = {
            a or b or c
            for a, b, c in _VARIABLE.findall(query.sql)
            if not re.match(r"__(time|unixEpoch)", a or b or c)
        }
        assert used <= declared | _BUILTINS, f"{query_id(query)} uses {sorted(used - declared)}"
        values: dict[str, str | list[str]] = {v: ["x"] for v in declared}
        values["patient"] = "p-1"
        expanded = expand(query.sql, START, END, values)
        assert "$" not in expanded and "[[" not in expanded, query_id(query)


# --------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", sorted(DOCS))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    doc = DOCS[name]
    titles = [p["title"] for p in doc["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles repeat"
    cells: dict[tuple[int, int], str] = {}
    for panel in doc["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']} leaves the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    ids = [p["id"] for p in doc["panels"]] + [
        n["id"] for p in doc["panels"] for n in p.get("panels", [])
    ]
    assert len(ids) == len(set(ids))


def test_scale_and_lab_panels_follow_the_catalogues() -> None:
    from schemas.analytes import ANALYTES
    from schemas.instruments import INSTRUMENTS

    panels = {p["title"]: p for p in DOCS["patient-course.json"]["panels"]}
    for inst in INSTRUMENTS.values():
        steps = panels[inst.name]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [s["value"] for s in steps[1:]] == [b.low for b in inst.bands[1:]], inst.id
        remission = f"remission (<= {inst.remission_max})"
        assert (remission in json.dumps(panels[inst.name])) == (inst.remission_max is not None)
    for analyte in ANALYTES.values():
        panel = panels[f"{analyte.name} ({analyte.unit})"]
        steps = panel["fieldConfig"]["defaults"].get("thresholds", {"steps": [{}]})["steps"]
        assert [s["value"] for s in steps[1:]] == [b.start for b in analyte.bands[1:]]


# --------------------------------------------------------------------------- macros


def test_macros_expand_as_grafanas_postgresql_data_source_documents() -> None:
    start = datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC)
    end = start + timedelta(hours=1)
    cases = {
        "$__time(dateColumn)": 'dateColumn AS "time"',
        "$__timeEpoch(dateColumn)": 'extract(epoch from dateColumn) as "time"',
        "$__timeFilter(dateColumn)": (
            "dateColumn BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T06:01:17Z'"
        ),
        "$__timeFrom()": "'2017-04-21T05:01:17Z'",
        "$__timeTo()": "'2017-04-21T06:01:17Z'",
        "$__timeGroup(dateColumn,'5m')": "floor(extract(epoch from dateColumn)/300)*300",
        "$__timeGroup(dateColumn,'5m', 0)": "floor(extract(epoch from dateColumn)/300)*300",
        "$__timeGroupAlias(dateColumn,'5m')": (
            'floor(extract(epoch from dateColumn)/300)*300 AS "time"'
        ),
        "$__unixEpochFilter(dateColumn)": "dateColumn >= 1492750877 AND dateColumn <= 1492754477",
        "$__unixEpochFrom()": "1492750877",
        "$__unixEpochGroup(dateColumn,'5m')": "floor((dateColumn)/300)*300",
        "$__unixEpochGroupAlias(dateColumn,'5m')": 'floor((dateColumn)/300)*300 AS "time"',
        # pre-5.3 dashboards: a comma right after $__timeGroup means the aliased form
        "SELECT $__timeGroup(t,'1h'), v": (
            'SELECT floor(extract(epoch from t)/3600)*3600 AS "time", v'
        ),
    }
    for sql, expected in cases.items():
        assert expand(sql, start, end) == expected, sql
    assert expand("$__timeGroup(t,'1d')", start, end, timescaledb=True) == (
        "time_bucket('86400.000s',t)"
    )
    assert expand("$__timeGroup(t, $__interval)", start, end, interval=timedelta(days=30)) == (
        "floor(extract(epoch from t)/2.592e+06)*2.592e+06"
    )


def test_variables_are_quoted_as_grafana_quotes_them() -> None:
    values = {"one": "o'brien", "many": ["a", "b'c"], "n": ["x"]}
    assert expand("'$one' ${one} [[one]]", START, END, values) == "'o''brien' o''brien o''brien"
    assert expand("IN ($many)", START, END, values) == "IN ('a','b''c')"
    assert expand("${many:csv} ${many:raw}", START, END, values) == "a,b'c a,b'c"
    assert expand("$unknown $__from", START, END, values) == "$unknown 1772323200000"
    assert expand("$__interval $__interval_ms", START, END, interval=timedelta(minutes=2)) == (
        "2m 120000"
    )


def test_bad_macros_are_refused_like_grafana_refuses_them() -> None:
    for sql, message in {
        "$__timeFilter()": "missing time column",
        "$__timeGroup(t)": "needs|missing",
        "$__timeGroup(t, '1M')": "months and years",
        "$__timeGroup(t, 'soon')": "not understood",
        "$__nope(x)": "unknown macro",
        "${one:date}": "format 'date' is not supported",
    }.items():
        with pytest.raises(MacroError, match=message):
            expand(sql, START, END, {"one": "x"})
    with pytest.raises(ValueError, match="no time zone"):
        expand("SELECT 1", datetime(2026, 1, 1), END)


# --------------------------------------------------------------------------- push


class FakeGrafana(BaseHTTPRequestHandler):
    """Answers the few Grafana API calls push makes, and records every request."""

    requests: list[dict[str, Any]]
    folders: set[str]
    token = "glsa_test_token"

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        entry = {
            "method": self.command,
            "path": self.path,
            "auth": self.headers.get("Authorization"),
            "body": body,
        }
        self.requests.append(entry)
        return entry

    def do_GET(self) -> None:
        entry = self._record()
        if entry["auth"] != f"Bearer {self.token}":
            return self._answer(401, {"message": "invalid API key"})
        uid = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/api/folders/") and uid in self.folders:
            return self._answer(200, {"uid": uid, "title": uid})
        return self._answer(404, {"message": "folder not found"})

    def do_POST(self) -> None:
        entry = self._record()
        if entry["auth"] != f"Bearer {self.token}":
            return self._answer(401, {"message": "invalid API key"})
        if self.path == "/api/folders":
            self.folders.add(entry["body"]["uid"])
            return self._answer(200, {"uid": entry["body"]["uid"], "title": entry["body"]["title"]})
        if self.path == "/api/dashboards/db":
            uid = entry["body"]["dashboard"]["uid"]
            return self._answer(
                200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1}
            )
        return self._answer(404, {"message": "not found"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[tuple[str, type[FakeGrafana]]]:
    handler = type("Handler", (FakeGrafana,), {"requests": [], "folders": set()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_push_creates_the_folder_and_saves_every_dashboard(
    grafana: tuple[str, type[FakeGrafana]],
) -> None:
    url, handler = grafana
    urls = push_dashboards(url, FakeGrafana.token, folder="Psymon Ward")
    calls = [(r["method"], r["path"]) for r in handler.requests]
    assert calls[:2] == [("GET", "/api/folders/psymon-ward"), ("POST", "/api/folders")]
    assert handler.requests[1]["body"] == {"title": "Psymon Ward", "uid": "psymon-ward"}
    saved = [r["body"] for r in handler.requests if r["path"] == "/api/dashboards/db"]
    assert [b["dashboard"]["uid"] for b in saved] == [d["uid"] for d in DOCS.values()]
    for body, doc in zip(saved, DOCS.values(), strict=True):
        assert body["folderUid"] == "psymon-ward" and body["overwrite"] is True
        assert body["dashboard"]["id"] is None
        assert {k: v for k, v in body["dashboard"].items() if k != "id"} == {
            k: v for k, v in doc.items() if k != "id"
        }
    assert all(r["auth"] == f"Bearer {FakeGrafana.token}" for r in handler.requests)
    assert urls == [f"{url}/d/{d['uid']}/x" for d in DOCS.values()]
    # Pushing again finds the folder and saves the same dashboards.
    handler.requests.clear()
    assert push_dashboards(url, FakeGrafana.token, folder="Psymon Ward") == urls
    assert ("POST", "/api/folders") not in [(r["method"], r["path"]) for r in handler.requests]


def test_push_explains_a_refused_token_without_showing_it(
    grafana: tuple[str, type[FakeGrafana]],
) -> None:
    url, _ = grafana
    secret = "glsa_wrong_secret"
    with pytest.raises(PushError, match="refused the token") as caught:
        push_dashboards(url.replace("http://", "http://admin:pw@"), secret)
    assert secret not in str(caught.value) and "pw" not in str(caught.value)


def test_push_explains_an_unreachable_grafana() -> None:
    with pytest.raises(PushError, match=re.escape("cannot reach Grafana at http://127.0.0.1:9/")):
        push_dashboards("http://127.0.0.1:9/", "token", timeout=2)
    with pytest.raises(PushError, match="no Grafana token"):
        push_dashboards("http://127.0.0.1:9/", " ")
