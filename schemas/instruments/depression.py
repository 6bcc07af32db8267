"""Depression scales beyond the PHQ: MADRS, HAM-D 17 and QIDS-SR16.

The QIDS-SR16 does not sum its items: it scores nine DSM-IV symptom domains,
taking the highest of the four sleep items, of the four appetite/weight items
and of the two psychomotor items (Rush 2003). :func:`qids_sr16_total` is that
rule.

>>> items = dict(zip(map(str, range(1, 17)), [1, 2, 3, 0, 2, 3, 0, 1, 0, 1, 2, 0, 1, 2, 1, 3]))
>>> QIDS_SR16.score(items, None)  # 3 + 2 + 3 + 1 + 2 + 0 + 1 + 2 + 3
17
"""

from __future__ import annotations

from collections.abc import Mapping

from schemas.instruments.model import Band, Instrument, Item
from schemas.instruments.reliable_change import ReliableChange

_CLINICIAN = frozenset({"clinician"})

MADRS = Instrument(
    id="madrs",
    name="MADRS",
    items=tuple(
        Item(str(number), 0, 6, label)
        for number, label in enumerate(
            (
                "apparent sadness",
                "reported sadness",
                "inner tension",
                "reduced sleep",
                "reduced appetite",
                "concentration difficulties",
                "lassitude",
                "inability to feel",
                "pessimistic thoughts",
                "suicidal thoughts",
            ),
            start=1,
        )
    ),
    total_low=0,
    total_high=60,
    bands=(
        Band(0, 6, "normal", 0),
        Band(7, 19, "mild", 1),
        Band(20, 34, "moderate", 2),
        Band(35, 60, "severe", 3),
    ),
    remission_max=10,
    response_drop=0.5,
    rci=ReliableChange(
        sd=7.0,
        reliability=0.93,
        citation=(
            "approximate: test-retest ICC 0.93 with independent SIGMA interviews (Williams & "
            "Kobak 2008, Br J Psychiatry 192:52-58); SD 7.0 is an approximate outpatient SD; "
            "threshold about 5.1 points."
        ),
    ),
    raters=_CLINICIAN,
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("MADRS", "Montgomery-Asberg"),
    citation=(
        "Montgomery SA, Asberg M 1979 (Br J Psychiatry 134:382-389): 10 items 0-6, total 0-60. "
        "Bands 0-6 normal, 7-19 mild, 20-34 moderate, 35-60 severe (Snaith 1986). "
        "Remission <= 10 (Zimmerman, Posternak & Chelminski 2004); response >= 50 % drop."
    ),
)

#: HAM-D 17 items: (label, highest anchor). Items 1-3, 7-11 and 15 run 0-4;
#: items 4-6, 12-14, 16 and 17 run 0-2 (Hamilton 1960), so the maximum is 52.
_HAMD17_ITEMS: tuple[tuple[str, int], ...] = (
    ("depressed mood", 4),
    ("feelings of guilt", 4),
    ("suicide", 4),
    ("insomnia: early in the night", 2),
    ("insomnia: middle of the night", 2),
    ("insomnia: early hours of the morning", 2),
    ("work and activities", 4),
    ("retardation", 4),
    ("agitation", 4),
    ("anxiety: psychic", 4),
    ("anxiety: somatic", 4),
    ("somatic symptoms: gastrointestinal", 2),
    ("general somatic symptoms", 2),
    ("genital symptoms", 2),
    ("hypochondriasis", 4),
    ("loss of weight", 2),
    ("insight", 2),
)

HAMD17 = Instrument(
    id="hamd17",
    name="HAM-D 17",
    items=tuple(
        Item(str(number), 0, high, label)
        for number, (label, high) in enumerate(_HAMD17_ITEMS, start=1)
    ),
    total_low=0,
    total_high=52,
    bands=(
        Band(0, 7, "no depression", 0),
        Band(8, 16, "mild", 1),
        Band(17, 23, "moderate", 2),
        Band(24, 52, "severe", 3),
    ),
    remission_max=7,
    response_drop=0.5,
    rci=ReliableChange(
        sd=6.0,
        reliability=0.81,
        citation=(
            "approximate: r = 0.81 sits within the 0.65-0.98 test-retest range pooled by "
            "Trajkovic 2011 (Psychiatry Res 189:1-9); SD 6.0 is an approximate clinical SD; "
            "threshold about 7.3 points."
        ),
    ),
    raters=_CLINICIAN,
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("HAM-D 17", "HAMD17", "HAM-D-17", "HDRS17", "HDRS-17", "HRSD17", "HRSD-17"),
    citation=(
        "Hamilton M 1960 (J Neurol Neurosurg Psychiatry 23:56-62): 17 items, items 1, 2, 3, 7, "
        "8, 9, 10, 11, 15 scored 0-4 and items 4, 5, 6, 12, 13, 14, 16, 17 scored 0-2, total "
        "0-52. Bands 0-7 none, 8-16 mild, 17-23 moderate, >= 24 severe (Zimmerman 2013). "
        "Remission <= 7; response >= 50 % drop; some trials define relapse as >= 16. "
        "Bare 'HAM-D' is not an alias: 21- and 24-item versions exist."
    ),
)


def qids_sr16_total(items: Mapping[str, int]) -> int:
    """QIDS-SR16 total: the nine symptom domains of Rush 2003.

    ``max(items 1-4)`` (sleep) + item 5 (sad mood) + ``max(items 6-9)``
    (appetite/weight) + items 10-14 (concentration, self-view, suicidal
    ideation, interest, energy) + ``max(items 15-16)`` (psychomotor).

    >>> qids_sr16_total({str(i): 3 for i in range(1, 17)})
    27
    """

    def worst(first: int, last: int) -> int:
        return max(items[str(number)] for number in range(first, last + 1))

    single = sum(items[str(number)] for number in (5, 10, 11, 12, 13, 14))
    return worst(1, 4) + worst(6, 9) + worst(15, 16) + single


QIDS_SR16 = Instrument(
    id="qids_sr16",
    name="QIDS-SR16",
    items=tuple(
        Item(str(number), 0, 3, label)
        for number, label in enumerate(
            (
                "falling asleep",
                "sleep during the night",
                "waking up too early",
                "sleeping too much",
                "feeling sad",
                "decreased appetite",
                "increased appetite",
                "decreased weight",
                "increased weight",
                "concentration and decision making",
                "view of myself",
                "thoughts of death or suicide",
                "general interest",
                "energy level",
                "feeling slowed down",
                "feeling restless",
            ),
            start=1,
        )
    ),
    total_low=0,
    total_high=27,
    bands=(
        Band(0, 5, "none", 0),
        Band(6, 10, "mild", 1),
        Band(11, 15, "moderate", 2),
        Band(16, 20, "severe", 3),
        Band(21, 27, "very severe", 4),
    ),
    remission_max=5,
    response_drop=0.5,
    rci=ReliableChange(
        sd=4.5,
        reliability=0.86,
        citation=(
            "approximate: Cronbach's alpha 0.86 (Rush 2003) in place of a test-retest r; "
            "SD 4.5 is an approximate outpatient SD; threshold about 4.7 points."
        ),
    ),
    raters=frozenset({"self"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("QIDS-SR16", "QIDS-SR", "QIDS-SR-16", "QIDS SR 16"),
    citation=(
        "Rush AJ, Trivedi MH, Ibrahim HM et al. 2003 (Biol Psychiatry 54:573-583): 16 items "
        "0-3 scored as 9 domains (maxima of items 1-4, 6-9 and 15-16), total 0-27; bands 0-5 "
        "none, 6-10 mild, 11-15 moderate, 16-20 severe, 21-27 very severe. Remission <= 5 "
        "(as in STAR*D, Rush 2006); response >= 50 % drop."
    ),
    scoring=qids_sr16_total,
)

DEPRESSION_SCALES: tuple[Instrument, ...] = (MADRS, HAMD17, QIDS_SR16)
