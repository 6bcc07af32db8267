"""Properties every catalogued instrument must keep, whatever the responses."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.instruments import INSTRUMENTS, Instrument, ScoreError, get_instrument

ALL = list(INSTRUMENTS.values())
FAST = settings(max_examples=150, deadline=None)


@st.composite
def instrument_and_items(draw: st.DrawFn) -> tuple[Instrument, dict[str, int]]:
    inst = draw(st.sampled_from(ALL))
    items = {item.key: draw(st.integers(item.low, item.high)) for item in inst.items}
    return inst, items


@st.composite
def one_item_out_of_range(draw: st.DrawFn) -> tuple[Instrument, dict[str, int], str]:
    inst, items = draw(instrument_and_items())
    item = draw(st.sampled_from(inst.items))
    bad = draw(st.one_of(st.integers(max_value=item.low - 1), st.integers(min_value=item.high + 1)))
    return inst, items | {item.key: bad}, item.key


@FAST
@given(instrument_and_items())
def test_in_range_items_score_in_range_and_fall_in_a_band(
    case: tuple[Instrument, dict[str, int]],
) -> None:
    inst, items = case
    total = inst.score(items, None)
    assert inst.total_low <= total <= inst.total_high
    assert inst.score(items, total) == total  # the computed total is accepted back
    band = inst.band(total)
    if inst.bands:
        assert band is not None and band.low <= total <= band.high
    else:
        assert band is None
    remission = inst.is_remission(total)
    assert remission is None or remission == (total <= (inst.remission_max or 0))


@FAST
@given(instrument_and_items(), st.sampled_from([-1, 1]))
def test_a_total_that_disagrees_with_the_items_is_rejected(
    case: tuple[Instrument, dict[str, int]], offset: int
) -> None:
    inst, items = case
    wrong = inst.score(items, None) + offset
    if not inst.total_low <= wrong <= inst.total_high:
        wrong = inst.score(items, None) - offset
    with pytest.raises(ScoreError) as caught:
        inst.score(items, wrong)
    assert caught.value.instrument == inst.id
    assert str(caught.value).startswith(f"{inst.name}: supplied total {wrong} disagrees")


@FAST
@given(one_item_out_of_range())
def test_an_out_of_range_item_is_rejected_naming_instrument_and_item(
    case: tuple[Instrument, dict[str, int], str],
) -> None:
    inst, items, key = case
    with pytest.raises(ScoreError) as caught:
        inst.score(items, None)
    message = str(caught.value)
    assert f"{inst.name} item {key}: value {items[key]} is out of range" in message
    assert key in caught.value.items


@FAST
@given(st.sampled_from(ALL), st.data())
def test_an_out_of_range_total_is_rejected_naming_instrument_and_total(
    inst: Instrument, data: st.DataObject
) -> None:
    bad = data.draw(
        st.one_of(
            st.integers(max_value=inst.total_low - 1), st.integers(min_value=inst.total_high + 1)
        )
    )
    with pytest.raises(ScoreError) as caught:
        inst.score(None, bad)
    assert str(caught.value) == (
        f"{inst.name} total: value {bad} is out of range "
        f"(allowed {inst.total_low}-{inst.total_high})"
    )


@FAST
@given(instrument_and_items())
def test_subscales_sum_their_items(case: tuple[Instrument, dict[str, int]]) -> None:
    inst, items = case
    subscales = inst.subscales(items)
    assert set(subscales) == {name for name, _ in inst.subscale_items}
    for name, keys in inst.subscale_items:
        assert subscales[name] == sum(items[key] for key in keys)


@FAST
@given(instrument_and_items())
def test_scoring_does_not_mutate_its_input(case: tuple[Instrument, dict[str, int]]) -> None:
    inst, items = case
    before = dict(items)
    inst.score(items, None)
    inst.subscales(items)
    assert items == before


@FAST
@given(st.sampled_from(ALL), st.data())
def test_response_never_claimed_without_a_drop(inst: Instrument, data: st.DataObject) -> None:
    baseline = data.draw(st.integers(inst.total_low, inst.total_high))
    total = data.draw(st.integers(baseline, inst.total_high))
    assert inst.is_response(baseline, total) in (None, False)


@FAST
@given(st.sampled_from(ALL), st.data())
def test_lookup_ignores_case_and_separators(inst: Instrument, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from((inst.id, inst.name, *inst.aliases)))
    noisy = "".join(
        data.draw(st.sampled_from((ch.upper(), ch.lower())))
        + data.draw(st.sampled_from(("", "", "-", "_", " ")))
        for ch in name
    )
    assert get_instrument(noisy) is inst


@pytest.mark.parametrize("inst", ALL, ids=lambda inst: inst.id)
def test_every_instrument_survives_pickling(inst: Instrument) -> None:
    copy = pickle.loads(pickle.dumps(inst))
    assert copy == inst
    highs = {item.key: item.high for item in inst.items}
    assert copy.score(highs, None) == inst.score(highs, None) == inst.total_high
    assert copy.subscales(highs) == inst.subscales(highs)


def test_score_errors_survive_pickling() -> None:
    with pytest.raises(ScoreError) as caught:
        INSTRUMENTS["phq9"].score(None, 99)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (str(copy), copy.instrument, copy.items) == (
        str(caught.value),
        "phq9",
        ("total",),
    )
