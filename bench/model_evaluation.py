"""The relapse-risk model against its baselines, and what the per-patient model parts cost.

Two parts, printed one after the other:

* **evaluation**: :func:`services.evaluate.cli_evaluate` (3 seeds x 60 training
  + 60 held-out simulated patients x 180 days by default): ROC-AUC, PR-AUC, F2,
  relapses alerted, median lead time and alerts per patient-month of the
  model, the anomaly-rate rule and the rating-scale rules, with 95 %
  intervals by patient; writes ``docs/model-card.md`` and its figures unless
  ``--no-card``;
* **cost**: the same simulated patients through the pure core without and
  with a model version in ``CoreConfig``: events per second, and the patient
  state's bytes (``streams.state_size``), so the price of the risk models
  reads as a ratio.

Run: ``python bench/model_evaluation.py [--seeds 1 2 3] [--patients 60] [--days 180]
[--no-card] [--cost-only]`` (a few minutes on two cores).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from services.evaluate import cli_evaluate
from services.simulator import simulate_cohort
from streams import CoreConfig, PatientState, process, state_size
from streams.models.features import INPUTS
from streams.models.snapshot import ModelSnapshot


def cost(patients: int, days: int) -> None:
    """Events per second and state bytes through the core, without and with a model."""
    cohort = simulate_cohort(
        patients, days, 7, datetime(2026, 1, 5, tzinfo=UTC), samples_per_hour=2
    )
    events = list(cohort.events())
    print(f"\ncost: {len(events):,} events of {patients} patients x {days} days")
    rates = {}
    for label, config in (
        ("no model", CoreConfig()),
        ("with model", CoreConfig(model=ModelSnapshot.initial(INPUTS))),
    ):
        states: dict[str, PatientState] = {}
        began = time.perf_counter()
        for event in events:
            states[event.patient_id], _ = process(
                states.get(event.patient_id) or PatientState(), event, config
            )
        seconds = time.perf_counter() - began
        sizes = sorted(state_size(s) for s in states.values())
        rates[label] = len(events) / seconds
        print(
            f"  {label:<10} {rates[label]:>9,.0f} events/s   state bytes: median "
            f"{statistics.median(sizes):,.0f}, largest {sizes[-1]:,}"
        )
    print(f"  ratio with/without model: {rates['with model'] / rates['no model']:.2f}")


def main() -> None:
    """Parse the arguments and run both parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--no-card", action="store_true", help="do not write docs/model-card.md")
    parser.add_argument("--cost-only", action="store_true", help="skip the evaluation")
    args = parser.parse_args()
    if not args.cost_only:
        cli_evaluate(args.seeds, args.patients, args.days, None if args.no_card else "docs")
    cost(min(args.patients, 20), args.days)


if __name__ == "__main__":
    main()
