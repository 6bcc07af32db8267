"""The core's check suite: every rule and feature honours the same contract.

Like river's ``check_estimator``, one set of checks runs over every unit of
the pure core (each feature extractor, course tracker, memory and alert
rule), fed a short scripted history through its one verb:

* pickling and JSON round trips mid-history change nothing about what follows;
* two fresh units fed the same inputs give the same outputs (determinism);
* a verb never mutates its arguments (purity);
* ``clone()`` is independent of the original (what copy-on-write relies on);
* outputs are in range (alert severities and statuses, coverage, SDs);
* every unit documents itself with a runnable example.

The suite discovers the units itself: a new rule or feature without a case
here fails :func:`test_every_unit_has_a_contract_case`. A static check keeps
the core free of frameworks, the environment, the clock and randomness.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import pickle
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

import streams
from schemas.analytes import ANALYTES
from schemas.events import ClinicalOutcome, ClinicalScore, LabResult
from schemas.examples import EXAMPLE_PATIENT, envelope_fields, example_uuid
from schemas.instruments import INSTRUMENTS
from streams.config import CoreConfig
from streams.course import CourseView, InstrumentCourse
from streams.dedup import EventMemory, SampleCoverage
from streams.labs import LabCourse, LabView
from streams.level import LocalLevel
from streams.ordering import EventTimeOrder
from streams.rules import (
    AlertBook,
    AlertChange,
    DataLoss,
    Inflammation,
    LabStatusRule,
    LithiumRange,
    LithiumToxicity,
    ManiaRule,
    RelapseRule,
    ReliableDeterioration,
    SafetyOutcome,
    SelfHarmItem,
    SeverityBand,
    SleepLoss,
    Trigger,
)
from streams.timezones import TimeZoneHistory
from streams.wearable_days import ClosedDay, WearableDays
from streams.wearable_features import DayTotals, FeatureHistory

CONFIG = CoreConfig()
DAY_US = 86_400_000_000
T = datetime(2026, 3, 2, 9, tzinfo=UTC)
VERBS = ("update", "evaluate", "add", "push", "record", "remember", "admit", "step", "close")


def _trigger(n: int) -> Trigger:
    return Trigger(EXAMPLE_PATIENT, T + timedelta(days=n), f"event-{n}")


def _view(instrument: str, totals: list[int]) -> list[CourseView]:
    course = InstrumentCourse(instrument)
    return [course.update(t, None, n * 7 * DAY_US, CONFIG) for n, t in enumerate(totals)]


def _labs(analyte: str, values: list[float]) -> list[LabView]:
    course = LabCourse(analyte)
    return [course.update(v, CONFIG) for v in values]


def _day(n: int, sleep_z: float | None, hours: float | None) -> ClosedDay:
    return ClosedDay(
        date(2026, 3, n),
        datetime(2026, 3, n + 1, tzinfo=UTC),
        True,
        0.8,
        hours,
        {"sleep_duration": 400.0},
        {"sleep_duration": 450.0},
        {"sleep_duration": sleep_z},
    )


def _score(n: int, total: int, item9: int = 0) -> ClinicalScore:
    items = {str(i): 0 for i in range(1, 10)}
    for i in range(total - item9):
        items[str(i % 8 + 1)] += 1
    items["9"] = item9
    when = T + timedelta(days=n)
    fields = envelope_fields(observed_at=when, received_at=when, event_id=example_uuid(n))
    return ClinicalScore(**fields, instrument="phq9", rater="self", items=items)


def _lab(n: int, analyte: str, value: float) -> LabResult:
    when = T + timedelta(days=n)
    fields = envelope_fields(observed_at=when, received_at=when, event_id=example_uuid(100 + n))
    return LabResult(**fields, analyte=analyte, value=value, unit=ANALYTES[analyte].unit)


def _outcome(n: int, kind: str) -> ClinicalOutcome:
    when = T + timedelta(days=n)
    fields = envelope_fields(observed_at=when, received_at=when, event_id=example_uuid(200 + n))
    return ClinicalOutcome(**fields, outcome=kind)


def _samples(day: int) -> list[tuple[str, float, int, int, str]]:
    start = int((T + timedelta(days=day)).timestamp())
    return [
        ("steps", 120.0, start, start + 60, "Europe/Berlin"),
        ("heart_rate", 64.0, start + 60, start + 120, "Europe/Berlin"),
        ("sleep", 30.0, start - 8 * 3600, start - 6 * 3600, "+01:00"),
        ("steps", 120.0, start, start + 60, "Europe/Berlin"),  # a duplicate
    ]


Call = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Case:
    """A unit, how to make a fresh one, and a scripted history of calls to its verbs."""

    unit: type
    make: Callable[[], Any]
    calls: Callable[[], list[Call]]


CASES: list[Case] = [
    Case(
        LocalLevel,
        LocalLevel,
        lambda: [("update", (v, n * DAY_US, 4.0, 0.5)) for n, v in enumerate([20.0, 14, 15, 9])],
    ),
    Case(
        InstrumentCourse,
        lambda: InstrumentCourse("phq9"),
        lambda: (
            [
                ("update", (t, None, d * DAY_US, CONFIG))
                for d, t in [(0, 20), (14, 9), (28, 3), (90, 12), (104, 14)]
            ]
            + [("mark_outcome", ("remission", None, 120 * DAY_US, CONFIG))]
        ),
    ),
    Case(
        LabCourse,
        lambda: LabCourse("il6"),
        lambda: [("update", (v, CONFIG)) for v in (2.0, 2.5, 2.2, 9.0, 2.1)],
    ),
    Case(
        DayTotals,
        DayTotals,
        lambda: [
            ("add", ("steps", 100.0, 0, "+01:00", 0)),
            ("add", ("sleep", 30.0, 60, "Europe/Berlin", 120)),
            ("add", ("heart_rate", 61.6, 120, "+01:00", 0)),
            ("add", ("hrv_rmssd", 41.25, 180, "+01:00", 0)),
            ("add", ("active_minutes", 12.0, 240, "+01:00", 0)),
        ],
    ),
    Case(
        FeatureHistory,
        FeatureHistory,
        lambda: [
            ("push", (date(2026, 3, d), {"steps": 1000.0 * d, "coverage": 0.9}, CONFIG.wearable))
            for d in (1, 2, 4, 5, 6, 7, 8, 9, 10)
        ],
    ),
    Case(
        WearableDays,
        WearableDays,
        lambda: [
            ("add", (_samples(0), "watch", CONFIG)),
            ("add", (_samples(1), "watch", CONFIG)),
            ("close", (int((T + timedelta(days=2)).timestamp()), 6 * 3600, CONFIG)),
            ("add", (_samples(0), "watch", CONFIG)),  # late now
            ("close", (int((T + timedelta(days=9)).timestamp()), 6 * 3600, CONFIG)),
        ],
    ),
    Case(
        TimeZoneHistory,
        TimeZoneHistory,
        lambda: [
            ("record", (date(2026, 3, d), zone))
            for d, zone in [(1, "Europe/Berlin"), (2, "Europe/Berlin"), (3, "-05:00"), (2, "UTC")]
        ],
    ),
    Case(
        EventMemory,
        EventMemory,
        lambda: [("remember", (example_uuid(n), 10 * (n % 3), 2)) for n in range(5)],
    ),
    Case(
        SampleCoverage,
        SampleCoverage,
        lambda: (
            [
                ("add", ("s", a, b, 4))
                for a, b in [
                    (0, 60),
                    (120, 180),
                    (60, 120),
                    (30, 90),
                    (300, 300),
                    (500, 600),
                    (700, 800),
                ]
            ]
            + [("forget_before", (200,))]
        ),
    ),
    Case(
        EventTimeOrder,
        EventTimeOrder,
        lambda: [
            ("admit", (_lab(1, "crp", 1.0), "lab_result:crp", DAY_US)),
            ("admit", (_lab(0, "crp", 2.0), "lab_result:crp", DAY_US)),
            ("admit", (_lab(3, "crp", 3.0), "lab_result:crp", DAY_US)),
            ("release", ("lab_result:crp", 64)),
            ("admit", (_lab(-5, "crp", 4.0), "lab_result:crp", DAY_US)),
        ],
    ),
    Case(
        AlertBook,
        AlertBook,
        lambda: [
            (
                "move_kw",
                ("rule", "key", _trigger(n), 24.0, raised, holds),
            )
            for n, (raised, holds) in enumerate(
                [
                    (None, False),
                    ("info", True),
                    ("warning", True),
                    (None, True),
                    (None, False),
                    ("info", True),
                    ("info", True),
                ]
            )
        ],
    ),
    Case(
        ReliableDeterioration,
        ReliableDeterioration,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(_view("phq9", [6, 13, 14, 7]))
        ],
    ),
    Case(
        SeverityBand,
        SeverityBand,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(_view("gad7", [3, 11, 17, 12, 4, 12]))
        ],
    ),
    Case(
        ManiaRule,
        ManiaRule,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(_view("ymrs", [4, 13, 25, 5]))
        ],
    ),
    Case(
        RelapseRule,
        RelapseRule,
        lambda: [
            ("evaluate", (instrument, status, _trigger(n), CONFIG))
            for n, (instrument, status) in enumerate(
                [
                    ("phq9", "remission"),
                    ("phq9", "relapse"),
                    ("panss", "relapse"),
                    ("phq9", "remission"),
                ]
            )
        ],
    ),
    Case(
        LithiumRange,
        LithiumRange,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(_labs("lithium", [0.8, 1.3, 1.6, 0.9, 0.4, 0.7]))
        ],
    ),
    Case(
        Inflammation,
        Inflammation,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(_labs("crp", [1.0, 4.0, 2.0]) + _labs("hs_crp", [6.0]))
        ],
    ),
    Case(
        LabStatusRule,
        LabStatusRule,
        lambda: [
            ("evaluate", (v, _trigger(n), CONFIG))
            for n, v in enumerate(
                _labs("valproate", [70.0, 130.0, 80.0]) + _labs("il6", [2.0, 2.2, 2.1, 8.0])
            )
        ],
    ),
    Case(
        SleepLoss,
        SleepLoss,
        lambda: [
            ("evaluate", (_day(n + 1, z, 1.0), _trigger(n), CONFIG))
            for n, z in enumerate([-2.0, -2.0, 0.0, -3.0, None, 0.0, 0.0, 0.0])
        ],
    ),
    Case(
        DataLoss,
        DataLoss,
        lambda: [
            ("evaluate", (_day(n + 1, 0.0, h), _trigger(n), CONFIG))
            for n, h in enumerate([None, 3.0, 30.0, 54.0, 78.0, 2.0])
        ],
    ),
    Case(
        SelfHarmItem,
        SelfHarmItem,
        lambda: [("evaluate", (_score(n, 10, item9), CONFIG)) for n, item9 in enumerate([0, 1, 2])],
    ),
    Case(
        SafetyOutcome,
        SafetyOutcome,
        lambda: [
            ("evaluate", (_outcome(n, kind), CONFIG))
            for n, kind in enumerate(["remission", "self_harm", "suicidal_ideation"])
        ],
    ),
    Case(
        LithiumToxicity,
        LithiumToxicity,
        lambda: [
            ("evaluate", (_lab(n, "lithium", v), CONFIG)) for n, v in enumerate([1.0, 1.51, 2.2])
        ],
    ),
]

BY_NAME = {case.unit.__name__: case for case in CASES}


def _call(unit: Any, name: str, args: tuple[Any, ...]) -> Any:
    if name == "move_kw":  # AlertBook.move with keyword-only answers
        rule, key, trigger, cooldown, raised, holds = args
        return unit.move(
            rule, key, trigger, cooldown, raised=raised, holds=holds, message="m", evidence={}
        )
    return getattr(unit, name)(*args)


def _run(unit: Any, calls: list[Call]) -> list[Any]:
    return [_call(unit, name, args) for name, args in calls]


def _discover_units() -> set[str]:
    """Every class in the pure core that has one of the verbs."""
    found = set()
    for module_info in pkgutil.walk_packages(streams.__path__, "streams."):
        if module_info.name == "streams.app":
            continue
        module = importlib.import_module(module_info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            if any(callable(getattr(cls, verb, None)) for verb in VERBS):
                found.add(name)
    return found


def test_every_unit_has_a_contract_case() -> None:
    assert _discover_units() - {"PatientState"} == set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_determinism(case: Case) -> None:
    first = _run(case.make(), case.calls())
    second = _run(case.make(), case.calls())
    assert pickle.dumps(first) == pickle.dumps(second)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_verbs_never_mutate_their_arguments(case: Case) -> None:
    unit = case.make()
    for name, args in case.calls():
        before = pickle.dumps(args)
        _call(unit, name, args)
        assert pickle.dumps(args) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
@pytest.mark.parametrize("form", ["pickle", "json"])
def test_round_trip_mid_history_changes_nothing(case: Case, form: str) -> None:
    calls = case.calls()
    half = len(calls) // 2
    unit = case.make()
    _run(unit, calls[:half])
    if form == "pickle":
        copy = pickle.loads(pickle.dumps(unit))
    else:
        if not is_dataclass(unit):
            pytest.skip("not a dataclass")
        adapter = TypeAdapter(type(unit))
        copy = adapter.validate_json(adapter.dump_json(unit))
    assert copy == unit
    assert _run(copy, calls[half:]) == _run(unit, calls[half:])
    assert copy == unit


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_clone_is_independent(case: Case) -> None:
    unit = case.make()
    calls = case.calls()
    _run(unit, calls[:1])
    if not hasattr(unit, "clone"):
        pytest.skip("stateless")
    before = pickle.dumps(unit)
    twin = unit.clone()
    assert twin == unit and twin is not unit
    _run(twin, calls[1:])
    assert pickle.dumps(unit) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_outputs_are_in_range(case: Case) -> None:
    for output in _run(case.make(), case.calls()):
        for item in output if isinstance(output, list) else [output]:
            if isinstance(item, AlertChange):
                assert item.severity in ("info", "warning", "urgent")
                assert item.status in ("open", "closed")
                assert item.first_seen <= item.last_seen
            elif isinstance(item, CourseView):
                assert item.level_sd is None or item.level_sd >= 0
            elif isinstance(item, ClosedDay):
                assert 0 <= item.coverage <= 1
                assert all(v is None or math.isfinite(v) for v in item.values.values())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_every_unit_has_a_runnable_example(case: Case) -> None:
    documented = [case.unit.__doc__ or ""] + [
        getattr(case.unit, verb).__doc__ or "" for verb in VERBS if hasattr(case.unit, verb)
    ]
    assert any(">>>" in doc for doc in documented), f"{case.unit.__name__} has no example"


@pytest.mark.parametrize("instrument", sorted(INSTRUMENTS))
def test_every_instrument_has_a_course(instrument: str) -> None:
    spec = INSTRUMENTS[instrument]
    totals = [spec.total_high, (spec.total_low + spec.total_high) // 2, spec.total_low]
    views = [
        InstrumentCourse(instrument).update(t, None, 0, CONFIG) for t in totals
    ]  # each a first rating
    course = InstrumentCourse(instrument)
    views += [course.update(t, None, n * 30 * DAY_US, CONFIG) for n, t in enumerate(totals)]
    for view in views:
        assert view.level is not None and view.level_sd is not None and view.level_sd > 0
        assert spec.total_low - 1e-9 <= view.level <= spec.total_high + 1e-9
        if view.rci is not None:
            assert view.reliable_change in ("improved", "deteriorated", "none")
    rules: list[Any] = [ReliableDeterioration(), SeverityBand(), ManiaRule()]
    for n, view in enumerate(views):
        for rule in rules:
            for change in rule.evaluate(view, _trigger(n), CONFIG):
                assert change.severity in ("info", "warning", "urgent")


@pytest.mark.parametrize("analyte", sorted(ANALYTES))
def test_every_analyte_has_a_lab_course(analyte: str) -> None:
    spec = ANALYTES[analyte]
    low, high = spec.plausible_low, spec.plausible_high
    course = LabCourse(analyte)
    views = [course.update(v, CONFIG) for v in (low, (low + high) / 4, (low + high) / 2, high)]
    for view in views:
        assert view.unit == spec.unit
        assert (view.status is None) == (view.severity is None) or view.status == "baseline forming"
    rules: list[Any] = [LithiumRange(), Inflammation(), LabStatusRule()]
    for n, view in enumerate(views):
        for rule in rules:
            for change in rule.evaluate(view, _trigger(n), CONFIG):
                assert change.severity in ("info", "warning", "urgent")


# --------------------------------------------------------------------------- purity, statically

FORBIDDEN_MODULES = {
    "faust",
    "aiokafka",
    "kafka",
    "psycopg",
    "os",
    "time",
    "random",
    "mode",
    "services",
    "socket",
    "subprocess",
    "threading",
    "asyncio",
    "secrets",
    "uuid4",
}
FORBIDDEN_CALLS = {
    "now",
    "utcnow",
    "today",
    "monotonic",
    "perf_counter",
    "random",
    "uuid1",
    "uuid4",
    "getenv",
}
CORE_FILES = sorted(
    path for path in Path(streams.__file__).parent.rglob("*.py") if path.name != "app.py"
)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_the_core_imports_no_framework_environment_clock_or_randomness(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = []
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
            assert not name.endswith(tuple(f".{c}" for c in FORBIDDEN_CALLS)), name
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS:
            pytest.fail(f"{path.name}:{node.lineno} calls .{node.attr}")
        if isinstance(node, ast.Attribute) and node.attr == "environ":
            pytest.fail(f"{path.name}:{node.lineno} reads the environment")


def test_importing_the_core_loads_no_framework() -> None:
    code = (
        "import sys, streams, streams.core; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'aiokafka', 'kafka', 'psycopg', 'mode') or m == 'streams.app'); "
        "print(','.join(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
