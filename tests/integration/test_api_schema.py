"""schemathesis against the API's own OpenAPI document: no request it describes gets a 500.

Every operation is called with up to 25 generated valid requests and 25
invalid ones (where it has inputs that can be invalid), as an admin (the
role that may call them all), against a real embedded PostgreSQL holding a
small cohort. Answers to valid requests are checked against the document
(status codes, content types, bodies) by schemathesis' checks; invalid ones
must be refused without a server error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import ignored_auth

from services.api.app import create_app
from services.api.auth import TokenStore
from services.api.database import Database
from services.store.writer import StoreWriter
from tests.integration.pg_fixtures import cohort_events

pytest_plugins = ("tests.integration.pg_fixtures",)
pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 25
TIME_BUDGET_SECONDS = 60


class KeptEvents:
    """An event sink that keeps what it is sent (the broker is not under test here)."""

    def __init__(self) -> None:
        self.events: list[BaseModel] = []

    def send(self, event: BaseModel) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass


@pytest.fixture
def admin_api(store_url: str, tmp_path: Path) -> Iterator[tuple[FastAPI, str]]:
    path = tmp_path / "tokens.json"
    token = TokenStore.load(path).issue("admin-one", "admin")
    with psycopg.connect(store_url) as conn:
        StoreWriter(conn).write(cohort_events(patients=2, days=2))
    database = Database(store_url)
    try:
        yield create_app(sink=KeptEvents(), tokens=TokenStore.load(path), database=database), token
    finally:
        database.close()


def send(client: TestClient, case: Case[Any], headers: dict[str, str]) -> httpx.Response:
    """Send ``case`` with the FastAPI test client (httpx).

    Not ``case.call()``: schemathesis sends through ``requests``, and in this
    environment ``urllib3`` is replaced by ``urllib3-future`` (pulled in by
    grafana-client through niquests), which schemathesis' requests transport
    does not work with.
    """
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs["headers"].update(headers)  # replaces the bearer token schemathesis made up
    body = kwargs.pop("data", None)
    if body is not None and "json" not in kwargs:
        kwargs["content"] = body
    if not kwargs.get("cookies"):
        kwargs.pop("cookies", None)
    allowed = {"method", "url", "params", "headers", "cookies", "json", "content", "files"}
    response: httpx.Response = client.request(**{k: v for k, v in kwargs.items() if k in allowed})
    return response


def exercise(
    client: TestClient, headers: dict[str, str], operation: Any, mode: GenerationMode
) -> None:
    """Call ``operation`` with generated requests of ``mode`` and check every answer."""

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        response = send(client, case, headers)
        if mode == GenerationMode.NEGATIVE:
            # Invalid requests must be refused, never crash the server. (send() puts a
            # valid token back where schemathesis dropped it on purpose, so its checks
            # of invalid-auth handling would misread the answer.)
            case.validate_response(response, checks=[not_a_server_error])
        else:
            # ignored_auth probes the API through schemathesis' own transport (see
            # send()); test_api_alerts checks that every route refuses a missing or
            # bad token.
            case.validate_response(response, excluded_checks=[ignored_auth])

    try:
        call()
    except Unsatisfiable:
        if mode != GenerationMode.NEGATIVE:
            raise
        # The operation takes nothing that could be invalid (GET /v1/tokens).


def test_no_generated_request_gets_a_server_error(admin_api: tuple[FastAPI, str]) -> None:
    app, token = admin_api
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12
    tried = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(client, headers, operation, mode)
            tried.append(f"{operation.label} ({mode.value})")
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BUDGET_SECONDS, f"{len(tried)} operations took {elapsed:.0f} s"
