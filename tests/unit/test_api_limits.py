"""The API refuses floods and oversized bodies before touching the broker or store."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from services.api.app import create_app
from services.api.auth import TokenStore
from services.api.ratelimit import RateLimiter


def test_a_caller_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    app = create_app(tokens=TokenStore.load(tmp_path / "none.json"), rate_limit=RateLimiter(1.0, 3))
    client = TestClient(app)
    codes = [client.get("/healthz").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3] == 429
    limited = client.get("/healthz")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_guessing_a_new_token_each_time_is_still_one_caller(tmp_path: Path) -> None:
    app = create_app(tokens=TokenStore.load(tmp_path / "none.json"), rate_limit=RateLimiter(1.0, 2))
    client = TestClient(app)
    codes = [
        client.get("/v1/alerts", headers={"Authorization": f"Bearer guess-{n}"}).status_code
        for n in range(4)
    ]
    assert codes[:2] == [401, 401] and 429 in codes[2:]


def test_an_oversized_body_gets_413(tmp_path: Path) -> None:
    client = TestClient(create_app(tokens=TokenStore.load(tmp_path / "none.json")))
    response = client.post(
        "/v1/events",
        content=b"{" + b" " * (9 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
