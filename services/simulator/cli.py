"""``psymon simulate``: write a simulated cohort as JSONL events plus its ground truth.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "cohort.jsonl"
>>> summary = cli_simulate(2, 7, 5, out, samples_per_hour=1)
>>> summary.events == sum(1 for _ in out.open())
True
>>> summary.truth_path.name
'cohort.truth.json'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.simulator.cohort import simulate_cohort

#: The default start: a fixed Monday, so the same arguments give the same file.
DEFAULT_START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`cli_simulate` wrote."""

    events_path: Path
    truth_path: Path
    patients: int
    days: int
    events: int
    counts: dict[str, int]
    relapses: int
    seconds: float

    def lines(self) -> list[str]:
        """Human-readable summary lines for the command line."""
        kinds = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        return [
            f"{self.events} events ({kinds}) for {self.patients} patients over {self.days} days "
            f"in {self.seconds:.1f} s",
            f"{self.relapses} relapses; events: {self.events_path}; "
            f"ground truth: {self.truth_path}",
        ]


def truth_path_for(out: Path) -> Path:
    """Where the ground truth goes: beside ``out``, ``<name>.truth.json``.

    >>> truth_path_for(Path("runs/cohort.jsonl.gz")).as_posix()
    'runs/cohort.truth.json'
    """
    name = out.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return out.with_name(f"{name}.truth.json")


def cli_simulate(
    patients: int,
    days: int,
    seed: int,
    out: str | Path,
    *,
    start: datetime = DEFAULT_START,
    samples_per_hour: int = 12,
    truth: str | Path | None = None,
) -> SimulationSummary:
    """Simulate a cohort and write its events (JSONL, ``.gz`` compressed) and ground truth.

    Parameters
    ----------
    patients, days, seed
        Cohort size, length in days, random seed (same seed: identical files).
    out
        The JSONL file to write, one event per line in arrival order.
    start
        Start of the simulated period (default 2026-01-05T00:00Z).
    samples_per_hour
        Wearable readings per hour and metric (12 = every 5 minutes).
    truth
        Where to write the ground truth; default ``<out name>.truth.json`` beside ``out``.
    """
    import time

    began = time.perf_counter()
    out = Path(out)
    truth_path = Path(truth) if truth is not None else truth_path_for(out)
    cohort = simulate_cohort(patients, days, seed, start, samples_per_hour=samples_per_hour)
    written = cohort.write_jsonl(out)
    cohort.write_ground_truth(truth_path)
    return SimulationSummary(
        events_path=out,
        truth_path=truth_path,
        patients=patients,
        days=days,
        events=written,
        counts=cohort.counts(),
        relapses=sum(len(t.relapses) for t in cohort.ground_truth.values()),
        seconds=time.perf_counter() - began,
    )
