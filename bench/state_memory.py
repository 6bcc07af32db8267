"""Bytes of state per patient, and the memory of a process holding 10k and 100k patients.

1. **state size**: simulated patients (``services.simulator``: scores, labs,
   wearable uploads with the simulator's artefacts) run through the core for
   180 days; every patient's state is measured at 30, 90 and 180 days as
   pickled bytes (:func:`streams.state_size`, the budget: <= 8 KB) and as JSON
   (what the worker writes to its changelog topic and keeps in its table).
2. **memory**: a fresh process that has imported the worker's code (faust
   included) builds N patient states from the 90-day ones (each a copy under
   its own pseudonym) and holds them, first as the worker's table holds them
   (JSON bytes), then also decoded (``PatientState`` objects). Printed: its RSS
   before and after, per patient, at N = 10,000 and 100,000.

Wearable sampling is 4 readings per hour here: the state keeps daily
features and open days, not samples, so the rate barely changes its size
(one-minute samples give the same sizes within 3 %, measured).

Run: ``python bench/state_memory.py [--patients 20] [--days 180]`` (about a minute).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import _harness as h

BUDGET = 8 * 1024
CHECKPOINTS = (30, 90, 180)


def simulated_states(patients: int, days: int) -> dict[int, list[tuple[int, int, bytes]]]:
    """Per checkpoint day: (pickled bytes, JSON bytes, JSON) of every patient's state."""
    from services.replay.engine import run_core
    from services.simulator import simulate_cohort
    from streams import PatientState
    from streams.state import state_size

    start = datetime(2026, 1, 5, tzinfo=UTC)
    cohort = simulate_cohort(patients, days, seed=21, start=start, samples_per_hour=4)
    states: dict[str, PatientState] = {}
    checkpoints = [c for c in CHECKPOINTS if c <= days]
    found: dict[int, list[tuple[int, int, bytes]]] = {}

    def measure(day: int) -> None:
        rows = []
        for state in states.values():
            text = state.model_dump_json().encode()
            rows.append((state_size(state), len(text), text))
        found[day] = rows

    pending = list(checkpoints)
    for _ in run_core(_arrival(cohort.events(), start, pending, measure), None, states):
        pass
    for day in pending:  # the history ended before the checkpoint
        measure(day)
    return found


def _arrival(
    events: Iterable[Any], start: datetime, pending: list[int], measure: Callable[[int], None]
) -> Iterator[Any]:
    """The events, measuring the states whenever a checkpoint day has passed."""
    for event in events:
        while pending and event.received_at >= start + timedelta(days=pending[0]):
            measure(pending.pop(0))
        yield event


def holder(count: int, templates_file: str) -> None:
    """Child: hold ``count`` states as JSON bytes, then decoded; print RSS at each step."""
    import streams.app  # noqa: F401  (the worker's imports: faust, aiokafka, pydantic models)
    from streams import PatientState

    templates: list[dict[str, str]] = json.loads(Path(templates_file).read_text())
    patients = h.patient_ids(count, prefix="memory")
    gc.collect()
    base = h.rss_bytes_self()
    started = time.perf_counter()
    table: dict[bytes, bytes] = {}
    for n, patient in enumerate(patients):
        template = templates[n % len(templates)]
        table[patient.encode()] = template["json"].replace(template["patient"], patient).encode()
    gc.collect()
    with_json = h.rss_bytes_self()
    decoded = [PatientState.model_validate_json(value) for value in table.values()]
    gc.collect()
    with_objects = h.rss_bytes_self()
    h.report_child_result(
        {
            "count": count,
            "base": base,
            "json": with_json,
            "objects": with_objects,
            "json_bytes": sum(len(v) for v in table.values()),
            "decode_seconds": time.perf_counter() - started,
            "checked": decoded[-1].patient_id == patients[-1],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--counts", default="10000,100000", help="patients held in memory")
    parser.add_argument("--holder", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--templates", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.holder:
        holder(options.holder, options.templates)
        return
    started = time.monotonic()
    print(f"patient state size and worker memory, {h.machine()}")
    found = simulated_states(options.patients, options.days)
    print(
        f"state per patient ({options.patients} simulated patients; "
        f"budget {BUDGET:,} bytes pickled)"
    )
    for day, rows in sorted(found.items()):
        pickled = sorted(r[0] for r in rows)
        texts = sorted(r[1] for r in rows)
        print(
            f"  after {day:>3} days: pickled median {median(pickled):>6,.0f} B  "
            f"max {pickled[-1]:>6,} B   JSON median {median(texts):>6,.0f} B  max {texts[-1]:>6,} B"
            f"   max/budget {pickled[-1] / BUDGET:.2f}"
        )
    templates_day = 90 if 90 in found else max(found)
    templates = []
    for _, _, text in found[templates_day]:
        document = json.loads(text)
        templates.append({"patient": document["patient_id"], "json": text.decode()})
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(templates, file)
        file.flush()
        print(f"memory of a process holding N patients' {templates_day}-day states")
        for count in (int(c) for c in options.counts.split(",")):
            run = subprocess.run(
                [sys.executable, __file__, "--holder", str(count), "--templates", file.name],
                capture_output=True,
                text=True,
                timeout=600,
            )
            result = h.read_child_result(run.stdout + run.stderr)
            mib = 1024 * 1024
            per_json = (result["json"] - result["base"]) / count
            per_object = (result["objects"] - result["json"]) / count
            print(
                f"  N = {count:>7,}: RSS {result['base'] / mib:5.0f} MiB after imports, "
                f"{result['json'] / mib:6.0f} MiB holding the JSON states "
                f"({per_json / 1024:4.1f} KiB/patient, JSON itself "
                f"{result['json_bytes'] / count / 1024:.1f} KiB), "
                f"{result['objects'] / mib:6.0f} MiB with them also decoded "
                f"(+{per_object / 1024:4.1f} KiB/patient)"
            )
    print(f"  (benchmark took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
