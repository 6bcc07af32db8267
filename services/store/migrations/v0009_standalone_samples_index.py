"""0009: an index of the wearable samples that arrived on their own.

Replays and a worker's state rebuilds read a patient's input events from
``v_input_events``, which takes wearable samples only where ``upload_id IS
NULL`` (a sample of an upload is replayed with its upload). The index on
``(patient_id, observed_at)`` finds every sample of the patient and the filter
then drops nearly all of them: measured on a store of 48 patients over 60 days,
a replay's query for 6 patients took 162 ms and counting one patient's events
112 ms; with this partial index, 65 ms and 7 ms. Samples of uploads (most of
them) are not in it, so the sink's inserts of those do not maintain it. The
same for every flavour (a partitioned table and a hypertable both pass the
index to each partition or chunk).
"""

from __future__ import annotations

VERSION = "0009"
NAME = "standalone samples index"

_STATEMENTS = (
    "CREATE INDEX wearable_samples_standalone ON wearable_samples (patient_id, observed_at) "
    "WHERE upload_id IS NULL",
)


def statements(flavour: str) -> list[str]:
    """The index; the same for every flavour."""
    return list(_STATEMENTS)
