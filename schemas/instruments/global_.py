"""Clinical Global Impression scales: CGI-S (severity) and CGI-C (change).

Both are a single clinician rating from 1 to 7 (Guy 1976). CGI-S bands are
its anchors. CGI-C rates change since baseline, not severity, so it has no
severity bands; its anchors are in :data:`CGI_C_ANCHORS`. Csernansky 2002
counts CGI-C >= 6 ("much worse" or worse) as a schizophrenia relapse.

>>> CGI_S.band(4).label
'moderately ill'
>>> CGI_C_ANCHORS[6]
'much worse'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.instruments.model import Band, Instrument, Item

_GUY_1976 = "Guy W 1976, ECDEU Assessment Manual for Psychopharmacology (DHEW Publ ADM 76-338)"

_SEVERITY_ANCHORS = (
    "normal, not at all ill",
    "borderline mentally ill",
    "mildly ill",
    "moderately ill",
    "markedly ill",
    "severely ill",
    "among the most extremely ill",
)

#: CGI-C (CGI-Improvement) anchors by rating (Guy 1976).
CGI_C_ANCHORS: Mapping[int, str] = MappingProxyType(
    {
        1: "very much improved",
        2: "much improved",
        3: "minimally improved",
        4: "no change",
        5: "minimally worse",
        6: "much worse",
        7: "very much worse",
    }
)

CGI_S = Instrument(
    id="cgi_s",
    name="CGI-S",
    items=(Item("1", 1, 7, "severity of illness"),),
    total_low=1,
    total_high=7,
    bands=tuple(
        Band(rating, rating, label, rating - 1)
        for rating, label in enumerate(_SEVERITY_ANCHORS, start=1)
    ),
    remission_max=None,
    response_drop=None,
    rci=None,
    raters=frozenset({"clinician"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("CGI-S", "CGIS", "CGI-Severity", "CGI Severity of Illness"),
    citation=(
        f"{_GUY_1976}: one rating 1-7, 1 normal, 2 borderline, 3 mildly, 4 moderately, "
        "5 markedly, 6 severely ill, 7 among the most extremely ill."
    ),
)

CGI_C = Instrument(
    id="cgi_c",
    name="CGI-C",
    items=(Item("1", 1, 7, "global change since baseline"),),
    total_low=1,
    total_high=7,
    bands=(),  # a change scale: its anchors are not severity bands
    remission_max=None,
    response_drop=None,
    rci=None,
    raters=frozenset({"clinician"}),
    loinc_total=None,  # no LOINC code confirmed
    loinc_panel=None,
    aliases=("CGI-C", "CGI-I", "CGI-Change", "CGI-Improvement", "CGIC", "CGII"),
    citation=(
        f"{_GUY_1976}: one rating 1-7 of change since baseline, 1 very much improved ... "
        "4 no change ... 7 very much worse. CGI-C >= 6 is a relapse criterion in "
        "Csernansky 2002 (N Engl J Med 346:16-22)."
    ),
)

GLOBAL_SCALES: tuple[Instrument, ...] = (CGI_S, CGI_C)
