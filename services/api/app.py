"""The HTTP API: ``POST /v1/events`` validates a batch and produces it.

It shares the intake path with ``psymon ingest`` (:func:`services.intake.judge_documents`):
the same record gets the same verdict wherever it enters. Rejected records are
answered with their reasons and also sent to the dead-letter topic.

(No ``from __future__ import annotations`` here: FastAPI resolves the
dependency annotations of nested functions at run time.)
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from schemas.envelope import Source
from schemas.events import FieldError
from services.api.auth import Principal, Role, TokenStore
from services.intake import judge_documents
from services.producer import EventSink

#: Largest batch accepted in one request; larger ones get 413 with this number.
MAX_BATCH = 1000
#: Largest request body in bytes.
MAX_BODY_BYTES = 8 * 1024 * 1024

_bearer = HTTPBearer(auto_error=False)


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


def create_app(*, sink: EventSink, tokens: TokenStore) -> FastAPI:
    """Build the API around an event sink (the broker) and a token store."""
    app = FastAPI(
        title="psymon",
        version="0.1.0",
        description="Longitudinal patient monitoring for precision psychiatry.",
    )

    def principal(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        found = tokens.authenticate(credentials.credentials)
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    def require(*roles: Role) -> Any:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if who.role not in roles:
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"role {who.role!r} may not do this; allowed: {', '.join(roles)}",
                )
            return who

        return check

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            from fastapi.responses import JSONResponse

            return JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes; send smaller batches"},
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        return await call_next(request)

    @app.post("/v1/events", response_model=IngestResult, tags=["ingest"])
    def post_events(
        batch: EventBatch, who: Annotated[Principal, Depends(require("ingest", "admin"))]
    ) -> IngestResult:
        """Validate a batch of events; produce the valid ones, dead-letter the rest.

        Each rejection names the record's index, the field, the value and what is accepted.
        """
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
        """Liveness probe; the only route without a token."""
        return {"status": "ok"}

    return app
