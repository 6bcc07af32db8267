"""QuestionnaireResponses of rating scales (PHQ-9, PHQ-2, GAD-7 ...).

Which instrument a response answers is read, in this order, from:

1. the ``questionnaire`` canonical URL (R4) or Reference (STU3): a LOINC
   panel or total code in it (``http://loinc.org/q/44249-1``), else an
   instrument name or alias (``.../Questionnaire/phq-9``);
2. the LOINC codes of the answered items (``item.code`` or a ``linkId`` such
   as ``/44250-9``). PHQ-2 and PHQ-8 ask PHQ-9 questions under the same codes,
   so the instrument whose items are exactly the answered ones is chosen.

Each answered item of the instrument is matched by its LOINC code, or by a
``linkId`` naming its key (``1``, ``q1``, ``item1``, ``phq9-1``, ``phq9_item1``);
its score is read as described in :mod:`schemas.fhir.elements`. An item coded
with the total code (or a ``linkId`` containing "total") gives the total,
which must agree with the items. Other items (such as the PHQ-9's "how
difficult" question, 69722-7) are ignored and named in the report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from schemas.fhir.context import Context, clinical_score
from schemas.fhir.document import Entry
from schemas.fhir.elements import (
    answer_score,
    first_time,
    loinc_codes_in,
    loinc_codings,
    mapping,
    mappings,
    text,
)
from schemas.fhir.observation import check_status
from schemas.fhir.outcome import Converted, Rejected, shown
from schemas.instruments import (
    INSTRUMENTS,
    Instrument,
    UnknownInstrument,
    get_instrument,
    instrument_for_loinc,
)

#: Response statuses whose answers are complete and may be imported.
ACCEPTED_STATUSES = ("completed", "amended")

_SPLIT = re.compile(r"[/|?#=&:]+")
_PIECES = re.compile(r"[-_.\s]+")
#: Bounds on the name search in a questionnaire URL: pieces per path segment
#: looked at, and pieces one instrument name may span ("patient-health-questionnaire-9").
_MAX_PIECES = 16
_MAX_NAME_PIECES = 5
_IDENTIFY = (
    "accepted: a questionnaire URL containing a LOINC panel code (e.g. 44249-1 for PHQ-9) "
    "or an instrument name (phq-9, gad-7 ...), or items whose linkId or code is a LOINC "
    "item code (e.g. 44250-9)"
)


def questionnaire_events(entry: Entry, resource: Mapping[str, Any], context: Context) -> Converted:
    """Map one QuestionnaireResponse to a ClinicalScore (see the module docstring)."""
    notes = check_status(resource, ACCEPTED_STATUSES)
    answered = list(_answered(resource.get("item")))
    instrument = _from_questionnaire(resource.get("questionnaire"))
    if instrument is None:
        instrument = _from_items(answered)
        if instrument is None:
            raise Rejected(f"the questionnaire is not one psymon knows; {_IDENTIFY}")
        notes.append(
            f"read as {instrument.name} from its answered item codes (the questionnaire URL "
            "names no instrument psymon knows)"
        )
    names = _key_names(instrument)
    items: dict[str, int] = {}
    total: int | None = None
    ignored: list[str] = []
    for item in answered:
        link = text(item.get("linkId")) or "(no linkId)"
        key = _item_key(instrument, item, link, names)
        if key is None:
            ignored.append(shown(link))
            continue
        answers = list(mappings(item.get("answer")))
        if len(answers) > 1:
            raise Rejected(f"item {shown(link)} has {len(answers)} answers; a scored item has one")
        where = f"item {shown(link)}"
        if key == "total":
            total = answer_score(f"{where} (total)", answers[0], instrument.id)
        elif key in items:
            raise Rejected(f"{instrument.name} item {key} is answered twice (last at {where})")
        else:
            items[key] = answer_score(
                f"{where} ({instrument.name} item {key})", answers[0], instrument.id
            )
    if ignored:
        notes.append(f"items ignored (not scored by {instrument.name}): {', '.join(ignored[:8])}")
    if not items and total is None:
        raise Rejected(f"{instrument.name}: no item is answered; {_IDENTIFY}")
    observed = first_time(resource, ("authored",))
    fields = context.envelope(entry, resource, observed)
    who = resource.get("source") or resource.get("author")
    rater = context.rater(instrument, who, questionnaire=True)
    score = clinical_score(fields, instrument, rater, items, total)
    return Converted((score,), notes)


def _answered(items: Any) -> Iterator[Mapping[str, Any]]:
    """Every item with an answer, depth first (groups and answers may nest items)."""
    for item in mappings(items):
        if mapping(item).get("answer"):
            yield item
        yield from _answered(item.get("item"))
        for answer in mappings(item.get("answer")):
            yield from _answered(answer.get("item"))


def _from_questionnaire(questionnaire: Any) -> Instrument | None:
    """The instrument named by the canonical URL (R4) or Reference (STU3), if any."""
    url = text(questionnaire)
    if url is None and isinstance(questionnaire, Mapping):
        url = text(questionnaire.get("reference")) or text(questionnaire.get("display"))
    if url is None:
        return None
    for code in loinc_codes_in(url):
        found = instrument_for_loinc(code)
        if found is not None and found[1] is None:
            return found[0]
    for segment in reversed(_SPLIT.split(url)):  # the questionnaire's own id comes last
        named: set[str] = set()
        pieces = [piece for piece in _PIECES.split(segment) if piece][:_MAX_PIECES]
        for start in range(len(pieces)):
            for end in range(min(len(pieces), start + _MAX_NAME_PIECES), start, -1):
                try:
                    named.add(get_instrument("".join(pieces[start:end])).id)
                except UnknownInstrument:
                    continue
        if len(named) == 1:
            return INSTRUMENTS[named.pop()]
        if named:
            return None  # one segment naming two instruments: let the items decide
    return None


def _codes(item: Mapping[str, Any]) -> list[str]:
    codes = [str(coding["code"]).strip() for coding in loinc_codings(item.get("code"))]
    return codes + loinc_codes_in(text(item.get("linkId")) or "")


def _from_items(answered: list[Mapping[str, Any]]) -> Instrument | None:
    """The instrument the answered items' LOINC codes point to.

    A total code decides; otherwise the instrument whose items are exactly the
    answered ones (PHQ-2, PHQ-8 and PHQ-9 share item codes); otherwise the
    single instrument that owns all the codes.
    """
    codes: set[str] = set()
    owners: list[Instrument] = []
    totals: set[str] = set()
    for item in answered:
        for code in _codes(item):
            found = instrument_for_loinc(code)
            if found is None:
                continue
            owners.append(found[0])
            if found[1] is not None:
                codes.add(code)
            else:
                totals.add(found[0].id)
    if not owners:
        return None
    if len(totals) == 1:
        return INSTRUMENTS[totals.pop()]
    for instrument in INSTRUMENTS.values():
        if {item.loinc for item in instrument.items} == codes:
            return instrument
    if len({owner.id for owner in owners}) > 1:
        raise Rejected(
            f"the items belong to several instruments "
            f"({', '.join(sorted({o.name for o in owners}))}); psymon reads one instrument "
            "per QuestionnaireResponse"
        )
    return owners[0]


def _key_names(instrument: Instrument) -> dict[str, str]:
    """linkId spellings (lower case, letters and digits only) that name each item key."""
    prefixes = {"", "q", "item", "question"}
    for name in (instrument.id, instrument.name, *instrument.aliases):
        base = re.sub(r"[^a-z0-9]", "", name.lower())
        prefixes |= {base, f"{base}q", f"{base}item"}
    return {
        f"{prefix}{item.key.lower()}": item.key for prefix in prefixes for item in instrument.items
    }


def _item_key(
    instrument: Instrument, item: Mapping[str, Any], link: str, names: dict[str, str]
) -> str | None:
    """The instrument item key ``item`` answers, ``"total"``, or ``None``."""
    for code in _codes(item):
        if code == instrument.loinc_total:
            return "total"
        found = instrument.item_for_loinc(code)
        if found is not None:
            return found.key
    spelled = re.sub(r"[^a-z0-9]", "", link.lower())
    if spelled in names:
        return names[spelled]
    if "total" in spelled:
        return "total"
    return None
