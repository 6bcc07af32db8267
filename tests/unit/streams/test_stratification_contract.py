"""The core's check suite (``tests/contract/test_core_contract.py``) for the stratification units.

The stratification units use verbs of their own (``observe_*``, ``judge``),
which the core suite does not look for; this suite discovers every class in
``streams.stratification`` with one of them and runs the same checks:
pickling and JSON round trips mid-history change nothing, two fresh units fed
the same inputs agree, a verb never mutates its arguments, ``clone()`` is
independent, and every unit shows a runnable example.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, is_dataclass
from typing import Any

import pytest
from pydantic import TypeAdapter

import streams.stratification
from streams.stratification.config import StratificationConfig
from streams.stratification.profile import BiomarkerProfile
from streams.stratification.specifiers import InflammatoryDepression
from streams.stratification.state import StratificationState, SubgroupHysteresis
from streams.stratification.treatment import TreatmentEpisode, TreatmentEpisodes

VERBS = (
    "observe",
    "observe_score",
    "observe_lab",
    "observe_day",
    "observe_medication",
    "observe_rating",
    "observe_lithium",
    "judge",
)
DAY_US = 86_400_000_000
CONFIG = StratificationConfig(confirm_days=2)
PHQ = {str(i): 1 for i in range(1, 10)}
DAY = {"sleep_duration": 420.0, "sleep_midpoint": 3.5, "steps": 6000.0, "hrv_rmssd": 40.0}

Call = tuple[str, tuple[Any, ...]]


def _profile_calls() -> list[Call]:
    return [
        ("observe_score_kw", ("phq9", 9, PHQ | {"3": 3}, 0, False, True)),
        ("observe_lab", ("crp", 4.5, DAY_US, CONFIG)),
        ("observe_day", (DAY, 0.9, 2 * DAY_US, CONFIG)),
        ("observe_lab", ("crp", 14.0, 3 * DAY_US, CONFIG)),
        ("observe_medication", ("Sertraline", "start", 4 * DAY_US)),
        ("observe_day", ({**DAY, "sleep_midpoint": 5.0}, 0.8, 5 * DAY_US, CONFIG)),
        ("observe_lab", ("il6", 3.2, 6 * DAY_US, CONFIG)),
        ("observe_score_kw", ("madrs", 24, None, 7 * DAY_US, True, True)),
        ("observe_day", (DAY, 0.2, 8 * DAY_US, CONFIG)),
        ("observe_lab", ("crp", 5.0, 9 * DAY_US, CONFIG)),
        ("observe_medication", ("sertraline", "stop", 10 * DAY_US)),
    ]


@dataclass(frozen=True)
class Case:
    unit: type
    make: Callable[[], Any]
    calls: Callable[[], list[Call]]


CASES = [
    Case(BiomarkerProfile, BiomarkerProfile, _profile_calls),
    Case(
        SubgroupHysteresis,
        SubgroupHysteresis,
        lambda: [
            ("observe", (best, p, day, CONFIG))
            for best, p, day in [
                ("c1", 0.9, 1),
                ("c1", 0.9, 2),
                ("c2", 0.95, 3),
                ("c1", 0.8, 4),
                ("c2", 0.6, 5),
                ("c2", 0.9, 6),
                ("c2", 0.9, 7),
            ]
        ],
    ),
    Case(
        InflammatoryDepression,
        InflammatoryDepression,
        lambda: [
            ("judge", (BiomarkerProfile(episode_ratings=e, crp=crp), CONFIG))
            for e, crp in [(0, [4.0, 5.0]), (1, [4.0]), (1, [4.0, 5.0]), (1, [1.0, 2.0, 4.0])]
        ],
    ),
    Case(
        TreatmentEpisode,
        lambda: TreatmentEpisode("sertraline", "start", 0, None, "phq9", 18, 0),
        lambda: (
            [("observe_rating", (t, d * DAY_US)) for d, t in [(7, 15), (21, 9), (42, 4)]]
            + [("observe_lithium", (1.3, 1.2, 1.5))]
        ),
    ),
    Case(
        TreatmentEpisodes,
        TreatmentEpisodes,
        lambda: [
            ("observe_score", ("madrs", 30, 0)),
            ("observe_score", ("ymrs", 4, 0)),
            ("observe_medication", ("quetiapine", "start", DAY_US)),
            ("observe_lab", ("lithium", 1.6, 3 * DAY_US)),
            ("observe_score", ("madrs", 12, 30 * DAY_US)),
            ("observe_medication", ("quetiapine", "stop", 40 * DAY_US)),
            ("observe_score", ("madrs", 8, 50 * DAY_US)),
        ],
    ),
]
BY_NAME = {case.unit.__name__: case for case in CASES}


def _call(unit: Any, name: str, args: tuple[Any, ...]) -> Any:
    if name == "observe_score_kw":
        instrument, total, items, at, clinician, episode = args
        return unit.observe_score(
            instrument,
            total,
            items,
            at,
            clinician=clinician,
            episode_level=episode,
            config=CONFIG,
        )
    return getattr(unit, name)(*args)


def _run(unit: Any, calls: list[Call]) -> list[Any]:
    return [_call(unit, name, args) for name, args in calls]


def test_every_stratification_unit_has_a_case() -> None:
    found = set()
    for info in pkgutil.walk_packages(streams.stratification.__path__, "streams.stratification."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if getattr(cls, "_is_protocol", False):  # an interface, not a unit
                continue
            if cls.__module__ == module.__name__ and any(
                callable(getattr(cls, verb, None)) for verb in VERBS
            ):
                found.add(name)
    assert found == set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_determinism(case: Case) -> None:
    first, second = case.make(), case.make()
    assert pickle.dumps(_run(first, case.calls())) == pickle.dumps(_run(second, case.calls()))
    assert first == second


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
    if not hasattr(unit, "clone"):
        pytest.skip("stateless, or kept by the study, never copied on write")
    calls = case.calls()
    _run(unit, calls[:1])
    before = pickle.dumps(unit)
    twin = unit.clone()
    assert twin == unit and twin is not unit
    _run(twin, calls[1:])
    assert pickle.dumps(unit) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.unit.__name__)
def test_every_unit_has_a_runnable_example(case: Case) -> None:
    module = inspect.getmodule(case.unit)
    documented = [case.unit.__doc__ or "", (module.__doc__ if module else None) or ""]
    documented += [getattr(case.unit, v).__doc__ or "" for v in VERBS if hasattr(case.unit, v)]
    assert any(">>>" in doc for doc in documented), f"{case.unit.__name__} has no example"


def test_the_stratification_state_round_trips_whole() -> None:
    strata = StratificationState(specifiers=["inflammatory_depression"])
    _run(strata.profile, _profile_calls())
    strata.cluster.observe("c2", 0.9, 1, StratificationConfig(confirm_days=1))
    assert pickle.loads(pickle.dumps(strata)) == strata
    adapter = TypeAdapter(StratificationState)
    assert adapter.validate_json(adapter.dump_json(strata)) == strata
    twin = strata.clone()
    twin.profile.observe_lab("crp", 1.0, 11 * DAY_US, CONFIG)
    twin.specifiers.clear()
    assert twin != strata and strata.specifiers == ["inflammatory_depression"]
