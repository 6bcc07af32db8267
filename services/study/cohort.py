"""Who is in a study: patient attributes, diagnosis, subgroups and profile at the landmark.

:func:`select` applies a spec's cohort and arms to the collected patients and
returns the included subjects, one row per patient considered (included or
why not) and the count of each reason for leaving a patient out.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.study import endpoints as ep
from services.study.collect import Collected, PatientRecord
from services.study.spec import StudySpec
from streams import CoreConfig

Attributes = Mapping[str, Mapping[str, str]]

#: Instruments that say which diagnostic group a patient is monitored for.
_DIAGNOSIS_BY_INSTRUMENT = (
    ("schizophrenia", frozenset({"panss"})),
    ("bipolar", frozenset({"ymrs", "asrm"})),
    ("depression", frozenset({"phq9", "phq8", "madrs", "hamd17", "qids_sr16"})),
)


def text(value: Any) -> str:
    """A value as CSV text (``true``/``false`` for booleans, empty for None)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def load_attributes(path: Path) -> dict[str, dict[str, str]]:
    """Patient attributes (arm, diagnosis, ...) from CSV or JSON, keyed by pseudonym.

    CSV: a header with ``patient_id``. JSON: a list of objects with
    ``patient_id``, an object keyed by pseudonym, or the simulator's ground
    truth (``{"truth": [...]}``). Only scalar values are kept, as text.
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"attributes {path}: cannot read it ({error.strerror})") from None
    rows: list[Mapping[str, Any]]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(content.splitlines()))
    else:
        data = json.loads(content)
        if isinstance(data, dict) and isinstance(data.get("truth"), list):
            rows = data["truth"]
        elif isinstance(data, dict):
            rows = [{"patient_id": k, **v} for k, v in data.items()]
        else:
            rows = data
    attributes: dict[str, dict[str, str]] = {}
    for n, row in enumerate(rows, start=1):
        patient = row.get("patient_id")
        if not patient:
            raise ValueError(f"attributes {path}: row {n} has no patient_id")
        attributes[str(patient)] = {
            k: text(v)
            for k, v in row.items()
            if k != "patient_id" and (v is None or isinstance(v, (str, int, float, bool)))
        }
    return attributes


def _diagnosis(record: PatientRecord, attributes: Mapping[str, str]) -> tuple[str, str]:
    if attributes.get("diagnosis"):
        return attributes["diagnosis"], "attributes"
    rated = {instrument for t, instrument, _ in record.scores if t <= record.landmark}
    for diagnosis, instruments in _DIAGNOSIS_BY_INSTRUMENT:
        if rated & instruments:
            return diagnosis, "inferred from instruments"
    return "unknown", "inferred from instruments"


def _landmark_labels(record: PatientRecord) -> tuple[str, ...]:
    strata = record.at_landmark
    if strata is None:
        return ()
    labels = list(strata.specifiers)
    if strata.cluster.label is not None:
        labels.append(strata.cluster.label)
    return tuple(sorted(labels))


def select(
    collected: Collected, spec: StudySpec, attributes: Attributes, config: CoreConfig
) -> tuple[list[ep.Subject], list[dict[str, Any]], Counter[str]]:
    cohort, arms = spec.cohort, spec.arms
    subjects: list[ep.Subject] = []
    rows: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    wanted = None if cohort.patients is None else set(cohort.patients)
    for patient, record in collected.patients.items():
        attrs = attributes.get(patient, {})
        diagnosis, source = _diagnosis(record, attrs)
        labels = _landmark_labels(record)
        strata = record.at_landmark
        vector = strata.profile.vector(config.stratification) if strata else {}
        rated = {i for t, i, _ in record.scores if t <= record.landmark}
        reason = None
        arm: str | None = None
        if arms.attribute is not None:
            arm = attrs.get(arms.attribute) or None
        else:
            exposed = strata.profile.medications if strata else {}
            groups = [g for g, drug in sorted(arms.exposure.items()) if drug.lower() in exposed]
            arm = groups[0] if groups else arms.reference
        if wanted is not None and patient not in wanted:
            reason = "not in cohort.patients"
        elif spec.window.until is not None and record.landmark >= spec.window.until:
            reason = "landmark after the window"
        elif cohort.diagnoses and diagnosis not in cohort.diagnoses:
            reason = "diagnosis"
        elif cohort.subgroups and not set(cohort.subgroups) & set(labels):
            reason = "not in the subgroups at the landmark"
        elif set(cohort.exclude_subgroups) & set(labels):
            reason = "in an excluded subgroup at the landmark"
        elif any(
            b.feature not in vector or not b.holds(vector[b.feature]) for b in cohort.biomarkers
        ):
            reason = "biomarker threshold at the landmark"
        elif not set(cohort.instruments) <= rated:
            reason = "not rated on the cohort's instruments before the landmark"
        elif arm is None:
            reason = f"no arm (attribute {arms.attribute!r} missing)"
        if reason is None:
            assert arm is not None
            subjects.append(ep.Subject(record, arm, labels))
        else:
            reasons[reason] += 1
        rows.append(
            {
                "patient_id": patient,
                "included": reason is None,
                "excluded_because": reason or "",
                "arm": arm or "",
                "diagnosis": diagnosis,
                "diagnosis_source": source,
                "index": record.index.isoformat(),
                "landmark": record.landmark.isoformat(),
                "subgroups_at_landmark": ";".join(labels) or "none",
                "medications_at_landmark": ";".join(sorted(strata.profile.medications))
                if strata
                else "",
                **{f"profile_{k}": round(v, 6) for k, v in vector.items()},
                **{
                    f"support_{k}": v
                    for k, v in (strata.profile.support() if strata else {}).items()
                },
            }
        )
    return subjects, rows, reasons
