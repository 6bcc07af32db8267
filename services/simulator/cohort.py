"""A simulated cohort: patients drawn from a seed, events in the order psymon sees them.

Patient ``n`` (1-based) is drawn from ``numpy.random.default_rng([seed, n,
stream])`` with one stream per part (identity, timeline, course, wearables,
self-reports, clinic), so a patient does not change when the cohort grows and
the wearable sampling rate does not change the course.

Examples
--------
>>> from datetime import UTC, datetime
>>> cohort = simulate_cohort(3, 14, seed=1, start=datetime(2026, 1, 5, tzinfo=UTC),
...                          samples_per_hour=1)
>>> events = list(cohort.events())
>>> len(events) == len(cohort)
True
>>> times = [(e.received_at, e.event_id) for e in events]
>>> times == sorted(times)
True
"""

from __future__ import annotations

import gzip
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np

from schemas.events import ClinicalOutcome, ClinicalScore, LabResult, WearableUpload
from services.simulator.config import Arm, SimulationConfig
from services.simulator.context import EagerEvent
from services.simulator.patient import simulate_patient
from services.simulator.truth import PatientTruth
from services.simulator.wearables import EPOCH, Grid, WearableTrace

SimulatedEvent = ClinicalScore | WearableUpload | LabResult | ClinicalOutcome

#: The kinds of event the simulator emits.
EVENT_KINDS: tuple[str, ...] = (
    "clinical_score",
    "wearable_upload",
    "lab_result",
    "clinical_outcome",
)

#: Version of the generative model; recorded in the ground truth.
SIMULATOR_VERSION = 1


def _us(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)


def _id_halves(event_id: str) -> tuple[int, int]:
    hexa = event_id.replace("-", "")
    return int(hexa[:16], 16), int(hexa[16:], 16)


class Cohort:
    """A simulated cohort: its events in arrival order and its ground truth.

    Build one with :func:`simulate_cohort`. Events are built when iterated, so
    a cohort of millions of wearable readings costs a few arrays until then;
    every iteration yields equal events in the same order.
    """

    def __init__(
        self,
        *,
        grid: Grid,
        seed: int,
        config: SimulationConfig,
        arms: tuple[Arm, ...],
        truths: list[PatientTruth],
        eager: list[EagerEvent],
        traces: list[WearableTrace],
    ) -> None:
        self.grid = grid
        self.seed = seed
        self.config = config
        self.arms = arms
        self.ground_truth: Mapping[str, PatientTruth] = {t.patient_id: t for t in truths}
        self._eager = eager
        self._traces = traces
        self._order = self._arrival_order()

    @property
    def start(self) -> datetime:
        """The start of the simulated period (UTC, on the hour)."""
        return self.grid.t0

    @property
    def days(self) -> int:
        """Length of the simulated period in days."""
        return self.grid.days

    def _arrival_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        received: list[np.ndarray] = [
            np.array([_us(e.received_at) for e in self._eager], dtype=np.int64)
        ]
        halves = [_id_halves(str(e.event_id)) for e in self._eager]
        source: list[np.ndarray] = [np.full(len(self._eager), -1, dtype=np.int32)]
        index: list[np.ndarray] = [np.arange(len(self._eager), dtype=np.int64)]
        for p, trace in enumerate(self._traces):
            uploads = np.arange(len(trace.hours), dtype=np.int64)
            for rows, at in (
                (uploads, trace.received_us),
                (trace.duplicates, trace.duplicate_received_us),
            ):
                received.append(np.asarray(at, dtype=np.int64))
                halves.extend(_id_halves(trace.upload_ids[i]) for i in rows.tolist())
                source.append(np.full(len(rows), p, dtype=np.int32))
                index.append(np.asarray(rows, dtype=np.int64))
        ids = np.array(halves, dtype=np.uint64).reshape(-1, 2)
        at = np.concatenate(received)
        order = np.lexsort((ids[:, 1], ids[:, 0], at))
        return at[order], np.concatenate(source)[order], np.concatenate(index)[order], order

    def __len__(self) -> int:
        """Number of events, duplicates included."""
        return len(self._order[0])

    def counts(self) -> dict[str, int]:
        """Events per kind (without building them)."""
        counts: Counter[str] = Counter(e.kind for e in self._eager)
        uploads = int((self._order[1] >= 0).sum())
        if uploads:
            counts["wearable_upload"] = uploads
        return dict(sorted(counts.items()))

    def events(self, kinds: Collection[str] | None = None) -> Iterator[SimulatedEvent]:
        """Every event in arrival order: by ``received_at``, ties by ``event_id``.

        Duplicates (the same upload or report sent twice) appear twice with the
        same ``event_id`` and a later ``received_at``. ``kinds`` keeps only
        events of those kinds (``"clinical_score"``, ``"wearable_upload"``,
        ``"lab_result"``, ``"clinical_outcome"``); leaving out wearable uploads
        skips building them, which is most of the cost.
        """
        unknown = sorted(set(kinds or ()) - set(EVENT_KINDS))
        if unknown:
            raise ValueError(
                f"unknown event kind {', '.join(map(repr, unknown))}; accepted: "
                f"{', '.join(EVENT_KINDS)}"
            )
        received, source, index, _ = self._order
        uploads = kinds is None or "wearable_upload" in kinds
        for at, p, i in zip(received.tolist(), source.tolist(), index.tolist(), strict=True):
            if p < 0:
                event = self._eager[i]
                if kinds is None or event.kind in kinds:
                    yield event
            elif uploads:
                yield self._traces[p].upload(i, EPOCH + timedelta(microseconds=at))

    __iter__ = events

    def stream(
        self,
        speedup: float | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Iterator[SimulatedEvent]:
        """Events in arrival order, paced so simulated time runs ``speedup`` x wall time.

        ``speedup=None`` yields as fast as the consumer takes them; ``3600``
        replays an hour of arrivals per second. Nothing is built ahead.
        """
        if speedup is not None and not speedup > 0:
            raise ValueError(f"speedup must be a positive number or None, got {speedup!r}")
        first: datetime | None = None
        began = clock()
        for event in self.events():
            if speedup is not None:
                first = first or event.received_at
                due = (event.received_at - first).total_seconds() / speedup
                wait = due - (clock() - began)
                if wait > 0:
                    sleep(wait)
            yield event

    def write_jsonl(self, path: str | Path) -> int:
        """Write every event, one ``model_dump_json()`` per line; return the count.

        A ``.gz`` path is gzip-compressed (with a zero timestamp, so the file
        stays byte-identical for a seed).
        """
        path = Path(path)
        count = 0
        with _open_text(path) as out:
            for event in self.events():
                out.write(event.model_dump_json())
                out.write("\n")
                count += 1
        return count

    def truth_json(self) -> dict[str, Any]:
        """The ground truth as one JSON-ready document."""
        return {
            "simulator_version": SIMULATOR_VERSION,
            "seed": self.seed,
            "patients": len(self.ground_truth),
            "days": self.days,
            "start": self.start.isoformat(),
            "samples_per_hour": self.grid.samples_per_hour,
            "arms": [
                {"name": a.name, "hazard_ratio": a.hazard_ratio, "subgroup": a.subgroup}
                for a in self.arms
            ],
            "events": self.counts(),
            "truth": [t.to_json() for t in self.ground_truth.values()],
        }

    def write_ground_truth(self, path: str | Path) -> None:
        """Write :meth:`truth_json` to ``path`` (indented, stable key order)."""
        Path(path).write_text(json.dumps(self.truth_json(), indent=1) + "\n", encoding="utf-8")


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """A text file to write; ``.gz`` paths are gzip-compressed without name or timestamp."""
    if path.suffix != ".gz":
        with path.open("w", encoding="utf-8", newline="\n") as text:
            yield text
        return
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as text,
    ):
        yield text


def simulate_cohort(
    patients: int,
    days: int,
    seed: int,
    start: datetime,
    *,
    samples_per_hour: int = 12,
    config: SimulationConfig | None = None,
    arms: Sequence[Arm] = (),
) -> Cohort:
    """Simulate ``patients`` patients over ``days`` days from ``start``.

    Parameters
    ----------
    patients
        Cohort size (>= 1); patients are ``sim-patient-1`` .. ``sim-patient-N``,
        pseudonymised with the simulator's fixed key.
    days
        Length of the period (>= 1).
    seed
        A non-negative integer; the same seed gives byte-identical output.
    start
        A tz-aware start; it is taken in UTC and rounded down to the hour.
    samples_per_hour
        Wearable readings per hour for heart rate, steps and sleep (12: one
        every 5 minutes); must divide 60.
    config
        The generative model's parameters (:class:`SimulationConfig`).
    arms
        Treatment arms to randomise patients to; none by default.
    """
    for name, value, least in (("patients", patients, 1), ("days", days, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(
            f"start {start.isoformat()} has no time zone; accepted: a tz-aware datetime "
            "such as datetime(2026, 1, 5, tzinfo=UTC)"
        )
    config = config or SimulationConfig()
    t0 = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    grid = Grid.build(t0, days, samples_per_hour)
    truths: list[PatientTruth] = []
    eager: list[EagerEvent] = []
    traces: list[WearableTrace] = []
    for n in range(1, patients + 1):
        truth, events, trace = simulate_patient(n, seed, grid, config, tuple(arms))
        truths.append(truth)
        eager.extend(events)
        traces.append(trace)
    return Cohort(
        grid=grid,
        seed=seed,
        config=config,
        arms=tuple(arms),
        truths=truths,
        eager=eager,
        traces=traces,
    )
