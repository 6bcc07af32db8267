"""The analytes psymon accepts, with their units, plausible ranges and cut-offs.

Sources
-------
* Osimo EF, Baxter LJ, Lewis G, Jones PB, Khandaker GM (2019). Prevalence of
  low-grade inflammation in depression: a systematic review and meta-analysis
  of CRP levels. Psychol Med 49:1958-1970. CRP > 3 mg/L in about 27 % of
  depressed patients.
* Pearson TA, Mensah GA, Alexander RW et al. (2003). Markers of inflammation
  and cardiovascular disease: CDC/AHA scientific statement. Circulation
  107:499-511. hs-CRP < 1 mg/L low, 1-3 average, > 3 high relative risk;
  > 10 mg/L: repeat and look for a non-cardiovascular (infectious,
  inflammatory) cause. Ridker PM (2003), Circulation 107:363-369, same bands.
* Raison CL, Rutherford RE, Woolwine BJ et al. (2013). A randomized controlled
  trial of the TNF antagonist infliximab for treatment-resistant depression.
  JAMA Psychiatry 70:31-41. Benefit only with baseline hs-CRP > 5 mg/L.
* Dowlati Y, Herrmann N, Swardfager W et al. (2010). A meta-analysis of
  cytokines in major depression. Biol Psychiatry 67:446-457. IL-6 higher on
  average in depression; no validated individual cut-off.
* NICE CG185 (2014, updated 2023). Bipolar disorder: assessment and
  management (lithium recommendations): levels 12 h after the dose; aim for
  0.6-0.8 mmol/L at first, 0.8-1.0 mmol/L after a relapse on lithium.
* Malhi GS, Gessler D, Outhred T (2017). The use of lithium for the treatment
  of bipolar disorder: recommendations from clinical practice guidelines.
  J Affect Disord 217:266-280. Guideline maintenance targets lie within
  0.6-1.2 mmol/L. Above 1.5 mmol/L is taken as toxicity (CLINICAL.md; the
  usual laboratory toxic limit).
* Hiemke C, Bergemann N, Clement HW et al. (2018). Consensus guidelines for
  therapeutic drug monitoring in neuropsychopharmacology: update 2017
  (AGNP). Pharmacopsychiatry 51:9-62. Valproic acid 50-100 ug/mL (laboratory
  alert level 120 ug/mL: check against the paper's table); clozapine
  350-600 ng/mL (alert level 1000 ng/mL), >= 350 ng/mL the response
  threshold in treatment-resistant schizophrenia.

LOINC codes are the Serum-or-Plasma, mass- or substance-concentration terms
(verified against laboratory test catalogues: Mayo Clinic Laboratories
reports clozapine as 6896-5).

>>> sorted(ANALYTES)
['clozapine', 'crp', 'hs_crp', 'il6', 'lithium', 'valproate']
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.analytes.model import Analyte, AnalyteStatus, Band

_PEARSON = "Pearson 2003"
_LITHIUM_SOURCES = "NICE CG185; Malhi 2017"

#: CRP mass concentration: UCUM mg/L; mg/dL (US reports) x 10; ug/mL = mg/L.
_CRP_UNITS: tuple[tuple[str, float], ...] = (("mg/L", 1.0), ("mg/dL", 10.0), ("ug/mL", 1.0))

_CRP_NORMAL = Band(
    0.0,
    True,
    AnalyteStatus(
        "normal",
        "ok",
        f"<= 3 mg/L: not raised (CDC/AHA: < 1 low, 1-3 average cardiovascular risk; {_PEARSON})",
    ),
)

_LOW_GRADE_INFLAMMATION = Band(
    3.0,
    False,
    AnalyteStatus(
        "low-grade inflammation",
        "info",
        "> 3 mg/L: low-grade inflammation, found in 27 % of depressed patients "
        f"(Osimo 2019; CDC/AHA high-risk category, {_PEARSON})",
    ),
)

#: CRP > 10 mg/L reads as an acute-phase response first (Pearson 2003).
_ACUTE_PHASE = Band(
    10.0,
    False,
    AnalyteStatus(
        "acute-phase range",
        "warning",
        "> 10 mg/L: acute-phase response; repeat and look for infection or another "
        f"inflammatory cause before reading it as low-grade inflammation ({_PEARSON})",
    ),
)

CRP = Analyte(
    id="crp",
    name="CRP",
    loinc="1988-5",
    loinc_codes=("1988-5",),
    unit="mg/L",
    plausible_low=0.0,
    plausible_high=1000.0,
    citation=f"Osimo 2019; {_PEARSON} (CDC/AHA); Ridker 2003",
    aliases=("c-reactive protein", "c reactive protein"),
    conversions=_CRP_UNITS,
    bands=(
        _CRP_NORMAL,
        _LOW_GRADE_INFLAMMATION,
        _ACUTE_PHASE,
    ),
)

HS_CRP = Analyte(
    id="hs_crp",
    name="hs-CRP",
    loinc="30522-7",
    loinc_codes=("30522-7",),
    unit="mg/L",
    plausible_low=0.0,
    plausible_high=1000.0,
    citation=f"Raison 2013; Osimo 2019; {_PEARSON} (CDC/AHA); Ridker 2003",
    aliases=("hscrp", "high-sensitivity crp", "high sensitivity c-reactive protein", "crp hs"),
    conversions=_CRP_UNITS,
    bands=(
        _CRP_NORMAL,
        _LOW_GRADE_INFLAMMATION,
        Band(
            5.0,
            False,
            AnalyteStatus(
                "high inflammation",
                "info",
                "> 5 mg/L: the inflammation level at which infliximab helped "
                "treatment-resistant depression (Raison 2013)",
            ),
        ),
        _ACUTE_PHASE,
    ),
)

IL6 = Analyte(
    id="il6",
    name="IL-6",
    loinc="26881-3",
    loinc_codes=("26881-3",),
    unit="pg/mL",
    plausible_low=0.0,
    # Cytokine-storm and septic-shock values reach 10^4-10^5 pg/mL; far above is an error.
    plausible_high=1_000_000.0,
    citation="Dowlati 2010 (no validated cut-off: judge against the patient's own baseline)",
    aliases=("interleukin-6", "interleukin 6"),
    conversions=(("pg/mL", 1.0), ("ng/L", 1.0)),
)

LITHIUM = Analyte(
    id="lithium",
    name="lithium",
    loinc="14334-7",
    loinc_codes=("14334-7",),
    unit="mmol/L",
    plausible_low=0.0,
    # Survived overdoses reach ~9 mmol/L; above 10 is a unit or typing error.
    plausible_high=10.0,
    citation=f"{_LITHIUM_SOURCES}; Hiemke 2018",
    aliases=("li", "serum lithium", "lithium level"),
    # Li+ is monovalent, so 1 mEq/L = 1 mmol/L (UCUM spells it meq/L).
    conversions=(("mmol/L", 1.0), ("mEq/L", 1.0)),
    sampling="12 h after the last dose (trough), at steady state",
    bands=(
        Band(
            0.0,
            True,
            AnalyteStatus(
                "subtherapeutic",
                "info",
                "< 0.6 mmol/L: below the maintenance range; check adherence and that the "
                f"sample was a 12 h trough ({_LITHIUM_SOURCES})",
            ),
        ),
        Band(
            0.6,
            True,
            AnalyteStatus(
                "therapeutic",
                "ok",
                "0.6-1.2 mmol/L: maintenance range (NICE CG185 aims for 0.6-0.8 at first, "
                "0.8-1.0 after a relapse on lithium; Malhi 2017)",
            ),
        ),
        Band(
            1.2,
            False,
            AnalyteStatus(
                "above range",
                "warning",
                "> 1.2 mmol/L: above the maintenance range; review the dose and look for "
                f"signs of toxicity ({_LITHIUM_SOURCES})",
            ),
        ),
        Band(
            1.5,
            False,
            AnalyteStatus(
                "toxic",
                "urgent",
                f"> 1.5 mmol/L: lithium toxicity; urgent clinical review ({_LITHIUM_SOURCES})",
            ),
        ),
    ),
)

VALPROATE = Analyte(
    id="valproate",
    name="valproate",
    loinc="4086-5",
    loinc_codes=("4086-5",),
    unit="ug/mL",
    plausible_low=0.0,
    # Fatal and survived overdoses are reported up to ~2000 ug/mL.
    plausible_high=3000.0,
    citation="Hiemke 2018 (AGNP consensus)",
    aliases=("valproic acid", "vpa", "sodium valproate", "divalproex"),
    conversions=(("ug/mL", 1.0), ("mg/L", 1.0)),
    sampling="trough, before the next dose, at steady state",
    bands=(
        Band(
            0.0,
            True,
            AnalyteStatus(
                "subtherapeutic",
                "info",
                "< 50 ug/mL: below the therapeutic reference range (Hiemke 2018)",
            ),
        ),
        Band(
            50.0,
            True,
            AnalyteStatus(
                "therapeutic",
                "ok",
                "50-100 ug/mL: therapeutic reference range (Hiemke 2018, AGNP consensus)",
            ),
        ),
        Band(
            100.0,
            False,
            AnalyteStatus(
                "above range",
                "info",
                "> 100 ug/mL: above the therapeutic reference range (Hiemke 2018)",
            ),
        ),
        # check: AGNP laboratory alert level for valproic acid, Hiemke 2018 table
        # of reference ranges (120 ug/mL); not in CLINICAL.md.
        Band(
            120.0,
            False,
            AnalyteStatus(
                "above alert level",
                "warning",
                "> 120 ug/mL: above the AGNP laboratory alert level; review the dose and "
                "adverse effects (Hiemke 2018)",
            ),
        ),
    ),
)

CLOZAPINE = Analyte(
    id="clozapine",
    name="clozapine",
    loinc="6896-5",
    loinc_codes=("6896-5",),
    unit="ng/mL",
    plausible_low=0.0,
    # Fatal overdoses are reported at a few thousand ng/mL; 20000 leaves room.
    plausible_high=20_000.0,
    citation="Hiemke 2018 (AGNP consensus)",
    aliases=("clozapine level", "serum clozapine"),
    # UK laboratories report mg/L (0.35 mg/L = 350 ng/mL).
    conversions=(("ng/mL", 1.0), ("ug/L", 1.0), ("mg/L", 1000.0), ("ug/mL", 1000.0)),
    sampling="trough, 12 h after the last dose, at steady state",
    bands=(
        Band(
            0.0,
            True,
            AnalyteStatus(
                "subtherapeutic",
                "info",
                "< 350 ng/mL: below the response threshold in treatment-resistant "
                "schizophrenia (Hiemke 2018)",
            ),
        ),
        Band(
            350.0,
            True,
            AnalyteStatus(
                "therapeutic",
                "ok",
                ">= 350 ng/mL: response threshold reached; 350-600 ng/mL is the "
                "therapeutic reference range (Hiemke 2018, AGNP consensus)",
            ),
        ),
        Band(
            600.0,
            False,
            AnalyteStatus(
                "above range",
                "info",
                "> 600 ng/mL: above the therapeutic reference range, below the alert "
                "level (Hiemke 2018)",
            ),
        ),
        Band(
            1000.0,
            False,
            AnalyteStatus(
                "above alert level",
                "warning",
                "> 1000 ng/mL: above the AGNP laboratory alert level; seizure risk rises; "
                "review the dose (Hiemke 2018)",
            ),
        ),
    ),
)

#: Every analyte by id, in catalogue order.
ANALYTES: Mapping[str, Analyte] = MappingProxyType(
    {a.id: a for a in (CRP, HS_CRP, IL6, LITHIUM, VALPROATE, CLOZAPINE)}
)
