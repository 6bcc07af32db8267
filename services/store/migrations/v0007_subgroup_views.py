"""0007: subgroup views (every change, and where each patient stands now) and audited studies.

``v_subgroup_changes`` lists every stored
:class:`~schemas.events.SubgroupAssigned` change (dashboards read views, never
tables: the cohort's subgroup sizes over time are summed from it).

``v_subgroups`` holds, per patient and scheme (a specifier such as
``inflammatory_depression``, or a cluster model such as ``profile_mixture``),
the latest :class:`~schemas.events.SubgroupAssigned` change: the subgroup the
patient is in now and since when (``since``: the event time of the change),
with the plain-words description. The core emits a change only, so the latest
row is the current state. A row whose ``subgroup`` is null says the patient
left ``previous`` at ``since`` (a specifier no longer met); dashboards that
count members filter those out. Ties in event time fall to the later arrival,
then to the event id, as in ``v_course_latest``.

``audit_log.action`` accepts ``study`` as well as ``replay`` and ``export``:
``psymon study`` reads the stored history of many patients, so it is put on
record like a replay (``services.study.run``). The check is replaced under the
name PostgreSQL gave the original column check; existing rows keep their
values and remain valid.
"""

from __future__ import annotations

VERSION = "0007"
NAME = "subgroup views and audited studies"

_STATEMENTS = (
    """CREATE VIEW v_subgroup_changes AS
SELECT patient_id, observed_at, scheme, scheme_name, subgroup, previous, description, version,
       probability, citation, evidence, caused_by, received_at, event_id
FROM subgroup_assignments""",
    """CREATE VIEW v_subgroups AS
SELECT DISTINCT ON (patient_id, scheme, scheme_name)
       patient_id, scheme, scheme_name, subgroup, description, observed_at AS since,
       previous, version, probability, citation, evidence, received_at, event_id
FROM subgroup_assignments
ORDER BY patient_id, scheme, scheme_name, observed_at DESC, received_at DESC, event_id""",
    "ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check",
    "ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check "
    "CHECK (action IN ('replay', 'export', 'study'))",
)


def statements(flavour: str) -> list[str]:
    """The views and the widened check; the same for every flavour."""
    return list(_STATEMENTS)
