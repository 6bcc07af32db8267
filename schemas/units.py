"""Units of measure: canonical UCUM codes, the spellings people send, and conversion.

Every quantity psymon stores is held in one canonical unit written in UCUM
(the Unified Code for Units of Measure, Schadow & McDonald, Regenstrief
Institute; the unit system FHIR and LOINC use). Labs and devices send other
units and other spellings of the same unit (``mg/dl`` for ``mg/dL``,
``mEq/L`` for ``mmol/L`` of a monovalent ion, ``mcg/mL`` or ``µg/mL`` for
``ug/mL``), so each catalogue entry (:mod:`schemas.analytes`,
:mod:`schemas.wearables`) lists the units it accepts with the factor to its
canonical unit, and this module turns that list into a lookup table.

Conversion is on the hot path (every wearable sample), so it is one dict
lookup and one multiplication; spelling normalisation runs only when the exact
string is not in the table. A converted value is rounded to 9 decimals so that
0.33 mg/dL is exactly 3.3 mg/L and 4.1 h exactly 246 min, and a value at a
rule's edge is judged as the lab meant it (in binary floating point
``0.33 * 10`` is ``3.3000000000000003`` and ``4.1 * 60`` is ``245.99999999999997``).

>>> table = factor_table("CRP", "mg/L", (("mg/L", 1.0), ("mg/dL", 10.0)))
>>> lookup_factor(table, "mg/dl", subject="CRP", accepted=("mg/L", "mg/dL"), canonical="mg/L")
10.0
>>> scale(0.33, 10.0), scale(4.1, 60.0)
(3.3, 246.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

#: Decimals kept after a unit conversion (see the module docstring).
CONVERSION_DECIMALS = 9


class UnitError(ValueError):
    """A unit that cannot be converted to the canonical unit of a quantity.

    The message names the quantity, the unit given and the units accepted.
    """


class ImplausibleValue(ValueError):
    """A value outside the physically plausible range of a quantity.

    Such a value is a typing, unit or device error, never a measurement; the
    message names the quantity, the value and the plausible range.
    """


def unit_key(unit: str) -> str:
    """The spelling-insensitive key of a unit: case, spaces and micro signs folded.

    ``µ`` (micro sign), ``μ`` (Greek mu) and ``mcg`` all become ``u``, the UCUM
    ASCII prefix; case is folded because no two accepted units differ only by case.

    >>> unit_key(" µg/mL ")
    'ug/ml'
    >>> unit_key("mcg/mL") == unit_key("ug/ml") == unit_key("μg/ML")
    True
    """
    folded = unit.strip().replace(" ", "").lower()
    return folded.replace("\u00b5", "u").replace("\u03bc", "u").replace("mcg", "ug")


def factor_table(
    subject: str, canonical: str, conversions: Iterable[tuple[str, float]]
) -> dict[str, float]:
    """Map each accepted unit, as written and by :func:`unit_key`, to its factor.

    Raises ``ValueError`` if the canonical unit is missing or its factor is not
    1, or if two accepted units fold to the same key with different factors:
    both are mistakes in a catalogue, caught at import.

    >>> table = factor_table("IL-6", "pg/mL", (("pg/mL", 1.0), ("ng/L", 1.0)))
    >>> sorted(table)
    ['ng/L', 'ng/l', 'pg/mL', 'pg/ml']
    """
    table: dict[str, float] = {}
    for unit, factor in conversions:
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"{subject}: factor for unit {unit!r} must be positive, got {factor}")
        for key in (unit, unit_key(unit)):
            if table.get(key, factor) != factor:
                raise ValueError(
                    f"{subject}: unit {unit!r} folds to {key!r}, already accepted "
                    f"with factor {table[key]}, not {factor}"
                )
            table[key] = factor
    if table.get(canonical) != 1.0:
        raise ValueError(f"{subject}: canonical unit {canonical!r} must be accepted with factor 1")
    return table


def lookup_factor(
    table: dict[str, float],
    unit: str,
    *,
    subject: str,
    accepted: tuple[str, ...],
    canonical: str,
) -> float:
    """The factor for ``unit`` from ``table``, by exact spelling or by :func:`unit_key`.

    Raises
    ------
    UnitError
        If the unit is not accepted; the message lists what is.

    >>> lookup_factor({"min": 1.0}, "kg", subject="sleep", accepted=("min",), canonical="min")
    Traceback (most recent call last):
    ...
    schemas.units.UnitError: sleep: unit 'kg' cannot be converted; accepted: min (converted to min)
    """
    factor = table.get(unit)
    if factor is not None:
        return factor
    if isinstance(unit, str):
        factor = table.get(unit_key(unit))
        if factor is not None:
            return factor
    shown = unit[:32] if isinstance(unit, str) else unit
    raise UnitError(
        f"{subject}: unit {shown!r} cannot be converted; "
        f"accepted: {', '.join(accepted)} (converted to {canonical})"
    )


def scale(value: float, factor: float) -> float:
    """``value`` times ``factor``, rounded after a real conversion (module docstring).

    >>> scale(0.33, 10.0), scale(0.1 + 0.2, 1.0)
    (3.3, 0.30000000000000004)
    """
    if factor == 1.0:
        return float(value)
    return round(value * factor, CONVERSION_DECIMALS)


def format_number(value: float) -> str:
    """A number as people write it: no trailing ``.0``, no float noise.

    >>> format_number(10.0), format_number(0.1 + 0.2), format_number(1e6)
    ('10', '0.3', '1000000')
    """
    return f"{value:.10g}"


def implausible(
    subject: str,
    value: float,
    unit: str,
    canonical_value: float,
    canonical_unit: str,
    low: float,
    high: float,
    *,
    scope: str = "",
) -> ImplausibleValue:
    """The error for a value outside the plausible range (returned, for ``raise``).

    >>> str(implausible("lithium", 120, "mEq/L", 120.0, "mmol/L", 0, 10))
    'lithium: 120 mEq/L (= 120 mmol/L) is outside the plausible range 0-10 mmol/L; check the value and its unit'
    >>> str(implausible("steps", -1, "{steps}", -1.0, "{steps}", 0, 1e5, scope="per sample"))
    'steps: -1 {steps} is outside the plausible range 0-100000 {steps} per sample; check the value and its unit'
    """  # noqa: E501
    if not math.isfinite(value):
        return ImplausibleValue(f"{subject}: value {value!r} is not a finite number")
    given = f"{format_number(value)} {unit}"
    if unit != canonical_unit:
        given += f" (= {format_number(canonical_value)} {canonical_unit})"
    where = f" {scope}" if scope else ""
    return ImplausibleValue(
        f"{subject}: {given} is outside the plausible range "
        f"{format_number(low)}-{format_number(high)} {canonical_unit}{where}; "
        "check the value and its unit"
    )
