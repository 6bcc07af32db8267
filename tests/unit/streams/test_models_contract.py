"""The check suite of ``tests/contract/test_core_contract.py``, for the risk models' units.

The models use river's verbs (``learn_one``, ``predict_proba_one``) and rule
verbs of their own (``observe``, ``add_snapshot``, ``release``), which the core
suite does not look for; this suite discovers every class in
``streams.models`` with one of them and runs the same checks: pickling and
JSON round trips mid-history change nothing, two fresh units fed the same
inputs agree, a verb never mutates its arguments, ``clone()`` is independent,
and every unit shows a runnable example.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

import streams.models
from streams.config import CoreConfig, RiskConfig
from streams.course import InstrumentCourse
from streams.models.anomaly import AnomalyRate
from streams.models.drift import Cusum
from streams.models.features import INPUTS, RiskFeatures
from streams.models.labels import DelayedLabeller
from streams.models.logistic import OnlineLogistic
from streams.models.risk_rule import RiskAlert
from streams.models.snapshot import ModelSnapshot
from streams.wearable_days import ClosedDay

VERBS = ("learn_one", "observe", "add_snapshot", "add_outcome", "release", "skip")
DAY_US = 86_400_000_000
RISK = RiskConfig()
CONFIG = CoreConfig(risk=RiskConfig(alert_threshold=0.4, close_threshold=0.3, alert_days=2))
MODEL = ModelSnapshot.initial(INPUTS).model_copy(update={"version": 3})


def _day(n: int, z: float | None) -> ClosedDay:
    day = date(2026, 3, 1) + timedelta(days=n)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    deviations = {"sleep_duration": z, "resting_hr": None if z is None else -z / 2}
    return ClosedDay(day, end, True, 0.9, 1.0, {}, {}, deviations)


def _courses() -> dict[str, InstrumentCourse]:
    course = InstrumentCourse("phq9")
    course.update(6, None, 0, CoreConfig())
    course.update(13, None, 20 * DAY_US, CoreConfig())
    return {"phq9": course}


def _risk(n: int, p: float) -> tuple[Any, ...]:
    day = date(2026, 3, 1) + timedelta(days=n)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return (p, day, end, "p-1", MODEL, [("steps_z", -1.0, 0.3)], CONFIG)


Call = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class Case:
    unit: type
    make: Callable[[], Any]
    calls: Callable[[], list[Call]]


CASES = [
    Case(
        Cusum,
        Cusum,
        lambda: [("learn_one_kw", (z,)) for z in [0.2, 1.5, 2.0, 2.5, 1.9, -0.3, -3.0, -2.5, 0.0]],
    ),
    Case(
        AnomalyRate,
        AnomalyRate,
        lambda: (
            [("learn_one_kw", ([z, -z, None],)) for z in [0.5, 2.5, 3.0, 0.0, 1.0]]
            + [("skip_kw", (3,))]
        ),
    ),
    Case(
        RiskFeatures,
        RiskFeatures,
        lambda: (
            [
                ("learn_one", (_day(n, z), _courses(), RISK))
                for n, z in enumerate([None, 0.1, -2.5, -3.0, None, 4.0, 0.5])
            ]
            + [("learn_one", (_day(30, -1.0), _courses(), RISK))]
        ),
    ),
    Case(
        RiskAlert,
        RiskAlert,
        lambda: [
            ("observe", _risk(n, p))
            for n, p in enumerate([0.5, 0.2, 0.5, 0.6, 0.35, 0.1, 0.2, 0.1, 0.9, 0.9])
        ],
    ),
    Case(
        OnlineLogistic,
        lambda: OnlineLogistic(("a", "b")),
        lambda: [
            ("learn_one", ({"a": float(n % 5), "b": float(n % 3)}, n % 5 == 4)) for n in range(40)
        ],
    ),
    Case(
        DelayedLabeller,
        lambda: DelayedLabeller(horizon=28 * DAY_US, grace=7 * DAY_US, refractory=56 * DAY_US),
        lambda: (
            [("add_snapshot", ("p", d * DAY_US, (float(d),))) for d in range(0, 60, 3)]
            + [
                ("add_outcome_kw", ("p", 40 * DAY_US, 50 * DAY_US)),
                ("release", (45 * DAY_US,)),
                ("release", (52 * DAY_US,)),
                ("release", (120 * DAY_US,)),
            ]
        ),
    ),
]
BY_NAME = {case.unit.__name__: case for case in CASES}


def _call(unit: Any, name: str, args: tuple[Any, ...]) -> Any:
    if name == "learn_one_kw" and isinstance(unit, Cusum):
        return unit.learn_one(args[0], k=0.5, h=2.0)
    if name == "learn_one_kw":
        return unit.learn_one(args[0], z=2.0, days=4)
    if name == "skip_kw":
        return unit.skip(args[0], days=4)
    if name == "add_outcome_kw":
        return unit.add_outcome(args[0], onset=args[1], received=args[2])
    return getattr(unit, name)(*args)


def _run(unit: Any, calls: list[Call]) -> list[Any]:
    return [_call(unit, name, args) for name, args in calls]


def test_every_model_unit_has_a_case() -> None:
    found = set()
    for info in pkgutil.walk_packages(streams.models.__path__, "streams.models."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and any(
                callable(getattr(cls, verb, None)) for verb in VERBS
            ):
                found.add(name)
    assert found == set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_determinism(case: Case) -> None:
    assert pickle.dumps(_run(case.make(), case.calls())) == pickle.dumps(
        _run(case.make(), case.calls())
    )


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
        assert is_dataclass(unit)
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
        pytest.skip("kept by the trainer, never copied on write")
    before = pickle.dumps(unit)
    twin = unit.clone()
    assert twin == unit and twin is not unit
    _run(twin, calls[1:])
    assert pickle.dumps(unit) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_every_unit_has_a_runnable_example(case: Case) -> None:
    documented = [case.unit.__doc__ or "", inspect.getmodule(case.unit).__doc__ or ""]  # type: ignore[union-attr]
    documented += [getattr(case.unit, v).__doc__ or "" for v in VERBS if hasattr(case.unit, v)]
    assert any(">>>" in doc for doc in documented), f"{case.unit.__name__} has no example"
