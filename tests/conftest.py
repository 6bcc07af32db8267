"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from schemas.events import ClinicalScore
from schemas.examples import envelope_fields
from tests.factories import make_examples


@pytest.fixture
def examples() -> dict[str, Any]:
    return make_examples()


@pytest.fixture
def score() -> Callable[..., ClinicalScore]:
    """Factory: a valid ClinicalScore with overridable fields."""

    def build(**fields: Any) -> ClinicalScore:
        envelope = {
            k: fields.pop(k)
            for k in list(fields)
            if k in ("observed_at", "event_id", "received_at")
        }
        return ClinicalScore(**envelope_fields(**envelope), **fields)

    return build
