"""Lab values: status against the analyte's cut-offs and the patient's own baseline.

Where the catalogue has validated cut-offs (:mod:`schemas.analytes`: CRP,
hs-CRP, lithium, valproate, clozapine) the value's status comes from them.
IL-6 has none (CLINICAL.md), so its status says how far the value lies from
the patient's own earlier values (robust z, :mod:`streams.robust`). Every
view reports the baseline and the deviation where there are enough earlier
values.

>>> from streams.config import CoreConfig
>>> il6, config = LabCourse("il6"), CoreConfig()
>>> [il6.update(v, config).status for v in (2.0, 2.4, 2.2)]
['baseline forming', 'baseline forming', 'baseline forming']
>>> view = il6.update(9.0, config)
>>> view.status, view.severity, view.baseline
('above own baseline', 'info', 2.2)
>>> LabCourse("lithium").update(1.6, config).status
'toxic'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.analytes import get_analyte
from streams.config import CoreConfig
from streams.robust import RobustBaseline


@dataclass(frozen=True, slots=True)
class LabView:
    """One lab value read against cut-offs and the patient's baseline."""

    analyte: str
    value: float
    unit: str
    status: str | None
    severity: str | None
    baseline: float | None
    deviation: float | None


@dataclass(slots=True)
class LabCourse:
    """Earlier values of one analyte; ``update`` reads a new value and keeps it.

    >>> from streams.config import CoreConfig
    >>> course = LabCourse("valproate")
    >>> view = course.update(130.0, CoreConfig())
    >>> view.status, view.severity, course.values
    ('above alert level', 'warning', [130.0])
    """

    analyte: str
    values: list[float] = field(default_factory=list)

    def update(self, value: float, config: CoreConfig) -> LabView:
        """Read ``value`` (canonical unit) and add it to the patient's baseline window."""
        view = self.view_late(value, config)
        self.values.append(value)
        del self.values[: -config.labs.baseline_values]
        return view

    def view_late(self, value: float, config: CoreConfig) -> LabView:
        """Read ``value`` without adding it to the baseline (a late result)."""
        analyte = get_analyte(self.analyte)
        scale_floor = 1e-9
        if self.values:
            scale_floor = max(scale_floor, config.labs.min_scale_fraction * abs(_mid(self.values)))
        base = RobustBaseline.of(self.values, config.labs.min_baseline_values, scale_floor)
        deviation = base.z(value) if base is not None else None
        status = analyte.status(value)
        if status is not None:
            label: str | None = status.label
            severity: str | None = status.severity
        elif deviation is None:
            label, severity = "baseline forming", None
        elif deviation >= config.labs.deviation_z:
            label, severity = "above own baseline", "info"
        elif deviation <= -config.labs.deviation_z:
            label, severity = "below own baseline", "info"
        else:
            label, severity = "within own baseline", "ok"
        return LabView(
            analyte=analyte.id,
            value=value,
            unit=analyte.unit,
            status=label,
            severity=severity,
            baseline=base.median if base is not None else None,
            deviation=deviation,
        )

    def clone(self) -> LabCourse:
        """An independent copy."""
        return LabCourse(self.analyte, list(self.values))


def _mid(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
