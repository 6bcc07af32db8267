"""Studies: cohorts, arms and endpoints from stored or replayed events; the subgroup trainer.

* :func:`run_study` — ``psymon study``: a cohort (by subgroup, biomarker
  thresholds, diagnosis, time window) and arms or exposure groups, endpoints
  computed from the events through the same pure core as live (change in
  clinician and self-rated scores, digital endpoints, time to relapse with
  censoring, subgroup transitions), effect sizes with 95 % CIs, Kaplan-Meier
  curves, a manifest of exactly which events and code produced them;
* :func:`fit_subgroups` and :class:`OnlineSubgroupTrainer` — the population
  subgroup model (:class:`~streams.stratification.snapshot.SubgroupSnapshot`);
  :mod:`services.study.subgroup_models` — its numbered versions
  (``psymon subgroups fit``, :class:`~services.study.subgroup_models.LatestSubgroups`);
* :mod:`services.study.survival`, :mod:`services.study.effects` — the
  statistics (our own Kaplan-Meier, log-rank, Cox, bootstrap, ARI).

The guide is docs/stratification.md.
"""

from __future__ import annotations

from services.study.cohort import load_attributes
from services.study.run import run_study
from services.study.spec import StudySpec
from services.study.subgroups import OnlineSubgroupTrainer, fit_subgroups, profile_vectors

__all__ = [
    "OnlineSubgroupTrainer",
    "StudySpec",
    "fit_subgroups",
    "load_attributes",
    "profile_vectors",
    "run_study",
]
