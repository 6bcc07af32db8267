"""psymon's alert rules, one small class per rule, grouped by family.

Safety rules (:mod:`streams.rules.safety`) act on arrival; the others
(:mod:`~streams.rules.course_rules`, :mod:`~streams.rules.lab_rules`,
:mod:`~streams.rules.wearable_rules`) are evaluated in event-time order and
share the open/hold/close machinery of :mod:`streams.rules.base`.
"""

from __future__ import annotations

from streams.rules.base import AlertBook, AlertChange, OpenAlert, Trigger
from streams.rules.course_rules import ManiaRule, RelapseRule, ReliableDeterioration, SeverityBand
from streams.rules.lab_rules import Inflammation, LabStatusRule, LithiumRange
from streams.rules.safety import LithiumToxicity, SafetyOutcome, SelfHarmItem
from streams.rules.wearable_rules import DataLoss, SleepLoss

__all__ = [
    "AlertBook",
    "AlertChange",
    "DataLoss",
    "Inflammation",
    "LabStatusRule",
    "LithiumRange",
    "LithiumToxicity",
    "ManiaRule",
    "OpenAlert",
    "RelapseRule",
    "ReliableDeterioration",
    "SafetyOutcome",
    "SelfHarmItem",
    "SeverityBand",
    "SleepLoss",
    "Trigger",
]
