"""The study's figures (matplotlib, Agg backend: no display needed).

Each function writes one PNG and returns its path; metadata carries no
software version or time, so the same results give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from services.study.endpoints import TransitionResult
from services.study.survival import SurvivalCurve
from streams.stratification.snapshot import SubgroupSnapshot

PALETTE = ("#1f5fa8", "#d9822b", "#2e8b57", "#8e44ad", "#6b6b6b", "#c0392b")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path


def kaplan_meier_plot(
    curves: Mapping[str, SurvivalCurve],
    path: Path,
    *,
    title: str,
    comparisons: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Kaplan-Meier curves per arm with 95 % bands and the hazard ratios in the legend."""
    figure, axis = plt.subplots(figsize=(7.5, 4.6))
    hrs = {c["arm"]: c for c in comparisons if c.get("subgroup", "all") == "all"}
    for n, (arm, curve) in enumerate(sorted(curves.items())):
        colour = PALETTE[n % len(PALETTE)]
        label = f"{arm} (n={curve.n}, events={curve.total_events})"
        if arm in hrs and hrs[arm]["hr_upper_95"] is not None:
            c = hrs[arm]
            label += (
                f"\nHR {c['hazard_ratio']:.2f} (95 % CI {c['hr_lower_95']:.2f}-"
                f"{c['hr_upper_95']:.2f}), log-rank p={c['logrank_p_value']:.3g}"
            )
        axis.step(curve.times, curve.survival, where="post", color=colour, lw=2, label=label)
        axis.fill_between(
            curve.times, curve.lower, curve.upper, step="post", color=colour, alpha=0.15
        )
    axis.set(xlabel="days since the landmark", ylabel="free of the event", ylim=(0, 1.02))
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left", fontsize=8)
    return _save(figure, path)


def transitions_plot(result: TransitionResult, path: Path, *, title: str) -> Path:
    """Transition counts between consecutive periods as an annotated heat map."""
    matrix = result.matrix()
    size = max(3.0, 1.2 * len(result.labels) + 1.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axis.text(j, i, str(count), ha="center", va="center", fontsize=9)
    axis.set_xticks(range(len(result.labels)), result.labels, rotation=30, ha="right")
    axis.set_yticks(range(len(result.labels)), result.labels)
    axis.set(xlabel="label in the next period", ylabel="label in a period")
    axis.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axis, shrink=0.8)
    return _save(figure, path)


def response_plot(summary: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> Path:
    """Observed response rates (Wilson 95 % CIs) per medication and subgroup."""
    rows = [r for r in summary if r["followed"] > 0]
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.45 * len(rows) + 1.2)))
    for y, row in enumerate(rows):
        rate = row["response_rate"]
        axis.errorbar(
            rate,
            y,
            xerr=[[rate - row["response_lower_95"]], [row["response_upper_95"] - rate]],
            fmt="o",
            color=PALETTE[0 if row["subgroup"] == "all" else 1],
            capsize=3,
        )
        axis.text(1.02, y, f"{row['responders']}/{row['followed']}", va="center", fontsize=8)
    axis.set_yticks(range(len(rows)), [f"{r['medication']} | {r['subgroup']}" for r in rows])
    axis.set(xlim=(0, 1), xlabel="share of episodes with a response (observational)")
    axis.set_title(title, fontsize=10)
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def subgroup_profile_plot(snapshot: SubgroupSnapshot, path: Path) -> Path:
    """Each cluster's centre in standard units: what sets the subgroups apart."""
    features = list(snapshot.features)
    figure, axis = plt.subplots(figsize=(8, 0.4 * len(features) + 1.6))
    width = 0.8 / len(snapshot.labels)
    for n, (label, mean, weight) in enumerate(
        zip(snapshot.labels, snapshot.means, snapshot.weights, strict=True)
    ):
        ys = [i + (n - (len(snapshot.labels) - 1) / 2) * width for i in range(len(features))]
        axis.barh(
            ys,
            mean,
            height=width,
            color=PALETTE[n % len(PALETTE)],
            label=f"{label} ({weight:.0%})",
        )
    axis.axvline(0, color="black", lw=0.8)
    axis.set_yticks(range(len(features)), features)
    axis.set(xlabel="cluster centre, SD from the population mean")
    axis.set_title(f"Subgroup model {snapshot.name} v{snapshot.version}", fontsize=10)
    axis.invert_yaxis()
    axis.legend(fontsize=8)
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, path)
