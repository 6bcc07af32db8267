"""Small valid values for doctests and tests: an envelope, a pseudonym.

These are fixtures, not data: the pseudonym is made with a throwaway key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from schemas.identity import event_id_for, pseudonymise

#: A throwaway key for examples and tests; never a real deployment's key.
EXAMPLE_KEY = b"psymon-example-key-not-for-production!"

EXAMPLE_PATIENT = pseudonymise("example-patient-1", EXAMPLE_KEY, system="example")


def envelope_fields(**overrides: Any) -> dict[str, Any]:
    """Valid envelope fields; any field can be overridden.

    >>> envelope_fields()["patient_id"] == EXAMPLE_PATIENT
    True
    """
    observed = overrides.pop("observed_at", datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    fields: dict[str, Any] = {
        "event_id": event_id_for("example", str(observed.isoformat()), str(sorted(overrides))),
        "patient_id": EXAMPLE_PATIENT,
        "observed_at": observed,
        "received_at": datetime(2026, 3, 2, 9, 5, tzinfo=UTC),
        "source": {"system": "example"},
    }
    fields.update(overrides)
    return fields


def example_uuid(n: int) -> UUID:
    """A stable UUID numbered ``n`` for tests.

    >>> example_uuid(1) == example_uuid(1)
    True
    """
    return event_id_for("example-uuid", str(n))
