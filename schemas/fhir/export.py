"""FHIR R4 export: scores, labs, risk and alerts as resources an EHR can take back.

psymon's events become plain FHIR R4 JSON (dicts; valid R4B as well, which
``fhir.resources.R4B`` checks in the tests):

* :func:`score_observation`: a :class:`~schemas.events.ClinicalScore` as an
  ``Observation`` (category ``survey``), coded with the instrument's LOINC
  total code where it has one (PHQ-9 44261-6, PHQ-2 55758-7, GAD-7 70274-6),
  else with psymon's instrument code system :data:`INSTRUMENT_SYSTEM`; the
  total in ``valueInteger``, the items as ``component`` with their LOINC item
  codes (or :data:`ITEM_SYSTEM`);
* :func:`lab_observation`: a :class:`~schemas.events.LabResult` as an
  ``Observation`` (category ``laboratory``) with the analyte's LOINC code and
  the value in its canonical UCUM unit (``valueQuantity`` system
  ``http://unitsofmeasure.org``);
* :func:`risk_assessment`: a :class:`~schemas.events.RiskAssessment` as a
  ``RiskAssessment`` (probability, horizon as ``whenRange``, the model as
  ``method``, the contributions in a ``note``);
* :func:`alert_flag`: an :class:`~schemas.events.Alert` as a ``Flag``
  (``active`` while open, acknowledged or escalated; ``inactive`` once closed
  or resolved; severity as the ``flag-priority`` extension);
* :func:`export_bundle`: resources in a ``transaction`` Bundle whose entries
  are conditional updates on psymon's identifiers (sending it twice changes
  nothing, a newer export of an alert updates its Flag), or a ``collection``.

The patient is named by ``subject.identifier`` with system
``urn:psymon:pseudonym``: only the pseudonym leaves psymon, and psymon's own
importer (:func:`schemas.fhir.import_fhir`) takes it as it is rather than
pseudonymising it again (:mod:`schemas.fhir.subject`). Round trip: importing an
exported score or lab gives an event with the same patient, time, instrument,
rater, items, total, analyte, LOINC code, value and unit (the importer
understands LOINC-coded instruments and every analyte; event ids and
``received_at`` are those of the import).

>>> from schemas.events import LabResult
>>> from schemas.examples import envelope_fields
>>> lab = LabResult(**envelope_fields(), analyte="lithium", value=0.8, unit="mmol/L")
>>> observation = lab_observation(lab)
>>> observation["code"]["coding"][0]["code"], observation["valueQuantity"]["code"]
('14334-7', 'mmol/L')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from schemas.analytes import get_analyte
from schemas.events import Alert, ClinicalScore, LabResult, RiskAssessment
from schemas.fhir.subject import PSEUDONYM_SYSTEM
from schemas.instruments import get_instrument

Resource = dict[str, Any]
Exportable = ClinicalScore | LabResult | RiskAssessment | Alert
BundleType = Literal["transaction", "collection"]

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY = "http://hl7.org/fhir/flag-priority-code"

#: psymon's identifier of the event a resource was made from.
EVENT_ID_SYSTEM = "urn:psymon:event-id"
#: psymon's identifier of an alert (all its changes share it; one Flag per alert).
ALERT_ID_SYSTEM = "urn:psymon:alert-id"
#: psymon's code systems, for what LOINC has no code for.
INSTRUMENT_SYSTEM = "urn:psymon:instrument"
ITEM_SYSTEM = "urn:psymon:instrument-item"
ALERT_RULE_SYSTEM = "urn:psymon:alert-rule"
RISK_MODEL_SYSTEM = "urn:psymon:risk-model"
#: Hours between the last dose and the blood draw (drug levels), as an extension.
HOURS_SINCE_DOSE_EXTENSION = "urn:psymon:fhir:hours-since-dose"

_PRIORITY = {
    "urgent": ("PH", "High priority"),
    "warning": ("PM", "Medium priority"),
    "info": ("PL", "Low priority"),
}
_ACTIVE_STATUSES = frozenset({"open", "acknowledged", "escalated"})


def _time(moment: datetime) -> str:
    """A FHIR dateTime/instant: ISO 8601 with the event's own UTC offset."""
    return moment.isoformat()


def subject(patient_id: str) -> dict[str, Any]:
    """The logical reference to a patient by pseudonym.

    >>> subject("p-0123456789abcdef01234567")["identifier"]["system"]
    'urn:psymon:pseudonym'
    """
    return {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": patient_id}}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}]


def _event_identifier(event_id: object) -> list[dict[str, str]]:
    return [{"system": EVENT_ID_SYSTEM, "value": str(event_id)}]


def score_observation(score: ClinicalScore) -> Resource:
    """A rating-scale result as an Observation (see the module docstring)."""
    instrument = get_instrument(score.instrument)
    own = {"system": INSTRUMENT_SYSTEM, "code": instrument.id, "display": instrument.name}
    codings = [own]
    if instrument.loinc_total:
        loinc = {
            "system": LOINC,
            "code": instrument.loinc_total,
            "display": f"{instrument.name} total score",
        }
        codings.insert(0, loinc)
    resource: Resource = {
        "resourceType": "Observation",
        "id": str(score.event_id),
        "identifier": _event_identifier(score.event_id),
        "status": "final",
        "category": _category("survey", "Survey"),
        "code": {"coding": codings, "text": f"{instrument.name} total score"},
        "subject": subject(score.patient_id),
        "effectiveDateTime": _time(score.observed_at),
        "issued": _time(score.received_at),
        "performer": [_performer(score)],
    }
    if score.total is not None:
        resource["valueInteger"] = score.total
    items = score.items or {}
    components = []
    for item in instrument.items:
        if item.key not in items:
            continue
        if item.loinc:
            coding = {"system": LOINC, "code": item.loinc, "display": item.label}
        else:
            coding = {
                "system": ITEM_SYSTEM,
                "code": f"{instrument.id}/{item.key}",
                "display": f"{instrument.name} item {item.key}: {item.label}",
            }
        components.append({"code": {"coding": [coding]}, "valueInteger": items[item.key]})
    if components:
        resource["component"] = components
    return resource


def _performer(score: ClinicalScore) -> dict[str, Any]:
    """Who rated: the patient for a self-report, else a clinician (by role only)."""
    if score.rater == "self":
        return subject(score.patient_id)
    return {"type": "Practitioner", "display": "clinician"}


def lab_observation(lab: LabResult) -> Resource:
    """A lab result as an Observation, in the analyte's canonical UCUM unit."""
    analyte = get_analyte(lab.analyte)
    code = lab.loinc or analyte.loinc
    resource: Resource = {
        "resourceType": "Observation",
        "id": str(lab.event_id),
        "identifier": _event_identifier(lab.event_id),
        "status": "final",
        "category": _category("laboratory", "Laboratory"),
        "code": {
            "coding": [{"system": LOINC, "code": code, "display": analyte.name}],
            "text": analyte.name,
        },
        "subject": subject(lab.patient_id),
        "effectiveDateTime": _time(lab.observed_at),
        "issued": _time(lab.received_at),
        "valueQuantity": {"value": lab.value, "unit": lab.unit, "system": UCUM, "code": lab.unit},
    }
    if lab.hours_since_dose is not None:
        resource["extension"] = [
            {
                "url": HOURS_SINCE_DOSE_EXTENSION,
                "valueQuantity": {
                    "value": lab.hours_since_dose,
                    "unit": "h",
                    "system": UCUM,
                    "code": "h",
                },
            }
        ]
    return resource


def risk_assessment(risk: RiskAssessment) -> Resource:
    """A relapse-risk estimate as a RiskAssessment."""
    model = f"{risk.model_name} v{risk.model_version}"
    resource: Resource = {
        "resourceType": "RiskAssessment",
        "id": str(risk.event_id),
        "identifier": _event_identifier(risk.event_id),
        "status": "final",
        "method": {
            "coding": [
                {
                    "system": RISK_MODEL_SYSTEM,
                    "code": risk.model_name,
                    "version": str(risk.model_version),
                }
            ],
            "text": model,
        },
        "subject": subject(risk.patient_id),
        "occurrenceDateTime": _time(risk.observed_at),
        "basis": [{"identifier": {"system": EVENT_ID_SYSTEM, "value": str(risk.caused_by)}}],
        "prediction": [
            {
                "outcome": {"text": "relapse"},
                "probabilityDecimal": risk.probability,
                "whenRange": {
                    "high": {"value": risk.horizon_days, "unit": "d", "system": UCUM, "code": "d"}
                },
            }
        ],
    }
    if risk.contributions:
        parts = ", ".join(
            f"{c.feature} {c.contribution:+.3f} (value {c.value:g})" for c in risk.contributions
        )
        resource["note"] = [{"text": f"{model}; contributions to the log-odds: {parts}"}]
    return resource


def alert_flag(alert: Alert, *, status: str | None = None) -> Resource:
    """An alert as a Flag; ``status`` overrides the alert's own (the care team's latest action).

    >>> from uuid import uuid4
    >>> from schemas.examples import envelope_fields
    >>> fields = envelope_fields()
    >>> alert = Alert(**fields, caused_by=uuid4(), alert_id=uuid4(), rule="phq9_item9",
    ...               severity="urgent", status="open", message="PHQ-9 item 9 answered 2",
    ...               first_seen=fields["observed_at"], last_seen=fields["observed_at"],
    ...               config_version="core-2026.1")
    >>> flag = alert_flag(alert)
    >>> flag["status"], flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
    ('active', 'PH')
    >>> alert_flag(alert, status="resolved")["status"]
    'inactive'
    """
    state = status or alert.status
    active = state in _ACTIVE_STATUSES
    priority, priority_text = _PRIORITY[alert.severity]
    period = {"start": _time(alert.first_seen)}
    if not active:
        period["end"] = _time(alert.last_seen)
    return {
        "resourceType": "Flag",
        "id": str(alert.alert_id),
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": str(alert.alert_id)}],
        "extension": [
            {
                "url": FLAG_PRIORITY_EXTENSION,
                "valueCodeableConcept": {
                    "coding": [
                        {"system": FLAG_PRIORITY, "code": priority, "display": priority_text}
                    ],
                    "text": alert.severity,
                },
            }
        ],
        "status": "active" if active else "inactive",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}]}
        ],
        "code": {
            "coding": [{"system": ALERT_RULE_SYSTEM, "code": alert.rule}],
            "text": f"{alert.message} ({state})",
        },
        "subject": subject(alert.patient_id),
        "period": period,
    }


def resource_for(event: Exportable, *, status: str | None = None) -> Resource:
    """The FHIR resource of an exportable event (``status`` applies to alerts only)."""
    if isinstance(event, ClinicalScore):
        return score_observation(event)
    if isinstance(event, LabResult):
        return lab_observation(event)
    if isinstance(event, RiskAssessment):
        return risk_assessment(event)
    return alert_flag(event, status=status)


def _identity(resource: Mapping[str, Any]) -> tuple[str, str]:
    identifier = resource["identifier"][0]
    return str(identifier["system"]), str(identifier["value"])


def bundle_entry(resource: Resource, bundle_type: BundleType = "transaction") -> dict[str, Any]:
    """One Bundle entry; in a transaction, a conditional update on psymon's identifier.

    The resource keeps its ``id`` in a collection; in a transaction the
    receiving server assigns ids, and the entry's ``fullUrl`` is a
    ``urn:uuid``.

    >>> entry = bundle_entry({"resourceType": "Flag", "id": "x",
    ...     "identifier": [{"system": ALERT_ID_SYSTEM, "value": "x"}]})
    >>> entry["request"]
    {'method': 'PUT', 'url': 'Flag?identifier=urn:psymon:alert-id|x'}
    """
    system, value = _identity(resource)
    full_url = f"urn:uuid:{value}"
    if bundle_type == "collection":
        return {"fullUrl": full_url, "resource": resource}
    body = {k: v for k, v in resource.items() if k != "id"}
    kind = resource["resourceType"]
    return {
        "fullUrl": full_url,
        "resource": body,
        "request": {"method": "PUT", "url": f"{kind}?identifier={system}|{value}"},
    }


def export_bundle(
    resources: Iterable[Resource],
    *,
    bundle_id: str,
    timestamp: datetime,
    bundle_type: BundleType = "transaction",
) -> Resource:
    """A Bundle of ``resources`` (see :func:`bundle_entry`).

    >>> from datetime import UTC
    >>> b = export_bundle([], bundle_id="b1", timestamp=datetime(2026, 3, 2, tzinfo=UTC))
    >>> b["type"], b["entry"]
    ('transaction', [])
    """
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        raise ValueError("timestamp must be tz-aware, e.g. datetime.now(UTC)")
    if bundle_type not in ("transaction", "collection"):
        raise ValueError(f"bundle_type {bundle_type!r}; accepted: transaction, collection")
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": bundle_type,
        "timestamp": _time(timestamp),
        "entry": [bundle_entry(r, bundle_type) for r in resources],
    }


__all__ = [
    "ALERT_ID_SYSTEM",
    "ALERT_RULE_SYSTEM",
    "EVENT_ID_SYSTEM",
    "HOURS_SINCE_DOSE_EXTENSION",
    "INSTRUMENT_SYSTEM",
    "ITEM_SYSTEM",
    "PSEUDONYM_SYSTEM",
    "RISK_MODEL_SYSTEM",
    "BundleType",
    "Exportable",
    "Resource",
    "alert_flag",
    "bundle_entry",
    "export_bundle",
    "lab_observation",
    "resource_for",
    "risk_assessment",
    "score_observation",
    "subject",
]
