"""Replay: the stored event history through the same pure core, offline.

* :func:`replay` writes the outputs of a replay to Parquet files with a
  ``manifest.json`` (and/or to a broker topic) — ``psymon replay``;
* :func:`replay_outputs` yields them in process;
* either shares patients out among processes when given ``jobs``
  (:mod:`services.replay.shards`), with the same outputs;
* :func:`read_input_events` reads stored input events per patient in arrival
  order (also used by :mod:`services.rebuild`);
* every replay is recorded in the audit log (:mod:`services.replay.audit`).

The researcher's guide is docs/research.md.
"""

from __future__ import annotations

from services.replay.audit import AuditUnavailable
from services.replay.engine import final_states, run_core
from services.replay.provenance import Manifest
from services.replay.query import (
    ARRIVAL_ORDER,
    INPUT_KINDS,
    EventQuery,
    count_input_events,
    parse_when,
    read_input_events,
)
from services.replay.run import Progress, config_entry, load_core_config, replay, replay_outputs

__all__ = [
    "ARRIVAL_ORDER",
    "INPUT_KINDS",
    "AuditUnavailable",
    "EventQuery",
    "Manifest",
    "Progress",
    "config_entry",
    "count_input_events",
    "final_states",
    "load_core_config",
    "parse_when",
    "read_input_events",
    "replay",
    "replay_outputs",
    "run_core",
]
