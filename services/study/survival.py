"""Time-to-event statistics of our own: Kaplan-Meier, the log-rank test, a Cox hazard ratio.

* :func:`kaplan_meier`: the product-limit estimator (Kaplan & Meier 1958)
  with Greenwood's variance and the log(-log) 95 % interval (Kalbfleisch &
  Prentice 2002), and the median time to event;
* :func:`logrank`: the two-group log-rank test (Mantel 1966; Peto & Peto
  1972), with the hypergeometric variance for tied times;
* :func:`cox_hazard_ratio`: the hazard ratio of one binary covariate from
  Cox's partial likelihood (Cox 1972; Breslow 1974 for ties), by Newton's
  method, with a Wald 95 % interval.

Times are in days from each patient's time origin; ``event`` is 1 for the
event, 0 for censoring.

>>> times = [5, 8, 8, 12, 20, 20, 25, 30]
>>> events = [1, 1, 0, 1, 1, 0, 0, 0]
>>> curve = kaplan_meier(times, events)
>>> [(t, round(s, 3)) for t, s in zip(curve.times, curve.survival)]  # to the last follow-up
[(0.0, 1.0), (5.0, 0.875), (8.0, 0.75), (12.0, 0.6), (20.0, 0.45), (30.0, 0.45)]
>>> curve.median  # the first time survival is at or below one half
20.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class SurvivalCurve:
    """A Kaplan-Meier curve: survival just after each event time, with its 95 % band.

    When follow-up goes on after the last event, a last step with no event
    marks the end of follow-up.
    """

    times: tuple[float, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    n: int
    total_events: int
    median: float | None

    def rows(self, group: str) -> list[dict[str, object]]:
        """The curve as table rows (one per step)."""
        return [
            {
                "group": group,
                "time_days": t,
                "survival": round(s, 6),
                "lower_95": round(lo, 6),
                "upper_95": round(hi, 6),
                "at_risk": r,
                "events": d,
            }
            for t, s, lo, hi, r, d in zip(
                self.times,
                self.survival,
                self.lower,
                self.upper,
                self.at_risk,
                self.events,
                strict=True,
            )
        ]


def _check(times: Sequence[float], events: Sequence[int]) -> None:
    if len(times) != len(events):
        raise ValueError(f"times has {len(times)} entries but events has {len(events)}")
    for t in times:
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"time {t!r} is not accepted; accepted: finite times >= 0 (days)")
    for e in events:
        if e not in (0, 1):
            raise ValueError(f"event {e!r} is not accepted; accepted: 1 (event) or 0 (censored)")


def kaplan_meier(times: Sequence[float], events: Sequence[int]) -> SurvivalCurve:
    """The Kaplan-Meier estimate of survival (free of the event) over time."""
    _check(times, events)
    pairs = sorted(zip((float(t) for t in times), events, strict=True))
    n = len(pairs)
    out_t, out_s, out_lo, out_hi, out_r, out_d = [0.0], [1.0], [1.0], [1.0], [n], [0]
    survival, greenwood, at_risk, i = 1.0, 0.0, n, 0
    median = None
    while i < n:
        t = pairs[i][0]
        deaths = leaving = 0
        while i < n and pairs[i][0] == t:
            deaths += pairs[i][1]
            leaving += 1
            i += 1
        if deaths:
            survival *= 1 - deaths / at_risk
            if at_risk > deaths:
                greenwood += deaths / (at_risk * (at_risk - deaths))
            lo, hi = _loglog_band(survival, greenwood)
            out_t.append(t)
            out_s.append(survival)
            out_lo.append(lo)
            out_hi.append(hi)
            out_r.append(at_risk)
            out_d.append(deaths)
            if median is None and survival <= 0.5:
                median = t
        at_risk -= leaving
    if pairs and pairs[-1][0] > out_t[-1]:  # the curve runs on to the end of follow-up
        last = pairs[-1][0]
        out_t.append(last)
        out_s.append(out_s[-1])
        out_lo.append(out_lo[-1])
        out_hi.append(out_hi[-1])
        out_r.append(sum(1 for t, _ in pairs if t >= last))
        out_d.append(0)
    return SurvivalCurve(
        tuple(out_t),
        tuple(out_s),
        tuple(out_lo),
        tuple(out_hi),
        tuple(out_r),
        tuple(out_d),
        n,
        sum(events),
        median,
    )


def _loglog_band(survival: float, greenwood: float) -> tuple[float, float]:
    if survival <= 0 or survival >= 1 or greenwood <= 0:
        return survival, survival
    log_s = math.log(survival)
    se = math.sqrt(greenwood) / abs(log_s)
    lo = survival ** math.exp(Z95 * se)
    hi = survival ** math.exp(-Z95 * se)
    return lo, hi


@dataclass(frozen=True)
class LogRank:
    """The log-rank test of two groups: observed and expected events in group 1, chi2, p."""

    observed: float
    expected: float
    variance: float
    chi2: float
    p_value: float


def logrank(times: Sequence[float], events: Sequence[int], group: Sequence[int]) -> LogRank:
    """Compare the survival of group 1 with group 0 (``group`` holds 0 or 1 per patient).

    >>> result = logrank([1, 2, 3, 4, 5, 6], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    >>> round(result.chi2, 3), round(result.p_value, 3)
    (5.052, 0.025)
    """
    _check(times, events)
    rows = sorted(zip((float(t) for t in times), events, group, strict=True))
    n1 = sum(1 for g in group if g == 1)
    n = len(rows)
    observed = expected = variance = 0.0
    i = 0
    while i < len(rows):
        t = rows[i][0]
        d = d1 = leaving = leaving1 = 0
        while i < len(rows) and rows[i][0] == t:
            d += rows[i][1]
            d1 += rows[i][1] * rows[i][2]
            leaving += 1
            leaving1 += rows[i][2]
            i += 1
        if d and n > 0:
            share = n1 / n
            observed += d1
            expected += d * share
            if n > 1:
                variance += d * share * (1 - share) * (n - d) / (n - 1)
        n -= leaving
        n1 -= leaving1
    chi2 = (observed - expected) ** 2 / variance if variance > 0 else 0.0
    return LogRank(observed, expected, variance, chi2, math.erfc(math.sqrt(chi2 / 2)))


@dataclass(frozen=True)
class HazardRatio:
    """Cox hazard ratio of group 1 against group 0, with its Wald 95 % interval."""

    hazard_ratio: float
    lower: float
    upper: float
    log_hr: float
    se: float
    p_value: float
    events: int
    iterations: int
    #: False when one group has no event (or every event): the partial likelihood
    #: then has no maximum and the ratio is 0 or infinite (reported, not estimated).
    estimable: bool = True


def cox_hazard_ratio(
    times: Sequence[float], events: Sequence[int], group: Sequence[int], *, max_iter: int = 50
) -> HazardRatio:
    """The hazard ratio of one binary covariate (Breslow ties), by Newton's method.

    >>> hr = cox_hazard_ratio([1, 2, 3, 4, 5, 6, 7, 8], [1] * 8, [1, 1, 0, 1, 0, 1, 0, 0])
    >>> round(hr.hazard_ratio, 2), hr.lower < hr.hazard_ratio < hr.upper
    (3.46, True)
    >>> cox_hazard_ratio([1, 2, 3], [1, 0, 1], [0, 1, 0]).estimable  # no event in group 1
    False
    """
    _check(times, events)
    rows = sorted(zip((float(t) for t in times), events, group, strict=True), reverse=True)
    # Distinct event times, latest first, with the risk set built as time runs backwards.
    blocks: list[tuple[int, int, int, int]] = []  # (at risk, at risk in group 1, d, d in group 1)
    at_risk = at_risk1 = 0
    i = 0
    while i < len(rows):
        t = rows[i][0]
        d = d1 = 0
        while i < len(rows) and rows[i][0] == t:
            at_risk += 1
            at_risk1 += rows[i][2]
            d += rows[i][1]
            d1 += rows[i][1] * rows[i][2]
            i += 1
        if d:
            blocks.append((at_risk, at_risk1, d, d1))
    total_events = sum(b[2] for b in blocks)
    events_1 = sum(b[3] for b in blocks)
    if total_events == 0 or events_1 in (0, total_events):
        none_in_1 = events_1 == 0
        return HazardRatio(
            hazard_ratio=0.0 if none_in_1 else math.inf,
            lower=0.0,
            upper=math.inf,
            log_hr=-math.inf if none_in_1 else math.inf,
            se=math.inf,
            p_value=1.0,
            events=total_events,
            iterations=0,
            estimable=False,
        )
    beta, information, iterations = 0.0, 0.0, 0
    for iterations in range(1, max_iter + 1):  # noqa: B007
        score, information = 0.0, 0.0
        for n, n1, d, d1 in blocks:
            e1 = n1 * math.exp(beta)
            share = e1 / (e1 + (n - n1))
            score += d1 - d * share
            information += d * share * (1 - share)
        if information <= 0:
            break
        step = score / information
        beta += max(-2.0, min(2.0, step))
        if abs(step) < 1e-10:
            break
    se = 1 / math.sqrt(information) if information > 0 else math.inf
    p = math.erfc(abs(beta) / se / math.sqrt(2)) if math.isfinite(se) else 1.0
    return HazardRatio(
        hazard_ratio=math.exp(beta),
        lower=math.exp(beta - Z95 * se) if math.isfinite(se) else 0.0,
        upper=math.exp(beta + Z95 * se) if math.isfinite(se) else math.inf,
        log_hr=beta,
        se=se,
        p_value=p,
        events=total_events,
        iterations=iterations,
    )
