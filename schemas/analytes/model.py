"""What an analyte is: identity, canonical unit, plausible range and status bands.

The catalogue itself (which analytes, which cut-offs, from which source) is in
:mod:`schemas.analytes.catalogue`; this module holds the plain, frozen,
picklable data types and the two verbs, :meth:`Analyte.to_canonical` and
:meth:`Analyte.status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.units import ImplausibleValue, factor_table, implausible, lookup_factor, scale

Severity = Literal["ok", "info", "warning", "urgent"]


class UnknownAnalyte(ValueError):
    """An analyte name, alias or LOINC code that is not in the catalogue.

    The message lists the accepted analyte ids.
    """


@dataclass(frozen=True)
class AnalyteStatus:
    """How a canonical value reads against an analyte's published cut-offs.

    Attributes
    ----------
    label
        Short text for people and dashboards, e.g. ``"therapeutic"``.
    severity
        ``ok`` (no action), ``info``, ``warning`` or ``urgent`` (act now).
    rule
        The rule applied, in words, with its source.
    """

    label: str
    severity: Severity
    rule: str


@dataclass(frozen=True)
class Band:
    """One status band: values from ``start`` (included if ``inclusive``) upwards.

    The next band of the analyte ends this one. The first band starts at the
    analyte's plausible low, inclusive.

    >>> b = Band(1.2, False, AnalyteStatus("above range", "warning", "> 1.2 mmol/L"))
    >>> b.admits(1.2), b.admits(1.21)
    (False, True)
    """

    start: float
    inclusive: bool
    status: AnalyteStatus

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies at or above this band's start."""
        return value > self.start or (self.inclusive and value == self.start)


@dataclass(frozen=True, kw_only=True)
class Analyte:
    """A laboratory analyte psymon accepts, with its unit rules and cut-offs.

    Attributes
    ----------
    id
        Stable identifier used in events and tables (``"lithium"``).
    name
        Display name used in messages (``"lithium"``, ``"CRP"``).
    loinc
        The LOINC code psymon writes for this analyte.
    loinc_codes
        Every LOINC code accepted as this analyte (``loinc`` first).
    unit
        Canonical UCUM unit; values are stored in it.
    plausible_low, plausible_high
        Physically plausible range in the canonical unit; anything outside is
        a typing, unit or specimen error and is rejected.
    citation
        Sources of the cut-offs and of the unit rules.
    aliases
        Other names accepted by :func:`schemas.analytes.get_analyte`.
    conversions
        Accepted units with the factor that converts each to ``unit``;
        common spellings (case, ``µ``/``mcg``) are folded automatically.
    bands
        Status bands in ascending order; empty when no cut-off is validated.
    sampling
        When the specimen must be taken for the cut-offs to apply.
    """

    id: str
    name: str
    loinc: str
    loinc_codes: tuple[str, ...]
    unit: str
    plausible_low: float
    plausible_high: float
    citation: str
    aliases: tuple[str, ...] = ()
    conversions: tuple[tuple[str, float], ...] = ()
    bands: tuple[Band, ...] = ()
    sampling: str = ""
    _factors: dict[str, float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        conversions = self.conversions or ((self.unit, 1.0),)
        object.__setattr__(self, "conversions", conversions)
        object.__setattr__(self, "_factors", factor_table(self.name, self.unit, conversions))
        if self.loinc not in self.loinc_codes:
            raise ValueError(f"{self.id}: loinc {self.loinc!r} must be one of loinc_codes")
        starts = [band.start for band in self.bands]
        if starts != sorted(starts):
            raise ValueError(f"{self.id}: bands must be in ascending order of start")

    @property
    def accepted_units(self) -> tuple[str, ...]:
        """The units accepted, as the catalogue writes them (canonical first).

        >>> from schemas.analytes import get_analyte
        >>> get_analyte("crp").accepted_units
        ('mg/L', 'mg/dL', 'ug/mL')
        """
        return tuple(unit for unit, _ in self.conversions)

    @property
    def has_cutoffs(self) -> bool:
        """Whether :meth:`status` can judge a value (IL-6 has no validated cut-off).

        >>> from schemas.analytes import get_analyte
        >>> get_analyte("lithium").has_cutoffs, get_analyte("il6").has_cutoffs
        (True, False)
        """
        return bool(self.bands)

    def to_canonical(self, value: float, unit: str) -> float:
        """``value`` in ``unit`` converted to the canonical unit, range-checked.

        Raises
        ------
        UnitError
            If ``unit`` cannot be converted; the message lists what is accepted.
        ImplausibleValue
            (a ``ValueError``) if the value is not finite or lies outside
            ``[plausible_low, plausible_high]``.

        Examples
        --------
        >>> from schemas.analytes import get_analyte
        >>> crp = get_analyte("crp")
        >>> crp.to_canonical(0.31, "mg/dL")
        3.1
        >>> crp.to_canonical(1.0, "mmol/L")
        Traceback (most recent call last):
        ...
        schemas.units.UnitError: CRP: unit 'mmol/L' cannot be converted; accepted: mg/L, mg/dL, ug/mL (converted to mg/L)
        >>> get_analyte("lithium").to_canonical(12, "mEq/L")
        Traceback (most recent call last):
        ...
        schemas.units.ImplausibleValue: lithium: 12 mEq/L (= 12 mmol/L) is outside the plausible range 0-10 mmol/L; check the value and its unit
        """  # noqa: E501
        factor = self._factors.get(unit)
        if factor is None:
            factor = lookup_factor(
                self._factors,
                unit,
                subject=self.name,
                accepted=self.accepted_units,
                canonical=self.unit,
            )
        canonical = scale(value, factor)
        if self.plausible_low <= canonical <= self.plausible_high:
            return canonical
        raise implausible(
            self.name,
            value,
            unit,
            canonical,
            self.unit,
            self.plausible_low,
            self.plausible_high,
        )

    def status(self, value: float) -> AnalyteStatus | None:
        """The status of a canonical value, or ``None`` where no cut-off exists.

        Raises
        ------
        ImplausibleValue
            If the value is outside the plausible range (it cannot be judged).

        Examples
        --------
        >>> from schemas.analytes import get_analyte
        >>> lithium = get_analyte("lithium")
        >>> lithium.status(1.2).label, lithium.status(1.21).severity
        ('therapeutic', 'warning')
        >>> lithium.status(1.51)
        AnalyteStatus(label='toxic', severity='urgent', rule='> 1.5 mmol/L: lithium toxicity; urgent clinical review (NICE CG185; Malhi 2017)')
        >>> get_analyte("il6").status(4.0) is None
        True
        """  # noqa: E501
        if not (self.plausible_low <= value <= self.plausible_high):
            raise implausible(
                self.name,
                value,
                self.unit,
                value,
                self.unit,
                self.plausible_low,
                self.plausible_high,
            )
        for band in reversed(self.bands):
            if band.admits(value):
                return band.status
        return None

    def describe(self) -> str:
        """One line for people: name, LOINC, unit and accepted units.

        >>> from schemas.analytes import get_analyte
        >>> get_analyte("valproate").describe()
        'valproate (LOINC 4086-5): stored in ug/mL; accepted: ug/mL, mg/L'
        """
        return (
            f"{self.name} (LOINC {', '.join(self.loinc_codes)}): stored in {self.unit}; "
            f"accepted: {', '.join(self.accepted_units)}"
        )


__all__ = [
    "Analyte",
    "AnalyteStatus",
    "Band",
    "ImplausibleValue",
    "Severity",
    "UnknownAnalyte",
]
