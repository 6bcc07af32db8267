"""Rules on the course of illness, evaluated on ratings in event-time order.

* :class:`ReliableDeterioration`: worse than baseline by a reliable change
  (Jacobson & Truax 1991; NHS Talking Therapies points); closes when the
  change index falls below ``deterioration_close_z``;
* :class:`SeverityBand`: entering a moderate or worse band (PHQ-9, GAD-7,
  MADRS, HAM-D 17, QIDS-SR16; bands from the instrument catalogue): info,
  warning from a band named severe; closes below moderate;
* :class:`ManiaRule`: YMRS 12-20 hypomania (warning), >= 21 mania (urgent);
  closes below 12 (Young 1978);
* :class:`RelapseRule`: a course entering relapse or recurrence (Frank 1991,
  Moeller 2011, Csernansky 2002); closes when the course leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.instruments import get_instrument
from streams.config import CoreConfig
from streams.course import EPISODE_STATUSES, CourseView
from streams.rules.base import AlertBook, AlertChange, Severity, Trigger


@dataclass(slots=True)
class ReliableDeterioration:
    """Reliable deterioration from baseline on any instrument with RCI parameters.

    >>> from datetime import UTC, datetime
    >>> from streams.course import InstrumentCourse
    >>> rule, course, config = ReliableDeterioration(), InstrumentCourse("phq9"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [len(rule.evaluate(course.update(v, None, n, config), t, config))
    ...  for n, v in enumerate([8, 15, 16, 9])]
    [0, 1, 0, 1]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "reliable_deterioration"

    def evaluate(self, view: CourseView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the instrument's alert on after one rating."""
        if view.rci is None:
            return []
        deteriorated = view.reliable_change == "deteriorated"
        return self.book.move(
            self.rule,
            view.instrument,
            trigger,
            config.alerts.cooldown_hours,
            raised="warning" if deteriorated else None,
            holds=view.rci >= config.alerts.deterioration_close_z,
            message=(
                f"{get_instrument(view.instrument).name} {view.value} is reliably worse than "
                f"baseline {view.baseline} (change {view.change:+d}, RCI {view.rci:.2f})"
                if deteriorated
                else f"{get_instrument(view.instrument).name} {view.value} is no longer reliably "
                f"worse than baseline {view.baseline}"
            ),
            evidence={
                "instrument": view.instrument,
                "value": view.value,
                "baseline": view.baseline,
                "rci": round(view.rci, 3),
            },
        )

    def clone(self) -> ReliableDeterioration:
        """An independent copy."""
        return ReliableDeterioration(self.book.clone())


def moderate_rank(instrument: str) -> int | None:
    """Rank of the first band whose label begins with "moderate", if the scale has one.

    >>> moderate_rank("phq9"), moderate_rank("ymrs")
    (2, None)
    """
    for band in get_instrument(instrument).bands:
        if band.label.startswith("moderate"):
            return band.rank
    return None


@dataclass(slots=True)
class SeverityBand:
    """Entering a moderate or worse severity band.

    >>> from datetime import UTC, datetime
    >>> from streams.course import InstrumentCourse
    >>> rule, course, config = SeverityBand(), InstrumentCourse("gad7"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [[(c.status, c.severity) for c in rule.evaluate(course.update(v, None, n, config), t,
    ...   config)] for n, v in enumerate([6, 11, 16, 12, 4])]
    [[], [('open', 'info')], [('open', 'warning')], [], [('closed', 'warning')]]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "severity_band"

    def evaluate(self, view: CourseView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the instrument's alert on after one rating."""
        if view.instrument not in config.alerts.band_instruments or view.band_rank is None:
            return []
        entry = moderate_rank(view.instrument)
        if entry is None:
            return []
        inside = view.band_rank >= entry
        severity: Severity = "warning" if "severe" in (view.band or "") else "info"
        name = get_instrument(view.instrument).name
        return self.book.move(
            self.rule,
            view.instrument,
            trigger,
            config.alerts.cooldown_hours,
            raised=severity if inside else None,
            holds=inside,
            message=f"{name} {view.value}: {view.band}",
            evidence={"instrument": view.instrument, "value": view.value, "band": view.band},
        )

    def clone(self) -> SeverityBand:
        """An independent copy."""
        return SeverityBand(self.book.clone())


@dataclass(slots=True)
class ManiaRule:
    """YMRS hypomania (12-20, warning) and mania (>= 21, urgent).

    >>> from datetime import UTC, datetime
    >>> from streams.course import InstrumentCourse
    >>> rule, course, config = ManiaRule(), InstrumentCourse("ymrs"), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [[(c.status, c.severity) for c in rule.evaluate(course.update(v, None, n, config), t,
    ...   config)] for n, v in enumerate([8, 14, 25, 15, 6])]
    [[], [('open', 'warning')], [('open', 'urgent')], [], [('closed', 'urgent')]]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "ymrs_mania"

    def evaluate(self, view: CourseView, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the YMRS alert on after one rating."""
        if view.instrument != "ymrs":
            return []
        alerts = config.alerts
        raised: Severity | None = None
        what = "no mania"
        if view.value >= alerts.ymrs_mania_min:
            raised, what = "urgent", "mania"
        elif view.value >= alerts.ymrs_hypomania_min:
            raised, what = "warning", "hypomania"
        return self.book.move(
            self.rule,
            "ymrs",
            trigger,
            alerts.cooldown_hours,
            raised=raised,
            holds=raised is not None,
            message=f"YMRS {view.value}: {what}",
            evidence={"value": view.value},
        )

    def clone(self) -> ManiaRule:
        """An independent copy."""
        return ManiaRule(self.book.clone())


@dataclass(slots=True)
class RelapseRule:
    """A course in relapse or recurrence.

    >>> from datetime import UTC, datetime
    >>> rule, config = RelapseRule(), CoreConfig()
    >>> t = Trigger("p-1", datetime(2026, 3, 2, tzinfo=UTC), "e1")
    >>> [(c.status, c.message) for c in rule.evaluate("panss", "relapse", t, config)]
    [('open', 'PANSS course: relapse')]
    >>> [c.status for c in rule.evaluate("panss", "stable", t, config)]
    ['closed']
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "relapse"

    def evaluate(
        self, instrument: str, status: str | None, trigger: Trigger, config: CoreConfig
    ) -> list[AlertChange]:
        """Move the instrument's relapse alert on after its course status changed."""
        episode = status in EPISODE_STATUSES
        return self.book.move(
            self.rule,
            instrument,
            trigger,
            config.alerts.cooldown_hours,
            raised="warning" if episode else None,
            holds=episode,
            message=f"{get_instrument(instrument).name} course: {status}",
            evidence={"instrument": instrument, "status": status},
        )

    def clone(self) -> RelapseRule:
        """An independent copy."""
        return RelapseRule(self.book.clone())
