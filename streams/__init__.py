"""psymon's logic: the pure per-patient core and, in :mod:`streams.app`, its faust wiring.

Everything here but ``streams.app`` is pure: no broker, no database, no
environment, no clock. Time comes from the events, so the same events in the
same per-patient order give the same outputs, bit for bit, live or replayed.

>>> from schemas.events import LabResult
>>> from schemas.examples import envelope_fields
>>> lab = LabResult(**envelope_fields(), analyte="lithium", value=1.7, unit="mmol/L")
>>> state, outputs = process(PatientState(), lab, CoreConfig())
>>> [(o.kind, getattr(o, "rule", None) or getattr(o, "status", None)) for o in outputs]
[('alert', 'lithium_toxicity'), ('course_update', 'toxic'), ('alert', 'lithium_range')]
>>> state_size(state) < 8 * 1024
True
"""

from __future__ import annotations

from streams.config import CoreConfig
from streams.core import process
from streams.outputs import Output
from streams.state import PatientState, state_size

__all__ = ["CoreConfig", "Output", "PatientState", "process", "state_size"]
