"""Errors of the instrument catalogue, written for people.

A :class:`ScoreError` names the instrument, the item, the value and what is
accepted; an :class:`UnknownInstrument` lists the accepted instrument ids.

>>> import pickle
>>> err = pickle.loads(pickle.dumps(ScoreError("PHQ-9: ...", instrument="phq9", items=("9",))))
>>> err.instrument, err.items
('phq9', ('9',))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ScoreError(ValueError):
    """A score that cannot be accepted: the message names instrument, item, value and range.

    ``instrument`` is the instrument id and ``items`` the item keys at fault
    (``("total",)`` for a total), for callers that route errors by field.

    >>> err = ScoreError("PHQ-9 item 9: value 4 is out of range (allowed 0-3)",
    ...                  instrument="phq9", items=("9",))
    >>> err.items
    ('9',)
    """

    def __init__(self, message: str, *, instrument: str | None = None, items: Iterable[str] = ()):
        super().__init__(message)
        self.instrument = instrument
        self.items: tuple[str, ...] = tuple(items)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments are not in ``args``; keep them across pickling.
        return (_rebuild_score_error, (str(self), self.instrument, self.items))


def _rebuild_score_error(
    message: str, instrument: str | None, items: tuple[str, ...]
) -> ScoreError:
    return ScoreError(message, instrument=instrument, items=items)


class UnknownInstrument(ValueError):
    """An instrument name that is not in the catalogue; the message lists the accepted ids."""
