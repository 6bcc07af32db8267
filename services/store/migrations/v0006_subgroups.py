"""0006: the subgroup changes the core derives (``SubgroupAssigned`` events).

One row per change of a patient's subgroup: a specifier met or no longer met
(``scheme = 'specifier'``, e.g. ``inflammatory_depression``, with its
citation), or a move to another cluster of the population subgroup model
(``scheme = 'cluster'``, with the model version and posterior probability).
The core emits them on change only, so the table is small: it is not
partitioned, and ``event_id`` alone is the idempotency key (as for
``dead_letters``). The same for every flavour.
"""

from __future__ import annotations

VERSION = "0006"
NAME = "subgroup assignments"

_STATEMENTS = (
    """CREATE TABLE subgroup_assignments (
    event_id uuid PRIMARY KEY,
    patient_id text NOT NULL,
    observed_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    source_system text NOT NULL,
    source_device text,
    source_rater text,
    time_zone text,
    caused_by uuid NOT NULL,
    scheme text NOT NULL CHECK (scheme IN ('specifier', 'cluster')),
    scheme_name text NOT NULL,
    subgroup text,
    previous text,
    version text NOT NULL,
    probability double precision,
    description text NOT NULL,
    citation text,
    evidence jsonb NOT NULL,
    payload jsonb NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
)""",
    "CREATE INDEX subgroup_assignments_patient ON subgroup_assignments "
    "(patient_id, scheme_name, observed_at)",
    "CREATE INDEX subgroup_assignments_subgroup ON subgroup_assignments "
    "(scheme_name, subgroup, observed_at)",
)


def statements(flavour: str) -> list[str]:
    """The table and its indexes; the same for every flavour."""
    return list(_STATEMENTS)
