"""CSV rows to psymon event documents (the column mapping is in docs/csv.md).

One row is one event. Empty cells count as absent. Common columns:

``kind``            clinical_score | lab_result | wearable_sample | clinical_outcome
``patient_id``      a psymon pseudonym, or instead
``source_patient_id`` the source identifier (MRN), pseudonymised here with the key
``observed_at``     ISO 8601 with an offset or ``Z``
``received_at``     optional; the time of import when absent
``source_system``   the producing system (default: the file's name)
``source_device``, ``source_rater``, ``time_zone``: optional
``event_id``        optional; else derived from ``record_id``, else from the row's identity

Per kind: scores ``instrument, version, rater, total, item_<key>`` (``item_1``..,
``item_P1``..); labs ``analyte, loinc, value, unit, hours_since_dose``;
wearables ``metric, value, unit, interval_end``; outcomes ``outcome, episode,
medication_name, medication_atc, medication_action, medication_dose,
medication_dose_unit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.identity import event_id_for, pseudonymise

_COMMON = {"kind", "patient_id", "observed_at", "received_at", "time_zone"}
_SOURCE = {"source_system": "system", "source_device": "device", "source_rater": "rater"}
_BY_KIND: dict[str, set[str]] = {
    "clinical_score": {"instrument", "version", "rater", "total"},
    "lab_result": {"analyte", "loinc", "value", "unit", "hours_since_dose"},
    "wearable_sample": {"metric", "value", "unit", "interval_end"},
    "clinical_outcome": {"outcome", "episode"},
}
_NUMBERS = {"total", "value", "hours_since_dose"}
_INTEGERS = {"total"}


class RowError(ValueError):
    """A row that cannot even be mapped; the message names the column."""


def row_to_document(
    row: Mapping[str, str | None], *, default_system: str, key: bytes | None
) -> dict[str, Any]:
    """Map one CSV row to an event document for :func:`schemas.dispatch.decode_document`.

    >>> from schemas.examples import EXAMPLE_PATIENT
    >>> doc = row_to_document(
    ...     {"kind": "clinical_score", "patient_id": EXAMPLE_PATIENT, "instrument": "phq9",
    ...      "observed_at": "2026-03-02T09:00:00+01:00", "rater": "self", "total": "7"},
    ...     default_system="clinic.csv", key=None)
    >>> doc["total"], doc["source"]
    (7, {'system': 'clinic.csv'})
    """
    cells = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
    kind = cells.get("kind", "")
    document: dict[str, Any] = {k: cells[k] for k in _COMMON if k in cells}
    source = {field: cells[column] for column, field in _SOURCE.items() if column in cells}
    source.setdefault("system", default_system)
    document["source"] = source
    if "source_patient_id" in cells:
        if "patient_id" in cells:
            raise RowError("give either patient_id or source_patient_id, not both")
        if key is None:
            raise RowError(
                "column source_patient_id needs the pseudonym key (PSYMON_PSEUDONYM_KEY)"
            )
        document["patient_id"] = pseudonymise(
            cells["source_patient_id"], key, system=source["system"]
        )
    for column in _BY_KIND.get(kind, set()):
        if column in cells:
            document[column] = (
                _number(column, cells[column]) if column in _NUMBERS else cells[column]
            )
    if kind == "clinical_score":
        items = {
            c.removeprefix("item_"): _integer(c, v)
            for c, v in cells.items()
            if c.startswith("item_")
        }
        if items:
            document["items"] = items
    if kind == "clinical_outcome" and "medication_name" in cells:
        medication: dict[str, Any] = {"name": cells["medication_name"]}
        for part in ("atc", "action", "dose", "dose_unit"):
            if f"medication_{part}" in cells:
                text = cells[f"medication_{part}"]
                medication[part] = _number("medication_dose", text) if part == "dose" else text
        document["medication"] = medication
    document["event_id"] = cells.get("event_id") or str(_row_event_id(cells, document, source))
    return document


def _row_event_id(
    cells: Mapping[str, str], document: Mapping[str, Any], source: Mapping[str, str]
) -> Any:
    if "record_id" in cells:
        return event_id_for("csv", source["system"], cells["record_id"])
    what = next(
        (cells[c] for c in ("instrument", "analyte", "metric", "outcome") if c in cells), ""
    )
    identity = (
        "csv",
        source["system"],
        cells.get("kind", "?"),
        str(document.get("patient_id", "?")),
        cells.get("observed_at", "?"),
        what or "?",
    )
    return event_id_for(*identity)


def _number(column: str, text: str) -> float | int:
    try:
        return _integer(column, text) if column in _INTEGERS else float(text)
    except ValueError:
        raise RowError(f"column {column}: {text[:40]!r} is not a number") from None


def _integer(column: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise RowError(f"column {column}: {text[:40]!r} is not a whole number") from None
        if not number.is_integer():
            raise RowError(f"column {column}: {text[:40]!r} is not a whole number") from None
        return int(number)
