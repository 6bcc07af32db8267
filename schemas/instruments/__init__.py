"""psymon's catalogue of clinical rating scales.

Every instrument psymon accepts (PHQ-9, PHQ-8, PHQ-2, GAD-7, MADRS, HAM-D 17,
QIDS-SR16, YMRS, ASRM, PANSS, CGI-S, CGI-C) with its item ranges, scoring
rule, severity bands, remission and response criteria, reliable-change
parameters and LOINC codes, each fact cited in the instrument's ``citation``.

>>> phq9 = get_instrument("PHQ-9")
>>> total = phq9.score({str(i): 2 for i in range(1, 10)}, None)
>>> total, phq9.band(total).label, phq9.is_remission(total)
(18, 'moderately severe', False)
>>> round(phq9.rci.threshold, 1)
6.1
"""

from __future__ import annotations

from schemas.instruments.catalogue import INSTRUMENTS, get_instrument, instrument_for_loinc
from schemas.instruments.errors import ScoreError, UnknownInstrument
from schemas.instruments.global_ import CGI_C_ANCHORS
from schemas.instruments.model import Band, Instrument, Item, describe_keys, sum_of_items
from schemas.instruments.reliable_change import ReliableChange

__all__ = [
    "CGI_C_ANCHORS",
    "INSTRUMENTS",
    "Band",
    "Instrument",
    "Item",
    "ReliableChange",
    "ScoreError",
    "UnknownInstrument",
    "describe_keys",
    "get_instrument",
    "instrument_for_loinc",
    "sum_of_items",
]
