"""``psymon study``: a cohort, arms and endpoints, computed from stored or replayed events.

:func:`run_study` reads the events (from the store through
:func:`services.replay.read_input_events`, or from any iterable of events,
e.g. a simulated cohort in memory), runs them through the same pure core as
the live worker, and writes to ``out_dir``:

=============================  =============================================================
file                           contents
=============================  =============================================================
``results.json``               cohort counts, every endpoint's comparisons (effect sizes with
                               95 % CIs), treatment response, subgroup prevalence
``patients.csv``               every patient considered: included or why not, arm, diagnosis,
                               subgroups and biomarker profile at the landmark
``endpoint-<name>.csv``        per-patient endpoint values
``km-<name>.csv`` / ``.png``   Kaplan-Meier curves per arm (time-to-event endpoints)
``transitions-<name>.csv``     subgroup labels per period, transition matrix (``.png``)
``treatment-episodes.csv``     every treatment episode and its trajectory (observational)
``treatment-response.csv``     response and remission by medication and subgroup (``.png``)
``subgroup-model.png``         the subgroup model's cluster centres (when one is given)
``manifest.json``              the spec, which events (count, sha256 of their ids), the core
                               configuration, the subgroup model, code version, every file
=============================  =============================================================

A study that reads the store is recorded in its ``audit_log`` (migration
0007), like a replay or an export: a ``running`` row (who, the study, its
cohort and window, the spec's sha256) before any event is read, completed
with the row counts and the manifest's sha256, or ``failed`` with the error.
A study of events in memory reads no store and writes no audit row.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from services.replay.audit import audit_finished, audit_started, describe_error, require_audit_log
from services.replay.provenance import (
    MANIFEST_VERSION,
    Manifest,
    code_version,
    code_version_text,
    file_entry,
    iso,
    prepare_out_dir,
    store_schema,
    utc_now,
    write_manifest,
)
from services.replay.query import EventQuery, InputEvent, read_input_events
from services.replay.run import config_entry, load_core_config
from services.study import endpoints as ep
from services.study import plots
from services.study.cohort import Attributes, load_attributes, select, text
from services.study.collect import collect
from services.study.response import OBSERVATIONAL, episode_rows, summarise
from services.study.spec import StudySpec
from streams import CoreConfig
from streams.stratification.snapshot import SubgroupSnapshot
from streams.stratification.specifiers import SPECIFIERS


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> int:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or ["empty"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: text(v) for k, v in row.items()})
    return len(rows)


def _events_from_store(url: str, spec: StudySpec) -> tuple[Iterable[InputEvent], dict[str, Any]]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    conn.execute("SET TIME ZONE 'UTC'")
    schema = store_schema(conn)
    query = EventQuery(patients=spec.cohort.patients, until=spec.window.until)

    def events() -> Iterable[InputEvent]:
        try:
            yield from read_input_events(conn, query)
        finally:
            conn.close()

    return events(), {"kind": "store", "query": query.as_dict(), "schema": schema}


def run_study(
    url_or_events: str | Iterable[InputEvent],
    spec_file: Path | StudySpec,
    out_dir: Path,
    *,
    attributes: Attributes | None = None,
    who: str = "python",
) -> Manifest:
    """Run the study ``spec_file`` on the events; write its results to ``out_dir``.

    Parameters
    ----------
    url_or_events
        A PostgreSQL URL of a migrated psymon store (every stored input event is
        read, per patient in arrival order, up to ``window.until``), or the
        events themselves (each patient's in arrival order), e.g.
        ``cohort.events()`` of a simulated cohort.
    spec_file
        The study specification (:class:`~services.study.spec.StudySpec`), as a
        JSON/TOML file or an object.
    out_dir
        A new or empty directory.
    attributes
        Patient attributes (arm, diagnosis ...) keyed by pseudonym; overrides
        ``attributes_file``.
    who
        Who runs it, for the store's audit log (a user name, a token's name);
        unused for events in memory.

    Returns
    -------
    The :class:`~services.replay.provenance.Manifest` written last to
    ``out_dir/manifest.json``.
    """
    started = utc_now()
    if isinstance(spec_file, StudySpec):
        spec, spec_source = spec_file, "object"
    else:
        spec, spec_source = StudySpec.load(Path(spec_file)), str(spec_file)
    out = prepare_out_dir(Path(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    config = load_core_config(spec.core_config_file) if spec.core_config_file else CoreConfig()
    snapshot = None
    if spec.subgroups_file is not None:
        snapshot = SubgroupSnapshot.model_validate_json(spec.subgroups_file.read_text("utf-8"))
        config = config.with_subgroups(snapshot)
    config = config.model_copy(
        update={"stratification": config.stratification.model_copy(update={"emit_events": True})}
    )
    if attributes is None:
        attributes = load_attributes(spec.attributes_file) if spec.attributes_file else {}
    spec_sha256 = hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
    if not isinstance(url_or_events, str):
        study = _Study(spec, spec_source, spec_sha256, config, snapshot, attributes, started)
        return study.run(out, url_or_events, {"kind": "events in memory"})
    parameters = {
        "study": spec.name,
        "spec_source": spec_source,
        "spec_sha256": spec_sha256,
        "cohort": spec.cohort.model_dump(mode="json"),
        "window": spec.window.model_dump(mode="json"),
        "subgroup_model": None if snapshot is None else f"{snapshot.name} v{snapshot.version}",
        "out_dir": str(out.resolve()),
    }
    with psycopg.connect(url_or_events, autocommit=True, connect_timeout=10) as audit_conn:
        require_audit_log(audit_conn)
        audit_id = audit_started(
            audit_conn,
            "study",
            who,
            parameters,
            code_version=code_version_text(code_version()),
            config_version=config.version,
            started_at=started,
        )
        study = _Study(spec, spec_source, spec_sha256, config, snapshot, attributes, started)
        study.provenance = {"audit_id": str(audit_id), "who": who}
        try:
            events, source = _events_from_store(url_or_events, spec)
            manifest = study.run(out, events, source)
        except BaseException as error:
            audit_finished(
                audit_conn, audit_id, row_counts=study.row_counts, error=describe_error(error)
            )
            raise
        audit_finished(
            audit_conn, audit_id, row_counts=study.row_counts, manifest_sha256=manifest.sha256
        )
    return manifest


class _Study:
    """One study run: the events through the core, the endpoints, the files, the manifest."""

    def __init__(
        self,
        spec: StudySpec,
        spec_source: str,
        spec_sha256: str,
        config: CoreConfig,
        snapshot: SubgroupSnapshot | None,
        attributes: Attributes,
        started: datetime,
    ) -> None:
        self.spec, self.spec_source, self.spec_sha256 = spec, spec_source, spec_sha256
        self.config, self.snapshot, self.attributes = config, snapshot, attributes
        self.started = started
        #: Who ran it and its audit id (studies of the store), named in the manifest.
        self.provenance: dict[str, str] = {}
        #: Events read and rows of every CSV written so far (for the audit log).
        self.row_counts: dict[str, int] = {}

    def run(self, out: Path, events: Iterable[InputEvent], source: dict[str, Any]) -> Manifest:
        """Compute everything and write it to ``out``; the manifest is written last."""
        spec, config, snapshot, attributes = self.spec, self.config, self.snapshot, self.attributes
        spec_source, started = self.spec_source, self.started
        collected = collect(
            _counted(events, self.row_counts),
            config,
            since=spec.window.since,
            until=spec.window.until,
            landmark_days=spec.landmark_days,
            patients=spec.cohort.patients,
        )
        subjects, patient_rows, reasons = select(collected, spec, attributes, config)
        files: list[tuple[Path, int]] = [(out / "patients.csv", 0)]
        files[0] = (files[0][0], _write_csv(files[0][0], patient_rows))
        results: dict[str, Any] = {
            "study": spec.name,
            "title": spec.title,
            "cohort": {
                "considered": len(collected.patients),
                "included": len(subjects),
                "excluded": dict(sorted(reasons.items())),
                "arms": dict(sorted(Counter(s.arm for s in subjects).items())),
            },
            "subgroups_at_landmark": _prevalence(subjects),
            "endpoints": {},
        }
        reference = spec.arms.reference
        for endpoint in spec.endpoints:
            entry: dict[str, Any] = {"kind": endpoint.kind}
            name = endpoint.name
            if endpoint.kind == "time_to_event":
                tte = ep.time_to_event(subjects, endpoint, reference, spec.window.until)
                entry |= {
                    "n": len(tte.rows),
                    "left_out": tte.left_out,
                    "comparisons": tte.comparisons,
                }
                entry["median_days"] = {arm: c.median for arm, c in tte.curves.items()}
                files.append(
                    (
                        out / f"endpoint-{name}.csv",
                        _write_csv(out / f"endpoint-{name}.csv", tte.rows),
                    )
                )
                km_rows = [row for arm, c in tte.curves.items() for row in c.rows(arm)]
                files.append((out / f"km-{name}.csv", _write_csv(out / f"km-{name}.csv", km_rows)))
                png = plots.kaplan_meier_plot(
                    tte.curves,
                    out / f"km-{name}.png",
                    title=f"{spec.title or spec.name}: time to {', '.join(endpoint.outcomes)}",
                    comparisons=tte.comparisons,
                )
                files.append((png, 0))
            elif endpoint.kind in ("score_change", "digital_change"):
                compute = ep.score_change if endpoint.kind == "score_change" else ep.digital_change
                change = compute(
                    subjects,
                    endpoint,
                    reference,
                    resamples=spec.bootstrap_resamples,
                    seed=spec.seed,
                )
                entry |= {
                    "n": len(change.rows),
                    "left_out": change.left_out,
                    "comparisons": change.comparisons,
                    "instrument": endpoint.instrument,
                    "feature": endpoint.feature,
                }
                path = out / f"endpoint-{name}.csv"
                files.append((path, _write_csv(path, change.rows)))
            else:
                transitions = ep.subgroup_transitions(subjects, endpoint)
                entry |= {
                    "scheme": endpoint.scheme,
                    "period_days": endpoint.period_days,
                    "labels": transitions.labels,
                    "matrix": transitions.matrix(),
                    "stability": transitions.stability(),
                }
                path = out / f"transitions-{name}.csv"
                files.append((path, _write_csv(path, transitions.rows)))
                png = plots.transitions_plot(
                    transitions,
                    out / f"transitions-{name}.png",
                    title=f"{endpoint.scheme}: label per {endpoint.period_days}-day period",
                )
                files.append((png, 0))
            results["endpoints"][name] = entry
        if spec.treatment_response is not None:
            episodes = episode_rows([(s.record, s.arm) for s in subjects], spec.treatment_response)
            summary = summarise(episodes)
            results["treatment_response"] = {"note": OBSERVATIONAL, "summary": summary}
            for path, rows in (
                (out / "treatment-episodes.csv", episodes),
                (out / "treatment-response.csv", summary),
            ):
                files.append((path, _write_csv(path, rows)))
            if summary:
                png = plots.response_plot(
                    summary,
                    out / "treatment-response.png",
                    title="Observed response by medication and subgroup (observational)",
                )
                files.append((png, 0))
        if snapshot is not None:
            files.append((plots.subgroup_profile_plot(snapshot, out / "subgroup-model.png"), 0))
        results_path = out / "results.json"
        results_path.write_text(
            json.dumps(results, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )
        files.append((results_path, 0))
        csv_rows = {path.name: rows for path, rows in files if path.suffix == ".csv"}
        manifest = {
            "kind": "study",
            "manifest_version": MANIFEST_VERSION,
            "study": spec.name,
            "spec": spec.model_dump(mode="json"),
            "spec_source": spec_source,
            "spec_sha256": self.spec_sha256,
            "source": source,
            "events": {
                "count": collected.events,
                "unique": collected.unique_events,
                "kinds": collected.kinds,
                "ids_sha256": collected.ids_sha256,
                "first_received_at": iso(collected.first_received),
                "last_received_at": iso(collected.last_received),
                "patients": len(collected.patients),
                "dead_letters": collected.dead_letters,
            },
            "config": config_entry(config, str(spec.core_config_file or "built-in defaults")),
            "subgroup_model": None
            if snapshot is None
            else {
                "name": snapshot.name,
                "version": snapshot.version,
                "sha256": hashlib.sha256(snapshot.model_dump_json().encode()).hexdigest(),
            },
            "specifiers": {s.name: s.citation for s in SPECIFIERS},
            "attributes": {
                "source": str(spec.attributes_file) if spec.attributes_file else "argument",
                "patients": len(attributes),
            },
            "code": code_version(),
            "started_at": iso(started),
            "finished_at": iso(utc_now()),
            "files": [file_entry(path, rows).as_dict() for path, rows in files],
            "row_counts": csv_rows,
        }
        manifest |= self.provenance
        self.row_counts.update(csv_rows)
        written = write_manifest(out, manifest)
        return Manifest(out / written.name, manifest, written.sha256)


def _counted(events: Iterable[InputEvent], counts: dict[str, int]) -> Iterable[InputEvent]:
    """``events``, counting them in ``counts["input_events"]`` as they are read."""
    counts["input_events"] = 0
    for event in events:
        counts["input_events"] += 1
        yield event


def _prevalence(subjects: list[ep.Subject]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for subject in subjects:
        for label in subject.subgroups or ("none",):
            counts[label] += 1
    return dict(sorted(counts.items()))
