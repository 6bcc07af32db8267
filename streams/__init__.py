"""psymon's logic: the pure per-patient core and, in :mod:`streams.app`, its faust wiring.

Everything here but ``streams.app`` is pure: no broker, no database, no
environment, no clock. Time comes from the events, so the same events in the
same per-patient order give the same outputs, bit for bit, live or replayed.

>>> from streams import CoreConfig, PatientState, process
>>> state, outputs = PatientState(), []
>>> CoreConfig().version
'core-2026.1'
"""

from __future__ import annotations

from streams.config import CoreConfig
from streams.core import process
from streams.outputs import Output
from streams.state import PatientState, state_size

__all__ = ["CoreConfig", "Output", "PatientState", "process", "state_size"]
