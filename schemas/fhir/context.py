"""What every mapping needs: the caller's key and clock, the document, and event building.

Event ids derive from the resource's own identity with
:func:`schemas.identity.event_id_for` (``"fhir"``, the system, ``Type/id``,
the version), so re-importing an export gives the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from schemas.envelope import Source
from schemas.events import ClinicalScore
from schemas.fhir.document import Entry, References, relative_reference
from schemas.fhir.elements import mappings, text
from schemas.fhir.outcome import ImportedEvent, Rejected, explain_validation
from schemas.fhir.subject import patient_pseudonym
from schemas.identity import event_id_for
from schemas.instruments import Instrument, ScoreError

Rater = Literal["self", "clinician"]
EventT = TypeVar("EventT", bound=ImportedEvent)

_SELF_TYPES = frozenset({"Patient", "RelatedPerson"})
_CLINICIAN_TYPES = frozenset({"Practitioner", "PractitionerRole"})


@dataclass(frozen=True)
class Context:
    """The import's settings and the document, shared by every mapping."""

    key: bytes
    received_at: datetime
    system: str
    references: References

    def envelope(
        self, entry: Entry, resource: Mapping[str, Any], observed_at: datetime
    ) -> dict[str, Any]:
        """The envelope fields of the event made from ``entry``."""
        return {
            "event_id": event_id_for("fhir", self.system, *entry.identity),
            "patient_id": patient_pseudonym(
                resource, self.references, key=self.key, system=self.system
            ),
            "observed_at": observed_at,
            "received_at": self.received_at,
            "source": Source(system=self.system),
        }

    def reference_type(self, reference: Any) -> str | None:
        """The resource type a Reference points to (``type``, the document, or its path)."""
        if not isinstance(reference, Mapping):
            return None
        declared = text(reference.get("type"))
        if declared is not None:
            return declared.rsplit("/", 1)[-1]
        literal = text(reference.get("reference"))
        if literal is None:
            return None
        entry = self.references.find(literal)
        if entry is not None:
            return entry.resource_type
        relative = relative_reference(literal)
        return relative.split("/", 1)[0] if relative else None

    def rater(self, instrument: Instrument, who: Any, *, questionnaire: bool) -> Rater:
        """Who rated: the instrument's only rater, else what ``who`` points to.

        ``who`` is the Observation's ``performer`` or the response's ``source``
        (``author`` in STU3). A self-report answered in a QuestionnaireResponse
        is ``self`` unless a practitioner is named as its source.
        """
        if instrument.raters == {"self"}:
            return "self"
        if instrument.raters == {"clinician"}:
            return "clinician"
        for reference in mappings(who):
            kind = self.reference_type(reference)
            if kind in _CLINICIAN_TYPES:
                return "clinician"
            if kind in _SELF_TYPES:
                return "self"
        return "self" if questionnaire else "clinician"


def build(model: type[EventT], fields: dict[str, Any]) -> EventT:
    """Construct an event, turning a validation error into a :class:`Rejected` reason."""
    try:
        return model(**fields)
    except ValidationError as error:
        raise Rejected(explain_validation(error)) from None


def clinical_score(
    fields: dict[str, Any],
    instrument: Instrument,
    rater: Rater,
    items: dict[str, int],
    total: int | None,
) -> ClinicalScore:
    """A ClinicalScore; the instrument's own message explains a score it refuses."""
    try:
        instrument.score(items or None, total)
    except ScoreError as error:
        raise Rejected(str(error)) from None
    return build(
        ClinicalScore,
        {
            **fields,
            "instrument": instrument.id,
            "rater": rater,
            "items": items or None,
            "total": total,
        },
    )
