"""The PHQ family of self-reports: PHQ-9, PHQ-8, PHQ-2 and GAD-7.

All four come from the Patient Health Questionnaire (Spitzer, Kroenke &
Williams); every item is rated 0-3 for "over the last 2 weeks" (0 not at all,
1 several days, 2 more than half the days, 3 nearly every day).

LOINC codes identify questions, not questionnaires, so PHQ-2 and PHQ-8 reuse
the PHQ-9 item codes for the identical questions (a lookup by item code in
:func:`schemas.instruments.instrument_for_loinc` resolves to PHQ-9).

>>> PHQ9.total_high, PHQ8.total_high, PHQ2.total_high, GAD7.total_high
(27, 24, 6, 21)
"""

from __future__ import annotations

from schemas.instruments.model import Band, Instrument, Item
from schemas.instruments.reliable_change import ReliableChange

_SELF = frozenset({"self"})

#: PHQ-9 questions with their LOINC item codes, in item order 1..9
#: (LOINC panel 44249-1; codes as used in the HL7 US Core PHQ-9 example).
_PHQ9_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("little interest or pleasure in doing things", "44250-9"),
    ("feeling down, depressed or hopeless", "44255-8"),
    ("trouble falling or staying asleep, or sleeping too much", "44259-0"),
    ("feeling tired or having little energy", "44254-1"),
    ("poor appetite or overeating", "44251-7"),
    ("feeling bad about yourself, or a failure", "44258-2"),
    ("trouble concentrating", "44252-5"),
    ("moving or speaking slowly, or fidgety and restless", "44253-3"),
    ("thoughts of being better off dead or of self-harm", "44260-8"),
)


def _phq_items(count: int) -> tuple[Item, ...]:
    return tuple(
        Item(str(number), 0, 3, label, loinc)
        for number, (label, loinc) in enumerate(_PHQ9_QUESTIONS[:count], start=1)
    )


def _kroenke_bands(top: int) -> tuple[Band, ...]:
    return (
        Band(0, 4, "minimal", 0),
        Band(5, 9, "mild", 1),
        Band(10, 14, "moderate", 2),
        Band(15, 19, "moderately severe", 3),
        Band(20, top, "severe", 4),
    )


#: The RCI parameters shared by PHQ-9 and (approximately) PHQ-8.
_PHQ_RCI_CITATION = (
    "r = 0.84, 48-hour test-retest (Kroenke 2001); SD 5.5 is approximate (the value "
    "psymon's clinical brief gives, in line with intake SDs of NHS Talking Therapies "
    "cases). Threshold 1.96 * sqrt(2) * 5.5 * sqrt(0.16) = 6.1 points (Jacobson & Truax "
    "1991); NHS Talking Therapies applies it as a change of >= 6 points."
)

PHQ9 = Instrument(
    id="phq9",
    name="PHQ-9",
    items=_phq_items(9),
    total_low=0,
    total_high=27,
    bands=_kroenke_bands(27),
    remission_max=4,
    response_drop=0.5,
    rci=ReliableChange(sd=5.5, reliability=0.84, citation=_PHQ_RCI_CITATION, practice_points=6),
    raters=_SELF,
    loinc_total="44261-6",
    loinc_panel="44249-1",
    aliases=("PHQ-9", "PHQ9", "Patient Health Questionnaire-9"),
    citation=(
        "Kroenke K, Spitzer RL, Williams JBW 2001 (J Gen Intern Med 16:606-613): 9 items 0-3, "
        "total 0-27; bands 0-4 minimal, 5-9 mild, 10-14 moderate, 15-19 moderately severe, "
        "20-27 severe. Remission: total < 5; response: >= 50 % drop from baseline. "
        "Item 9 asks about thoughts of death or self-harm (any value > 0 is urgent). "
        "Symptom dimensions: somatic items 3, 4, 5 vs cognitive-affective 1, 2, 6, 7, 8, 9."
    ),
    subscale_items=(
        ("somatic", ("3", "4", "5")),
        ("cognitive_affective", ("1", "2", "6", "7", "8", "9")),
    ),
)

PHQ8 = Instrument(
    id="phq8",
    name="PHQ-8",
    items=_phq_items(8),
    total_low=0,
    total_high=24,
    bands=_kroenke_bands(24),
    remission_max=4,
    response_drop=0.5,
    rci=ReliableChange(
        sd=5.5,
        reliability=0.84,
        citation="approximate: the PHQ-9 values (Kroenke 2001), which the PHQ-8 tracks "
        "closely (Kroenke 2009)",
    ),
    raters=_SELF,
    # No PHQ-8 total or panel code is confirmed. Note 69731-8 is a PHQ-15 item
    # ("feeling tired or having low energy"), not a PHQ-8 total: do not use it.
    loinc_total=None,
    loinc_panel=None,
    aliases=("PHQ-8", "PHQ8"),
    citation=(
        "Kroenke K, Strine TW, Spitzer RL et al. 2009 (J Affect Disord 114:163-173): the "
        "PHQ-9 without item 9, total 0-24, the PHQ-9 band cut-points, >= 10 current "
        "depression. Remission < 5 and response >= 50 % drop are by analogy with the PHQ-9 "
        "(approximate)."
    ),
    subscale_items=(
        ("somatic", ("3", "4", "5")),
        ("cognitive_affective", ("1", "2", "6", "7", "8")),
    ),
)

PHQ2 = Instrument(
    id="phq2",
    name="PHQ-2",
    items=_phq_items(2),
    total_low=0,
    total_high=6,
    bands=(Band(0, 2, "negative screen", 0), Band(3, 6, "positive screen", 1)),
    remission_max=None,
    response_drop=None,
    rci=None,  # a two-item screener: not used to track change
    raters=_SELF,
    loinc_total="55758-7",
    loinc_panel="55757-9",
    aliases=("PHQ-2", "PHQ2"),
    citation=(
        "Kroenke K, Spitzer RL, Williams JBW 2003 (Med Care 41:1284-1292): PHQ-9 items 1 and 2, "
        "total 0-6; >= 3 is a positive screen (validated in Arroll 2010, Ann Fam Med 8:348-353)."
    ),
)

GAD7 = Instrument(
    id="gad7",
    name="GAD-7",
    items=(
        Item("1", 0, 3, "feeling nervous, anxious or on edge", "69725-0"),
        Item("2", 0, 3, "not being able to stop or control worrying", "68509-9"),
        Item("3", 0, 3, "worrying too much about different things", "69733-4"),
        Item("4", 0, 3, "trouble relaxing", "69734-2"),
        Item("5", 0, 3, "so restless that it is hard to sit still", "69735-9"),
        Item("6", 0, 3, "becoming easily annoyed or irritable", "69689-8"),
        Item("7", 0, 3, "feeling afraid as if something awful might happen", "69736-7"),
    ),
    total_low=0,
    total_high=21,
    bands=(
        Band(0, 4, "minimal", 0),
        Band(5, 9, "mild", 1),
        Band(10, 14, "moderate", 2),
        Band(15, 21, "severe", 3),
    ),
    remission_max=4,
    response_drop=0.5,
    rci=ReliableChange(
        sd=3.41,
        reliability=0.83,
        citation=(
            "approximate: test-retest ICC 0.83 (Spitzer 2006) with the general-population SD "
            "3.41 (Lowe 2008, Med Care 46:266-274) gives 3.9 points; NHS Talking Therapies "
            "applies a change of >= 4 points."
        ),
        practice_points=4,
    ),
    raters=_SELF,
    loinc_total="70274-6",
    loinc_panel="69737-5",
    aliases=("GAD-7", "GAD7"),
    citation=(
        "Spitzer RL, Kroenke K, Williams JBW, Lowe B 2006 (Arch Intern Med 166:1092-1097): "
        "7 items 0-3, total 0-21; cut-points 5 mild, 10 moderate, 15 severe. Remission < 5 "
        "(below the mild cut-point) is a common convention, approximate; response >= 50 % drop."
    ),
)

PHQ_FAMILY: tuple[Instrument, ...] = (PHQ9, PHQ8, PHQ2, GAD7)
