"""Given these lab results, then these course updates and alerts."""

from __future__ import annotations

from streams import CoreConfig
from streams.config import OrderingConfig
from tests.unit.streams.core_history import alerts, at, lab, replay, updates


def test_lithium_range_warning_info_and_closing() -> None:
    history = [
        lab("lithium", v, at(d))
        for d, v in ((0, 0.8), (7, 1.3), (14, 1.25), (21, 0.9), (28, 0.5), (35, 0.7))
    ]
    changes = alerts(replay(history)[1], "lithium_range")
    assert [(a.status, a.severity, a.evidence["value"]) for a in changes] == [
        ("open", "warning", 1.3),
        ("closed", "warning", 0.9),
        ("open", "info", 0.5),
        ("closed", "info", 0.7),
    ]


def test_lithium_toxicity_is_urgent_on_arrival_even_while_the_result_waits() -> None:
    config = CoreConfig(ordering=OrderingConfig(lab_lateness_hours=48))
    toxic = lab("lithium", 1.7, at(0))
    _, outputs = replay([toxic], config)
    assert [(a.rule, a.severity) for a in alerts(outputs)] == [("lithium_toxicity", "urgent")]
    assert updates(outputs) == []  # the result itself waits for the watermark
    _, outputs = replay([toxic, lab("lithium", 0.9, at(3))], config)
    assert updates(outputs, "lithium")[0].status == "toxic"


def test_lithium_toxicity_every_result_is_its_own_alert() -> None:
    history = [lab("lithium", 1.6, at(0)), lab("lithium", 1.8, at(1))]
    toxicity = alerts(replay(history)[1], "lithium_toxicity")
    assert len({a.alert_id for a in toxicity}) == 2


def test_crp_above_three_is_low_grade_inflammation_until_it_falls() -> None:
    history = [lab("crp", v, at(d)) for d, v in ((0, 1.2), (30, 4.0), (60, 6.0), (90, 2.5))]
    _, outputs = replay(history)
    assert [(a.status, a.severity) for a in alerts(outputs, "inflammation")] == [
        ("open", "info"),
        ("closed", "info"),
    ]
    assert [u.status for u in updates(outputs, "crp")][1] == "low-grade inflammation"


def test_crp_in_mg_per_dl_is_judged_in_mg_per_l() -> None:
    _, outputs = replay([lab("crp", 0.45, at(0), unit="mg/dL")])
    assert updates(outputs, "crp")[0].value == 4.5
    assert [a.rule for a in alerts(outputs)] == ["inflammation"]


def test_il6_is_judged_against_the_patients_own_baseline() -> None:
    history = [
        lab("il6", v, at(d))
        for d, v in ((0, 2.0), (30, 2.5), (60, 2.2), (90, 2.4), (120, 9.0), (150, 2.3))
    ]
    _, outputs = replay(history)
    il6 = updates(outputs, "il6")
    assert [u.status for u in il6] == ["baseline forming"] * 3 + [
        "within own baseline",
        "above own baseline",
        "within own baseline",
    ]
    assert il6[4].baseline == 2.3 and il6[4].deviation is not None and il6[4].deviation > 3
    assert [(a.rule, a.status) for a in alerts(outputs)] == [
        ("lab_status", "open"),
        ("lab_status", "closed"),
    ]


def test_clozapine_above_alert_level_is_a_warning() -> None:
    history = [lab("clozapine", v, at(d)) for d, v in ((0, 420.0), (14, 1100.0), (28, 500.0))]
    changes = alerts(replay(history)[1], "lab_status")
    assert [(a.status, a.severity) for a in changes] == [("open", "warning"), ("closed", "warning")]
