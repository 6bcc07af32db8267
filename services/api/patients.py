"""``/v1/cohort`` and ``/v1/patients/{patient_id}``: the cohort and one patient's record, as JSON.

The same data the web views draw; readers only (clinician, researcher,
admin). Patients are named by pseudonym only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from services.api.alerts import PATIENT_PATTERN
from services.api.guards import CanRead
from services.api.patient_reader import (
    DEFAULT_WINDOW_DAYS,
    CohortRow,
    PatientNotFound,
    PatientReader,
    PatientRecord,
)

router = APIRouter(tags=["patients"])


def patient_reader(request: Request) -> PatientReader:
    """The app's :class:`PatientReader`; 503 when the API runs without a database."""
    reader: PatientReader | None = request.app.state.patient_reader
    if reader is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this API runs without a database (PSYMON_DATABASE_URL); patient data is unavailable",
        )
    return reader


Reader = Annotated[PatientReader, Depends(patient_reader)]


@router.get("/v1/cohort", response_model=list[CohortRow])
def cohort(
    who: CanRead,
    reader: Reader,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[CohortRow]:
    """Every patient, highest latest relapse risk first, with open alerts and data coverage."""
    return reader.cohort(limit=limit, offset=offset)


@router.get(
    "/v1/patients/{patient_id}",
    response_model=PatientRecord,
    responses={404: {"description": "No patient with this pseudonym"}},
)
def patient(
    patient_id: Annotated[str, Path(pattern=PATIENT_PATTERN)],
    who: CanRead,
    reader: Reader,
    days: Annotated[int, Query(ge=1, le=3650)] = DEFAULT_WINDOW_DAYS,
) -> PatientRecord:
    """The patient's summary and time series over ``days`` before their latest observation."""
    try:
        record = reader.patient(patient_id, days=days)
    except PatientNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no patient with this pseudonym") from None
    alerts = [alert.for_role(who.role) for alert in record.alerts]
    return record.model_copy(update={"alerts": alerts})
