"""The instrument catalogue against hand-worked examples and the published cut-offs."""

from __future__ import annotations

import re

import pytest

from schemas.instruments import (
    CGI_C_ANCHORS,
    INSTRUMENTS,
    Instrument,
    ReliableChange,
    ScoreError,
    UnknownInstrument,
    get_instrument,
    instrument_for_loinc,
)

EXPECTED_IDS = (
    "phq9",
    "phq8",
    "phq2",
    "gad7",
    "madrs",
    "hamd17",
    "qids_sr16",
    "ymrs",
    "asrm",
    "panss",
    "cgi_s",
    "cgi_c",
)


def numbered(values: list[int]) -> dict[str, int]:
    """Items "1".."n" from a list of values in item order."""
    return {str(number): value for number, value in enumerate(values, start=1)}


def all_at(inst: Instrument, value: int) -> dict[str, int]:
    return dict.fromkeys(inst.item_keys, value)


def band_label(inst: Instrument, total: int) -> str:
    band = inst.band(total)
    assert band is not None
    return band.label


# -- the catalogue -----------------------------------------------------------------------------


def test_catalogue_holds_every_instrument_of_the_clinical_brief() -> None:
    assert tuple(INSTRUMENTS) == EXPECTED_IDS


@pytest.mark.parametrize("inst", INSTRUMENTS.values(), ids=lambda inst: inst.id)
def test_every_instrument_is_cited_and_self_consistent(inst: Instrument) -> None:
    assert re.search(r"\b(19|20)\d\d\b", inst.citation), "citation needs an author and year"
    if inst.rci is not None:
        assert re.search(r"\b(19|20)\d\d\b", inst.rci.citation)
    assert inst.raters <= {"self", "clinician"}
    for alias in (inst.id, inst.name, *inst.aliases):
        assert get_instrument(alias) is inst
    if inst.bands:
        assert inst.bands[0].low == inst.total_low
        assert inst.bands[-1].high == inst.total_high
        assert [band.rank for band in inst.bands] == list(range(len(inst.bands)))
    assert inst.score(all_at_low(inst), None) == inst.total_low
    assert inst.score(all_at_high(inst), None) == inst.total_high


def all_at_low(inst: Instrument) -> dict[str, int]:
    return {item.key: item.low for item in inst.items}


def all_at_high(inst: Instrument) -> dict[str, int]:
    return {item.key: item.high for item in inst.items}


# -- PHQ-9 -------------------------------------------------------------------------------------

PHQ9 = INSTRUMENTS["phq9"]


def test_phq9_sums_its_items() -> None:
    assert PHQ9.score(numbered([3, 3, 1, 1, 0, 1, 1, 0, 0]), None) == 10
    assert PHQ9.score(numbered([3, 3, 1, 1, 0, 1, 1, 0, 0]), 10) == 10
    assert PHQ9.score(None, 27) == 27


@pytest.mark.parametrize(
    ("total", "label", "rank"),
    [
        (0, "minimal", 0),
        (4, "minimal", 0),
        (5, "mild", 1),
        (9, "mild", 1),
        (10, "moderate", 2),
        (14, "moderate", 2),
        (15, "moderately severe", 3),
        (19, "moderately severe", 3),
        (20, "severe", 4),
        (27, "severe", 4),
    ],
)
def test_phq9_band_edges_follow_kroenke_2001(total: int, label: str, rank: int) -> None:
    band = PHQ9.band(total)
    assert band is not None
    assert (band.label, band.rank) == (label, rank)


def test_phq9_remission_is_below_five_and_response_a_halving() -> None:
    assert PHQ9.is_remission(4) is True
    assert PHQ9.is_remission(5) is False
    assert PHQ9.is_response(baseline=20, total=10) is True
    assert PHQ9.is_response(baseline=20, total=11) is False
    assert PHQ9.is_response(baseline=15, total=7) is True  # 8 >= 7.5
    assert PHQ9.is_response(baseline=15, total=8) is False  # 7 < 7.5
    assert PHQ9.is_response(baseline=0, total=0) is False  # nothing to drop from


def test_phq9_reliable_change_is_about_six_points_as_in_nhs_talking_therapies() -> None:
    rci = PHQ9.rci
    assert rci is not None
    assert (rci.sd, rci.reliability) == (5.5, 0.84)
    assert rci.threshold == pytest.approx(6.1, abs=0.01)
    assert round(rci.threshold) == 6
    assert rci.practice_points == 6
    assert rci.is_reliable(before=16, after=10) is True
    assert rci.is_reliable(before=16, after=11) is False
    assert rci.is_reliable(before=8, after=14) is True  # reliable deterioration too
    # RC = (after - before) / S_diff, S_diff = sqrt(2) * 5.5 * sqrt(0.16) = 3.111
    assert rci.index(before=18, after=10) == pytest.approx(-8 / 3.1113, abs=1e-3)


def test_phq9_loinc_codes_in_item_order() -> None:
    assert [item.loinc for item in PHQ9.items] == [
        "44250-9",
        "44255-8",
        "44259-0",
        "44254-1",
        "44251-7",
        "44258-2",
        "44252-5",
        "44253-3",
        "44260-8",
    ]
    assert (PHQ9.loinc_total, PHQ9.loinc_panel) == ("44261-6", "44249-1")


def test_phq9_symptom_dimensions_split_somatic_from_cognitive_affective() -> None:
    items = numbered([1, 2, 3, 3, 2, 0, 1, 0, 1])
    assert PHQ9.subscales(items) == {"somatic": 8, "cognitive_affective": 5}
    assert sum(PHQ9.subscales(items).values()) == PHQ9.score(items, None)


# -- PHQ-8 and PHQ-2 -----------------------------------------------------------------------------


def test_phq8_is_phq9_without_item_9() -> None:
    phq8 = get_instrument("PHQ-8")
    assert phq8.item_keys == tuple(str(n) for n in range(1, 9))
    assert phq8.score(numbered([3] * 8), None) == 24
    assert (band_label(phq8, 9), band_label(phq8, 10), band_label(phq8, 24)) == (
        "mild",
        "moderate",
        "severe",
    )
    with pytest.raises(ScoreError, match=r"PHQ-8: unknown item 9 \(accepted items are 1-8\)"):
        phq8.score(numbered([0] * 9), None)
    assert phq8.loinc_total is None  # no confirmed code; 69731-8 is a PHQ-15 item


def test_phq2_positive_screen_from_three() -> None:
    phq2 = get_instrument("phq2")
    assert phq2.score({"1": 1, "2": 2}, None) == 3
    assert band_label(phq2, 2) == "negative screen"
    assert band_label(phq2, 3) == "positive screen"
    assert phq2.is_remission(0) is None
    assert phq2.is_response(6, 0) is None
    assert [item.loinc for item in phq2.items] == ["44250-9", "44255-8"]


# -- GAD-7 ---------------------------------------------------------------------------------------


def test_gad7_bands_follow_spitzer_2006() -> None:
    gad7 = get_instrument("GAD-7")
    labels = [band_label(gad7, t) for t in (4, 5, 9, 10, 14, 15, 21)]
    assert labels == ["minimal", "mild", "mild", "moderate", "moderate", "severe", "severe"]
    assert gad7.score(numbered([1, 2, 3, 0, 1, 2, 3]), None) == 12


def test_gad7_reliable_change_is_about_four_points() -> None:
    rci = get_instrument("gad7").rci
    assert rci is not None
    assert rci.threshold == pytest.approx(3.9, abs=0.05)
    assert round(rci.threshold) == 4
    assert rci.practice_points == 4
    assert rci.is_reliable(before=12, after=8) is True
    assert rci.is_reliable(before=12, after=9) is False


def test_gad7_loinc_codes() -> None:
    gad7 = get_instrument("gad7")
    assert (gad7.loinc_total, gad7.loinc_panel) == ("70274-6", "69737-5")
    assert [item.loinc for item in gad7.items] == [
        "69725-0",
        "68509-9",
        "69733-4",
        "69734-2",
        "69735-9",
        "69689-8",
        "69736-7",
    ]


# -- MADRS, HAM-D 17, QIDS-SR16 ------------------------------------------------------------------


def test_madrs_ten_items_zero_to_six() -> None:
    madrs = get_instrument("MADRS")
    assert len(madrs.items) == 10
    assert madrs.score(numbered([6] * 10), None) == 60
    assert [band_label(madrs, t) for t in (6, 7, 19, 20, 34, 35)] == [
        "normal",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "severe",
    ]
    assert madrs.is_remission(10) is True
    assert madrs.is_remission(11) is False
    with pytest.raises(ScoreError, match=r"MADRS item 3: value 7 is out of range \(allowed 0-6\)"):
        madrs.score(numbered([0, 0, 7, 0, 0, 0, 0, 0, 0, 0]), None)


def test_hamd17_mixed_item_ranges_reach_52() -> None:
    hamd = get_instrument("HAM-D 17")
    wide = {"1", "2", "3", "7", "8", "9", "10", "11", "15"}
    for item in hamd.items:
        assert (item.low, item.high) == (0, 4 if item.key in wide else 2), item.key
    assert hamd.score(all_at_high(hamd), None) == 52
    with pytest.raises(
        ScoreError, match=r"HAM-D 17 item 4: value 3 is out of range \(allowed 0-2\)"
    ):
        hamd.score(all_at(hamd, 0) | {"4": 3}, None)
    assert hamd.score(all_at(hamd, 0) | {"1": 4}, None) == 4


@pytest.mark.parametrize(
    ("total", "label"),
    [(7, "no depression"), (8, "mild"), (16, "mild"), (17, "moderate"), (23, "moderate"),
     (24, "severe"), (52, "severe")],
)  # fmt: skip
def test_hamd17_bands_follow_zimmerman_2013(total: int, label: str) -> None:
    assert band_label(get_instrument("hamd17"), total) == label


def test_hamd17_remission_at_seven() -> None:
    hamd = get_instrument("hamd17")
    assert (hamd.is_remission(7), hamd.is_remission(8)) == (True, False)


def test_qids_sr16_scores_domain_maxima_not_the_sum() -> None:
    qids = get_instrument("QIDS-SR16")
    # sleep 1-4: 1, 2, 3, 0 -> 3; sad mood 2; appetite/weight 6-9: 3, 0, 1, 0 -> 3;
    # items 10-14: 1, 2, 0, 1, 2 -> 6; psychomotor 15-16: 1, 3 -> 3. Total 3+2+3+6+3 = 17.
    items = numbered([1, 2, 3, 0, 2, 3, 0, 1, 0, 1, 2, 0, 1, 2, 1, 3])
    assert sum(items.values()) == 22
    assert qids.score(items, None) == 17
    assert qids.score(items, 17) == 17
    with pytest.raises(
        ScoreError, match=r"QIDS-SR16: supplied total 22 disagrees with the items, which score 17"
    ):
        qids.score(items, 22)


def test_qids_sr16_range_and_bands() -> None:
    qids = get_instrument("qids_sr16")
    assert qids.score(all_at(qids, 3), None) == 27
    assert qids.score(all_at(qids, 0), None) == 0
    labels = [band_label(qids, t) for t in (5, 6, 10, 11, 15, 16, 20, 21, 27)]
    assert labels == [
        "none",
        "mild",
        "mild",
        "moderate",
        "moderate",
        "severe",
        "severe",
        "very severe",
        "very severe",
    ]
    assert (qids.is_remission(5), qids.is_remission(6)) == (True, False)


# -- YMRS and ASRM -------------------------------------------------------------------------------


def test_ymrs_double_weighted_items_reach_60() -> None:
    ymrs = get_instrument("YMRS")
    double = {"5", "6", "8", "9"}
    for item in ymrs.items:
        assert item.high == (8 if item.key in double else 4), item.key
    assert ymrs.score(all_at_high(ymrs), None) == 60
    assert ymrs.score(all_at(ymrs, 0) | {"5": 8, "1": 4}, None) == 12
    with pytest.raises(ScoreError, match=r"YMRS item 1: value 5 is out of range \(allowed 0-4\)"):
        ymrs.score(all_at(ymrs, 0) | {"1": 5}, None)
    labels = [band_label(ymrs, t) for t in (11, 12, 20, 21, 60)]
    assert labels == ["non-manic", "hypomanic", "hypomanic", "manic", "manic"]
    assert (ymrs.is_remission(11), ymrs.is_remission(12)) == (True, False)


def test_asrm_probable_mania_above_five() -> None:
    asrm = get_instrument("asrm")
    assert asrm.score(numbered([4, 4, 4, 4, 4]), None) == 20
    assert band_label(asrm, 5) == "mania unlikely"
    assert band_label(asrm, 6) == "probable mania or hypomania"


# -- PANSS ---------------------------------------------------------------------------------------

PANSS = INSTRUMENTS["panss"]


def test_panss_has_thirty_items_one_to_seven() -> None:
    expected = (
        [f"P{n}" for n in range(1, 8)]
        + [f"N{n}" for n in range(1, 8)]
        + [f"G{n}" for n in range(1, 17)]
    )
    assert list(PANSS.item_keys) == expected
    assert all((item.low, item.high) == (1, 7) for item in PANSS.items)
    assert (PANSS.total_low, PANSS.total_high) == (30, 210)


def test_panss_subscales() -> None:
    assert PANSS.subscales(all_at(PANSS, 1)) == {"positive": 7, "negative": 7, "general": 16}
    assert PANSS.subscales(all_at(PANSS, 7)) == {"positive": 49, "negative": 49, "general": 112}
    items = all_at(PANSS, 2) | {"P3": 6, "N2": 5, "G16": 4}
    # positive 6*2 + 6 = 18; negative 6*2 + 5 = 17; general 15*2 + 4 = 34
    assert PANSS.subscales(items) == {"positive": 18, "negative": 17, "general": 34}
    assert PANSS.score(items, None) == 18 + 17 + 34


def test_panss_andreasen_2005_remission_severity() -> None:
    assert PANSS.remission_items == ("P1", "P2", "P3", "N1", "N4", "N6", "G5", "G9")
    mild = all_at(PANSS, 5) | dict.fromkeys(PANSS.remission_items, 3)
    assert PANSS.meets_remission_severity(mild) is True  # other items do not count
    assert PANSS.meets_remission_severity(mild | {"G9": 4}) is False
    only_core = dict.fromkeys(PANSS.remission_items, 1)
    assert PANSS.meets_remission_severity(only_core) is True
    with pytest.raises(ScoreError, match=r"PANSS: missing item N6 \(items P1-P3, N1, N4, N6"):
        PANSS.meets_remission_severity({k: 1 for k in PANSS.remission_items if k != "N6"})
    with pytest.raises(ScoreError, match=r"PANSS item P1: value 0 is out of range \(allowed 1-7\)"):
        PANSS.meets_remission_severity(only_core | {"P1": 0})
    assert PANSS.is_remission(40) is None  # no total cut-off: remission is item-based


def test_panss_response_subtracts_the_30_point_floor() -> None:
    # (100 - 65) / (100 - 30) = 50 %: a response; a naive 35 / 100 would call it 35 %.
    assert PANSS.is_response(baseline=100, total=65) is True
    assert PANSS.is_response(baseline=100, total=66) is False
    assert PANSS.is_response(baseline=30, total=30) is False


def test_panss_bands_follow_leucht_2005() -> None:
    labels = [band_label(PANSS, t) for t in (57, 58, 75, 95, 116)]
    assert labels == [
        "less than mildly ill",
        "mildly ill",
        "moderately ill",
        "markedly ill",
        "severely ill",
    ]


# -- CGI ------------------------------------------------------------------------------------------


def test_cgi_s_one_item_one_to_seven() -> None:
    cgi_s = get_instrument("CGI-S")
    assert cgi_s.score({"1": 4}, None) == 4
    assert band_label(cgi_s, 1) == "normal, not at all ill"
    assert band_label(cgi_s, 7) == "among the most extremely ill"
    with pytest.raises(ScoreError, match=r"CGI-S total: value 0 is out of range \(allowed 1-7\)"):
        cgi_s.score(None, 0)


def test_cgi_c_is_a_change_scale_without_bands() -> None:
    cgi_c = get_instrument("CGI-I")
    assert cgi_c.id == "cgi_c"
    assert cgi_c.score({"1": 6}, 6) == 6
    assert cgi_c.band(6) is None
    assert cgi_c.is_remission(1) is None
    assert CGI_C_ANCHORS[6] == "much worse"
    assert CGI_C_ANCHORS[1] == "very much improved"


# -- lookup by name and LOINC ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PHQ-9", "phq9"),
        ("phq9", "phq9"),
        ("Phq_9", "phq9"),
        ("phq 9", "phq9"),
        ("GAD7", "gad7"),
        ("hamd17", "hamd17"),
        ("HDRS-17", "hamd17"),
        ("qids-sr", "qids_sr16"),
        ("QIDS SR 16", "qids_sr16"),
        ("cgi-severity", "cgi_s"),
        ("CGI Improvement", "cgi_c"),
        ("Young Mania Rating Scale", "ymrs"),
    ],
)
def test_lookup_by_id_name_or_alias(name: str, expected: str) -> None:
    assert get_instrument(name).id == expected


@pytest.mark.parametrize("name", ["HAM-D", "BDI-II", "", "phq"])
def test_unknown_instrument_lists_the_accepted_ids(name: str) -> None:
    with pytest.raises(UnknownInstrument) as caught:
        get_instrument(name)
    message = str(caught.value)
    assert repr(name) in message
    for instrument_id in EXPECTED_IDS:
        assert instrument_id in message


def test_unknown_instrument_message_stays_short_for_long_input() -> None:
    with pytest.raises(UnknownInstrument) as caught:
        get_instrument("x" * 500)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("code", "instrument_id", "item_key"),
    [
        ("44261-6", "phq9", None),
        ("44249-1", "phq9", None),
        ("44250-9", "phq9", "1"),
        ("44255-8", "phq9", "2"),
        ("44260-8", "phq9", "9"),
        ("55758-7", "phq2", None),
        ("55757-9", "phq2", None),
        ("70274-6", "gad7", None),
        ("69737-5", "gad7", None),
        ("68509-9", "gad7", "2"),
        ("69736-7", "gad7", "7"),
    ],
)
def test_lookup_by_loinc(code: str, instrument_id: str, item_key: str | None) -> None:
    found = instrument_for_loinc(code)
    assert found is not None
    inst, item = found
    assert inst.id == instrument_id
    assert (item.key if item is not None else None) == item_key


def test_unknown_loinc_codes_find_nothing() -> None:
    assert instrument_for_loinc("1988-5") is None  # CRP: a lab, not an instrument
    assert instrument_for_loinc("69731-8") is None  # a PHQ-15 item, not a PHQ-8 total


def test_item_for_loinc_on_the_instrument() -> None:
    phq2 = get_instrument("phq2")
    item = phq2.item_for_loinc("44255-8")
    assert item is not None and item.key == "2"
    assert phq2.item_for_loinc("44260-8") is None
    assert get_instrument("madrs").item_for_loinc("44250-9") is None


# -- errors for people ---------------------------------------------------------------------------


def test_out_of_range_item_message() -> None:
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(numbered([0] * 8 + [4]), None)
    assert str(caught.value) == "PHQ-9 item 9: value 4 is out of range (allowed 0-3)"
    assert (caught.value.instrument, caught.value.items) == ("phq9", ("9",))


def test_disagreeing_total_message() -> None:
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(numbered([3, 3, 1, 1, 0, 1, 1, 0, 0]), 12)
    assert str(caught.value) == (
        "PHQ-9: supplied total 12 disagrees with the items, which sum to 10"
    )


def test_missing_items_message() -> None:
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(numbered([1] * 7), None)
    assert str(caught.value) == "PHQ-9: missing items 8, 9 (all 9 items are required to score)"
    assert caught.value.items == ("8", "9")


def test_unknown_items_message_names_them_and_the_accepted_keys() -> None:
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(numbered([1] * 9) | {"10": 1, "q1": 0}, None)
    assert str(caught.value) == "PHQ-9: unknown items 10, q1 (accepted items are 1-9)"
    with pytest.raises(ScoreError, match=r"accepted items are P1-P7, N1-N7, G1-G16"):
        PANSS.score(all_at(PANSS, 1) | {"p1": 1}, None)


def test_several_problems_are_reported_together() -> None:
    items = {str(n): 1 for n in range(0, 9)} | {"3": 9}
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(items, None)
    assert str(caught.value) == (
        "PHQ-9: unknown item 0 (accepted items are 1-9); "
        "PHQ-9: missing item 9 (all 9 items are required to score); "
        "PHQ-9 item 3: value 9 is out of range (allowed 0-3)"
    )


def test_integer_keys_are_explained() -> None:
    with pytest.raises(ScoreError, match=r"unknown item 1 .*item keys are strings"):
        get_instrument("cgi_s").score({1: 3}, None)  # type: ignore[dict-item]


@pytest.mark.parametrize("value", [True, 1.0, "2", None])
def test_item_values_must_be_whole_numbers(value: object) -> None:
    with pytest.raises(ScoreError, match=r"PHQ-9 item 1: value .* is not a whole number"):
        PHQ9.score(numbered([0] * 9) | {"1": value}, None)  # type: ignore[arg-type]


def test_total_alone_must_be_in_range() -> None:
    with pytest.raises(ScoreError) as caught:
        PHQ9.score(None, 28)
    assert str(caught.value) == "PHQ-9 total: value 28 is out of range (allowed 0-27)"
    with pytest.raises(ScoreError, match=r"PHQ-9 total: value -1 is out of range"):
        PHQ9.score(None, -1)
    with pytest.raises(ScoreError, match=r"not a whole number"):
        PHQ9.score(None, 3.0)  # type: ignore[arg-type]


def test_neither_items_nor_total_is_rejected() -> None:
    with pytest.raises(ScoreError, match=r"PHQ-9: a score needs item responses, a total, or both"):
        PHQ9.score(None, None)


def test_band_and_cut_offs_reject_impossible_totals() -> None:
    with pytest.raises(ScoreError, match=r"PHQ-9 total: value 30"):
        PHQ9.band(30)
    with pytest.raises(ScoreError, match=r"PHQ-9 total: value 28"):
        PHQ9.is_remission(28)
    with pytest.raises(ScoreError, match=r"PHQ-9 baseline: value 40"):
        PHQ9.is_response(40, 10)


def test_item_level_remission_is_only_for_scales_that_define_it() -> None:
    with pytest.raises(ScoreError, match=r"PHQ-9 has no item-level remission criterion"):
        PHQ9.meets_remission_severity(numbered([0] * 9))


def test_reliable_change_rejects_impossible_parameters() -> None:
    with pytest.raises(ValueError, match="sd must be a positive number"):
        ReliableChange(sd=0, reliability=0.8, citation="x")
    with pytest.raises(ValueError, match=r"reliability must be in \[0, 1\)"):
        ReliableChange(sd=5, reliability=1.0, citation="x")


def test_reliable_change_without_a_practice_rule_uses_the_index() -> None:
    rci = get_instrument("madrs").rci
    assert rci is not None and rci.practice_points is None
    just_over = rci.threshold + 0.01
    assert rci.is_reliable(30, 30 - just_over) is True
    assert rci.is_reliable(30, 30 - rci.threshold + 0.01) is False
