"""Export as FHIR R4: scores, labs, risk and alerts from the store as transaction Bundles.

Which relations can go out as FHIR, and as what:

====================================== =========================================
name (any of)                          resources
====================================== =========================================
``clinical_scores``, ``v_patient_scores`` ``Observation`` (survey), one per score
``lab_results``, ``v_patient_labs``    ``Observation`` (laboratory), one per result
``risk_assessments``, ``v_risk``       ``RiskAssessment``, one per estimate
``alerts``, ``v_alerts``               ``Flag``, one per alert, in its current
                                       state (the care team's latest action)
``v_alerts_open``                      ``Flag`` of the alerts still open
====================================== =========================================

Resources are built by :mod:`schemas.fhir.export` from the stored events
(``payload``) and written as Bundles of at most ``bundle_size`` entries
(``fhir-<relation>-0001.json`` ...), so an EHR that limits transaction size can
take them one by one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pydantic import TypeAdapter

from schemas.events import Alert, ClinicalScore, LabResult, RiskAssessment
from schemas.fhir.export import BundleType, Exportable, bundle_entry, resource_for
from services.replay.provenance import FileEntry, file_entry

_EVENT: TypeAdapter[Exportable] = TypeAdapter(Exportable)

#: Relation name -> what it exports as (the file name part).
FHIR_SOURCES: dict[str, str] = {
    "clinical_scores": "scores",
    "v_patient_scores": "scores",
    "lab_results": "labs",
    "v_patient_labs": "labs",
    "risk_assessments": "risk",
    "v_risk": "risk",
    "alerts": "alerts",
    "v_alerts": "alerts",
    "v_alerts_open": "open-alerts",
}

_TABLES = {"scores": "clinical_scores", "labs": "lab_results", "risk": "risk_assessments"}
_OPEN = ("open", "acknowledged", "escalated")


def fhir_kind(name: str) -> str:
    """What ``name`` exports as in FHIR; ``ValueError`` listing the accepted names otherwise."""
    kind = FHIR_SOURCES.get(name)
    if kind is None:
        raise ValueError(
            f"{name!r} cannot be exported as FHIR; accepted: {', '.join(sorted(FHIR_SOURCES))} "
            "(use format parquet or csv for the other tables and views)"
        )
    return kind


def fhir_query(
    kind: str,
    *,
    patients: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[sql.Composed, list[Any]]:
    """The query for ``kind``: rows of (workflow status or NULL, payload text)."""
    params: list[Any] = []
    clauses: list[sql.Composable] = [sql.SQL("true")]
    source: sql.Composable
    if kind in _TABLES:
        time, patient = sql.SQL("observed_at"), sql.SQL("patient_id")
        source = sql.SQL("SELECT NULL::text, payload::text FROM {}").format(
            sql.Identifier(_TABLES[kind])
        )
        order = sql.SQL("patient_id, observed_at, event_id")
    else:
        time, patient = sql.SQL("v.updated_at"), sql.SQL("v.patient_id")
        source = sql.SQL(
            "SELECT v.status, a.payload::text FROM v_alerts v "
            "JOIN alerts a ON a.event_id = v.event_id AND a.observed_at = v.updated_at"
        )
        order = sql.SQL("v.patient_id, v.first_seen, v.alert_id")
        if kind == "open-alerts":
            clauses.append(sql.SQL("v.status = ANY(%s)"))
            params.append(list(_OPEN))
    if patients is not None:
        clauses.append(sql.SQL("{} = ANY(%s)").format(patient))
        params.append(list(patients))
    if since is not None:
        clauses.append(sql.SQL("{} >= %s").format(time))
        params.append(since)
    if until is not None:
        clauses.append(sql.SQL("{} < %s").format(time))
        params.append(until)
    statement = sql.SQL("{} WHERE {} ORDER BY {}").format(
        source, sql.SQL(" AND ").join(clauses), order
    )
    return statement, params


def fhir_resources(
    conn: psycopg.Connection[Any], statement: sql.Composed, params: list[Any]
) -> Iterator[dict[str, Any]]:
    """The FHIR resources of the rows the query selects."""
    with conn.cursor(name="psymon_export_fhir") as cursor:
        cursor.itersize = 2000
        cursor.execute(statement, params)
        for status, payload in cursor:
            event = _EVENT.validate_json(payload)
            if not isinstance(event, ClinicalScore | LabResult | RiskAssessment | Alert):
                raise TypeError(f"unexpected {type(event).__name__} in a FHIR export")
            yield resource_for(event, status=status)


def write_bundles(
    resources: Iterator[dict[str, Any]],
    out_dir: Path,
    stem: str,
    *,
    timestamp: datetime,
    bundle_type: BundleType,
    bundle_size: int,
) -> list[FileEntry]:
    """Write ``fhir-<stem>-NNNN.json`` Bundles of up to ``bundle_size`` entries each.

    A relation with no rows gives one empty Bundle, so the manifest always
    names a file for it.
    """
    if bundle_size < 1:
        raise ValueError(f"bundle_size must be at least 1, got {bundle_size}")
    files: list[FileEntry] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        path = out_dir / f"fhir-{stem}-{len(files) + 1:04d}.json"
        _write_bundle(path, batch, timestamp, bundle_type)
        files.append(file_entry(path, rows=len(batch)))
        batch.clear()

    for resource in resources:
        batch.append(resource)
        if len(batch) >= bundle_size:
            flush()
    if batch or not files:
        flush()
    return files


def _write_bundle(
    path: Path, resources: list[dict[str, Any]], timestamp: datetime, bundle_type: BundleType
) -> None:
    # Written entry by entry: a Bundle's text can be large.
    with path.open("w", encoding="utf-8") as out:
        head = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": bundle_type,
            "timestamp": timestamp.isoformat(),
        }
        out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "entry": [')
        for index, resource in enumerate(resources):
            out.write(",\n" if index else "\n")
            out.write(json.dumps(bundle_entry(resource, bundle_type), ensure_ascii=False))
        out.write("\n]}\n")


__all__ = ["FHIR_SOURCES", "fhir_kind", "fhir_query", "fhir_resources", "write_bundles"]
