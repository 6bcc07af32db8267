"""Print the reliability summary: faults survived, events sent and stored, bad inputs tried.

Each test of tests/reliability writes its figures to
``test-artifacts/reliability/<test>.json``; this prints them as one table::

    python tests/reliability/report.py            # the latest figures of every test
    python tests/reliability/report.py --markdown # the same, as a Markdown table

``PSYMON_RELIABILITY_ARTIFACTS`` names another directory (the tests write there too).

The conftest of the suite prints the same table at the end of ``make reliability``.
Figures every test file may carry (missing ones print as ``-``):

``title``          what was tried
``fault_rounds``   faults injected (kills, outages, restarts, departures)
``events_sent``    distinct events sent (and derived) that the store must hold
``events_stored``  of those, how many the store holds
``duplicated``     rows stored more than once
``extra``          rows stored that an uninterrupted run does not derive
``lost``           expected rows the store does not hold
``bad_inputs``     hostile records tried
``crashes``        worker/sink/API processes that died on their own
``seconds``        how long the test took

>>> lines = summary_lines([{"test": "t", "title": "x", "events_sent": 3, "events_stored": 3,
...                          "duplicated": 0, "lost": 0, "crashes": 0}])
>>> lines[-1].split()[:5]
['total', '-', '3', '3', '0']
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ARTIFACTS = Path(
    os.environ.get("PSYMON_RELIABILITY_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
)

COLUMNS: tuple[tuple[str, str], ...] = (
    ("fault_rounds", "faults"),
    ("events_sent", "sent"),
    ("events_stored", "stored"),
    ("duplicated", "duplicated"),
    ("extra", "extra"),
    ("lost", "lost"),
    ("bad_inputs", "bad inputs"),
    ("crashes", "crashes"),
    ("seconds", "s"),
)


def load_figures(directory: Path = ARTIFACTS, *, since: float = 0.0) -> list[dict[str, Any]]:
    """The figures files of ``directory`` written at or after ``since`` (epoch seconds)."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        if path.stat().st_mtime < since:
            continue
        try:
            found.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return found


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _rows(figures: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    totals: dict[str, float] = {}
    for item in figures:
        row = [str(item.get("title") or item.get("test"))]
        for key, _ in COLUMNS:
            value = item.get(key)
            row.append(_cell(value))
            if isinstance(value, int | float) and not isinstance(value, bool):
                totals[key] = totals.get(key, 0) + value
        rows.append(row)
    total_row = ["total"]
    for key, _ in COLUMNS:
        value = totals.get(key)
        total_row.append(_cell(round(value, 1) if key == "seconds" and value else value))
    rows.append(total_row)
    return rows


def summary_lines(figures: Sequence[dict[str, Any]]) -> list[str]:
    """The table as aligned text lines (header, rule, one line per test, total)."""
    header = ["test", *(title for _, title in COLUMNS)]
    rows = _rows(figures)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def markdown_lines(figures: Sequence[dict[str, Any]]) -> list[str]:
    """The table in Markdown (for docs/reliability.md)."""
    header = ["test", *(title for _, title in COLUMNS)]
    rows = _rows(figures)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=ARTIFACTS, help="where the figures are")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    options = parser.parse_args(argv)
    figures = load_figures(options.dir)
    if not figures:
        print(f"no figures in {options.dir}; run `make reliability` first", file=sys.stderr)
        return 1
    for text in (markdown_lines if options.markdown else summary_lines)(figures):
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
