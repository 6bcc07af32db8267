"""0008: every published version of the population models, for replays.

The trainer (:mod:`services.trainer`) publishes each numbered version to the
compacted topic ``psymon.models.v1``, where compaction keeps only the newest
per model; this table keeps them all, written by the trainer before a worker
can see a version. A replay "as live" (``psymon replay --models as-live``)
scores each event with the version live used for it, read from here.

``snapshot`` is the version's JSON exactly as published (text, not jsonb:
jsonb would rewrite numbers, and a replay must read back the same weights,
bit for bit). The table is small (a version a week), so it is not partitioned
and has no retention: ``(model_name, version)`` is its key, and a version is
written once (the trainer's insert does nothing on conflict). The same for
every flavour.
"""

from __future__ import annotations

VERSION = "0008"
NAME = "model versions"

_STATEMENTS = (
    """CREATE TABLE model_versions (
    model_name text NOT NULL,
    version integer NOT NULL CHECK (version >= 0),
    trained_until timestamptz,
    examples integer NOT NULL CHECK (examples >= 0),
    positives integer NOT NULL CHECK (positives >= 0),
    snapshot text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, version)
)""",
)


def statements(flavour: str) -> list[str]:
    """The table; the same for every flavour."""
    return list(_STATEMENTS)
