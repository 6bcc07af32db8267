"""The instrument catalogue: every scale psymon accepts, by id, name, alias and LOINC code.

>>> get_instrument("PHQ-9") is get_instrument("phq_9") is INSTRUMENTS["phq9"]
True
>>> inst, item = instrument_for_loinc("44260-8")
>>> inst.id, item.key
('phq9', '9')
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.instruments.depression import DEPRESSION_SCALES
from schemas.instruments.errors import UnknownInstrument
from schemas.instruments.global_ import GLOBAL_SCALES
from schemas.instruments.mania import MANIA_SCALES
from schemas.instruments.model import Instrument, Item
from schemas.instruments.phq import PHQ_FAMILY
from schemas.instruments.psychosis import PSYCHOSIS_SCALES

# PHQ-9 comes first: its item codes are shared with PHQ-8 and PHQ-2, and the
# first instrument to claim a code keeps it.
_ALL: tuple[Instrument, ...] = (
    PHQ_FAMILY + DEPRESSION_SCALES + MANIA_SCALES + PSYCHOSIS_SCALES + GLOBAL_SCALES
)

#: Every instrument by id, in catalogue order.
INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType({inst.id: inst for inst in _ALL})


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch not in "-_ ")


def _build_name_index() -> dict[str, Instrument]:
    index: dict[str, Instrument] = {}
    for inst in _ALL:
        for name in (inst.id, inst.name, *inst.aliases):
            key = _normalise(name)
            claimed = index.setdefault(key, inst)
            if claimed is not inst:
                raise ValueError(
                    f"instrument name {name!r} is claimed by {claimed.id} and {inst.id}"
                )
    return index


def _build_loinc_index() -> dict[str, tuple[Instrument, Item | None]]:
    index: dict[str, tuple[Instrument, Item | None]] = {}
    for inst in _ALL:
        for code in (inst.loinc_total, inst.loinc_panel):
            if code is not None:
                index.setdefault(code, (inst, None))
        for item in inst.items:
            if item.loinc is not None:
                index.setdefault(item.loinc, (inst, item))
    return index


_BY_NAME = _build_name_index()
_BY_LOINC = _build_loinc_index()


def get_instrument(name: str) -> Instrument:
    """Find an instrument by id, name or alias.

    Case is ignored, and so are ``-``, ``_`` and spaces: ``"PHQ-9"``,
    ``"phq9"`` and ``"phq_9"`` all name the PHQ-9.

    Raises
    ------
    UnknownInstrument
        When nothing matches; the message lists the accepted ids.

    >>> get_instrument("QIDS-SR").id
    'qids_sr16'
    >>> get_instrument("HAM-D")
    Traceback (most recent call last):
    ...
    schemas.instruments.errors.UnknownInstrument: unknown instrument 'HAM-D'; accepted ids: phq9, \
phq8, phq2, gad7, madrs, hamd17, qids_sr16, ymrs, asrm, panss, cgi_s, cgi_c (names and aliases \
such as 'PHQ-9' also work; case, '-', '_' and spaces are ignored)
    """
    if type(name) is str:
        # An id as events carry it is its own key (normalising is idempotent):
        # one dict lookup on the hot path of every score, course and rule.
        found = _BY_NAME.get(name)
        if found is not None:
            return found
    found = _BY_NAME.get(_normalise(name)) if isinstance(name, str) else None
    if found is None:
        shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
        raise UnknownInstrument(
            f"unknown instrument {shown}; accepted ids: {', '.join(INSTRUMENTS)} "
            "(names and aliases such as 'PHQ-9' also work; case, '-', '_' and spaces "
            "are ignored)"
        )
    return found


def instrument_for_loinc(code: str) -> tuple[Instrument, Item | None] | None:
    """The instrument (and item) a LOINC code stands for, or None.

    A total or panel code gives ``(instrument, None)``; a question code gives
    ``(instrument, item)``. PHQ-2 and PHQ-8 ask PHQ-9 questions under the same
    codes; those item codes resolve to the PHQ-9.

    >>> instrument_for_loinc("55758-7")[0].id
    'phq2'
    >>> instrument_for_loinc("44250-9")[0].id
    'phq9'
    >>> instrument_for_loinc("0000-0") is None
    True
    """
    return _BY_LOINC.get(code.strip()) if isinstance(code, str) else None
