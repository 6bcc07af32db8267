"""Mania scales: the clinician-rated YMRS and the self-rated ASRM.

>>> YMRS.total_high, ASRM.total_high
(60, 20)
>>> ASRM.band(6).label
'probable mania or hypomania'
"""

from __future__ import annotations

from schemas.instruments.model import Band, Instrument, Item
from schemas.instruments.reliable_change import ReliableChange

#: YMRS items: (label, highest anchor). Items 5, 6, 8 and 9 are scored 0-8
#: (double weight, for patients who cooperate poorly), the rest 0-4 (Young 1978).
_YMRS_ITEMS: tuple[tuple[str, int], ...] = (
    ("elevated mood", 4),
    ("increased motor activity and energy", 4),
    ("sexual interest", 4),
    ("sleep", 4),
    ("irritability", 8),
    ("speech: rate and amount", 8),
    ("language and thought disorder", 4),
    ("content", 8),
    ("disruptive or aggressive behaviour", 8),
    ("appearance", 4),
    ("insight", 4),
)

YMRS = Instrument(
    id="ymrs",
    name="YMRS",
    items=tuple(
        Item(str(number), 0, high, label)
        for number, (label, high) in enumerate(_YMRS_ITEMS, start=1)
    ),
    total_low=0,
    total_high=60,
    bands=(
        Band(0, 11, "non-manic", 0),
        Band(12, 20, "hypomanic", 1),
        Band(21, 60, "manic", 2),
    ),
    remission_max=11,
    response_drop=0.5,
    rci=ReliableChange(
        sd=7.0,
        reliability=0.93,
        citation=(
            "approximate: inter-rater r = 0.93 (Young 1978) stands in for a test-retest r; "
            "SD 7.0 is an approximate SD in treated mania; threshold about 5.1 points."
        ),
    ),
    raters=frozenset({"clinician"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("YMRS", "Young Mania Rating Scale"),
    citation=(
        "Young RC, Biggs JT, Ziegler VE, Meyer DA 1978 (Br J Psychiatry 133:429-435): 11 items, "
        "items 5, 6, 8, 9 scored 0-8 and the rest 0-4, total 0-60. Bands < 12 non-manic, "
        "12-20 hypomanic, >= 21 manic are a common convention (approximate). Remission "
        "< 12 is often used (some trials use <= 12); response >= 50 % drop."
    ),
)

ASRM = Instrument(
    id="asrm",
    name="ASRM",
    items=tuple(
        Item(str(number), 0, 4, label)
        for number, label in enumerate(
            ("positive mood", "self-confidence", "sleep", "speech", "activity"), start=1
        )
    ),
    total_low=0,
    total_high=20,
    bands=(
        Band(0, 5, "mania unlikely", 0),
        Band(6, 20, "probable mania or hypomania", 1),
    ),
    remission_max=None,
    response_drop=None,
    rci=None,  # a screener; no test-retest coefficient for the total is at hand
    raters=frozenset({"self"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("ASRM", "Altman Self-Rating Mania Scale"),
    citation=(
        "Altman EG, Hedeker D, Peterson JL, Davis JM 1997 (Biol Psychiatry 42:948-955): 5 items "
        "0-4, total 0-20; a total > 5 indicates probable mania or hypomania (sensitivity "
        "85.5 %, specificity 87.3 %)."
    ),
)

MANIA_SCALES: tuple[Instrument, ...] = (YMRS, ASRM)
