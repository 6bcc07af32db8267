"""Given these ratings, then this course of illness and these alerts."""

from __future__ import annotations

from streams import CoreConfig
from tests.unit.streams.core_history import (
    alerts,
    at,
    outcome,
    phq9,
    replay,
    score,
    updates,
)


def test_course_baseline_change_rci_response_and_remission() -> None:
    _, outputs = replay([phq9(at(0), 20), phq9(at(14), 13), phq9(at(28), 9), phq9(at(56), 3)])
    course = updates(outputs, "phq9")
    assert [u.value for u in course] == [20, 13, 9, 3]
    assert {u.baseline for u in course} == {20}
    assert [u.change for u in course] == [0, -7, -11, -17]
    assert [u.reliable_change for u in course] == ["none", "improved", "improved", "improved"]
    assert [u.response for u in course] == [False, False, True, True]
    assert [u.remission for u in course] == [False, False, False, True]
    assert [u.status for u in course] == ["active", "active", "response", "remission"]
    assert [u.band for u in course] == ["severe", "moderate", "mild", "minimal"]
    assert course[1].rci is not None and round(course[1].rci, 2) == -2.25


def test_level_uncertainty_grows_with_the_gap_between_visits() -> None:
    weekly = updates(replay([phq9(at(0), 10), phq9(at(7), 10), phq9(at(14), 10)])[1], "phq9")
    gap = updates(replay([phq9(at(0), 10), phq9(at(7), 10), phq9(at(120), 10)])[1], "phq9")
    assert weekly[2].level_sd is not None and gap[2].level_sd is not None
    assert gap[2].level_sd > weekly[2].level_sd
    # a rating after a long gap moves the level further
    moved_weekly = updates(replay([phq9(at(0), 10), phq9(at(7), 20)])[1], "phq9")[1].level
    moved_late = updates(replay([phq9(at(0), 10), phq9(at(90), 20)])[1], "phq9")[1].level
    assert moved_weekly is not None and moved_late is not None
    assert 10 < moved_weekly < moved_late < 20


def test_new_episode_within_six_months_of_remission_is_a_relapse() -> None:
    history = [phq9(at(0), 18), phq9(at(30), 3), phq9(at(90), 12), phq9(at(104), 14)]
    _, outputs = replay(history)
    course = updates(outputs, "phq9")
    assert [u.status for u in course] == ["active", "remission", "subthreshold", "relapse"]
    assert course[-1].baseline == 12  # re-baselined at the first rating of the episode
    relapse = alerts(outputs, "relapse")
    assert [(a.status, a.severity) for a in relapse] == [("open", "warning")]


def test_new_episode_later_than_six_months_after_remission_is_a_recurrence() -> None:
    history = [phq9(at(0), 18), phq9(at(30), 3), phq9(at(250), 12), phq9(at(264), 14)]
    course = updates(replay(history)[1], "phq9")
    assert course[-1].status == "recurrence"


def test_one_high_rating_after_remission_is_not_yet_an_episode() -> None:
    history = [phq9(at(0), 18), phq9(at(30), 3), phq9(at(60), 15), phq9(at(67), 4)]
    course = updates(replay(history)[1], "phq9")
    assert [u.status for u in course] == ["active", "remission", "subthreshold", "remission"]


def test_relapse_outcome_rebaselines_and_remission_closes_the_relapse_alert() -> None:
    history = [
        phq9(at(0), 18),
        phq9(at(30), 3),
        outcome("relapse", at(60), "depressive"),
        phq9(at(61), 16),
        phq9(at(120), 2),
    ]
    _, outputs = replay(history)
    course = updates(outputs, "phq9")
    assert [u.status for u in course] == ["active", "remission", "relapse", "relapse", "remission"]
    assert course[3].baseline == 16
    assert [a.status for a in alerts(outputs, "relapse")] == ["open", "closed"]


def test_panss_relapse_by_a_quarter_rise_from_baseline() -> None:
    history = [score("panss", at(0), 80), score("panss", at(30), 99), score("panss", at(60), 100)]
    course = updates(replay(history)[1], "panss")
    assert [u.status for u in course] == ["stable", "stable", "relapse"]


def test_panss_relapse_by_ten_points_from_a_low_baseline() -> None:
    history = [score("panss", at(0), 38), score("panss", at(30), 47), score("panss", at(60), 48)]
    course = updates(replay(history)[1], "panss")
    assert [u.status for u in course] == ["stable", "stable", "relapse"]


def test_panss_relapse_by_hospitalisation_or_cgi_c_much_worse() -> None:
    _, outputs = replay([score("panss", at(0), 70), outcome("hospitalisation", at(10))])
    assert updates(outputs, "panss")[-1].status == "relapse"
    assert [a.status for a in alerts(outputs, "relapse")] == ["open"]
    _, outputs = replay([score("panss", at(0), 70), score("cgi_c", at(10), 6)])
    assert [(a.rule, a.status) for a in alerts(outputs)] == [("relapse", "open")]
    assert updates(outputs, "cgi_c")[0].status == "much worse"


def test_panss_remission_needs_six_months_of_mild_items() -> None:
    mild = {
        f"{g}{n}": 2 for g, count in (("P", 7), ("N", 7), ("G", 16)) for n in range(1, count + 1)
    }
    history = [score("panss", at(day), items=mild) for day in (0, 90, 181, 183)]
    course = updates(replay(history)[1], "panss")
    assert [u.status for u in course] == ["stable", "stable", "stable", "remission"]


def test_item9_alerts_every_time_without_cooldown() -> None:
    _, outputs = replay([phq9(at(0), 12, item9=1), phq9(at(1), 12, item9=2), phq9(at(2), 12)])
    item9 = alerts(outputs, "phq9_item9")
    assert [(a.status, a.severity) for a in item9] == [("open", "urgent"), ("open", "urgent")]
    assert len({a.alert_id for a in item9}) == 2
    assert all(a.config_version == CoreConfig().version for a in item9)


def test_reliable_deterioration_opens_holds_and_closes() -> None:
    history = [phq9(at(0), 6), phq9(at(7), 13), phq9(at(14), 14), phq9(at(21), 8)]
    _, outputs = replay(history)
    changes = alerts(outputs, "reliable_deterioration")
    assert [(a.status, a.severity) for a in changes] == [("open", "warning"), ("closed", "warning")]
    assert changes[0].alert_id == changes[1].alert_id
    assert changes[0].caused_by == history[1].event_id
    assert changes[1].caused_by == history[3].event_id
    assert changes[1].first_seen == history[1].observed_at


def test_severity_band_escalates_holds_closes_and_cools_down() -> None:
    history = [
        phq9(at(0), 6),
        phq9(at(1), 11),  # moderate: info
        phq9(at(2), 12),  # still moderate: nothing
        phq9(at(3), 21),  # severe: the same alert, now a warning
        phq9(at(4), 7),  # mild: closed
        phq9(at(4.5), 11),  # moderate again within 24 h of closing: quiet
        phq9(at(6), 12),  # after the cooldown: a new alert
    ]
    _, outputs = replay(history)
    changes = alerts(outputs, "severity_band")
    assert [(a.status, a.severity) for a in changes] == [
        ("open", "info"),
        ("open", "warning"),
        ("closed", "warning"),
        ("open", "info"),
    ]
    assert len({a.alert_id for a in changes[:3]}) == 1
    assert changes[3].alert_id != changes[0].alert_id


def test_ymrs_hypomania_and_mania() -> None:
    history = [score("ymrs", at(d), t) for d, t in ((0, 5), (7, 14), (14, 24), (21, 13), (28, 8))]
    changes = alerts(replay(history)[1], "ymrs_mania")
    assert [(a.status, a.severity) for a in changes] == [
        ("open", "warning"),
        ("open", "urgent"),
        ("closed", "urgent"),
    ]


def test_self_harm_and_suicidal_ideation_outcomes_are_urgent_every_time() -> None:
    history = [
        outcome("self_harm", at(0)),
        outcome("suicidal_ideation", at(1)),
        outcome("self_harm", at(2)),
    ]
    changes = alerts(replay(history)[1], "safety_outcome")
    assert [(a.status, a.severity) for a in changes] == [("open", "urgent")] * 3


def test_course_update_conventions() -> None:
    event = phq9(at(0), 12)
    _, outputs = replay([event])
    update = updates(outputs, "phq9")[0]
    assert update.caused_by == event.event_id
    assert update.patient_id == event.patient_id
    assert update.observed_at == event.observed_at
    assert update.received_at == event.received_at
    assert update.source.system == "psymon-core"
    assert update.event_id == replay([event])[1][0].event_id  # deterministic
