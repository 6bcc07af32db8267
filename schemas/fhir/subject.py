"""Whose result is it: the ``subject`` of a resource, turned into a pseudonym.

The source identifier is ``Patient/<id>`` for a literal reference (relative or
absolute, ``_history`` dropped, so every form of the same reference gives the
same person), or ``<system>|<value>`` for a logical reference by identifier.
A reference to a Patient inside the document (a transaction's ``urn:uuid:``,
a contained ``#p1``) is followed to that Patient: its id, else its first
identifier. The identifier is pseudonymised at once with
:func:`schemas.identity.pseudonymise` (scoped by the importing system) and is
never put in a reason: messages say "subject", never its value.

A subject that already is a psymon pseudonym is taken as it is: psymon's own
FHIR export (:mod:`schemas.fhir.export`) names the patient by
``subject.identifier`` with system :data:`PSEUDONYM_SYSTEM`
(``urn:psymon:pseudonym``), so a re-imported export lands on the same
patient instead of being pseudonymised a second time. Such an identifier
wins over a ``reference`` (it is psymon's own identity of the patient), and
its value must have the pseudonym's shape or the resource is rejected.
Whoever may import can already attach results to any patient whose source
identifier they know; a pseudonym grants nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.fhir.document import References, relative_reference, resource_type_name
from schemas.fhir.elements import mapping, mappings, text
from schemas.fhir.outcome import Rejected
from schemas.identity import PSEUDONYM_PATTERN, pseudonymise

#: The identifier system of a subject that is already a psymon pseudonym.
PSEUDONYM_SYSTEM = "urn:psymon:pseudonym"

_ACCEPTED = (
    "accepted: subject.reference 'Patient/<id>' (relative, absolute, or to a Patient in "
    "the document) or subject.identifier with a value (and its system)"
)


def patient_pseudonym(
    resource: Mapping[str, Any], references: References, *, key: bytes, system: str
) -> str:
    """The pseudonym of the patient a resource is about.

    Raises
    ------
    Rejected
        If the resource has no subject, or its subject is not a patient; the
        reason never contains the subject's reference or identifier.

    >>> refs = References([])
    >>> key = b"k" * 32
    >>> a = patient_pseudonym({"subject": {"reference": "Patient/p1"}}, refs, key=key, system="x")
    >>> a == patient_pseudonym({"subject": {"reference": "https://h/fhir/Patient/p1"}}, refs,
    ...                        key=key, system="x")
    True
    >>> patient_pseudonym({"subject": {"reference": "Group/g7"}}, refs, key=key, system="x")
    Traceback (most recent call last):
    ...
    schemas.fhir.outcome.Rejected: subject refers to a Group, not a Patient; psymon imports results about one patient; accepted: subject.reference 'Patient/<id>' (relative, absolute, or to a Patient in the document) or subject.identifier with a value (and its system)
    >>> pseudonym = {"system": PSEUDONYM_SYSTEM, "value": "p-0123456789abcdef01234567"}
    >>> patient_pseudonym({"subject": {"identifier": pseudonym}}, refs, key=key, system="x")
    'p-0123456789abcdef01234567'
    """  # noqa: E501
    carried = carried_pseudonym(resource)
    if carried is not None:
        return carried
    return pseudonymise(source_identifier(resource, references), key, system=system)


def carried_pseudonym(resource: Mapping[str, Any]) -> str | None:
    """The pseudonym in ``subject.identifier`` with system :data:`PSEUDONYM_SYSTEM`, if any.

    Raises
    ------
    Rejected
        If such an identifier holds something other than a pseudonym, or the
        subject is declared to be something other than a Patient (the value
        is never shown).

    >>> carried_pseudonym({"subject": {"reference": "Patient/p1"}}) is None
    True
    >>> carried_pseudonym({"subject": {"identifier": {"system": PSEUDONYM_SYSTEM,
    ...                                               "value": "MRN-0042"}}})
    Traceback (most recent call last):
    ...
    schemas.fhir.outcome.Rejected: subject.identifier has system urn:psymon:pseudonym but its value is not a psymon pseudonym ('p-' and 24 lowercase hex characters); the value is not shown, it may identify a patient
    """  # noqa: E501
    subject = mapping(resource.get("subject"))
    for identifier in mappings(subject.get("identifier")):
        if text(identifier.get("system")) != PSEUDONYM_SYSTEM:
            continue
        declared = text(subject.get("type"))
        if declared is not None and declared.rsplit("/", 1)[-1] != "Patient":
            kind = resource_type_name(declared.rsplit("/", 1)[-1])
            raise Rejected(f"subject.type is a {kind}, not Patient; {_ACCEPTED}")
        value = text(identifier.get("value"))
        if value is None or not PSEUDONYM_PATTERN.fullmatch(value):
            raise Rejected(
                f"subject.identifier has system {PSEUDONYM_SYSTEM} but its value is not a psymon "
                "pseudonym ('p-' and 24 lowercase hex characters); the value is not shown, it "
                "may identify a patient"
            )
        return value
    return None


def source_identifier(resource: Mapping[str, Any], references: References) -> str:
    """The source identifier of the subject (private: never show it)."""
    subject = resource.get("subject")
    if not isinstance(subject, Mapping) or not subject:
        raise Rejected(f"no subject: psymon needs to know which patient this is about; {_ACCEPTED}")
    declared = text(subject.get("type"))
    if declared is not None and declared.rsplit("/", 1)[-1] != "Patient":
        kind = resource_type_name(declared.rsplit("/", 1)[-1])
        raise Rejected(f"subject.type is a {kind}, not Patient; {_ACCEPTED}")
    reference = text(subject.get("reference"))
    if reference is not None:
        return _from_reference(reference, resource, references)
    identifier = _identifier(subject.get("identifier"))
    if identifier is not None:
        return identifier
    raise Rejected(f"subject has neither a reference nor an identifier value; {_ACCEPTED}")


def _from_reference(reference: str, resource: Mapping[str, Any], references: References) -> str:
    if reference.startswith("#"):
        for contained in mappings(resource.get("contained")):
            if contained.get("id") == reference[1:]:
                return _from_patient(contained)
        raise Rejected(f"subject refers to a contained resource that is not there; {_ACCEPTED}")
    entry = references.find(reference)
    if entry is not None and entry.resource is not None:
        return _from_patient(entry.resource)
    relative = relative_reference(reference)
    if relative is None:
        raise Rejected(
            f"subject.reference is not of the form 'Patient/<id>' and is not in the document; "
            f"{_ACCEPTED}"
        )
    kind = relative.split("/", 1)[0]
    if kind != "Patient":
        raise Rejected(
            f"subject refers to a {resource_type_name(kind)}, not a Patient; psymon imports "
            "results about "
            f"one patient; {_ACCEPTED}"
        )
    return relative


def _from_patient(patient: Mapping[str, Any]) -> str:
    kind = text(patient.get("resourceType")) or "resource without resourceType"
    if kind != "Patient":
        shown_kind = resource_type_name(kind)
        raise Rejected(f"subject refers to a {shown_kind}, not a Patient; {_ACCEPTED}")
    patient_id = text(patient.get("id"))
    if patient_id is not None:
        return f"Patient/{patient_id}"
    identifier = _identifier(patient.get("identifier"))
    if identifier is not None:
        return identifier
    raise Rejected(f"subject refers to a Patient with neither id nor identifier; {_ACCEPTED}")


def _identifier(value: Any) -> str | None:
    for identifier in mappings(value):
        found = text(identifier.get("value"))
        if found is not None:
            system = text(mapping(identifier).get("system"))
            return f"{system}|{found}" if system else found
    return None
