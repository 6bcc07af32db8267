"""PANSS, the Positive and Negative Syndrome Scale.

Thirty items each rated 1 (absent) to 7 (extreme): positive P1-P7, negative
N1-N7 and general psychopathology G1-G16 (Kay, Fiszbein & Opler 1987).
Remission (Andreasen 2005) is item-based: P1, P2, P3, N1, N4, N6, G5 and G9
all <= 3 (mild or less), sustained for six months; the catalogue checks the
severity part (:meth:`~schemas.instruments.model.Instrument.meets_remission_severity`),
the course tracker the duration.

>>> items = {key: 1 for key in PANSS.item_keys} | {"P1": 5, "N1": 4, "G6": 3}
>>> PANSS.score(items, None), PANSS.subscales(items)
(39, {'positive': 11, 'negative': 10, 'general': 18})
>>> PANSS.meets_remission_severity(items)
False
"""

from __future__ import annotations

from schemas.instruments.model import Band, Instrument, Item
from schemas.instruments.reliable_change import ReliableChange

_POSITIVE = (
    "delusions",
    "conceptual disorganisation",
    "hallucinatory behaviour",
    "excitement",
    "grandiosity",
    "suspiciousness/persecution",
    "hostility",
)
_NEGATIVE = (
    "blunted affect",
    "emotional withdrawal",
    "poor rapport",
    "passive/apathetic social withdrawal",
    "difficulty in abstract thinking",
    "lack of spontaneity and flow of conversation",
    "stereotyped thinking",
)
_GENERAL = (
    "somatic concern",
    "anxiety",
    "guilt feelings",
    "tension",
    "mannerisms and posturing",
    "depression",
    "motor retardation",
    "uncooperativeness",
    "unusual thought content",
    "disorientation",
    "poor attention",
    "lack of judgement and insight",
    "disturbance of volition",
    "poor impulse control",
    "preoccupation",
    "active social avoidance",
)


def _group(prefix: str, labels: tuple[str, ...]) -> tuple[Item, ...]:
    return tuple(
        Item(f"{prefix}{number}", 1, 7, label) for number, label in enumerate(labels, start=1)
    )


_ITEMS = _group("P", _POSITIVE) + _group("N", _NEGATIVE) + _group("G", _GENERAL)


def _keys(prefix: str) -> tuple[str, ...]:
    return tuple(item.key for item in _ITEMS if item.key.startswith(prefix))


#: Andreasen 2005 remission items: delusions (P1), conceptual disorganisation
#: (P2), hallucinatory behaviour (P3), blunted affect (N1), social withdrawal
#: (N4), lack of spontaneity (N6), mannerisms (G5), unusual thought content (G9).
REMISSION_ITEMS: tuple[str, ...] = ("P1", "P2", "P3", "N1", "N4", "N6", "G5", "G9")

PANSS = Instrument(
    id="panss",
    name="PANSS",
    items=_ITEMS,
    total_low=30,
    total_high=210,
    bands=(
        Band(30, 57, "less than mildly ill", 0),
        Band(58, 74, "mildly ill", 1),
        Band(75, 94, "moderately ill", 2),
        Band(95, 115, "markedly ill", 3),
        Band(116, 210, "severely ill", 4),
    ),
    remission_max=None,  # remission is item-based: see remission_items
    response_drop=0.5,
    rci=ReliableChange(
        sd=18.0,
        reliability=0.78,
        citation=(
            "approximate: SD 18 and r 0.78 are chosen to reproduce the standard error of "
            "measurement of the PANSS total in CATIE (1.96 SEM = 16.5 points, so SEM ~ 8.4; "
            "Hermes 2012, J Clin Psychiatry 73:526-532); threshold about 23 points."
        ),
    ),
    raters=frozenset({"clinician"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("PANSS", "PANSS-30", "Positive and Negative Syndrome Scale"),
    citation=(
        "Kay SR, Fiszbein A, Opler LA 1987 (Schizophr Bull 13:261-276): 30 items 1-7, total "
        "30-210; subscales positive P1-P7 (7-49), negative N1-N7 (7-49), general G1-G16 "
        "(16-112). Bands follow the CGI-S equivalents of Leucht 2005 (Schizophr Res 79:231-238: "
        "58 mildly, 75 moderately, 95 markedly, 116 severely ill; approximate, not diagnostic "
        "cut-offs). Remission: P1, P2, P3, N1, N4, N6, G5, G9 all <= 3 for >= 6 months "
        "(Andreasen 2005, Am J Psychiatry 162:441-449). Response: >= 50 % drop after "
        "subtracting the 30 floor points (Leucht 2009; Obermeier 2010). Relapse (Csernansky "
        "2002) includes a total rise >= 25 %, or >= 10 points when baseline <= 40."
    ),
    subscale_items=(
        ("positive", _keys("P")),
        ("negative", _keys("N")),
        ("general", _keys("G")),
    ),
    remission_items=REMISSION_ITEMS,
    remission_item_max=3,
)

PSYCHOSIS_SCALES: tuple[Instrument, ...] = (PANSS,)
