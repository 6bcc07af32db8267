"""Delayed labels: every day's inputs wait the same time for their label, positive or negative.

A day's inputs are positive when a relapse or hospitalisation begins within
the horizon (28 days) after the day. Outcomes arrive late: the simulator's
relapses are recorded about two weeks after onset, admissions after
discharge (docs/simulator.md), and real registries are slower still. So
:class:`DelayedLabeller` holds each day's inputs and releases them

* once the horizon and a grace period for late outcomes have passed, as
  positive or negative by the outcomes known then;
* never, when the day lies within ``refractory`` after a known onset: the
  patient was ill or recovering then, not at risk of a new onset.

A positive is known earlier, as soon as its outcome arrives, but it waits
like a negative. Released at once, positives would reach the learner up to
horizon + grace before the negatives of the same days: at any moment the
newest examples a learner has seen would hold several times the true share
of positives, and its risks would be several times too high. A live run of
``psymon demo`` showed it: the first trained versions learnt from 20 %
positive days where about 5 % of days precede a relapse, scored a median
risk above the alert threshold, and raised a ``relapse_risk`` alert for 195
of 200 patients within simulated weeks. This is the sampling bias of delayed
feedback (Chapelle, KDD 2014, "Modeling delayed feedback in display
advertising"); waiting for every label to mature is its simplest remedy.

An outcome is known from its ``received_at`` on. One handed over earlier (a
replay that reads the outcome table ahead of time) waits until the clock
reaches its arrival: a label never uses an outcome before psymon learnt of it.
A negative released before a late outcome arrives stays negative: the price
of learning without look-ahead, kept small by the grace period.

>>> DAY = 86_400_000_000
>>> labeller = DelayedLabeller(horizon=28 * DAY, grace=14 * DAY, refractory=56 * DAY)
>>> for d in range(40):
...     labeller.add_snapshot("p-1", d * DAY, (float(d),))
>>> labeller.add_outcome("p-1", onset=35 * DAY, received=50 * DAY)  # handed over early
>>> [(l.x[0], l.label) for l in labeller.release(45 * DAY)]  # the outcome is not known yet
[(0.0, False), (1.0, False), (2.0, False), (3.0, False)]
>>> released = labeller.release(50 * DAY)  # known now: days 35-39 dropped, days 4-8 due
>>> [(l.x[0], l.label) for l in released]
[(4.0, False), (5.0, False), (6.0, False), (7.0, True), (8.0, True)]
>>> released = labeller.release(77 * DAY)  # days 9-34: positive, each once it is due
>>> {l.label for l in released}, len(released), labeller.pending_count()
({True}, 26, 0)
"""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort
from dataclasses import dataclass, field

Inputs = tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Labelled:
    """A day's inputs with their label, ready to learn from."""

    patient: str
    at: int
    x: Inputs
    label: bool


@dataclass(slots=True)
class DelayedLabeller:
    """Inputs waiting for their labels, and outcomes waiting for their arrival time.

    Times are epoch microseconds: ``at`` is the end of the day the inputs
    describe, ``onset`` an outcome's ``observed_at``, ``received`` its
    ``received_at``, ``clock`` the trainer's clock (event time, the ``now`` of ``release``).
    """

    horizon: int
    grace: int
    refractory: int
    clock: int | None = None
    pending: dict[str, list[tuple[int, Inputs]]] = field(default_factory=dict)
    onsets: dict[str, list[int]] = field(default_factory=dict)
    arriving: list[tuple[int, str, int]] = field(default_factory=list)
    due: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("horizon", "grace", "refractory"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}; accepted: >= 0 microseconds")

    def add_snapshot(self, patient: str, at: int, x: Inputs) -> None:
        """Hold the inputs of the day ending at ``at`` until their label is known."""
        if self._refractory(patient, at):
            return
        insort(self.pending.setdefault(patient, []), (at, x))
        heapq.heappush(self.due, (at + self.horizon + self.grace, patient))

    def add_outcome(self, patient: str, *, onset: int, received: int) -> None:
        """An onset (relapse, hospitalisation) at ``onset``, known from ``received`` on."""
        heapq.heappush(self.arriving, (received, patient, onset))

    def release(self, now: int) -> list[Labelled]:
        """Advance the clock to ``now``; the inputs whose label became known, labelled."""
        if self.clock is not None and now < self.clock:
            raise ValueError(
                f"the labeller's clock cannot run backwards (at {self.clock}, asked for {now}); "
                "feed events in received_at order"
            )
        self.clock = now
        released: list[Labelled] = []
        while self.arriving and self.arriving[0][0] <= now:
            _, patient, onset = heapq.heappop(self.arriving)
            insort(self.onsets.setdefault(patient, []), onset)
            self._on_onset(patient, onset)
        while self.due and self.due[0][0] <= now:
            _, patient = heapq.heappop(self.due)
            queue = self.pending.get(patient, [])
            while queue and queue[0][0] + self.horizon + self.grace <= now:
                at, x = queue.pop(0)
                if not self._refractory(patient, at):
                    released.append(Labelled(patient, at, x, self._positive(patient, at)))
            if not queue:
                self.pending.pop(patient, None)
        return released

    def pending_count(self) -> int:
        """Days held, waiting for their label."""
        return sum(len(queue) for queue in self.pending.values())

    def _on_onset(self, patient: str, onset: int) -> None:
        """Drop the held days of the episode; the days before it wait to be due (module doc)."""
        queue = self.pending.get(patient, [])
        kept = [(at, x) for at, x in queue if not onset <= at < onset + self.refractory]
        if kept:
            self.pending[patient] = kept
        else:
            self.pending.pop(patient, None)

    def _known(self, patient: str) -> list[int]:
        return self.onsets.get(patient, [])

    def _positive(self, patient: str, at: int) -> bool:
        onsets = self._known(patient)
        first_after = bisect_right(onsets, at)
        return first_after < len(onsets) and onsets[first_after] <= at + self.horizon

    def _refractory(self, patient: str, at: int) -> bool:
        onsets = self._known(patient)
        last_before = bisect_right(onsets, at) - 1
        return last_before >= 0 and at < onsets[last_before] + self.refractory
