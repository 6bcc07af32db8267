"""Rules on closed wearable days, evaluated in calendar order as days close.

* :class:`SleepLoss`: sleep below the patient's own baseline by more than
  1.5 robust SD on at least 3 of the last 4 days opens a warning; at most 1
  of the last 4 closes it. Sleep loss precedes manic and depressive relapse
  (Jackson 2003, a review of prodromes in bipolar disorder);
* :class:`DataLoss`: no wearable data for ``data_loss_hours`` at a day's close
  (event time, never a wall clock) opens a warning; data coming back closes
  it. Missing data rose before relapse in Barnett 2018 and Cohen 2023.

Both key their alerts by the day that first triggered them
(``day:YYYY-MM-DD``), so the alert ids do not depend on which event happened
to move the watermark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.config import CoreConfig
from streams.rules.base import AlertBook, AlertChange, Trigger
from streams.wearable_days import ClosedDay


@dataclass(slots=True)
class SleepLoss:
    """Sustained sleep loss against the patient's own baseline.

    >>> from datetime import UTC, date, datetime
    >>> rule, config = SleepLoss(), CoreConfig()
    >>> def day(n, z):
    ...     return ClosedDay(date(2026, 3, n), datetime(2026, 3, n + 1, tzinfo=UTC), True, 1.0,
    ...                      0.0, {"sleep_duration": 300.0}, {"sleep_duration": 420.0},
    ...                      {"sleep_duration": z})
    >>> t = Trigger("p-1", datetime(2026, 3, 9, tzinfo=UTC), "e1")
    >>> [[c.status for c in rule.evaluate(day(n, z), t, config)]
    ...  for n, z in [(1, -2.0), (2, -0.5), (3, -2.5), (4, -1.8), (5, 0.0), (6, 0.1), (7, 0.2)]]
    [[], [], [], ['open'], [], [], ['closed']]
    """

    book: AlertBook = field(default_factory=AlertBook)
    short_days: list[bool] = field(default_factory=list)
    rule: str = "sleep_loss"

    def evaluate(self, day: ClosedDay, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Fold in one closed day and move the alert on."""
        alerts = config.alerts
        deviation = day.deviations.get("sleep_duration")
        self.short_days.append(deviation is not None and deviation < alerts.sleep_loss_z)
        del self.short_days[: -alerts.sleep_loss_window]
        short = sum(self.short_days)
        raised = short >= alerts.sleep_loss_days
        return self.book.move(
            self.rule,
            "sleep",
            Trigger(trigger.patient_id, day.end, f"day:{day.day.isoformat()}"),
            alerts.cooldown_hours,
            raised="warning" if raised else None,
            holds=short > alerts.sleep_loss_close_days,
            message=(
                f"short sleep on {short} of the last {len(self.short_days)} days "
                f"(below the patient's baseline by more than {-alerts.sleep_loss_z:g} robust SD)"
            ),
            evidence={
                "day": day.day.isoformat(),
                "short_days": short,
                "sleep_minutes": day.values.get("sleep_duration"),
                "baseline_minutes": day.baselines.get("sleep_duration"),
            },
        )

    def clone(self) -> SleepLoss:
        """An independent copy."""
        return SleepLoss(self.book.clone(), list(self.short_days))


@dataclass(slots=True)
class DataLoss:
    """No wearable data for a configurable time.

    >>> from datetime import UTC, date, datetime
    >>> rule, config = DataLoss(), CoreConfig()
    >>> def day(n, hours):
    ...     return ClosedDay(date(2026, 3, n), datetime(2026, 3, n + 1, tzinfo=UTC), hours < 24,
    ...                      0.5, hours, {}, {}, {})
    >>> t = Trigger("p-1", datetime(2026, 3, 9, tzinfo=UTC), "e1")
    >>> [[c.status for c in rule.evaluate(day(n, h), t, config)]
    ...  for n, h in [(1, 2.0), (2, 26.0), (3, 50.0), (4, 74.0), (5, 3.0)]]
    [[], [], ['open'], [], ['closed']]
    """

    book: AlertBook = field(default_factory=AlertBook)
    rule: str = "wearable_data_loss"

    def evaluate(self, day: ClosedDay, trigger: Trigger, config: CoreConfig) -> list[AlertChange]:
        """Move the alert on at one day's close."""
        hours = day.hours_without_data
        limit = config.alerts.data_loss_hours
        lost = hours is not None and hours >= limit
        return self.book.move(
            self.rule,
            "wearable",
            Trigger(trigger.patient_id, day.end, f"day:{day.day.isoformat()}"),
            config.alerts.cooldown_hours,
            raised="warning" if lost else None,
            holds=lost,
            message=(
                f"no wearable data for {hours:.0f} hours (limit {limit:g})"
                if lost and hours is not None
                else "wearable data received again"
            ),
            evidence={"day": day.day.isoformat(), "hours_without_data": hours},
        )

    def clone(self) -> DataLoss:
        """An independent copy."""
        return DataLoss(self.book.clone())
