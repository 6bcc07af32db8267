"""Course of illness per instrument: baseline, change, reliable change, episodes.

One :class:`InstrumentCourse` per instrument a patient is rated with. Each
rating (in event-time order) gives a :class:`CourseView`: the baseline (the
first rating of the monitoring or of the current episode), the change from
it, the Reliable Change Index (Jacobson & Truax 1991, parameters from the
instrument catalogue), response and remission by the instrument's criteria,
a smoothed level with its uncertainty (:class:`~streams.level.LocalLevel`),
and the episode status:

* depression scales (PHQ-9, PHQ-8, MADRS, HAM-D 17, QIDS-SR16): ``active``,
  ``response``, ``remission``, ``subthreshold`` (above remission after it, but
  no new episode) and, when a new episode begins after remission, ``relapse``
  if it began within six months of remission, else ``recurrence`` (Frank 1991;
  Moeller 2011). A new episode is ``episode_onset_scores`` consecutive
  ratings at or above the onset total spanning ``episode_onset_days``, or a
  relapse/recurrence/episode-onset outcome; the episode is re-baselined at
  its first rating;
* PANSS: ``stable``, ``relapse`` (total up >= 25 %, or >= 10 points from a
  baseline <= 40; CGI-C >= 6; hospitalisation, self-harm or suicidal
  ideation; Csernansky 2002) and ``remission`` (P1, P2, P3, N1, N4, N6, G5, G9
  all <= 3 for six months; Andreasen 2005);
* CGI-C: its anchor (``much worse`` ...); other scales: ``remission``,
  ``response`` or ``active`` where they define those.

>>> course, day = InstrumentCourse("phq9"), 86_400_000_000
>>> from streams.config import CoreConfig
>>> config = CoreConfig()
>>> [course.update(t, None, n * 7 * day, config).status for n, t in enumerate([20, 9, 3])]
['active', 'response', 'remission']
>>> view = course.update(14, None, 10 * 7 * day, config)
>>> view.status, view.reliable_change  # still 6 points better than the first rating
('subthreshold', 'improved')
>>> view = course.update(15, None, 12 * 7 * day, config)  # two weeks at >= 10: a new episode
>>> view.status, view.new_episode, view.baseline
('relapse', True, 14)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from schemas.instruments import CGI_C_ANCHORS, Instrument, get_instrument
from streams.config import CoreConfig
from streams.level import LocalLevel

_DAY_US = 86_400_000_000
EPISODE_STATUSES = frozenset({"relapse", "recurrence"})


@dataclass(frozen=True, slots=True)
class CourseView:
    """The course of one instrument after one rating (the fields of a CourseUpdate)."""

    instrument: str
    value: int
    band: str | None
    band_rank: int | None
    baseline: int | None
    change: int | None
    rci: float | None
    reliable_change: str | None
    response: bool | None
    remission: bool | None
    status: str | None
    level: float | None
    level_sd: float | None
    new_episode: bool = False


def _noise_and_drift(inst: Instrument, config: CoreConfig) -> tuple[float, float]:
    """Measurement variance (SE^2 from the RCI parameters) and level drift per day."""
    if inst.rci is not None:
        sd, reliability = inst.rci.sd, inst.rci.reliability
    else:
        sd, reliability = (inst.total_high - inst.total_low) / 6, config.course.default_reliability
    noise = (sd * math.sqrt(1 - reliability)) ** 2
    return max(noise, 1e-6), (config.course.level_drift_fraction * sd) ** 2


@dataclass(slots=True)
class InstrumentCourse:
    """The course of illness on one instrument; ``update`` folds in one rating.

    >>> course, config = InstrumentCourse("madrs"), CoreConfig()
    >>> view = course.update(30, None, 0, config)
    >>> view.band, view.baseline, view.status
    ('moderate', 30, 'active')
    >>> view = course.update(8, None, 28 * 86_400_000_000, config)
    >>> view.change, view.reliable_change, view.response, view.remission, view.status
    (-22, 'improved', True, True, 'remission')
    """

    instrument: str
    baseline: int | None = None
    baseline_at: int = 0
    latest: int | None = None
    latest_at: int = 0
    level: LocalLevel = field(default_factory=LocalLevel)
    status: str | None = None
    remission_since: int | None = None
    onset_count: int = 0
    onset_first_at: int = 0
    onset_first_total: int = 0
    rebaseline: bool = False
    item_remission_since: int | None = None

    def update(
        self, total: int, items: Mapping[str, int] | None, at: int, config: CoreConfig
    ) -> CourseView:
        """Fold in a rating ``total`` (with its ``items``) observed at ``at`` (epoch us)."""
        inst = get_instrument(self.instrument)
        if self.baseline is None or self.rebaseline:
            self.baseline, self.baseline_at, self.rebaseline = total, at, False
        self.latest, self.latest_at = total, at
        noise, drift = _noise_and_drift(inst, config)
        level, level_sd = self.level.update(total, at, noise, drift)
        new_episode = False
        if inst.id in config.course.episode_onset_totals and inst.remission_max is not None:
            new_episode = self._depression(inst, total, at, config)
        elif inst.id == "panss":
            new_episode = self._psychosis(inst, total, items, at, config)
        elif inst.id == "cgi_c":
            self.status = CGI_C_ANCHORS.get(total)
        else:
            self.status = self._generic(inst, total)
        return self._view(inst, total, level, level_sd, new_episode)

    def view_late(self, total: int) -> CourseView:
        """A late rating read against the course as it stands, changing nothing."""
        inst = get_instrument(self.instrument)
        level = self.level.mean
        level_sd = math.sqrt(self.level.variance) if level is not None else None
        return self._view(inst, total, level, level_sd, False)

    # -- episodes -----------------------------------------------------------------------------

    def _depression(self, inst: Instrument, total: int, at: int, config: CoreConfig) -> bool:
        remission = bool(inst.is_remission(total))
        if self.status is None:
            self.status = "remission" if remission else "active"
            self.remission_since = at if remission else None
            return False
        if self.status in ("remission", "subthreshold"):
            if remission:
                self.status, self.onset_count = "remission", 0
                return False
            if total >= config.course.episode_onset_totals[inst.id]:
                if self.onset_count == 0:
                    self.onset_first_at, self.onset_first_total = at, total
                self.onset_count += 1
                spanned = at - self.onset_first_at >= config.course.episode_onset_days * _DAY_US
                if self.onset_count >= config.course.episode_onset_scores and spanned:
                    self.status = self._episode_kind(self.onset_first_at, config)
                    self.baseline, self.baseline_at = self.onset_first_total, self.onset_first_at
                    self.onset_count = 0
                    return True
            else:
                self.onset_count = 0
            self.status = "subthreshold"
            return False
        if remission:
            self.status, self.remission_since, self.onset_count = "remission", at, 0
        elif self.status not in EPISODE_STATUSES:
            assert self.baseline is not None
            self.status = "response" if inst.is_response(self.baseline, total) else "active"
        return False

    def _episode_kind(self, onset: int, config: CoreConfig) -> str:
        if self.remission_since is None:
            return "active"
        window = config.course.relapse_window_days * _DAY_US
        return "relapse" if onset - self.remission_since <= window else "recurrence"

    def _psychosis(
        self,
        inst: Instrument,
        total: int,
        items: Mapping[str, int] | None,
        at: int,
        config: CoreConfig,
    ) -> bool:
        assert self.baseline is not None
        relapsed = total >= self.panss_relapse_threshold(config)
        if items is not None and inst.meets_remission_severity(items):
            if self.item_remission_since is None:
                self.item_remission_since = at
        else:
            self.item_remission_since = None
        if relapsed:
            new = self.status != "relapse"
            self.status = "relapse"
            return new
        since = self.item_remission_since
        held = since is not None and at - since >= config.course.panss_remission_days * _DAY_US
        self.status = "remission" if held else "stable"
        return False

    def panss_relapse_threshold(self, config: CoreConfig) -> float:
        """PANSS total at which a relapse begins (Csernansky 2002)."""
        assert self.baseline is not None
        if self.baseline <= config.course.panss_low_baseline:
            return float(self.baseline + config.course.panss_relapse_points)
        return self.baseline * (1 + config.course.panss_relapse_fraction)

    def mark_outcome(self, outcome: str, episode: str | None, at: int, config: CoreConfig) -> bool:
        """Apply a clinical outcome to the course; True when the status changed.

        >>> course = InstrumentCourse("panss", baseline=70, latest=70, status="stable")
        >>> course.mark_outcome("hospitalisation", None, 0, CoreConfig()), course.status
        (True, 'relapse')
        """
        before = self.status
        if self.instrument == "panss":
            psychotic = outcome in ("hospitalisation", "self_harm", "suicidal_ideation")
            psychotic = psychotic or (
                outcome in ("relapse", "recurrence", "episode_onset") and episode == "psychotic"
            )
            if psychotic:
                self.status = "relapse"
        elif self.instrument in config.course.episode_onset_totals:
            depressive = episode in (None, "depressive")
            if outcome == "remission":
                self.status, self.remission_since, self.onset_count = "remission", at, 0
            elif depressive and outcome in ("relapse", "recurrence"):
                self.status, self.rebaseline, self.onset_count = outcome, True, 0
            elif depressive and outcome == "episode_onset":
                self.status, self.rebaseline = self._episode_kind(at, config), True
                self.onset_count = 0
        return self.status != before

    @staticmethod
    def _generic(inst: Instrument, total: int) -> str | None:
        if inst.is_remission(total):
            return "remission"
        return None if inst.remission_max is None and inst.response_drop is None else "active"

    # -- the view -----------------------------------------------------------------------------

    def _view(
        self,
        inst: Instrument,
        total: int,
        level: float | None,
        level_sd: float | None,
        new_episode: bool,
    ) -> CourseView:
        band = inst.band(total)
        change_scale = inst.id != "cgi_c"
        baseline = self.baseline if change_scale else None
        rci: float | None = None
        reliable: str | None = None
        response: bool | None = None
        if baseline is not None:
            response = inst.is_response(baseline, total)
            if inst.rci is not None:
                rci = inst.rci.index(baseline, total)
                if not inst.rci.is_reliable(baseline, total):
                    reliable = "none"
                else:
                    reliable = "deteriorated" if total > baseline else "improved"
        status = self.status
        if status == "active" and response and self.status not in EPISODE_STATUSES:
            status = "response"
        return CourseView(
            instrument=inst.id,
            value=total,
            band=band.label if band is not None else None,
            band_rank=band.rank if band is not None else None,
            baseline=baseline,
            change=total - baseline if baseline is not None else None,
            rci=rci,
            reliable_change=reliable,
            response=response,
            remission=inst.is_remission(total),
            status=status,
            level=level,
            level_sd=level_sd,
            new_episode=new_episode,
        )

    def clone(self) -> InstrumentCourse:
        """An independent copy (every field read in order: ``dataclasses.replace`` costs 2x)."""
        copied = InstrumentCourse(*[getattr(self, name) for name in _COURSE_FIELDS])
        copied.level = self.level.clone()
        return copied


#: Every field of :class:`InstrumentCourse`, in ``__init__`` order (all are init fields).
_COURSE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(InstrumentCourse) if f.init)
