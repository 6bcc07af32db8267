"""Precision stratification: biomarker profiles, subgroups and treatment episodes, pure.

Per patient, inside :class:`~streams.state.PatientState` (``state.strata``):

* :class:`~streams.stratification.profile.BiomarkerProfile`: symptom
  dimensions from item-level scores, inflammation, sleep and circadian
  phenotype, activity, autonomic markers and treatment exposure, each with the
  amount of data behind it;
* :class:`~streams.stratification.state.StratificationState`: the profile,
  the specifiers met and the cluster label with its hysteresis.

Rules and models:

* :mod:`streams.stratification.specifiers`: published subgroups as
  transparent rules (depression with low-grade inflammation, Osimo 2019;
  Miller & Raison 2016);
* :class:`~streams.stratification.snapshot.SubgroupSnapshot`: a numbered
  version of the population subgroup model (a Gaussian mixture over the
  profile), passed to the core in ``CoreConfig.subgroups``; the trainer lives
  in ``services.study.subgroups``;
* :mod:`streams.stratification.stratify`: the core's hooks, which emit
  :class:`~schemas.events.SubgroupAssigned` on change;
* :mod:`streams.stratification.treatment`: treatment episodes and their
  trajectories (observational).

The submodules are imported one by one: :mod:`streams.config` needs the
configuration and the snapshot, and the hooks need :mod:`streams.config`.
"""

from __future__ import annotations
