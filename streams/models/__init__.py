"""Online models of relapse risk, run inside the pure core and trained beside it.

Per patient, inside :class:`~streams.state.PatientState` and updated as each
wearable day closes:

* :class:`~streams.models.drift.Cusum`: two-sided CUSUM change detection on a
  feature's robust z-scores (Page 1954), two floats per feature;
* :class:`~streams.models.anomaly.AnomalyRate`: the share of feature-days
  beyond ``|z| > 2`` over the last 14 days, after Barnett 2018;
* :class:`~streams.models.features.RiskFeatures`: the model's inputs for one
  day (smoothed deviations, drift, anomaly rate, rating-scale change);
* :class:`~streams.models.risk_rule.RiskAlert`: the ``relapse_risk`` alert,
  raised after N days above a threshold and closed after M days below a lower one.

Across patients, outside the state:

* :class:`~streams.models.snapshot.ModelSnapshot`: an immutable, numbered
  version of the population model, passed to ``process`` in
  ``CoreConfig.model``;
* :class:`~streams.models.logistic.OnlineLogistic`: the learner the trainer
  (``services.training``) updates and snapshots;
* :class:`~streams.models.labels.DelayedLabeller`: labels each day's inputs
  once its horizon has passed or an outcome has arrived, never using an
  outcome before its ``received_at``.

The submodules are imported one by one (``from streams.models.snapshot import
ModelSnapshot``): :mod:`streams.config` needs the snapshot, and the other
modules need the configuration.
"""

from __future__ import annotations
