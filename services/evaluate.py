"""``psymon evaluate``: the relapse-risk model against two baselines, on held-out patients.

:func:`evaluate` runs the protocol of :mod:`services.evaluation.protocol`
(train on some simulated patients, choose thresholds for an alert budget,
judge on other patients in a later period, over several seeds), pools the
held-out patients, bootstraps every metric by patient, and writes
``docs/model-card.md`` with its figures under ``docs/img/``.
:func:`cli_evaluate` is what the ``psymon evaluate`` command runs.

Everything runs through the pure core directly: no broker, no database.
The default (3 seeds x 60 patients x 180 days, training and held-out cohorts)
takes a few minutes on two cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from services.evaluation.protocol import Settings, run_protocol
from services.evaluation.report import LABELS, METHODS, METRICS, EvaluationReport, summarise


def evaluate(
    seeds: Sequence[int] = (1, 2, 3),
    patients: int = 60,
    days: int = 180,
    out_dir: str | Path | None = "docs",
    *,
    samples_per_hour: int = 2,
    budget: float = 1.0,
    resamples: int = 500,
    workers: int | None = None,
) -> EvaluationReport:
    """Evaluate the relapse-risk model and the baselines; write the model card to ``out_dir``.

    Parameters
    ----------
    seeds
        One training and one held-out cohort per seed (simulator seeds
        ``1000 + s`` and ``s``).
    patients, days
        Size and length of each cohort.
    out_dir
        Where ``model-card.md`` and ``img/*.png`` go (None: write nothing).
    samples_per_hour
        Wearable readings per hour in the simulation (must divide 60).
    budget
        Alerts per patient-month the thresholds are chosen for.
    resamples
        Bootstrap resamples (by patient) for the intervals.
    workers
        Processes for the cohort runs (default: up to 2, the CPUs available).
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. (1, 2, 3)")
    for name, value, least in (("patients", patients, 2), ("days", days, 60)):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value!r}")
    if budget <= 0:
        raise ValueError(
            f"budget must be a positive number of alerts per patient-month, got {budget!r}"
        )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = Settings(
        seeds=tuple(seeds),
        patients=patients,
        days=days,
        samples_per_hour=samples_per_hour,
        budget=budget,
        resamples=resamples,
        workers=workers if workers is not None else max(1, min(2, cpus or 1, len(seeds))),
    )
    began = time.perf_counter()
    results = run_protocol(settings)
    report = summarise(settings, results, seconds=time.perf_counter() - began)
    report.seconds = time.perf_counter() - began
    if out_dir is not None:
        try:
            from services.evaluation.card import write_card
        except ModuleNotFoundError as missing:
            raise RuntimeError(
                f"writing the model card needs {missing.name!r} (pip install matplotlib); "
                "or pass out_dir=None to get the numbers only"
            ) from missing
        write_card(report, Path(out_dir))
    return report


def table(report: EvaluationReport) -> str:
    """The results as a plain-text table (what the command prints)."""
    names = {
        "roc_auc": "ROC-AUC",
        "pr_auc": "PR-AUC",
        "f2": "F2",
        "sensitivity": "alerted",
        "lead_time": "lead d",
        "alerts_pm": "alerts/pm",
        "open_share": "open days",
    }
    lines = [f"{'method':<22}" + "".join(f"{names[m]:>19}" for m in METRICS)]
    for method in METHODS:
        cells = "".join(f"{report.interval(method, m).text(2):>19}" for m in METRICS)
        lines.append(f"{method:<22}{cells}")
    lines.append("")
    lines += [f"{m}: {LABELS[m]}" for m in METHODS]
    return "\n".join(lines)


def cli_evaluate(
    seeds: Sequence[int] = (1, 2, 3),
    patients: int = 60,
    days: int = 180,
    out_dir: str | Path | None = "docs",
    *,
    samples_per_hour: int = 2,
    budget: float = 1.0,
    workers: int | None = None,
    echo: Callable[[str], None] = print,
) -> EvaluationReport:
    """Run :func:`evaluate` and print what it found (for the ``psymon evaluate`` command)."""
    echo(
        f"evaluating on {len(seeds)} seed(s) x {patients} training + {patients} held-out "
        f"simulated patients x {days} days (this takes a few minutes)"
    )
    report = evaluate(
        seeds,
        patients,
        days,
        out_dir,
        samples_per_hour=samples_per_hour,
        budget=budget,
        workers=workers,
    )
    echo(table(report))
    echo(
        f"held out: {report.patients} patients, {report.days} days, {report.positive_days} "
        f"positive, {report.relapses} relapses; {report.seconds:.0f} s"
    )
    if out_dir is not None:
        echo(f"wrote {Path(out_dir) / 'model-card.md'} and its figures in {Path(out_dir) / 'img'}")
    return report
