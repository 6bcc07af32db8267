"""From an export to its resources: JSON, NDJSON or a Bundle, with identities and links.

A document is one FHIR resource, a Bundle of them (any ``Bundle.type``:
collection, transaction, batch, searchset, history, document ...), a JSON
array of resources, or NDJSON (FHIR Bulk Data export: one resource a line).
Each resource becomes an :class:`Entry` with its position, a label that never
shows a patient's id, and the identity its event ids derive from.

Which FHIR release a resource follows is checked with ``fhir.resources``:
R4/R4B first, then STU3. A resource valid under neither is still read, field
by field, and its report says so.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class as r4b_model
from fhir.resources.R4B.resource import Resource as R4BResource
from fhir.resources.STU3 import get_fhir_model_class as stu3_model
from pydantic import ValidationError

from schemas.dispatch import loads
from schemas.fhir.elements import mapping, text

#: Resource types whose id identifies a person: never shown in a report.
PERSON_TYPES = frozenset({"Patient", "Person", "RelatedPerson"})

#: How many invalid elements a "not valid FHIR" note names.
_SHOWN_LOCATIONS = 3


@dataclass(frozen=True)
class Entry:
    """One resource of a document, where it stood and who it is.

    >>> e = Entry(2, {"resourceType": "Observation", "id": "a", "meta": {"versionId": "3"}})
    >>> e.label, e.identity
    ('Observation/a', ('Observation/a', '3'))
    >>> Entry(0, {"resourceType": "Patient", "id": "mrn-1"}).label
    'Patient/(id not shown)'
    """

    index: int
    resource: Mapping[str, Any] | None
    full_url: str | None = None
    method: str | None = None

    @property
    def resource_type(self) -> str | None:
        """``resourceType`` of the resource, if it has a usable one."""
        return text(mapping(self.resource).get("resourceType"))

    @property
    def resource_id(self) -> str | None:
        """``id`` of the resource, if any."""
        return text(mapping(self.resource).get("id"))

    @property
    def version(self) -> str | None:
        """``meta.versionId`` of the resource, if any."""
        return text(mapping(mapping(self.resource).get("meta")).get("versionId"))

    @property
    def label(self) -> str:
        """``Type/id`` for reports; the ids of Patient-like resources are not shown."""
        kind = self.resource_type or "(no resourceType)"
        if self.resource is None:
            return f"entry {self.index} ({self.full_url or 'no fullUrl'})"
        if kind in PERSON_TYPES and (self.resource_id or self.full_url):
            return f"{kind}/(id not shown)"
        if self.resource_id:
            return f"{kind}/{self.resource_id}"
        return self.full_url or f"{kind} (no id)"

    @property
    def identity(self) -> tuple[str, ...]:
        """What event ids derive from: ``Type/id`` and version, else fullUrl, else content.

        A resource with neither id nor fullUrl is identified by a SHA-256 of
        its canonical JSON, so re-importing the same export still yields the
        same ids.
        """
        if self.resource_id:
            kind = self.resource_type or "Resource"
            return tuple(p for p in (f"{kind}/{self.resource_id}", self.version or "") if p)
        if self.full_url:
            return (self.full_url,)
        canonical = json.dumps(self.resource, sort_keys=True, separators=(",", ":"), default=str)
        return ("sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),)


class DocumentError(ValueError):
    """A document that holds no FHIR resource at all; the message says what is accepted."""


_ACCEPTED = "accepted: a FHIR resource or Bundle as JSON, a JSON array of resources, or NDJSON"


def read_document(document: Mapping[str, Any] | bytes | str) -> list[Entry]:
    """The resources of a document, in order.

    Raises
    ------
    DocumentError
        If the document is not JSON or holds no FHIR resource.

    >>> [e.label for e in read_document('{"resourceType": "Observation", "id": "o1"}')]
    ['Observation/o1']
    >>> ndjson = '{"resourceType": "Observation", "id": "a"}\\n{"resourceType": "Encounter"}\\n'
    >>> [e.label for e in read_document(ndjson)]
    ['Observation/a', 'Encounter (no id)']
    >>> read_document(b"[1")
    Traceback (most recent call last):
    ...
    schemas.fhir.document.DocumentError: the document is not JSON (line 1, column 3: Expecting ',' delimiter); accepted: a FHIR resource or Bundle as JSON, a JSON array of resources, or NDJSON
    """  # noqa: E501
    if isinstance(document, Mapping):
        return _entries(document)
    try:
        raw = document.decode("utf-8-sig") if isinstance(document, bytes) else document
    except UnicodeDecodeError as error:
        raise DocumentError(
            f"the document is not UTF-8 text ({error.reason}); {_ACCEPTED}"
        ) from None
    raw = raw.lstrip("\ufeff")
    try:
        parsed = loads(raw.encode())
    except ValueError as error:
        lines = [line for line in raw.splitlines() if line.strip()]
        if len(lines) > 1 and isinstance(error, json.JSONDecodeError) and error.msg == "Extra data":
            return _ndjson(lines)
        raise DocumentError(f"the document is not JSON ({_where(error)}); {_ACCEPTED}") from None
    if isinstance(parsed, list):
        return [Entry(i, r if isinstance(r, Mapping) else None) for i, r in enumerate(parsed)]
    if not isinstance(parsed, Mapping):
        raise DocumentError(f"the document is a JSON {type(parsed).__name__}; {_ACCEPTED}")
    return _entries(parsed)


def _where(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"line {error.lineno}, column {error.colno}: {error.msg}"
    return str(error)


def _ndjson(lines: Sequence[str]) -> list[Entry]:
    entries = []
    for index, line in enumerate(lines):
        try:
            resource = loads(line.encode())
        except ValueError:
            resource = None
        entries.append(Entry(index, resource if isinstance(resource, Mapping) else None))
    return entries


def _entries(document: Mapping[str, Any]) -> list[Entry]:
    kind = document.get("resourceType")
    if not isinstance(kind, str):
        raise DocumentError(f"the document has no resourceType; {_ACCEPTED}")
    if kind != "Bundle":
        return [Entry(0, document)]
    raw_entries = document.get("entry")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise DocumentError(
            "the Bundle has no entries (Bundle.entry is missing, empty or not a list): "
            "there is nothing to import"
        )
    entries = []
    for index, raw in enumerate(raw_entries):
        entry = mapping(raw)
        resource = entry.get("resource")
        entries.append(
            Entry(
                index,
                resource if isinstance(resource, Mapping) else None,
                full_url=text(entry.get("fullUrl")),
                method=text(mapping(entry.get("request")).get("method")),
            )
        )
    return entries


class References:
    """Finds the entry a reference points to, by ``fullUrl`` or by ``Type/id``.

    The first occurrence of a resource wins (later ones are duplicates).

    >>> refs = References([Entry(0, {"resourceType": "Observation", "id": "a"},
    ...                          full_url="urn:uuid:1")])
    >>> refs.find("urn:uuid:1").index, refs.find("https://ehr/fhir/Observation/a/_history/2").index
    (0, 0)
    >>> refs.find("Observation/b") is None
    True
    """

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._by_url: dict[str, Entry] = {}
        self._by_id: dict[str, Entry] = {}
        for entry in entries:
            if entry.full_url:
                self._by_url.setdefault(entry.full_url, entry)
            if entry.resource_type and entry.resource_id:
                self._by_id.setdefault(f"{entry.resource_type}/{entry.resource_id}", entry)

    def find(self, reference: str) -> Entry | None:
        """The entry ``reference`` points to, if it is in the document."""
        if reference in self._by_url:
            return self._by_url[reference]
        relative = relative_reference(reference)
        return self._by_id.get(relative) if relative else None


def relative_reference(reference: str) -> str | None:
    """``Type/id`` of a relative or absolute literal reference, without ``_history``.

    >>> relative_reference("https://ehr.example/fhir/Patient/p1/_history/4")
    'Patient/p1'
    >>> relative_reference("Patient/p1"), relative_reference("p1")
    ('Patient/p1', None)
    """
    path = reference.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper():
        return None
    return f"{parts[-2]}/{parts[-1]}"


def resource_type_name(kind: str) -> str:
    """``kind`` if it names a FHIR resource type, else a neutral phrase.

    Reasons show the type a reference points to; a path segment that is not a
    resource type might be an identifier, so it is never echoed.

    >>> resource_type_name("Group"), resource_type_name("MRN00731942")
    ('Group', 'resource of an unknown type')
    """
    try:
        model = r4b_model(kind)
    except (KeyError, ValueError, TypeError):
        model = None
    if model is not None and issubclass(model, R4BResource):
        return kind
    return "resource of an unknown type"


def release_note(resource: Mapping[str, Any]) -> str | None:
    """``None`` for a valid R4/R4B resource, else a note on how it was read.

    The note names where the resource breaks the R4 schema (element paths,
    never values: a value might be a patient identifier).

    >>> release_note({"resourceType": "Observation", "status": "final",
    ...               "code": {"text": "x"}, "comment": "STU3 had comment"})
    'read as FHIR STU3 (not valid R4: comment)'
    """
    kind = resource.get("resourceType")
    try:
        r4b_model(str(kind)).model_validate(resource)
        return None
    except ValidationError as error:
        r4_problems = _locations(error)
    except (KeyError, ValueError, TypeError):
        return None
    try:
        stu3_model(str(kind)).model_validate(resource)
        return f"read as FHIR STU3 (not valid R4: {r4_problems})"
    except (ValidationError, KeyError, ValueError, TypeError):
        return f"not valid FHIR R4 or STU3 (R4: {r4_problems}); read element by element"


def _locations(error: ValidationError) -> str:
    locations = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(resource)"
        if where not in locations:
            locations.append(where)
    more = len(locations) - _SHOWN_LOCATIONS
    shown = ", ".join(locations[:_SHOWN_LOCATIONS])
    return f"{shown} and {more} more" if more > 0 else shown
