"""The relapse-risk evaluation behind ``psymon evaluate`` and ``docs/model-card.md``.

* :mod:`~services.evaluation.runs`: simulated cohorts through the pure core;
* :mod:`~services.evaluation.series`: per-patient daily series and labels
  from the simulator's ground truth;
* :mod:`~services.evaluation.protocol`: training, thresholds, held-out runs;
* :mod:`~services.evaluation.metrics` and :mod:`~services.evaluation.report`:
  metrics with bootstrap intervals by patient;
* :mod:`~services.evaluation.plots` and :mod:`~services.evaluation.card`: the
  model card and its figures.

The entry points are in :mod:`services.evaluate`.
"""

from __future__ import annotations
