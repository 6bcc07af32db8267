"""Rules on lab results, evaluated in event-time order.

* :class:`LithiumRange`: above the maintenance range (> 1.2 mmol/L, warning)
  or below it (< 0.6 mmol/L, info, subtherapeutic); each closes when a level
  is back in 0.6-1.2 (NICE CG185; Malhi 2017). Toxicity (> 1.5) is also a
  safety alert raised on arrival (:class:`~streams.rules.safety.LithiumToxicity`);
* :class:`Inflammation`: CRP or hs-CRP > 3 mg/L, low-grade inflammation
  (27 % of depressed patients, Osimo 2019), info; closes at <= 3 mg/L;
* :class:`LabStatusRule`: any other analyte whose catalogue status is not
  ``ok`` (valproate, clozapine: Hiemke 2018), and IL-6 far from the patient's
  own baseline; closes when the status is ``ok`` again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from streams.config import CoreConfig
from streams.labs import LabView
from streams.rules.base import AlertBook, AlertChange, Severity, Trigger

#: Analytes with a rule of their own; LabStatusRule covers the rest.
OWN_RULES = frozenset({"lithium", "crp", "hs_crp"})


@dataclass(slots=True)
class LithiumRange:
    """Lithium outside the maintenance range 0.6-1.2 mmol/L.

    >>> from datetime import UTC, datetime
    >>> from streams.labs import LabCourse
    >>> rule, lab, config = LithiumRange(), LabCourse("lithium"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [[(c.key, c.status) for c in rule.evaluate(lab.update(v, config), t, config)]
    ...  for v in (0.8, 1.3, 1.4, 0.9)]
    [[], [('lithium:high', 'open')], [], [('lithium:high', 'closed')]]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "lithium_range"

    def evaluate(self, view: LabView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the high and low lithium alerts on after one result."""
        if view.analyte != "lithium":
            return []
        alerts = config.alerts
        high, low = view.value > alerts.lithium_high_above, view.value < alerts.lithium_low_below
        evidence: dict[str, float | int | str | bool | None] = {
            "value": view.value,
            "unit": view.unit,
        }
        changes = self.book.move(
            self.rule,
            "lithium:high",
            trigger,
            alerts.cooldown_hours,
            raised="warning" if high else None,
            holds=high,
            message=(
                f"lithium {view.value:g} mmol/L is above the maintenance range "
                f"(> {alerts.lithium_high_above:g})"
                if high
                else f"lithium {view.value:g} mmol/L is no longer above the maintenance range"
            ),
            evidence=evidence,
        )
        changes += self.book.move(
            self.rule,
            "lithium:low",
            trigger,
            alerts.cooldown_hours,
            raised="info" if low else None,
            holds=low,
            message=(
                f"lithium {view.value:g} mmol/L is subtherapeutic (< {alerts.lithium_low_below:g})"
                if low
                else f"lithium {view.value:g} mmol/L is no longer subtherapeutic"
            ),
            evidence=evidence,
        )
        return changes

    def clone(self) -> LithiumRange:
        """An independent copy."""
        return LithiumRange(self.book.clone())


@dataclass(slots=True)
class Inflammation:
    """CRP or hs-CRP above the low-grade-inflammation threshold.

    >>> from datetime import UTC, datetime
    >>> from streams.labs import LabCourse
    >>> rule, lab, config = Inflammation(), LabCourse("crp"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [[c.status for c in rule.evaluate(lab.update(v, config), t, config)]
    ...  for v in (1.0, 4.2, 5.0, 2.0)]
    [[], ['open'], [], ['closed']]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "inflammation"

    def evaluate(self, view: LabView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the analyte's alert on after one result."""
        if view.analyte not in ("crp", "hs_crp"):
            return []
        limit = config.alerts.crp_above
        above = view.value > limit
        return self.book.move(
            self.rule,
            view.analyte,
            trigger,
            config.alerts.cooldown_hours,
            raised="info" if above else None,
            holds=above,
            message=f"{view.analyte.replace('_', '-').upper()} {view.value:g} mg/L "
            + (
                f"is above {limit:g} mg/L: low-grade inflammation (Osimo 2019)"
                if above
                else f"is back at or below {limit:g} mg/L"
            ),
            evidence={"value": view.value, "unit": view.unit, "threshold": limit},
        )

    def clone(self) -> Inflammation:
        """An independent copy."""
        return Inflammation(self.book.clone())


@dataclass(slots=True)
class LabStatusRule:
    """Any other analyte out of its catalogue range, or IL-6 far from the patient's baseline.

    >>> from datetime import UTC, datetime
    >>> from streams.labs import LabCourse
    >>> rule, lab, config = LabStatusRule(), LabCourse("clozapine"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [[(c.status, c.severity) for c in rule.evaluate(lab.update(v, config), t, config)]
    ...  for v in (400.0, 1100.0, 500.0)]
    [[], [('open', 'warning')], [('closed', 'warning')]]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "lab_status"

    def evaluate(self, view: LabView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the analyte's alert on after one result."""
        if view.analyte in OWN_RULES or view.severity is None:
            return []
        flagged = view.severity != "ok"
        return self.book.move(
            self.rule,
            view.analyte,
            trigger,
            config.alerts.cooldown_hours,
            raised=cast(Severity, view.severity) if flagged else None,
            holds=flagged,
            message=f"{view.analyte} {view.value:g} {view.unit}: {view.status}",
            evidence={
                "value": view.value,
                "unit": view.unit,
                "status": view.status,
                "deviation": None if view.deviation is None else round(view.deviation, 3),
            },
        )

    def clone(self) -> LabStatusRule:
        """An independent copy."""
        return LabStatusRule(self.book.clone())
