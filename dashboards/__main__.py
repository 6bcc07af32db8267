"""``python -m dashboards``: regenerate dashboards/json/ from the code; ``--check`` compares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards.build import JSON_DIR, drift, write


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, verify) the generated dashboards; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m dashboards",
        description="Generate psymon's Grafana dashboards (JSON) from dashboards/*.py.",
    )
    parser.add_argument(
        "--out", type=Path, default=JSON_DIR, help=f"directory to write (default: {JSON_DIR})"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from what the code generates",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = drift(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
