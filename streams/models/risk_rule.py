"""The ``relapse_risk`` alert: sustained risk above a threshold, with hysteresis.

One day above a threshold is noise; care teams complain of alert fatigue
more than of anything else. The alert therefore opens (severity warning) after
``alert_days`` consecutive daily assessments at or above ``alert_threshold``
and closes after ``close_days`` consecutive assessments below the lower
``close_threshold``. The threshold is chosen on training cohorts to keep the
alert burden within a budget per patient-month (``docs/model-card.md``).

:func:`alert_spans` applies the same rule to a whole series at once; the
evaluation uses it to sweep thresholds, and a test holds it equal to the
alerts the core raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from streams.config import CoreConfig, RiskConfig
from streams.models.snapshot import Contribution, ModelSnapshot
from streams.rules.base import AlertBook, AlertChange, Scalar, Trigger

#: Contributions named in an alert's message and evidence.
TOP_IN_ALERT = 3


def streaks(
    above: int, below: int, score: float, threshold: float, close: float
) -> tuple[int, int]:
    """The consecutive-day counts at or above ``threshold`` and below ``close`` after ``score``.

    >>> streaks(1, 0, 0.3, threshold=0.2, close=0.1), streaks(1, 0, 0.15, threshold=0.2, close=0.1)
    ((2, 0), (0, 0))
    """
    return (above + 1 if score >= threshold else 0), (below + 1 if score < close else 0)


@dataclass(slots=True)
class RiskAlert:
    """The ``relapse_risk`` alert of one patient; ``observe`` moves it on by one assessment.

    >>> from datetime import UTC, date, datetime, timedelta
    >>> from streams.config import CoreConfig, RiskConfig
    >>> config = CoreConfig(risk=RiskConfig(alert_threshold=0.3, close_threshold=0.2,
    ...                                     alert_days=2, close_days=2))
    >>> model, rule = ModelSnapshot.initial(["a"]), RiskAlert()
    >>> def observe(n, p):
    ...     day = date(2026, 3, 1) + timedelta(days=n)
    ...     end = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=n)
    ...     return [c.status for c in rule.observe(p, day, end, "p-1", model, [], config)]
    >>> [observe(n, p) for n, p in enumerate([0.4, 0.1, 0.4, 0.35, 0.25, 0.1, 0.1, 0.5])]
    [[], [], [], ['open'], [], [], ['closed'], []]
    """

    book: AlertBook = field(default_factory=AlertBook)
    above: int = 0
    below: int = 0
    rule: str = "relapse_risk"

    def observe(
        self,
        probability: float,
        day: date,
        end: datetime,
        patient_id: str,
        model: ModelSnapshot,
        contributions: Sequence[Contribution],
        config: CoreConfig,
    ) -> list[AlertChange]:
        """Fold in one day's assessment (``contributions`` largest first); the alert changes."""
        risk = config.risk
        self.above, self.below = streaks(
            self.above, self.below, probability, risk.alert_threshold, risk.close_threshold
        )
        raised = self.above >= risk.alert_days
        top = [c for c in contributions if c[2] != 0][:TOP_IN_ALERT]
        named = ", ".join(f"{name} ({c:+.2f})" for name, _, c in top) or "none"
        if raised:
            message = (
                f"relapse risk {probability:.2f} at or above {risk.alert_threshold:g} on "
                f"{self.above} consecutive days ({model.name} v{model.version}, "
                f"{model.horizon_days}-day horizon); largest contributions: {named}"
            )
        else:
            message = (
                f"relapse risk {probability:.2f} below {risk.close_threshold:g} on "
                f"{self.below} consecutive days ({model.name} v{model.version})"
            )
        evidence: dict[str, Scalar] = {
            "day": day.isoformat(),
            "probability": probability,
            "threshold": risk.alert_threshold,
            "close_threshold": risk.close_threshold,
            "days_above": self.above,
            "model_name": model.name,
            "model_version": model.version,
        }
        for rank, (name, value, contribution) in enumerate(top, start=1):
            evidence[f"feature_{rank}"] = name
            evidence[f"value_{rank}"] = value
            evidence[f"contribution_{rank}"] = round(contribution, 4)
        return self.book.move(
            self.rule,
            "risk",
            Trigger(patient_id, end, f"day:{day.isoformat()}"),
            config.alerts.cooldown_hours,
            raised="warning" if raised else None,
            holds=self.below < risk.close_days,
            message=message,
            evidence=evidence,
        )

    def clone(self) -> RiskAlert:
        """An independent copy."""
        return RiskAlert(self.book.clone(), self.above, self.below)


def alert_spans(
    scores: Sequence[float],
    ends: Sequence[float],
    risk: RiskConfig,
    *,
    threshold: float | None = None,
    close_threshold: float | None = None,
    cooldown_hours: float = 24.0,
) -> list[tuple[int, int | None]]:
    """When the ``relapse_risk`` rule would open and close over one patient's daily series.

    ``scores[i]`` is the assessment of the day ending at ``ends[i]`` (epoch
    seconds). Returns ``(open index, close index or None)`` per alert, as
    :class:`RiskAlert` with an :class:`~streams.rules.base.AlertBook` would.
    ``threshold``/``close_threshold`` override the configured ones (the
    evaluation sweeps them; the close threshold keeps its ratio to the
    threshold unless given).

    >>> risk = RiskConfig(alert_threshold=0.3, close_threshold=0.2, alert_days=2, close_days=2)
    >>> ends = [86_400.0 * n for n in range(8)]
    >>> alert_spans([0.4, 0.1, 0.4, 0.35, 0.25, 0.1, 0.1, 0.5], ends, risk)
    [(3, 6)]
    """
    high = risk.alert_threshold if threshold is None else threshold
    if close_threshold is not None:
        low = close_threshold
    else:
        low = high * risk.close_threshold / risk.alert_threshold
    spans: list[tuple[int, int | None]] = []
    above = below = 0
    opened: int | None = None
    closed_at: float | None = None
    cooldown = cooldown_hours * 3600
    for i, (score, end) in enumerate(zip(scores, ends, strict=True)):
        above, below = streaks(above, below, score, high, low)
        raised = above >= risk.alert_days
        if opened is not None:
            if not raised and below >= risk.close_days:
                spans.append((opened, i))
                opened, closed_at = None, end
        elif raised and (closed_at is None or end - closed_at >= cooldown):
            opened = i
    if opened is not None:
        spans.append((opened, None))
    return spans
