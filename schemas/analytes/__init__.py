"""Laboratory analytes: canonical UCUM units, plausible ranges and published cut-offs.

Six analytes of psychiatric monitoring (CLINICAL.md, sources in
:mod:`schemas.analytes.catalogue`):

========== ======= ====== ===================================================
id         LOINC   unit   status bands
========== ======= ====== ===================================================
crp        1988-5  mg/L   <= 3 normal; > 3 low-grade inflammation (Osimo 2019);
                          > 10 acute-phase range (Pearson 2003)
hs_crp     30522-7 mg/L   as CRP, plus > 5 high inflammation (Raison 2013)
il6        26881-3 pg/mL  none validated: judge against the patient's baseline
lithium    14334-7 mmol/L < 0.6 sub; 0.6-1.2 therapeutic; > 1.2 warning;
                          > 1.5 toxic, urgent (NICE CG185; Malhi 2017)
valproate  4086-5  ug/mL  < 50 sub; 50-100 therapeutic; > 100 above range;
                          > 120 above alert level, warning (Hiemke 2018)
clozapine  6896-5  ng/mL  < 350 sub; >= 350 therapeutic; > 600 above range;
                          > 1000 above alert level, warning (Hiemke 2018)
========== ======= ====== ===================================================

Examples
--------
>>> lithium = get_analyte("Li")
>>> value = lithium.to_canonical(1.3, "mEq/L")
>>> value, lithium.unit, lithium.status(value).severity
(1.3, 'mmol/L', 'warning')
>>> analyte_for_loinc("1988-5").name
'CRP'
>>> get_analyte("ferritin")
Traceback (most recent call last):
...
schemas.analytes.model.UnknownAnalyte: unknown analyte 'ferritin'; accepted: crp, hs_crp, il6, lithium, valproate, clozapine (or their names, aliases or LOINC codes)
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from schemas.analytes.catalogue import ANALYTES
from schemas.analytes.model import Analyte, AnalyteStatus, Band, Severity, UnknownAnalyte
from schemas.units import ImplausibleValue, UnitError


def _key(name: str) -> str:
    """Case, spaces, hyphens and underscores folded: ``hs-CRP`` == ``hs_crp``."""
    return name.strip().lower().replace(" ", "").replace("-", "").replace("_", "")


def _index(analytes: Mapping[str, Analyte]) -> Mapping[str, Analyte]:
    index: dict[str, Analyte] = {}
    for analyte in analytes.values():
        for name in (analyte.id, analyte.name, *analyte.aliases, *analyte.loinc_codes):
            key = _key(name)
            if index.setdefault(key, analyte) is not analyte:
                raise ValueError(f"{name!r} names both {index[key].id} and {analyte.id}")
    return MappingProxyType(index)


_BY_NAME = _index(ANALYTES)
_BY_LOINC: Mapping[str, Analyte] = MappingProxyType(
    {code: a for a in ANALYTES.values() for code in a.loinc_codes}
)


def get_analyte(name: str) -> Analyte:
    """The analyte for an id, name, alias or LOINC code (case-insensitive).

    Raises
    ------
    UnknownAnalyte
        If nothing in the catalogue has that name; the message lists the ids.

    Examples
    --------
    >>> get_analyte("HS-CRP").id, get_analyte("valproic acid").id, get_analyte("6896-5").id
    ('hs_crp', 'valproate', 'clozapine')
    """
    analyte = _BY_NAME.get(_key(name)) if isinstance(name, str) else None
    if analyte is None:
        shown = name[:64] if isinstance(name, str) else name
        raise UnknownAnalyte(
            f"unknown analyte {shown!r}; accepted: {', '.join(ANALYTES)} "
            "(or their names, aliases or LOINC codes)"
        )
    return analyte


def analyte_for_loinc(code: str) -> Analyte | None:
    """The analyte a LOINC code stands for, or ``None`` if psymon does not track it.

    >>> analyte_for_loinc(" 14334-7 ").id
    'lithium'
    >>> analyte_for_loinc("2345-7") is None
    True
    """
    return _BY_LOINC.get(code.strip())


__all__ = [
    "ANALYTES",
    "Analyte",
    "AnalyteStatus",
    "Band",
    "ImplausibleValue",
    "Severity",
    "UnitError",
    "UnknownAnalyte",
    "analyte_for_loinc",
    "get_analyte",
]
