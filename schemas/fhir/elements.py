"""Reading FHIR data types from plain JSON: times, codes, numbers and answer scores.

Every function here works on the parsed JSON (dicts and lists), so the same
code reads R4, R4B and STU3 resources and the odd export that is neither.
Each raises :class:`~schemas.fhir.outcome.Rejected` with a reason naming the
element, the value and what is accepted.

Item scores of rating scales come in several shapes in real exports; all of
these are read (HL7 FHIR R4 and R5 core extensions, the STU3-era ISO 21090
extension, the LOINC answer list LL358-3 of the PHQ and GAD-7 items):

* a number: ``valueInteger``, ``valueDecimal``, ``valueQuantity.value``, or a
  ``valueCoding``/``valueString`` whose code or text is a number;
* the ``ordinalValue`` (R4), ``itemWeight`` (R5) or ``iso21090-CO-value``
  (STU3) extension on the answer's coding or on the answer itself;
* a LOINC answer of list LL358-3 ("Not at all" 0 ... "Nearly every day" 3)
  for the PHQ and GAD-7 items (Kroenke 2001, Spitzer 2006).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from schemas.fhir.outcome import Rejected, shown

LOINC_SYSTEMS = frozenset({"http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"})

#: Extensions that carry the score of a coded answer: R4, R5, STU3.
SCORE_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
    "http://hl7.org/fhir/StructureDefinition/iso21090-CO-value",
)

#: LOINC answer list LL358-3, the frequency answers of the PHQ and GAD-7 items
#: ("over the last 2 weeks, how often ..."), scored 0-3 (Kroenke 2001; Spitzer 2006).
FREQUENCY_ANSWERS: Mapping[str, int] = {
    "LA6568-5": 0,  # Not at all
    "LA6569-3": 1,  # Several days
    "LA6570-1": 2,  # More than half the days
    "LA6571-9": 3,  # Nearly every day
}

#: Instruments whose items are answered from LOINC list LL358-3.
FREQUENCY_ANSWER_INSTRUMENTS = frozenset({"phq9", "phq8", "phq2", "gad7"})

_DATE_ONLY = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_LOINC_CODE = re.compile(r"(?<![\w.])(\d{1,7}-\d)(?!\d)")
_TIME_EXAMPLE = "accepted: a date and time with its UTC offset, e.g. '2026-03-02T09:30:00+01:00'"


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an empty one (absent or malformed)."""
    return value if isinstance(value, Mapping) else {}


def mappings(value: Any) -> Iterator[Mapping[str, Any]]:
    """The JSON objects in a JSON array (a lone object counts as an array of one)."""
    if isinstance(value, Mapping):
        yield value
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for element in value:
            if isinstance(element, Mapping):
                yield element


def text(value: Any) -> str | None:
    """A non-empty string, stripped, or ``None``."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def event_time(element: str, value: Any) -> datetime:
    """A FHIR ``dateTime``/``instant`` as a tz-aware datetime.

    psymon places every observation on a timeline in UTC, so a value without a
    time or without a UTC offset is rejected rather than guessed.

    >>> event_time("authored", "2026-03-02T09:30:00Z").isoformat()
    '2026-03-02T09:30:00+00:00'
    >>> event_time("effectiveDateTime", "2026-03-02")
    Traceback (most recent call last):
    ...
    schemas.fhir.outcome.Rejected: effectiveDateTime '2026-03-02' is a date without a time; psymon needs the time of the observation with its UTC offset; accepted: a date and time with its UTC offset, e.g. '2026-03-02T09:30:00+01:00'
    """  # noqa: E501
    if not isinstance(value, str):
        raise Rejected(f"{element} must be a FHIR dateTime string, got {shown(value)}")
    if _DATE_ONLY.fullmatch(value.strip()):
        raise Rejected(
            f"{element} {shown(value)} is a date without a time; psymon needs the time of "
            f"the observation with its UTC offset; {_TIME_EXAMPLE}"
        )
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Rejected(
            f"{element} {shown(value)} is not a FHIR dateTime; {_TIME_EXAMPLE}"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise Rejected(
            f"{element} {shown(value)} has no UTC offset, so its moment is unknown "
            f"(FHIR requires one when a time is given); {_TIME_EXAMPLE}"
        )
    return moment


def first_time(resource: Mapping[str, Any], elements: Sequence[str]) -> datetime:
    """The time in the first of ``elements`` present (``x.start`` reads a Period's start)."""
    for element in elements:
        name, _, part = element.partition(".")
        value = resource.get(name)
        if part:
            value = mapping(value).get(part)
        if value is not None:
            return event_time(element, value)
    raise Rejected(
        f"no time of observation: none of {', '.join(elements)} is present; "
        f"psymon needs one; {_TIME_EXAMPLE}"
    )


def loinc_codings(concept: Any) -> list[Mapping[str, Any]]:
    """The codings of a CodeableConcept that are LOINC (or carry no system at all).

    >>> loinc_codings({"coding": [{"system": "http://snomed.info/sct", "code": "1"},
    ...                           {"system": "http://loinc.org", "code": "44261-6"}]})
    [{'system': 'http://loinc.org', 'code': '44261-6'}]
    """
    found = []
    for coding in mappings(mapping(concept).get("coding")):
        system = coding.get("system")
        if text(coding.get("code")) and (system is None or system in LOINC_SYSTEMS):
            found.append(coding)
    return found


def loinc_codes_in(value: str) -> list[str]:
    """LOINC-shaped codes inside a string (a canonical URL, a linkId).

    >>> loinc_codes_in("http://loinc.org/q/44249-1|2.68"), loinc_codes_in("/44249-1/44250-9")
    (['44249-1'], ['44249-1', '44250-9'])
    """
    return _LOINC_CODE.findall(value)


def describe_concept(concept: Any) -> str:
    """A CodeableConcept for a reason: ``system|code (display)`` of its first codings."""
    parts = []
    for coding in list(mappings(mapping(concept).get("coding")))[:3]:
        code = f"{coding.get('system') or '(no system)'}|{coding.get('code')}"
        display = text(coding.get("display"))
        parts.append(f"{code} ({display[:60]})" if display else code)
    if not parts:
        label = text(mapping(concept).get("text"))
        return f"text {shown(label)} without a coding" if label else "no code"
    return ", ".join(parts)


def whole_number(element: str, value: Any) -> int:
    """An item score: a JSON number (or numeric string) with no fractional part.

    >>> whole_number("answer", 2.0), whole_number("answer", "3")
    (2, 3)
    >>> whole_number("answer", 1.5)
    Traceback (most recent call last):
    ...
    schemas.fhir.outcome.Rejected: answer 1.5 is not a whole number; scores are whole numbers
    """
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise Rejected(f"{element} {shown(value)} is not a number") from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise Rejected(f"{element} {shown(value)} is not a number")
    if isinstance(number, float) and not number.is_integer():
        raise Rejected(f"{element} {shown(value)} is not a whole number; scores are whole numbers")
    return int(number)


def _score_extension(element: Mapping[str, Any]) -> Any:
    for extension in mappings(element.get("extension")):
        if extension.get("url") in SCORE_EXTENSIONS:
            for key in ("valueDecimal", "valueInteger"):
                if key in extension:
                    return extension[key]
    return None


def coded_score(element: str, coding: Mapping[str, Any], instrument_id: str) -> int:
    """The score of a coded answer: extension, numeric code/display, or LOINC LL358-3."""
    weight = _score_extension(coding)
    if weight is not None:
        return whole_number(f"{element} ordinalValue", weight)
    code, display = text(coding.get("code")), text(coding.get("display"))
    for candidate in (code, display):
        if candidate is not None and re.fullmatch(r"-?\d+(\.0+)?", candidate):
            return whole_number(element, candidate)
    if (
        code is not None
        and code in FREQUENCY_ANSWERS
        and instrument_id in FREQUENCY_ANSWER_INSTRUMENTS
    ):
        return FREQUENCY_ANSWERS[code]
    raise Rejected(
        f"{element}: the answer {shown(code)} ({display or 'no display'}) carries no score; "
        "accepted: valueInteger, valueDecimal, a valueCoding with an ordinalValue or "
        "itemWeight extension, a code or display that is a number, or a LOINC LL358-3 answer"
    )


def answer_score(element: str, answer: Mapping[str, Any], instrument_id: str) -> int:
    """The score in a QuestionnaireResponse answer or an Observation (``value[x]``)."""
    weight = _score_extension(answer)
    if weight is not None:
        return whole_number(f"{element} ordinalValue", weight)
    for key in ("valueInteger", "valueDecimal", "valueString"):
        if key in answer:
            return whole_number(f"{element} {key}", answer[key])
    if "valueQuantity" in answer:
        return whole_number(
            f"{element} valueQuantity", mapping(answer["valueQuantity"]).get("value")
        )
    coded = [answer["valueCoding"]] if "valueCoding" in answer else []
    coded += list(mappings(mapping(answer.get("valueCodeableConcept")).get("coding")))
    if coded:
        problems: list[str] = []
        for coding in mappings(coded):
            try:
                return coded_score(element, coding, instrument_id)
            except Rejected as error:
                problems.append(str(error))
        raise Rejected(problems[0])
    absent = describe_concept(answer.get("dataAbsentReason"))
    why = f" (dataAbsentReason {absent})" if "dataAbsentReason" in answer else ""
    raise Rejected(f"{element} has no value{why}; psymon needs a number or a scored coded answer")
