"""The shape of a rating scale: items, bands, cut-offs and reliable change.

An :class:`Instrument` is plain, frozen, picklable data plus the rules that
read it. It validates a score (items, a total, or both), places a total in a
severity :class:`Band`, and answers remission, response and reliable change.
The catalogue itself lives in the family modules (``phq``, ``depression``,
``mania``, ``psychosis``, ``global_``) and :mod:`schemas.instruments.catalogue`.

Errors are for people: a :class:`ScoreError` names the instrument, the item,
the value and what is accepted.

>>> from schemas.instruments import get_instrument
>>> phq9 = get_instrument("PHQ-9")
>>> phq9.score({str(i): 1 for i in range(1, 10)}, None)
9
>>> phq9.band(9).label
'mild'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeGuard

from schemas.instruments.errors import ScoreError
from schemas.instruments.reliable_change import ReliableChange


@dataclass(frozen=True)
class Item:
    """One item of a rating scale and its allowed integer range.

    >>> Item("9", 0, 3, "thoughts of death or self-harm", "44260-8").high
    3
    """

    key: str
    low: int
    high: int
    label: str
    loinc: str | None = None

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"item {self.key}: low {self.low} is above high {self.high}")


@dataclass(frozen=True)
class Band:
    """A severity band ``low..high`` (inclusive); ``rank`` 0 is the least severe.

    >>> Band(5, 9, "mild", 1).high
    9
    """

    low: int
    high: int
    label: str
    rank: int


def sum_of_items(items: Mapping[str, int]) -> int:
    """The usual scoring rule: the total is the sum of the items.

    >>> sum_of_items({"1": 2, "2": 3})
    5
    """
    return sum(items.values())


#: Signature of a scoring rule: validated items in, total out. Rules are
#: module-level functions so that instruments pickle by reference.
ScoringRule = Callable[[Mapping[str, int]], int]


def describe_keys(keys: Iterable[str]) -> str:
    """Describe item keys compactly, collapsing runs: ``1-9`` or ``P1-P7, N1-N7``.

    >>> describe_keys(["1", "2", "3", "5"])
    '1-3, 5'
    >>> describe_keys(["P1", "P2", "N1"])
    'P1-P2, N1'
    """
    runs: list[list[tuple[str, int]]] = []
    for key in keys:
        prefix = key.rstrip("0123456789")
        digits = key[len(prefix) :]
        number = int(digits) if digits else -1
        last = runs[-1][-1] if runs else None
        if last is not None and number >= 0 and last[0] == prefix and last[1] == number - 1:
            runs[-1].append((prefix, number))
        else:
            runs.append([(prefix, number)])
    parts = []
    for run in runs:
        first, last_ = run[0], run[-1]
        start = f"{first[0]}{first[1]}" if first[1] >= 0 else first[0]
        parts.append(start if len(run) == 1 else f"{start}-{last_[0]}{last_[1]}")
    return ", ".join(parts)


def _plural(word: str, count: int) -> str:
    return word if count == 1 else f"{word}s"


def _show_key(key: object) -> str:
    return key if isinstance(key, str) else repr(key)


def _is_whole_number(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but True is not a rating.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Instrument:
    """A rating scale: its items, total range, bands, cut-offs and codes.

    Attributes follow the catalogue's contract: ``remission_max`` is the
    highest total that counts as remission, ``response_drop`` the fraction a
    total must fall from baseline to count as response, ``rci`` the reliable
    change parameters. ``scoring`` computes the total from validated items
    (default: their sum); ``subscale_items`` names groups of items summed by
    :meth:`subscales`; ``remission_items``/``remission_item_max`` define an
    item-level remission criterion (Andreasen 2005 for PANSS).

    >>> from schemas.instruments import get_instrument
    >>> gad7 = get_instrument("gad-7")
    >>> gad7.score(None, 12), gad7.band(12).label, gad7.is_response(16, 8)
    (12, 'moderate', True)
    """

    id: str
    name: str
    items: tuple[Item, ...]
    total_low: int
    total_high: int
    bands: tuple[Band, ...]
    remission_max: int | None
    response_drop: float | None
    rci: ReliableChange | None
    raters: frozenset[str]
    loinc_total: str | None
    loinc_panel: str | None
    aliases: tuple[str, ...]
    citation: str
    scoring: ScoringRule = sum_of_items
    subscale_items: tuple[tuple[str, tuple[str, ...]], ...] = ()
    remission_items: tuple[str, ...] = ()
    remission_item_max: int | None = None
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _ranges: tuple[tuple[str, int, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [item.key for item in self.items]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.name}: duplicate item keys in {keys}")
        object.__setattr__(self, "_keys", frozenset(keys))
        ranges = tuple((item.key, item.low, item.high) for item in self.items)
        object.__setattr__(self, "_ranges", ranges)
        if not self.raters or not self.raters <= {"self", "clinician"}:
            raise ValueError(f"{self.name}: raters must be a non-empty subset of self, clinician")
        lows = {item.key: item.low for item in self.items}
        highs = {item.key: item.high for item in self.items}
        if (self.scoring(lows), self.scoring(highs)) != (self.total_low, self.total_high):
            raise ValueError(
                f"{self.name}: total range {self.total_low}-{self.total_high} does not match "
                f"the items, which score {self.scoring(lows)}-{self.scoring(highs)}"
            )
        self._check_bands()
        for _, group in self.subscale_items:
            if not set(group) <= self._keys:
                raise ValueError(f"{self.name}: subscale names unknown items {group}")
        if not set(self.remission_items) <= self._keys:
            raise ValueError(f"{self.name}: remission items {self.remission_items} are unknown")

    def _check_bands(self) -> None:
        if not self.bands:
            return
        expected_low = self.total_low
        for rank, band in enumerate(self.bands):
            if band.low != expected_low or band.high < band.low or band.rank != rank:
                raise ValueError(f"{self.name}: bands must tile the total range in order: {band}")
            expected_low = band.high + 1
        if expected_low != self.total_high + 1:
            raise ValueError(f"{self.name}: bands end at {expected_low - 1}, not {self.total_high}")

    # -- validation ---------------------------------------------------------------------------

    @property
    def item_keys(self) -> tuple[str, ...]:
        """Item keys in the instrument's order."""
        return tuple(item.key for item in self.items)

    def _error(self, message: str, *items: str) -> ScoreError:
        return ScoreError(message, instrument=self.id, items=items)

    def _check_total(self, total: object, what: str = "total") -> int:
        if type(total) is int and self.total_low <= total <= self.total_high:
            return total  # the usual case, without building a message
        allowed = f"allowed {self.total_low}-{self.total_high}"
        if not _is_whole_number(total):
            raise self._error(
                f"{self.name} {what}: value {total!r} is not a whole number ({allowed})", "total"
            )
        if not self.total_low <= total <= self.total_high:
            raise self._error(
                f"{self.name} {what}: value {total} is out of range ({allowed})", "total"
            )
        return total

    def _check_items(self, items: Mapping[str, int], required: Iterable[str] | None) -> None:
        """Raise one ScoreError listing every problem: unknown, missing, out-of-range items."""
        if required is None and self._all_items_valid(items):
            return
        problems: list[str] = []
        at_fault: list[str] = []
        unknown = [key for key in items if key not in self._keys]
        if unknown:
            shown = ", ".join(_show_key(key) for key in unknown)
            note = "; item keys are strings" if any(not isinstance(k, str) for k in unknown) else ""
            problems.append(
                f"{self.name}: unknown {_plural('item', len(unknown))} {shown} "
                f"(accepted items are {describe_keys(self.item_keys)}{note})"
            )
            at_fault.extend(_show_key(key) for key in unknown)
        needed = self.item_keys if required is None else tuple(required)
        missing = [key for key in needed if key not in items]
        if missing:
            why = (
                f"all {len(self.items)} items are required to score"
                if required is None
                else f"items {describe_keys(needed)} are required"
            )
            problems.append(
                f"{self.name}: missing {_plural('item', len(missing))} {', '.join(missing)} ({why})"
            )
            at_fault.extend(missing)
        for item in self.items:
            if item.key not in items:
                continue
            value: object = items[item.key]
            allowed = f"allowed {item.low}-{item.high}"
            if not _is_whole_number(value):
                problems.append(
                    f"{self.name} item {item.key}: value {value!r} is not a whole number "
                    f"({allowed})"
                )
                at_fault.append(item.key)
            elif not item.low <= value <= item.high:
                problems.append(
                    f"{self.name} item {item.key}: value {value} is out of range ({allowed})"
                )
                at_fault.append(item.key)
        if problems:
            raise self._error("; ".join(problems), *at_fault)

    def _all_items_valid(self, items: Mapping[str, int]) -> bool:
        """Whether ``items`` holds every item, nothing else, each a whole number in range.

        The usual case, checked without building a message; anything else
        (including ``int`` subclasses) goes through :meth:`_check_items`' full
        walk, which decides and explains it.
        """
        ranges = self._ranges
        if len(items) != len(ranges):
            return False
        get = items.get
        for key, low, high in ranges:
            value = get(key)
            if type(value) is not int or not low <= value <= high:
                return False
        return True

    # -- the verbs ----------------------------------------------------------------------------

    def score(self, items: Mapping[str, int] | None, total: int | None) -> int:
        """Validate a score and return its total.

        With ``items``: every item must be present, no unknown keys, each value
        in its range; the total is computed by the instrument's rule and a
        supplied ``total`` that disagrees is rejected. Without items the total
        must lie in ``total_low..total_high``. With neither: rejected.

        >>> from schemas.instruments import get_instrument
        >>> phq9 = get_instrument("phq9")
        >>> phq9.score({"1": 3, "2": 3, "3": 1, "4": 1, "5": 0, "6": 1, "7": 1, "8": 0,
        ...             "9": 0}, 10)
        10
        >>> phq9.score(None, 28)
        Traceback (most recent call last):
        ...
        schemas.instruments.errors.ScoreError: PHQ-9 total: value 28 is out of range (allowed 0-27)
        """
        if items is None:
            if total is None:
                raise self._error(
                    f"{self.name}: a score needs item responses, a total, or both", "total"
                )
            return self._check_total(total)
        if not self._all_items_valid(items):  # the usual case needs no walk (as _check_items)
            self._check_items(items, None)
        return self.total_of_valid_items(items, total)

    def total_of_valid_items(self, items: Mapping[str, int], total: int | None) -> int:
        """:meth:`score` of ``items`` known to be valid: every item, each a whole number in range.

        >>> from schemas.instruments import get_instrument
        >>> get_instrument("phq2").total_of_valid_items({"1": 2, "2": 1}, None)
        3
        """
        computed = self.scoring(items)
        if total is not None:
            usual = type(total) is int and self.total_low <= total <= self.total_high
            supplied = total if usual else self._check_total(total, "supplied total")
            if supplied != computed:
                how = "sum to" if self.scoring is sum_of_items else "score"
                raise self._error(
                    f"{self.name}: supplied total {supplied} disagrees with the items, "
                    f"which {how} {computed}",
                    "total",
                )
        return computed

    def band(self, total: int) -> Band | None:
        """The severity band of a total, or None for an instrument without bands.

        >>> from schemas.instruments import get_instrument
        >>> [get_instrument("phq9").band(t).label for t in (4, 5, 19, 20)]
        ['minimal', 'mild', 'moderately severe', 'severe']
        """
        checked = self._check_total(total)
        for band in self.bands:
            if band.low <= checked <= band.high:
                return band
        return None

    def is_remission(self, total: int) -> bool | None:
        """Whether a total meets the remission cut-off; None when the instrument has none.

        >>> from schemas.instruments import get_instrument
        >>> get_instrument("phq9").is_remission(4), get_instrument("phq9").is_remission(5)
        (True, False)
        """
        checked = self._check_total(total)
        if self.remission_max is None:
            return None
        return checked <= self.remission_max

    def is_response(self, baseline: int, total: int) -> bool | None:
        """Whether ``total`` is a response relative to ``baseline``; None without a criterion.

        Response is a drop of at least ``response_drop`` of the baseline's
        distance above the scale floor. For 0-based scales that is the familiar
        ">= 50 % drop"; for PANSS (floor 30) the 30 floor points are subtracted
        first, as Leucht 2009 and Obermeier 2010 require for percent change on
        an interval scale. A baseline at the floor has nothing to drop: False.

        >>> from schemas.instruments import get_instrument
        >>> get_instrument("phq9").is_response(20, 10), get_instrument("phq9").is_response(20, 11)
        (True, False)
        >>> get_instrument("panss").is_response(90, 60)  # (90-60)/(90-30) = 50 %
        True
        """
        before = self._check_total(baseline, "baseline")
        after = self._check_total(total)
        if self.response_drop is None:
            return None
        room = before - self.total_low
        if room <= 0:
            return False
        return (before - after) >= self.response_drop * room

    def subscales(self, items: Mapping[str, int]) -> dict[str, int]:
        """Subscale sums from a full, valid set of items; ``{}`` where the scale has none.

        >>> from schemas.instruments import get_instrument
        >>> items = dict.fromkeys(map(str, range(1, 10)), 1) | {"3": 3}
        >>> get_instrument("phq9").subscales(items)
        {'somatic': 5, 'cognitive_affective': 6}
        """
        self._check_items(items, None)
        return {name: sum(items[key] for key in keys) for name, keys in self.subscale_items}

    def meets_remission_severity(self, items: Mapping[str, int]) -> bool:
        """Whether every remission item is at or below ``remission_item_max``.

        Only the remission items are required; any other items given must be
        known and in range. The duration part of a remission criterion (six
        months for Andreasen 2005) is for the course tracker.

        >>> from schemas.instruments import get_instrument
        >>> panss = get_instrument("panss")
        >>> panss.meets_remission_severity(dict.fromkeys(panss.remission_items, 3))
        True
        >>> panss.meets_remission_severity({**dict.fromkeys(panss.remission_items, 3), "P3": 4})
        False
        """
        if not self.remission_items or self.remission_item_max is None:
            raise self._error(
                f"{self.name} has no item-level remission criterion; use is_remission(total)"
            )
        self._check_items(items, self.remission_items)
        return all(items[key] <= self.remission_item_max for key in self.remission_items)

    def item_for_loinc(self, code: str) -> Item | None:
        """The item coded by a LOINC question code, if this instrument has one.

        >>> from schemas.instruments import get_instrument
        >>> get_instrument("phq9").item_for_loinc("44260-8").key
        '9'
        """
        for item in self.items:
            if item.loinc is not None and item.loinc == code:
                return item
        return None
