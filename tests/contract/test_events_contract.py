"""Every event model honours the contract: JSON round trip, JSON Schema in sync, pickling."""

from __future__ import annotations

import json
import pickle

import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.events import EVENT_MODELS, AnyEvent, kind_of
from schemas.jsonschema import JSON_DIR, schema_documents
from tests.factories import make_examples

EXAMPLES = make_examples()
MODELS = {model.__name__: model for model in EVENT_MODELS}


def test_every_model_has_an_example() -> None:
    assert set(EXAMPLES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_json_round_trip(name: str) -> None:
    event = EXAMPLES[name]
    text = event.model_dump_json()
    assert MODELS[name].model_validate_json(text) == event
    # the discriminated union finds the same model from the JSON alone
    assert TypeAdapter(AnyEvent).validate_json(text) == event


@pytest.mark.parametrize("name", sorted(MODELS))
def test_pickle_round_trip(name: str) -> None:
    event = EXAMPLES[name]
    assert pickle.loads(pickle.dumps(event)) == event


@pytest.mark.parametrize("name", sorted(MODELS))
def test_frozen_and_forbids_unknown_fields(name: str) -> None:
    event: BaseModel = EXAMPLES[name]
    with pytest.raises(ValidationError):
        event.__class__.model_validate({**json.loads(event.model_dump_json()), "surprise": 1})
    with pytest.raises(ValidationError):
        event.kind = "other"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_json_schema_validates_the_json(name: str) -> None:
    schema = json.loads((JSON_DIR / f"{name}.json").read_text())
    jsonschema.validate(json.loads(EXAMPLES[name].model_dump_json()), schema)


def test_json_schema_files_in_sync_with_models() -> None:
    expected = schema_documents()
    on_disk = {path.name: path.read_text() for path in JSON_DIR.glob("*.json")}
    stale = sorted(set(on_disk) - set(expected))
    missing = sorted(set(expected) - set(on_disk))
    drifted = sorted(n for n in expected if n in on_disk and on_disk[n] != expected[n])
    assert not (stale or missing or drifted), (
        f"schemas/json is out of date (stale {stale}, missing {missing}, drifted {drifted}); "
        "regenerate with: make docs"
    )


def test_kinds_are_unique() -> None:
    kinds = [kind_of(model) for model in EVENT_MODELS]
    assert len(kinds) == len(set(kinds))
