"""The validators of :func:`schemas.dispatch.decode`'s one pass: the models' own, merged for speed.

``decode`` first validates a record's bytes with pydantic's ``validate_json``;
every record that fails there goes to the full path, which judges it with
the event models themselves and says why (:mod:`schemas.dispatch`). This
first pass therefore only has to accept nothing the models refuse and return
what they return: its errors are never shown, so it may find them in its own
way. It is the models' schema, except for a clinical score (the sink's
hottest path, one record per row):

* the pseudonym's shape is a pattern checked inside pydantic-core, not a
  Python call (the pattern is :data:`~schemas.identity.PSEUDONYM_PATTERN`);
* the score's other Python checks (both times convertible to UTC, the
  instrument, its items and total, the envelope's time checks) run in one
  call once the fields are read, instead of one call each: the same
  functions, in :func:`_score_checks`;
* a score on an instrument's id whose items share one range (PHQ-9, GAD-7,
  MADRS, PANSS ...) has its items' keys and ranges checked inside
  pydantic-core first (:func:`_by_instrument`); Python then only adds up
  the total;

and, on a topic that carries one kind of event, that kind's schema is used
without the union's dispatch on ``kind`` (``kind`` is then required, as the
union requires it).

Should :class:`~schemas.events.ClinicalScore`'s schema call a function this
module does not know, scores keep the models' own schema
(:data:`SCORE_CHECKS_MERGED` is then ``False``, and
``tests/unit/test_one_pass.py`` says so).

>>> from schemas.examples import envelope_fields
>>> from schemas.topics import CLINICAL_SCORES
>>> score = ClinicalScore(**envelope_fields(), instrument="PHQ-9", rater="self", total=4)
>>> validator_for(CLINICAL_SCORES).validate_json(score.model_dump_json()) == score
True
>>> SCORE_CHECKS_MERGED
True
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import SchemaError, SchemaValidator, core_schema

from schemas import envelope
from schemas.events import RAW_KINDS, AnyEvent, ClinicalScore
from schemas.identity import PSEUDONYM_PATTERN
from schemas.instruments import INSTRUMENTS, Instrument, get_instrument, sum_of_items
from schemas.topics import KINDS_BY_TOPIC

_DECORATORS = ClinicalScore.__pydantic_decorators__
_KNOWN_INSTRUMENT = _DECORATORS.field_validators["_known_instrument"].func
_SCORED = _DECORATORS.field_validators["_scored"].func
_ENVELOPE_CHECKS: Callable[[Any], Any] = _DECORATORS.model_validators[
    "_observed_not_in_future"
].func

#: Every Python function ClinicalScore's schema calls, as far as this module knows.
_SCORE_FUNCTIONS = Counter(
    [
        _ENVELOPE_CHECKS,
        envelope._check_pseudonym,
        envelope._convertible_to_utc,
        envelope._convertible_to_utc,
        envelope._check_time_zone,
        _KNOWN_INSTRUMENT,
        _SCORED,
    ]
)


def _score_checks(score: ClinicalScore) -> ClinicalScore:
    """ClinicalScore's Python checks of a score whose fields are read, in one call.

    The instrument's id replaces its name, and the total is the items'
    score, as the field validators make them.
    """
    envelope._convertible_to_utc(score.observed_at)
    envelope._convertible_to_utc(score.received_at)
    instrument = get_instrument(score.instrument)
    return _scored(score, instrument, instrument.score(score.items, score.total))


def _valid_items_checks(instrument: Instrument) -> Callable[[ClinicalScore], ClinicalScore]:
    """:func:`_score_checks` of a score on ``instrument``'s id, its items found valid.

    Valid, as pydantic-core checked them: every item of the instrument and
    no other, each a whole number in its range
    (:meth:`~schemas.instruments.Instrument.score` checks no more before it
    computes the total). The tagged union chose the
    instrument by its id: it is known without a look-up and needs no
    renaming. The same checks with fewer calls (one score per row in the
    sink): a time goes to :func:`~schemas.envelope._convertible_to_utc`
    only in the years where it could fail.
    """
    if get_instrument(instrument.id) is not instrument:
        raise _Unexpected(f"{instrument.id} does not name its own instrument")
    total_of_valid_items = instrument.total_of_valid_items
    summed = instrument.scoring is sum_of_items
    low, high = instrument.total_low, instrument.total_high
    convertible = envelope._convertible_to_utc

    def checks(score: ClinicalScore) -> ClinicalScore:
        if not 1 < score.observed_at.year < 9999:
            convertible(score.observed_at)
        if not 1 < score.received_at.year < 9999:
            convertible(score.received_at)
        items, total = score.items, score.total
        if items is None:
            computed = instrument.score(None, total)
        elif summed and (total is None or (type(total) is int and low <= total <= high)):
            # total_of_valid_items, inline: the items' sum, and a usual total must equal it
            computed = sum(items.values())
            if total is not None and total != computed:
                computed = total_of_valid_items(items, total)  # says why it disagrees
        else:
            computed = total_of_valid_items(items, total)
        if computed != total:  # left out, to be computed
            object.__setattr__(score, "total", computed)
        result: ClinicalScore = _ENVELOPE_CHECKS(score)
        return result

    return checks


def _scored(score: ClinicalScore, instrument: Instrument, total: int) -> ClinicalScore:
    """``score`` with the instrument's id and the total, then the envelope's checks."""
    if instrument.id != score.instrument:  # a name or an alias
        object.__setattr__(score, "instrument", instrument.id)
    if total != score.total:  # left out, to be computed
        object.__setattr__(score, "total", total)
    result: ClinicalScore = _ENVELOPE_CHECKS(score)
    return result


class _Unexpected(Exception):
    """A schema is not shaped as this module expects: keep the models' own."""


def _functions(schema: Any) -> Iterator[Any]:
    """Every validator function a core schema calls."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "metadata":
                continue
            if key == "function" and isinstance(value, dict) and "function" in value:
                yield value["function"]
            else:
                yield from _functions(value)
    elif isinstance(schema, list | tuple):
        for value in schema:
            yield from _functions(value)


def _after(schema: dict[str, Any], function: Any) -> dict[str, Any]:
    """The schema that ``schema`` runs ``function`` after."""
    if schema.get("type") != "function-after" or schema["function"]["function"] != function:
        raise _Unexpected(schema.get("type"))
    inner: dict[str, Any] = schema["schema"]
    return inner


def _model(choice: dict[str, Any]) -> dict[str, Any]:
    """The model schema of a union choice (inside its model validator, if any)."""
    model = choice["schema"] if choice.get("type") == "function-after" else choice
    if model.get("type") != "model" or model["schema"].get("type") != "model-fields":
        raise _Unexpected(model.get("type"))
    return model


def _with_fields(choice: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    model = _model(choice)
    changed = {**model, "schema": {**model["schema"], "fields": fields}}
    return {**choice, "schema": changed} if choice is not model else changed


def _merged_score(choice: dict[str, Any]) -> dict[str, Any]:
    """ClinicalScore's schema with its checks merged (see the module's docstring)."""
    if Counter(_functions(choice)) != _SCORE_FUNCTIONS:
        raise _Unexpected("the checks of ClinicalScore changed")
    fields = dict(_model(choice)["schema"]["fields"])

    def field(name: str, schema: dict[str, Any]) -> None:
        fields[name] = {**fields[name], "schema": schema}

    patient = _after(fields["patient_id"]["schema"], envelope._check_pseudonym)
    if patient.get("type") != "str" or set(patient) - {"type", "max_length"}:
        raise _Unexpected(f"the pseudonym's schema has more than a length: {patient}")
    pattern = f"^(?:{PSEUDONYM_PATTERN.pattern})$"  # the whole string, as fullmatch
    shape = core_schema.str_schema(max_length=patient.get("max_length"), pattern=pattern)
    field("patient_id", dict(shape))
    for name in ("observed_at", "received_at"):
        field(name, _after(fields[name]["schema"], envelope._convertible_to_utc))
    field("instrument", _after(fields["instrument"]["schema"], _KNOWN_INSTRUMENT))
    total = fields["total"]["schema"]
    if total.get("type") != "default":
        raise _Unexpected(total.get("type"))
    field("total", {**total, "schema": _after(total["schema"], _SCORED)})
    merged = _with_fields(choice, fields)
    _after(merged, _ENVELOPE_CHECKS)
    return {**merged, "function": {"type": "no-info", "function": _score_checks}}


def _by_instrument(score: dict[str, Any]) -> dict[str, Any]:
    """``score`` (merged) after a first try with the items checked in pydantic-core.

    For each instrument whose items share one range, a copy of ``score``
    whose items must be that instrument's keys, all of them, each a whole
    number in the range: the usual record, on the instrument's id, has its
    items checked without Python. Any other record (an instrument's name, an
    instrument whose items differ in range, invalid items) gets ``score``.
    """
    fields = _model(score)["schema"]["fields"]
    items = fields["items"]["schema"]
    if items.get("type") != "default" or items["schema"].get("type") != "nullable":
        raise _Unexpected(items.get("type"))
    alone = {key: value for key, value in score.items() if key != "ref"}  # one ref, one schema
    models_items = SchemaValidator(items["schema"])
    choices: dict[str, Any] = {}
    for instrument in INSTRUMENTS.values():
        ranges = {(item.low, item.high) for item in instrument.items}
        if len(ranges) != 1:
            continue
        [(low, high)] = ranges
        if not _models_accept_items(models_items, instrument, low, high):
            continue  # the schema below would accept what the models refuse
        count = len(instrument.items)
        valid = core_schema.dict_schema(
            keys_schema=core_schema.literal_schema([item.key for item in instrument.items]),
            values_schema=core_schema.int_schema(strict=True, ge=low, le=high),
            min_length=count,  # of the dict made: a repeated key counts once
            max_length=count,
        )
        checked = {**items, "schema": core_schema.nullable_schema(valid)}
        choice = _with_fields(alone, {**fields, "items": {**fields["items"], "schema": checked}})
        function = {"type": "no-info", "function": _valid_items_checks(instrument)}
        choices[instrument.id] = {**choice, "function": function}
    tagged = core_schema.tagged_union_schema(choices, discriminator="instrument")
    return {"type": "union", "choices": [tagged, alone], "mode": "left_to_right"}


def _models_accept_items(
    models_items: SchemaValidator, instrument: Instrument, low: int, high: int
) -> bool:
    """Whether the models' items schema takes all of ``instrument``'s items at ``low`` and ``high``.

    The schema of :func:`_by_instrument` checks the keys, their number and
    the range, and leaves out the models' own limits on the items (the
    number of items, the length of a key); this proves those limits hold for
    every dict it accepts.
    """
    for value in (low, high):
        try:
            models_items.validate_python({item.key: value for item in instrument.items})
        except ValidationError:
            return False
    return True


def _kind_required(choice: dict[str, Any]) -> dict[str, Any]:
    """``choice`` with its ``kind`` field required (as the union's dispatch requires it)."""
    fields = dict(_model(choice)["schema"]["fields"])
    kind = fields["kind"]
    if kind["schema"].get("type") != "default":
        raise _Unexpected(kind["schema"].get("type"))
    fields["kind"] = {**kind, "schema": kind["schema"]["schema"]}
    return _with_fields(choice, fields)


def _choices() -> tuple[dict[str, Any], dict[str, dict[str, Any]], bool]:
    """The union's schema and its choices by kind; ClinicalScore's merged where it can be."""
    union: dict[str, Any] = dict(TypeAdapter(AnyEvent).core_schema)
    if union.get("type") != "tagged-union":
        return {}, {}, False  # shaped by another pydantic: every record takes the full path
    choices = dict(union["choices"])
    try:
        choices["clinical_score"] = _merged_score(choices["clinical_score"])
    except (_Unexpected, KeyError):
        return union, choices, False
    return union, choices, True


def _validator(
    union: dict[str, Any], choices: dict[str, Any], kinds: frozenset[str]
) -> SchemaValidator | None:
    raw = [kind for kind in RAW_KINDS if kind in kinds]
    if not raw or not choices:
        return None
    if len(raw) == 1:
        try:
            return SchemaValidator(_scores_by_instrument(raw[0], _kind_required(choices[raw[0]])))
        except (_Unexpected, KeyError, SchemaError):
            pass
    try:
        return SchemaValidator(
            {**union, "choices": {kind: _scores_by_instrument(kind, choices[kind]) for kind in raw}}
        )
    except SchemaError:
        return None  # the full path judges every record


def _scores_by_instrument(kind: str, choice: dict[str, Any]) -> dict[str, Any]:
    if kind != "clinical_score" or not SCORE_CHECKS_MERGED:
        return choice
    try:
        return _by_instrument(choice)
    except (_Unexpected, KeyError):
        return choice


_UNION, _CHOICES, SCORE_CHECKS_MERGED = _choices()
_BY_TOPIC: dict[str, SchemaValidator | None] = {
    topic: _validator(_UNION, _CHOICES, kinds) for topic, kinds in KINDS_BY_TOPIC.items()
}
_ANY_RAW = _validator(_UNION, _CHOICES, frozenset(RAW_KINDS))


def validator_for(topic: str) -> SchemaValidator | None:
    """The one pass's validator of records on ``topic``: raw events of the kinds it carries.

    ``None`` for a topic that carries no raw event (an output topic); a topic
    psymon does not know gets one of every raw kind.
    """
    return _BY_TOPIC.get(topic, _ANY_RAW)
