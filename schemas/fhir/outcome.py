"""What became of one FHIR resource: the public report and the internal verdicts.

:class:`ResourceReport` is what :func:`schemas.fhir.import_fhir` returns for
every resource it met. Inside the importer a resource that cannot be used
raises :class:`Rejected` (or :class:`Unsupported`) with a reason written for a
person; a resource that can be used yields a :class:`Converted`.

Reasons never carry the subject of a resource (a patient reference or an
identifier): they say "subject" and what is accepted, never its value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from schemas.events import ClinicalOutcome, ClinicalScore, LabResult

Status = Literal["accepted", "rejected", "unsupported", "duplicate"]
ImportedEvent = ClinicalScore | LabResult | ClinicalOutcome

#: Longest value echoed into a reason; longer ones are cut with an ellipsis.
_MAX_SHOWN = 60


@dataclass(frozen=True)
class ResourceReport:
    """What happened to one resource of an imported document.

    Attributes
    ----------
    index
        Position of the resource in the document: the Bundle entry, the NDJSON
        line or the JSON array element (0 for a single resource).
    resource
        ``"Type/id"`` (or the entry's ``fullUrl`` when the resource has no id);
        never a patient identifier: the ids of Patient resources are not shown.
    status
        ``accepted`` (turned into ``events``, possibly none when the resource
        was read as part of another), ``rejected`` (psymon understands it but
        cannot use it: ``reason`` says why and what is accepted),
        ``unsupported`` (a kind of resource or code psymon does not import) or
        ``duplicate`` (the same resource and version appeared earlier).
    reason
        For a person: what was wrong and what is accepted; for an accepted
        resource a note on anything worth knowing (read as STU3, items
        ignored), else ``None``.
    events
        The validated events made from the resource.

    >>> ResourceReport(0, "Observation/1", "unsupported", "no LOINC code", ()).status
    'unsupported'
    """

    index: int
    resource: str
    status: Status
    reason: str | None
    events: tuple[ImportedEvent, ...] = ()


class Rejected(Exception):
    """A resource psymon understands but cannot use; the message is the reason."""

    status: Status = "rejected"


class Unsupported(Rejected):
    """A resource (or a code) psymon does not import; the message says what it imports."""

    status: Status = "unsupported"


@dataclass
class Converted:
    """Events made from a resource, notes for its report, and entries it consumed.

    ``members`` maps the index of each entry read as part of this resource (a
    panel's ``hasMember`` items) to a note saying what it contributed.
    """

    events: tuple[ImportedEvent, ...]
    notes: list[str] = field(default_factory=list)
    members: dict[int, str] = field(default_factory=dict)


def shown(value: object) -> str:
    """A value for a reason: its ``repr``, cut to a readable length.

    >>> shown("x" * 100)[-4:]
    "...'"
    >>> shown(3)
    '3'
    """
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 4] + "...'"


def explain_validation(error: ValidationError) -> str:
    """Summarise an event model's validation error: field, value, what is accepted.

    Values are shown only when they are plain scalars of fields other than
    ``patient_id``; a whole-record error never echoes the record.

    >>> from schemas.examples import envelope_fields
    >>> try:
    ...     LabResult(**envelope_fields(), analyte="lithium", value=1.0, unit="g")
    ... except ValidationError as error:
    ...     print(explain_validation(error))
    lithium: unit 'g' cannot be converted; accepted: mmol/L, mEq/L (converted to mmol/L)
    """
    parts: list[str] = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        value = item.get("input")
        private = "patient_id" in location
        scalar = isinstance(value, str | int | float | bool) and not private
        if item["type"] == "missing":
            message = "required field is missing"
        elif scalar and repr(value) not in message and str(value) not in message:
            message = f"{message} (got {shown(value)})"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
