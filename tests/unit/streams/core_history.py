"""Builders for event histories replayed through the core ("given these events ...").

Every builder derives the event id from the event's content, so building the
same event twice gives the same id (a duplicate), and a history is the same
on every run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.events import (
    Alert,
    ClinicalOutcome,
    ClinicalScore,
    CourseUpdate,
    LabResult,
    WearableReading,
    WearableUpload,
)
from schemas.examples import EXAMPLE_PATIENT
from schemas.identity import event_id_for
from streams import CoreConfig, Output, PatientState, process
from streams.outputs import InputEvent

PATIENT = EXAMPLE_PATIENT
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DELAY = timedelta(minutes=5)


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """A moment relative to T0 (Monday 2 March 2026, 09:00 UTC)."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def _envelope(kind: str, when: datetime, *parts: object, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": event_id_for("test", kind, when.isoformat(), *(f"{p!r}" for p in parts)),
        "patient_id": PATIENT,
        "observed_at": when,
        "received_at": when + DELAY,
        "source": {"system": "test"},
    }
    fields.update(overrides)
    return fields


def score(
    instrument: str,
    when: datetime,
    total: int | None = None,
    *,
    items: dict[str, int] | None = None,
    **overrides: Any,
) -> ClinicalScore:
    rater = (
        "self"
        if instrument in ("phq9", "phq8", "phq2", "gad7", "qids_sr16", "asrm")
        else "clinician"
    )
    return ClinicalScore(
        **_envelope("score", when, instrument, total, sorted((items or {}).items()), **overrides),
        instrument=instrument,
        rater=rater,
        items=items,
        total=total if items is None else None,
    )


def phq9(when: datetime, total: int, item9: int = 0, **overrides: Any) -> ClinicalScore:
    """A PHQ-9 with items summing to ``total`` and item 9 as given."""
    rest = total - item9
    items = {}
    for key in range(1, 9):
        items[str(key)] = min(3, rest)
        rest -= items[str(key)]
    assert rest == 0, "total too high for the item 9 given"
    items["9"] = item9
    return score("phq9", when, items=items, **overrides)


def lab(
    analyte: str, value: float, when: datetime, unit: str | None = None, **overrides: Any
) -> LabResult:
    units = {
        "crp": "mg/L",
        "hs_crp": "mg/L",
        "il6": "pg/mL",
        "lithium": "mmol/L",
        "valproate": "ug/mL",
        "clozapine": "ng/mL",
    }
    return LabResult(
        **_envelope("lab", when, analyte, value, **overrides),
        analyte=analyte,
        value=value,
        unit=unit or units[analyte],
    )


def outcome(
    kind: str, when: datetime, episode: str | None = None, **overrides: Any
) -> ClinicalOutcome:
    return ClinicalOutcome(
        **_envelope("outcome", when, kind, episode, **overrides), outcome=kind, episode=episode
    )


Reading = tuple[str, float, datetime, datetime]


def upload(
    readings: Sequence[Reading],
    *,
    device: str = "watch",
    time_zone: str | None = None,
    received_at: datetime | None = None,
    tag: str = "",
) -> WearableUpload:
    """One upload of ``(metric, value, start, end)`` readings; ids from the readings."""
    built = [
        WearableReading(
            event_id=event_id_for(
                "test-reading", device, metric, start.isoformat(), end.isoformat()
            ),
            metric=metric,
            value=value,
            unit={
                "sleep": "min",
                "steps": "{steps}",
                "heart_rate": "/min",
                "hrv_rmssd": "ms",
                "active_minutes": "min",
            }[metric],
            start=start,
            end=end,
        )
        for metric, value, start, end in readings
    ]
    first = min(r.start for r in built)
    last = max(r.end for r in built)
    return WearableUpload(
        **_envelope(
            "upload",
            first,
            device,
            last.isoformat(),
            len(built),
            tag,
            received_at=received_at or max(last, first) + timedelta(minutes=1),
            source={"system": "test", "device": device},
            time_zone=time_zone,
        ),
        window_end=last,
        readings=tuple(built),
    )


def local(day: date, hour: float, zone: str) -> datetime:
    """``hour`` real hours after local midnight of ``day`` in ``zone`` (aware, in that zone).

    Real hours, not wall-clock arithmetic: on a daylight-saving day hour 3 is
    04:00 in spring and 02:00 (the second time) in autumn.
    """
    tz = ZoneInfo(zone)
    midnight = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    return (midnight + timedelta(hours=hour)).astimezone(tz)


def hours_in(day: date, zone: str) -> float:
    """Real hours in local ``day`` (23 or 25 on daylight-saving days)."""
    end, start = local(day + timedelta(days=1), 0, zone), local(day, 0, zone)
    return (end.astimezone(UTC) - start.astimezone(UTC)) / timedelta(hours=1)


def day_readings(
    day: date,
    zone: str,
    *,
    sleep: float = 450.0,
    steps: float = 8000.0,
    hr: float = 62.0,
    hrv: float = 45.0,
    active: float = 30.0,
) -> list[Reading]:
    """A typical day: sleep the night before (8 h from 23:00, as 16 half-hours), hourly steps
    08-22, heart rate every 20 minutes all day, HRV hourly at night, one active-minutes sample.
    Hours are real hours after local midnight, so a 23-hour day gets 69 heart-rate samples."""

    def span(hour: float, minutes: float) -> tuple[datetime, datetime]:
        return local(day, hour, zone), local(day, hour + minutes / 60, zone)

    readings: list[Reading] = []
    for half in range(16):
        readings.append(("sleep", sleep / 16, *span(-1.0 + half / 2, 30)))
    for hour in range(8, 23):
        readings.append(("steps", round(steps / 15), *span(hour, 60)))
    for n in range(round(hours_in(day, zone) * 3)):
        readings.append(("heart_rate", hr + (n % 5), *span(n / 3, 1)))
    for hour in range(0, 6):
        readings.append(("hrv_rmssd", hrv, *span(hour, 5)))
    readings.append(("active_minutes", active, *span(18, 60)))
    return readings


def wearable_day(
    day: date, zone: str = "Europe/Berlin", *, time_zone: str | None = "same", **values: float
) -> WearableUpload:
    """One upload holding a whole local day of typical readings."""
    tz = zone if time_zone == "same" else time_zone
    return upload(day_readings(day, zone, **values), time_zone=tz)


def replay(
    events: Iterable[InputEvent],
    config: CoreConfig | None = None,
    state: PatientState | None = None,
) -> tuple[PatientState, list[Output]]:
    """Given these events (in arrival order), the final state and every output."""
    config = config or CoreConfig()
    state = state or PatientState()
    outputs: list[Output] = []
    for event in events:
        state, emitted = process(state, event, config)
        outputs.extend(emitted)
    return state, outputs


def alerts(outputs: Iterable[Output], rule: str | None = None) -> list[Alert]:
    return [o for o in outputs if isinstance(o, Alert) and (rule is None or o.rule == rule)]


def updates(outputs: Iterable[Output], signal: str | None = None) -> list[CourseUpdate]:
    return [
        o for o in outputs if isinstance(o, CourseUpdate) and (signal is None or o.signal == signal)
    ]


def alert_set(outputs: Iterable[Output]) -> set[tuple[str, str, str, str]]:
    """Alerts as (alert_id, rule, status, severity): what must not depend on arrival order."""
    return {(str(a.alert_id), a.rule, a.status, a.severity) for a in alerts(outputs)}
