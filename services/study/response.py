"""Observed treatment response, by treatment and by subgroup: OBSERVATIONAL, not causal.

Every included patient's scores, lithium levels and medication changes go,
in event-time order, through
:class:`~streams.stratification.treatment.TreatmentEpisodes`. Each episode is
labelled with the patient's subgroups when it began (the specifiers and
cluster label in force then) and summarised per medication and subgroup:
episodes, those with a baseline, response and remission proportions (Wilson
95 % CIs), the median days to response among responders, and lithium
side-effect signals.

Who received which medication was decided by clinicians, for reasons that
also shape the outcome (confounding by indication): these tables describe
what happened and generate hypotheses; they do not estimate treatment
effects. Every row says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from services.study.collect import PatientRecord
from services.study.effects import proportion
from services.study.spec import TreatmentResponse
from streams.ordering import micros
from streams.stratification.treatment import TreatmentEpisode, TreatmentEpisodes

OBSERVATIONAL = (
    "observational: treatment was not randomised (confounding by indication); "
    "describes what happened, not what a treatment causes"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(us: int | None) -> str | None:
    return None if us is None else (_EPOCH + timedelta(microseconds=us)).isoformat()


def episodes_of(record: PatientRecord, spec: TreatmentResponse) -> list[TreatmentEpisode]:
    """The patient's treatment episodes, from the events in event-time order."""
    tracker = TreatmentEpisodes(
        opening_actions=tuple(spec.opening_actions),
        baseline_days=spec.baseline_days,
        follow_up_days=spec.follow_up_days,
    )
    timeline: list[tuple[datetime, int, Any]] = []
    timeline += [(t, 0, ("score", i, v)) for t, i, v in record.scores]
    timeline += [(t, 0, ("lab", a, v)) for t, a, v in record.labs]
    for outcome in record.outcomes:
        if outcome.medication is not None:
            m = outcome.medication
            timeline.append((outcome.observed_at, 1, ("medication", m.name, m.action)))
    # Same instant (the visit that starts a drug): the rating first, as the baseline.
    for at, _, (what, name, value) in sorted(timeline, key=lambda x: (x[0], x[1], str(x[2]))):
        us = micros(at)
        if what == "score":
            tracker.observe_score(name, value, us)
        elif what == "lab":
            tracker.observe_lab(name, value, us)
        else:
            tracker.observe_medication(name, value, us)
    return tracker.episodes


def episode_rows(
    records: Sequence[tuple[PatientRecord, str]], spec: TreatmentResponse
) -> list[dict[str, Any]]:
    """One row per episode: patient, arm, subgroups at the start, trajectory."""
    rows = []
    for record, arm in records:
        for episode in episodes_of(record, spec):
            start = _EPOCH + timedelta(microseconds=episode.started_at)
            labels = record.labels_at(start)
            rows.append(
                {
                    "patient_id": record.patient_id,
                    "arm": arm,
                    "medication": episode.medication,
                    "action": episode.action,
                    "started_at": start.isoformat(),
                    "ended_at": _when(episode.ended_at),
                    "subgroups": ";".join(sorted(labels.values())) or "none",
                    "instrument": episode.instrument,
                    "baseline": episode.baseline,
                    "ratings": episode.ratings,
                    "best": episode.best,
                    "latest": episode.latest,
                    "days_followed": episode.days_followed(),
                    "days_to_response": episode.days_to_response(),
                    "days_to_remission": episode.days_to_remission(),
                    "lithium_levels": episode.lithium_levels,
                    "lithium_above_range": episode.lithium_high,
                    "lithium_toxic": episode.lithium_toxic,
                    "lithium_max": episode.lithium_max,
                }
            )
    return rows


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Response and remission per medication and subgroup (and per medication overall)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["medication"], row["subgroups"]), []).append(row)
        groups.setdefault((row["medication"], "all"), []).append(row)
    summary = []
    for (medication, subgroup), members in sorted(groups.items()):
        followed = [r for r in members if r["baseline"] is not None and r["ratings"] > 0]
        responders = [r for r in followed if r["days_to_response"] is not None]
        remitters = [r for r in followed if r["days_to_remission"] is not None]
        response = proportion(len(responders), len(followed))
        remission = proportion(len(remitters), len(followed))
        summary.append(
            {
                "medication": medication,
                "subgroup": subgroup,
                "episodes": len(members),
                "followed": len(followed),
                "responders": len(responders),
                "response_rate": response.estimate,
                "response_lower_95": response.lower,
                "response_upper_95": response.upper,
                "remitters": len(remitters),
                "remission_rate": remission.estimate,
                "remission_lower_95": remission.lower,
                "remission_upper_95": remission.upper,
                "median_days_to_response": (
                    median(r["days_to_response"] for r in responders) if responders else None
                ),
                "lithium_levels": sum(r["lithium_levels"] for r in members),
                "lithium_above_range": sum(r["lithium_above_range"] for r in members),
                "lithium_toxic": sum(r["lithium_toxic"] for r in members),
                "note": OBSERVATIONAL,
            }
        )
    return summary
