"""The HTTP API: ingest, the alert workflow, patient data, tokens and the web views.

``POST /v1/events`` validates a batch and produces it (below); the other
routes live in :mod:`services.api.alerts`, :mod:`services.api.patients`,
:mod:`services.api.tokens` and :mod:`services.api.web`. Who may call what is
in :mod:`services.api.guards`; docs/api.md lists every route with its roles.

It shares the intake path with ``psymon ingest`` (:func:`services.intake.judge_documents`):
the same record gets the same verdict wherever it enters. Rejected records are
answered with their reasons and also sent to the dead-letter topic.

(No ``from __future__ import annotations`` here: FastAPI resolves the
dependency annotations of nested functions at run time.)
"""

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from schemas.envelope import Source
from schemas.events import FieldError
from services.api import alerts, patients, web
from services.api import tokens as tokens_routes
from services.api.alert_store import AlertStore
from services.api.auth import TokenStore
from services.api.database import Database, StoreUnavailable
from services.api.delivery import AlertDelivery
from services.api.guards import CanIngest, LoginRequired, WebForbidden
from services.api.patient_reader import PatientReader
from services.api.ratelimit import RateLimiter, caller_key
from services.intake import judge_documents
from services.producer import EventSink

#: Largest batch accepted in one request; larger ones get 413 with this number.
MAX_BATCH = 1000
#: Largest request body in bytes.
MAX_BODY_BYTES = 8 * 1024 * 1024


class EventBatch(BaseModel):
    """A batch of psymon events as JSON objects (see schemas/json/)."""

    events: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


class Rejection(BaseModel):
    index: int
    reason: str
    errors: list[FieldError]
    dead_letter_id: str


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejection]


access_log = logging.getLogger("psymon.api.access")
TOO_LARGE = f"request body over {MAX_BODY_BYTES} bytes; send smaller batches"


def create_app(
    *,
    sink: EventSink | None = None,
    tokens: TokenStore,
    database: Database | None = None,
    delivery: AlertDelivery | None = None,
    rate_limit: RateLimiter | None = None,
) -> FastAPI:
    """Build the API: ingest (needs ``sink``), alerts, patients and web views (need ``database``).

    Parameters
    ----------
    sink
        Where ingested events go (the broker); ``None``: ``POST /v1/events`` answers 503.
    tokens
        Who may call, with which role.
    database
        The store; ``None``: alert, patient and web routes answer 503. The caller
        owns it (and closes it).
    delivery
        Outbound alert webhooks; when given, delivered by a background thread
        while the app runs.
    rate_limit
        Requests allowed per caller; default 50/s with bursts of 500 (429 beyond).
    """
    limiter = rate_limit if rate_limit is not None else RateLimiter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        runner = None
        if delivery is not None:
            runner = threading.Thread(
                target=delivery.run, args=(stop,), name="psymon-alert-delivery", daemon=True
            )
            runner.start()
        try:
            yield
        finally:
            stop.set()
            if runner is not None:
                runner.join(timeout=30)

    app = FastAPI(
        title="psymon",
        version="0.1.0",
        description=(
            "Longitudinal patient monitoring for precision psychiatry. Every route but "
            "/healthz, the API docs, the login form and static assets needs a token "
            "(`Authorization: Bearer <token>`); roles: ingest, clinician, researcher, admin."
        ),
        lifespan=lifespan,
    )
    app.state.tokens = tokens
    app.state.alert_store = None if database is None else AlertStore(database)
    app.state.patient_reader = None if database is None else PatientReader(database)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        client = request.client.host if request.client else None
        now = time.monotonic()
        # Per address and per credential: a flood of guessed tokens is still one address.
        wait = max(
            limiter.allow(caller_key(None, client), now=now),
            limiter.allow(caller_key(request.headers.get("authorization"), client), now=now)
            if request.headers.get("authorization")
            else 0.0,
        )
        if wait > 0:
            return JSONResponse(
                {"detail": "too many requests; slow down and retry"},
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(
                {"detail": TOO_LARGE}, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
            )
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            # A body without a length (chunked) is counted as it arrives.
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return JSONResponse(
                        {"detail": TOO_LARGE}, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
                    )
            request._body = bytes(body)  # starlette reads a cached body from here
        response = await call_next(request)
        _secure_headers(request.url.path, response)
        # The route's template, never the path or query string: they may hold identifiers.
        route = request.scope.get("route")
        access_log.info(
            "%s %s %s", request.method, getattr(route, "path", "(no route)"), response.status_code
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # pydantic echoes the rejected input; it may be a patient identifier, so
        # the answer names the field and what is accepted, never the value.
        detail = [
            {key: value for key, value in item.items() if key not in ("input", "ctx", "url")}
            for item in error.errors()
        ]
        return JSONResponse(
            {"detail": jsonable_encoder(detail)},
            status_code=422,
        )

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, error: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    app.add_exception_handler(LoginRequired, web.login_required)  # type: ignore[arg-type]
    app.add_exception_handler(WebForbidden, web.forbidden)  # type: ignore[arg-type]
    app.include_router(alerts.router)
    app.include_router(patients.router)
    app.include_router(tokens_routes.router)
    app.include_router(web.router)

    @app.post("/v1/events", response_model=IngestResult, tags=["ingest"])
    def post_events(batch: EventBatch, who: CanIngest) -> IngestResult:
        """Validate a batch of events; produce the valid ones, dead-letter the rest.

        Each rejection names the record's index, the field, the value and what is accepted.
        """
        if sink is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "this API runs without a broker (PSYMON_KAFKA_BOOTSTRAP); it cannot take events",
            )
        received_at = datetime.now(UTC)
        source = Source(system="psymon-http", device=None, rater=None)
        records = ((f"events.{i}", doc) for i, doc in enumerate(batch.events))
        accepted = 0
        rejected = []
        for index, verdict in enumerate(
            judge_documents(records, received_at=received_at, source=source)
        ):
            if verdict.dead_letter is not None:
                sink.send(verdict.dead_letter)
                rejected.append(
                    Rejection(
                        index=index,
                        reason=verdict.dead_letter.reason,
                        errors=list(verdict.dead_letter.errors),
                        dead_letter_id=str(verdict.dead_letter.event_id),
                    )
                )
            for event in verdict.events:
                sink.send(event)
                accepted += 1
        sink.flush()
        return IngestResult(accepted=accepted, rejected=rejected)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """Liveness probe; needs no token."""
        return {"status": "ok"}

    return app


#: Pages and assets of the web views get a strict Content-Security-Policy; the
#: API docs (/docs, /redoc) load FastAPI's Swagger UI and ReDoc and keep theirs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _secure_headers(path: str, response: Any) -> None:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if not path.startswith(("/docs", "/redoc")):
        headers.setdefault("Content-Security-Policy", _CSP)
