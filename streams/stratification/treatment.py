"""Treatment episodes: a medication start opens one; its trajectory says whether it worked.

:class:`TreatmentEpisodes` follows one patient's events in event-time order.
A ``medication_change`` whose action opens an episode (``start`` by default)
begins a :class:`TreatmentEpisode` for that medication:

* its **main instrument** is the rating scale most abnormal (as a share of
  its range) in the ``baseline_days`` before the start, among scales that
  define response or remission; its latest rating there is the **baseline**;
* ratings on that scale until the episode ends (a ``stop``, a new start of the
  same medication, or ``follow_up_days``) give the **time to response**
  (the instrument's criterion, e.g. >= 50 % drop on PHQ-9 or MADRS) and the
  **time to remission** (e.g. PHQ-9 < 5, MADRS <= 10; CLINICAL.md);
* lithium levels during the episode are **side-effect signals**: above the
  maintenance range (> 1.2 mmol/L) and toxic (> 1.5 mmol/L; NICE CG185).

These are observational trajectories: who got which drug was decided by
clinicians, so differences between drugs or subgroups are confounded by
indication and are not treatment effects.

>>> tracker, day = TreatmentEpisodes(), 86_400_000_000
>>> tracker.observe_score("madrs", 30, 0)
>>> tracker.observe_medication("Sertraline", "start", 2 * day)
>>> for week, total in [(2, 24), (4, 14), (8, 9)]:
...     tracker.observe_score("madrs", total, (2 + 7 * week) * day)
>>> episode = tracker.episodes[0]
>>> episode.medication, episode.instrument, episode.baseline
('sertraline', 'madrs', 30)
>>> episode.days_to_response(), episode.days_to_remission()
(28.0, 56.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.instruments import get_instrument

_DAY_US = 86_400_000_000


@dataclass(slots=True)
class TreatmentEpisode:
    """One medication episode and its trajectory on the main instrument (times in epoch us)."""

    medication: str
    action: str
    started_at: int
    ended_at: int | None = None
    instrument: str | None = None
    baseline: int | None = None
    baseline_at: int | None = None
    latest: int | None = None
    latest_at: int | None = None
    ratings: int = 0
    best: int | None = None
    response_at: int | None = None
    remission_at: int | None = None
    lithium_levels: int = 0
    lithium_high: int = 0
    lithium_toxic: int = 0
    lithium_max: float | None = None

    def _days(self, at: int | None) -> float | None:
        return None if at is None else round((at - self.started_at) / _DAY_US, 3)

    def days_to_response(self) -> float | None:
        """Days from the start to the first rating meeting the response criterion."""
        return self._days(self.response_at)

    def days_to_remission(self) -> float | None:
        """Days from the start to the first rating in remission."""
        return self._days(self.remission_at)

    def days_followed(self) -> float | None:
        """Days from the start to the last rating on the main instrument."""
        return self._days(self.latest_at)

    def observe_rating(self, total: int, at: int) -> None:
        """Fold in a rating on the episode's main instrument after the start."""
        if self.instrument is None or self.baseline is None:
            return
        inst = get_instrument(self.instrument)
        self.ratings += 1
        self.latest, self.latest_at = total, at
        self.best = total if self.best is None else min(self.best, total)
        if self.response_at is None and inst.is_response(self.baseline, total):
            self.response_at = at
        if self.remission_at is None and inst.is_remission(total):
            self.remission_at = at

    def observe_lithium(self, value: float, high: float, toxic: float) -> None:
        """Fold in a lithium level (mmol/L) taken during the episode."""
        self.lithium_levels += 1
        self.lithium_high += int(value > high)
        self.lithium_toxic += int(value > toxic)
        self.lithium_max = value if self.lithium_max is None else max(self.lithium_max, value)


@dataclass(slots=True)
class TreatmentEpisodes:
    """One patient's treatment episodes, fed the patient's events in event-time order.

    Attributes
    ----------
    opening_actions
        Medication actions that open an episode (``start``; add ``dose_change``
        to follow dose optimisations too).
    baseline_days, follow_up_days
        The baseline window before a start, and how long an episode is followed.
    lithium_high, lithium_toxic
        Lithium levels (mmol/L) counted as side-effect signals (NICE CG185).
    """

    opening_actions: tuple[str, ...] = ("start",)
    baseline_days: float = 28.0
    follow_up_days: float = 84.0
    lithium_high: float = 1.2
    lithium_toxic: float = 1.5
    recent: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    episodes: list[TreatmentEpisode] = field(default_factory=list)

    def _open(self, at: int) -> list[TreatmentEpisode]:
        limit = self.follow_up_days * _DAY_US
        return [
            e
            for e in self.episodes
            if e.ended_at is None and at >= e.started_at and at - e.started_at <= limit
        ]

    def observe_score(self, instrument: str, total: int, at: int) -> None:
        """A rating: kept for later baselines, and folded into open episodes on its scale."""
        ratings = self.recent.setdefault(instrument, [])
        ratings.append((at, total))
        ratings.sort()
        del ratings[:-16]
        for episode in self._open(at):
            if episode.instrument == instrument and at > episode.started_at:
                episode.observe_rating(total, at)

    def observe_lab(self, analyte: str, value: float, at: int) -> None:
        """A lab result: lithium levels count as side-effect signals of open episodes."""
        if analyte != "lithium":
            return
        for episode in self._open(at):
            episode.observe_lithium(value, self.lithium_high, self.lithium_toxic)

    def observe_medication(self, name: str, action: str, at: int) -> None:
        """A medication change: may end the medication's episode and open a new one."""
        key = name.strip().lower()
        for episode in self.episodes:
            ends = action == "stop" or action in self.opening_actions
            if episode.medication == key and episode.ended_at is None and ends:
                episode.ended_at = at
        if action not in self.opening_actions:
            return
        episode = TreatmentEpisode(key, action, at)
        chosen = self._main_instrument(at)
        if chosen is not None:
            episode.instrument, (episode.baseline_at, episode.baseline) = chosen
        self.episodes.append(episode)

    def _main_instrument(self, at: int) -> tuple[str, tuple[int, int]] | None:
        """The scale most abnormal in the baseline window, with its latest rating there."""
        since = at - self.baseline_days * _DAY_US
        best: tuple[float, str, tuple[int, int]] | None = None
        for instrument in sorted(self.recent):
            inst = get_instrument(instrument)
            if inst.remission_max is None and inst.response_drop is None:
                continue
            window = [r for r in self.recent[instrument] if since <= r[0] <= at]
            if not window:
                continue
            latest = window[-1]
            span = inst.total_high - inst.total_low
            share = (latest[1] - inst.total_low) / span if span else 0.0
            if best is None or share > best[0]:
                best = (share, instrument, latest)
        return None if best is None else (best[1], best[2])
