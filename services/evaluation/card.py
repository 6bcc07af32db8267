"""``docs/model-card.md``: the evaluation's results, written for the people who rely on them."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median

from services.evaluation import plots
from services.evaluation.report import LABELS, METHODS, METRICS, EvaluationReport
from streams.models.features import INPUTS

_METRIC_NAMES = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "f2": "F2 (alert open)",
    "sensitivity": "relapses alerted",
    "lead_time": "median lead (days)",
    "alerts_pm": "alerts / patient-month",
    "open_share": "days with an alert open",
}


def _verdict(report: EvaluationReport) -> list[str]:
    lines = []
    checks = [
        ("model", "anomaly", "pr_auc", "PR-AUC", "the anomaly-rate rule"),
        ("model", "rules", "pr_auc", "PR-AUC", "the rating-scale rules"),
        (
            "model",
            "anomaly",
            "lead_time",
            "median lead time at the budget",
            "the anomaly-rate rule",
        ),
        (
            "model",
            "anomaly",
            "sensitivity",
            "share of relapses alerted at the budget",
            "the anomaly-rate rule",
        ),
        (
            "model_tight",
            "anomaly_tight",
            "lead_time",
            "median lead time at the stricter budget",
            "the anomaly-rate rule",
        ),
        (
            "model_tight",
            "anomaly_tight",
            "sensitivity",
            "share of relapses alerted at the stricter budget",
            "the anomaly-rate rule",
        ),
        (
            "model_at_rules_burden",
            "rules",
            "lead_time",
            "median lead time at the rules' own alert burden",
            "the rating-scale rules",
        ),
        (
            "model_at_rules_burden",
            "rules",
            "sensitivity",
            "share of relapses alerted at the rules' own alert burden",
            "the rating-scale rules",
        ),
    ]
    for method, baseline, metric, name, other in checks:
        difference = report.interval(f"{method}-{baseline}", metric)
        better, sure = report.beats(method, baseline, metric)
        if difference.value != difference.value:  # NaN: undefined (no detections)
            lines.append(f"* **{name}** vs {other}: undefined (one side detected no relapse).")
            continue
        if sure:
            verdict = "the model is better, and the 95 % interval of the difference excludes 0"
        elif better:
            verdict = "the model is better on the point estimate, but the interval includes 0"
        else:
            verdict = "**the model is not better**"
        lines.append(f"* **{name}** vs {other}: {verdict} (difference {difference.text()}).")
    return lines


def _over_budget(report: EvaluationReport) -> list[str]:
    lines = []
    settings = report.settings
    for method, budget in (
        ("model", settings.budget),
        ("anomaly", settings.budget),
        ("model_tight", settings.tight_budget),
        ("anomaly_tight", settings.tight_budget),
    ):
        burden = report.interval(method, "alerts_pm").value
        if burden > budget:
            lines.append(
                f"On the held-out patients the row *{LABELS[method]}* raised {burden:.2f} "
                f"alerts per patient-month against a budget of {budget:g}: a threshold chosen on "
                f"{settings.patients} training patients carries that much error."
            )
    return [" ".join(lines), ""] if lines else []


def _always_open_f2(report: EvaluationReport) -> float:
    prevalence = report.positive_days / max(report.days, 1)
    return 5 * prevalence / (4 * prevalence + 1)


def _results_table(report: EvaluationReport) -> list[str]:
    header = "| method | " + " | ".join(_METRIC_NAMES[m] for m in METRICS) + " |"
    rows = [header, "|" + "---|" * (len(METRICS) + 1)]
    for method in METHODS:
        cells = []
        for metric in METRICS:
            digits = 1 if metric == "lead_time" else 2
            cells.append(report.interval(method, metric).text(digits))
        rows.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return rows


def _seed_table(report: EvaluationReport) -> list[str]:
    rows = [
        "| seed | threshold (model / anomaly) | versions | model PR-AUC | anomaly PR-AUC | "
        "rules PR-AUC | model lead | anomaly lead | model alerts/pm | anomaly alerts/pm |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in report.seeds:
        s = report.per_seed[result.seed]
        t = result.thresholds
        rows.append(
            f"| {result.seed} | {t['model']:.3f} / {t['anomaly']:.3f} | {result.versions} | "
            f"{s['model.pr_auc']:.2f} | {s['anomaly.pr_auc']:.2f} | {s['rules.pr_auc']:.2f} | "
            f"{s['model.lead_time']:.1f} | {s['anomaly.lead_time']:.1f} | "
            f"{s['model.alerts_pm']:.2f} | {s['anomaly.alerts_pm']:.2f} |"
        )
    return rows


def _prequential_table(report: EvaluationReport) -> list[str]:
    rows = ["| seed | days | prevalence | ROC-AUC | PR-AUC |", "|---|---|---|---|---|"]
    for result in report.seeds:
        p = result.prequential
        rows.append(
            f"| {1000 + result.seed} | {int(p['days'])} | {p['prevalence']:.3f} | "
            f"{p['roc_auc']:.2f} | {p['pr_auc']:.2f} |"
        )
    return rows


def _default_threshold(default: float, strict: list[float]) -> str:
    """What the card says of ``RiskConfig.alert_threshold`` against the stricter budget's median."""
    chosen = median(strict)
    if round(default, 2) == round(chosen, 2):
        return (
            "`RiskConfig.alert_threshold` defaults to the stricter budget's median: at the "
            "looser one an alert stays open on a large share of days."
        )
    side, burden = ("above", "fewer") if default > chosen else ("below", "more")
    return (
        f"`RiskConfig.alert_threshold` defaults to {default:g}, {side} the stricter budget's "
        f"median ({burden} alerts than that budget on these cohorts); choose the threshold on "
        "your own cohort."
    )


def _weights(report: EvaluationReport) -> list[str]:
    model = report.seeds[0].model
    ranked = sorted(zip(model.features, model.weights, strict=True), key=lambda t: -abs(t[1]))[:10]
    rows = ["| input | weight (per SD) |", "|---|---|"]
    rows += [f"| `{name}` | {weight:+.3f} |" for name, weight in ranked]
    return rows


def write_card(report: EvaluationReport, out_dir: Path) -> Path:
    """Write the figures under ``out_dir/img`` and ``out_dir/model-card.md``; return the card."""
    images = out_dir / "img"
    figures = [
        plots.roc_pr(report, images),
        plots.burden(report, images),
        plots.lead_times(report, images),
        plots.example(report, images),
    ]
    (images / "model-card-results.json").write_text(
        json.dumps(report.as_dict(), indent=1, default=str) + "\n", encoding="utf-8"
    )
    settings = report.settings
    sizes = sorted(b for r in report.seeds for b in r.state_bytes)
    risk_sizes = sorted(b for r in report.seeds for b in r.risk_bytes) or [0]
    thresholds = [r.thresholds["model"] for r in report.seeds]
    strict = [r.thresholds["model_tight"] for r in report.seeds]
    text = [
        "# Model card: relapse_risk",
        "",
        "*Written by `psymon evaluate` (`services.evaluate.evaluate`); rerun it to refresh every "
        "number and figure here. All data are simulated.*",
        "",
        "## Summary",
        "",
        f"Held-out simulated patients: {report.patients} over {len(settings.seeds)} seeds "
        f"({settings.patients} per seed, {settings.days} days each), {report.days:,} at-risk "
        f"days with a complete 28-day horizon, {report.positive_days:,} of them positive "
        f"({report.positive_days / max(report.days, 1):.1%}), {report.relapses} relapses. "
        f"Alert budget: {settings.budget:g} alert per patient-month (rows marked *stricter "
        f"budget*: {settings.tight_budget:g}); alerts at random times "
        f"at that rate would catch {float(plots.chance_sensitivity(settings.budget)):.0%} of "
        "relapses within 28 days by luck, and an alert left open on every day would reach "
        f"F2 {_always_open_f2(report):.2f}, so read the share of relapses alerted and F2 "
        "against those, and against the curve below. Brackets: 95 % bootstrap intervals, "
        "resampling patients.",
        "",
        *_results_table(report),
        "",
        *_over_budget(report),
        "Does the model beat the baselines on these held-out patients?",
        "",
        *_verdict(report),
        "",
        "How to read these: in the simulator the prodrome is 7-21 days long and shows mostly "
        "in its last days, so a detector with real skill alerts late in the 28-day window, "
        "while alerts at random times land anywhere in it (median lead about 14 days). A "
        "long median lead at a loose budget is therefore no evidence of skill; the share of "
        "relapses alerted at a fixed burden is, and the curve below shows it at every burden. "
        "At a loose budget both threshold rules keep an alert open on a large share of days, "
        "which care teams would learn to ignore.",
        "",
        "![ROC and precision-recall curves](img/model-roc-pr.png)",
        "",
        "![Relapses alerted against alert burden](img/model-burden.png)",
        "",
        "![Lead times](img/model-lead-time.png)",
        "",
    ]
    if figures[3] is not None:
        text += ["![An example patient](img/model-example.png)", ""]
    text += [
        "## Intended use",
        "",
        "An early-warning signal for care teams monitoring patients with depression, bipolar "
        "disorder or schizophrenia between visits: a daily probability that a relapse or "
        "hospitalisation begins within 28 days, the inputs that raised it, and a "
        "`relapse_risk` alert (severity warning) when the risk stays high. It prompts a "
        "check-in; it does not diagnose, and it never replaces the safety rules (PHQ-9 item 9, "
        "self-harm outcomes, lithium toxicity), which act on arrival without any model.",
        "",
        "**Not validated on real patients.** Every number on this page comes from the simulator "
        "(`docs/simulator.md`), whose effects are assumptions built from published "
        "directions. Before clinical use the model must be retrained and re-evaluated on real, "
        "labelled data, with the same protocol.",
        "",
        "## Model",
        "",
        f"* **Inputs** ({len(INPUTS)}), per patient-day, computed in the pure core as each "
        "wearable day closes (`streams/models/features.py`): for each daily wearable feature, "
        "the 7-day exponentially weighted mean of its robust z-score against the patient's "
        "own 28-day baseline, the same mean of |z|, and a two-sided CUSUM drift statistic "
        "(Page 1954); the anomaly rate (share of feature-days with |z| > 2 over 14 days, "
        "Barnett 2018); the highest recent self-report and clinician rating (as a share of "
        "the scale's range) and their change from baseline in instrument SD; weeks since the "
        "last self-report.",
        "* **Learner**: logistic regression on standardised inputs, learnt online (AdaGrad, "
        f"learning rate {settings.learning_rate:g}, L2 {settings.l2:g}, averaged weights), one "
        "pass, in the order labels became known (`streams/models/logistic.py`).",
        f"* **Labels** (`streams/models/labels.py`): a day is positive when a relapse, "
        f"recurrence or hospitalisation onset falls within 28 days after it. Every day waits "
        f"28 + {settings.grace_days} days for its label, positive or negative (a positive "
        "learnt as soon as its outcome is known would reach the learner weeks before the "
        "negatives of the same days, and every young model would overestimate risk); an "
        "outcome counts only from its `received_at`. Days within "
        f"{settings.refractory_days} days after a known onset are not learnt from.",
        f"* **Versions**: the trainer publishes a numbered version every "
        f"{settings.publish_every_days} days of event time; every `RiskAssessment` names "
        "`model_name` and `model_version`.",
        "* **Alert**: opens after "
        f"{settings.risk.alert_days} consecutive days at or above the threshold, closes after "
        f"{settings.risk.close_days} consecutive days below "
        f"{settings.risk.close_threshold / settings.risk.alert_threshold:.0%} of it. Thresholds "
        f"chosen on the training cohorts for {settings.budget:g} alert per patient-month: "
        f"{', '.join(f'{t:.3f}' for t in thresholds)} (median {median(thresholds):.3f}); for "
        f"{settings.tight_budget:g}: {', '.join(f'{t:.3f}' for t in strict)} (median "
        f"{median(strict):.3f}). {_default_threshold(settings.risk.alert_threshold, strict)}",
        "",
        "Largest weights of the seed-" + str(report.seeds[0].seed) + " model (small, and "
        "not all of the expected sign: the inputs are weak and correlated, and averaged "
        "online steps shrink the weights):",
        "",
        *_weights(report),
        "",
        "## Data and protocol",
        "",
        f"* Per seed `s`: a **training cohort** (simulator seed `1000 + s`, {settings.patients} "
        f"patients, days 0-{settings.days - 1}) and a **held-out cohort** (seed `s`, "
        f"{settings.patients} other patients, days {settings.days}-{2 * settings.days - 1}: "
        "after the training period). Wearables at "
        f"{settings.samples_per_hour} samples per hour.",
        "* Every event of both cohorts goes through the pure core (`streams.process`), in "
        "arrival order, with late and duplicated data as the simulator makes them.",
        "* The model learns prequentially on the training cohort (each version scores days "
        "before it learns them) and is frozen at the start of the held-out period: labels "
        "received later are never read. Thresholds: the model's by two-fold cross-fitting by "
        "patient on the training cohort, the anomaly rule's on the training cohort, each the "
        "threshold that alerted the most training relapses in time within the budget.",
        "* The held-out cohort runs through the core with that version and threshold in "
        "`CoreConfig`; the table scores the assessments and `relapse_risk` alerts the core "
        "emitted. "
        + (
            "The core's alerts equal the rule applied offline (checked for every patient)."
            if all(r.core_matches_rule for r in report.seeds)
            else "**The core's alerts differ from the rule applied offline for some patients.**"
        ),
        "* Labels from the ground truth: a day is positive when a relapse onset falls in the "
        "next 28 days. Days from onset to the end of recovery are not at risk and are left "
        "out everywhere (alerts then are not counted either); day-level metrics also leave out "
        "the last 28 days, whose labels are censored.",
        "* A relapse counts as alerted when an alert opened in the 28 days before onset; lead "
        "time is onset minus the first such alert. Alerts per patient-month count alerts "
        "opened on at-risk days; an alert left open does not count again, so the share of days "
        "with an alert open is shown too. Each threshold is the one that alerted the most "
        "training relapses in time within the budget (with hysteresis the lowest threshold "
        "within budget would keep alerts open for weeks and alert nothing in time).",
        "* Hyperparameters (learning rate, L2, smoothing span) were tried on separate tuning "
        "seeds (901-903), never on the seeds reported here.",
        "",
        "Per seed (point estimates):",
        "",
        *_seed_table(report),
        "",
        "Prequential results on the training cohorts (each day scored by the version in "
        "force when it arrived, before any label of it was learnt; early versions know little):",
        "",
        *_prequential_table(report),
        "",
        "## Limits and failure modes",
        "",
        "* **Simulated data only.** The simulator's prodrome (7-21 days, severity rising "
        "slowly then fast) and effect sizes are assumptions; real prodromes vary more, and "
        "published detectors reach ROC-AUC 0.55-0.76 on real data (GLOBEM 2022, e-Prevention "
        "2024).",
        "* **The 28-day label is partly unpredictable**: days before the prodrome begins carry "
        "no signal in the simulator, so precision stays low at any threshold.",
        "* **Cold start**: a patient is scored only after a 7-day personal baseline; a new "
        "deployment's model (version 0) is constant until labels arrive, weeks after the first "
        "relapses.",
        "* **Label delay and noise**: a relapse recorded more than "
        f"{settings.grace_days} days after the horizon is learnt as negative; unrecorded "
        "relapses are negatives for ever.",
        "* **Missing data** is an input (coverage, gaps in self-reports): patients who stop "
        "wearing a device for reasons unrelated to illness raise their risk.",
        "* **Rolling baseline**: a change that lasts longer than about two weeks becomes the "
        "patient's new baseline, so slow deteriorations fade from the inputs.",
        "* **Travel, device changes and clock errors** shift sleep timing and coverage and can "
        "raise false alerts.",
        "* **One model for all diagnoses**: manic and depressive prodromes move some inputs in "
        "opposite directions; the |z| inputs cover that only in part.",
        "",
        *SUBGROUP_INPUTS_SECTION,
        "",
        "## Live deployment",
        "",
        "* **One learner.** Workers are partitioned by patient; the population model is not. "
        "`psymon trainer` (one process per deployment, `services/trainer.py`) reads every "
        "partition of `psymon.risk.v1` (the assessments list every model input) and "
        "`psymon.clinical-outcomes.v1`, and feeds them to the trainer in `received_at` order: a "
        "buffer releases them behind a watermark that follows the slowest active risk partition "
        "(outcomes wait until the assessments have caught up with them). An event that still "
        "comes in behind is learnt as if it had arrived when it was read, never earlier; such "
        "events are counted as late.",
        "* **Numbered versions.** Every 7 days of event time the trainer freezes the learner "
        "into the next version, archives it in the store's `model_versions` table (and "
        "`PSYMON_DATA_DIR/models/`), then publishes it to the compacted topic "
        "`psymon.models.v1` (one partition, keyed by model name).",
        "* **No alert from an untrained model.** Before any trained version, workers score with "
        "version 0: a constant 5 %, below the alert threshold, so it raises no `relapse_risk` "
        "alert, while its assessments feed the trainer. A trained version is published only "
        "once the learner has learnt at least 20 positive and 500 negative days (`psymon "
        "trainer --min-positives/--min-negatives`). Every day is learnt once its label is "
        "final, 28 + 28 days after it, positive or negative: a positive is known as soon as "
        "its outcome arrives, but learnt then it would reach the learner weeks before the "
        "negatives of the same days, and a young learner would overestimate everyone's risk "
        "(`streams/models/labels.py`; a demo run before this rule published versions that "
        "alerted on 195 of 200 patients). The evaluation above applies no minimum (its "
        "held-out model has learnt thousands of days).",
        "* **Every worker scores with the newest version it has.** A background thread polls "
        "`psymon.models.v1` every 2 seconds (`services/live_models.py`) and swaps "
        "`config.with_model(newest)`; each batch is scored with the configuration current when "
        "it starts (`streams.app.create_app(config_source=...)`). Versions only move forward. "
        "Each `RiskAssessment` names `model_name` and `model_version`; the `relapse_risk` "
        "alert's evidence does too.",
        "* **Restarts do not fork.** The trainer checkpoints its whole state (learner, pending "
        "labels, read positions, versions not yet published) before it publishes, and resumes "
        "from it. Without a checkpoint it re-learns from the history the broker still holds and "
        "numbers its versions after the newest one archived, publishing nothing until its clock "
        "has passed that version's `trained_until`.",
        "* **Replay reproduces live.** `psymon replay --models as-live` scores each stored "
        "event with the version live used for it: the version its stored assessments name, else "
        "the version archived last before its `received_at`. The assessments and `relapse_risk` "
        "alerts come out as live, bit for bit (`tests/integration/test_live_models.py`). "
        "`--models config` (the default) scores with the configuration's model only.",
        "* The assessments list every input, so they are the trainer's training data; set "
        "`risk.contributions` to a small number only where no trainer reads them.",
        "",
        "## Operational figures",
        "",
        f"* Patient state with the per-patient model parts, at the end of the held-out period: "
        f"median {sizes[len(sizes) // 2]:,} bytes, largest {sizes[-1]:,} "
        f"({sum(1 for s in sizes if s > 8192)} of {len(sizes)} over 8 KB); "
        f"`streams.state_size`. The risk models' part (inputs, drift, anomaly window, alert "
        f"rule), pickled on its own: median {risk_sizes[len(risk_sizes) // 2]:,} bytes (less "
        "inside the state, whose pickle names each class once), at most "
        f"{risk_sizes[len(risk_sizes) // 2] * 100_000 / 1e6:.0f} MB for 100,000 patients.",
        f"* This evaluation took {report.seconds:.0f} s ({settings.workers} worker processes).",
        "* Numbers behind this page: `docs/img/model-card-results.json`.",
        "",
        "## Reproduce",
        "",
        "```",
        "psymon evaluate            # or: python -c 'from services.evaluate import cli_evaluate; "
        "cli_evaluate()'",
        "```",
        "",
    ]
    card = out_dir / "model-card.md"
    card.write_text("\n".join(text), encoding="utf-8")
    return card


#: The card's section on the optional subgroup inputs (docs/stratification.md).
SUBGROUP_INPUTS_SECTION = (
    "## Subgroup inputs (optional, off)",
    "",
    "`risk.subgroup_inputs = true` adds the patient's subgroups as 0/1 inputs",
    "(`specifier_inflammatory_depression`, and one `cluster_<label>` per cluster",
    "of the subgroup model in `CoreConfig.subgroups`; `streams/models/features.py`,",
    "docs/stratification.md). Every number on this page is **without** them. They",
    "are off because they cannot help here: the simulator plants low-grade",
    "inflammation in CRP (and in the treatment effect of an arm restricted to that",
    "subgroup), not in the relapse hazard, so in these cohorts the flags carry no",
    "information about relapse, and this evaluation was not rerun with them. Turn",
    "them on only for a population where a subgroup is known to relapse",
    "differently, train on `inputs_for(config)`, and evaluate before deploying.",
)
