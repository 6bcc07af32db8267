"""What the stream worker's state table holds per patient: the state and the records it applied.

faust delivers at least once: a worker that stops without committing its
offsets (a crash, SIGKILL, an OOM kill) is given again every record since its
last commit, about a commit interval of them (faust's
``broker_commit_interval``, 2.8 s). The core recognises a re-delivered event
by its id, but remembers only the newest ids (:class:`streams.config.DedupConfig`):
when more than 32 uploads of one patient came again, the older ones were
taken for new and their samples counted as late (docs/reliability.md,
finding 4).

So the worker keeps with each state the input record it applied last on each
input topic. A patient's records on one topic all go to one partition (they
are keyed by the patient) and a partition is read in order, so a record of
that partition at or below that offset was handled before (applied, if it
was this patient's) and is dropped before the core sees it: exact, whatever
the commit interval. The pure core knows nothing of this; the replay engine,
which has no offsets, does not need it.

The record's broker timestamp is kept too: a broker that lost its log (a
memory broker restarted under the worker) numbers new records from 0 again,
and those carry later timestamps, so they are applied; a re-delivered record
carries the timestamp it had. Where producers' clocks disagree so much that an
earlier record of a partition has a later timestamp, that record is not
dropped here, and the core's own dedup by event id applies as before.

The table value is the state's JSON object with one more member, first::

    {"applied": {"<input topic>": [partition, offset, timestamp_ms], ...}, <the state>}

so whoever wants only the state (the tests and benchmarks that read the
changelog, ``PatientState.model_validate_json``) reads it as the state and
ignores the member. A value without it (a state rebuilt from the store, a
changelog written by an older worker) has applied nothing known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache

from streams.state import PatientState

#: input topic -> (partition, offset, broker timestamp in ms) of the last record applied.
Applied = Mapping[str, tuple[int, int, int]]

_PREFIX = b'{"applied":'
_DECODER = json.JSONDecoder()


def encode(state: PatientState, applied: Applied) -> bytes:
    """A table value: ``state`` as JSON, led by the input records it has applied.

    >>> value = encode(PatientState(patient_id="p-1"), {"t": (0, 41, 1772442300000)})
    >>> value[:40]
    b'{"applied":{"t":[0,41,1772442300000]},"p'
    >>> applied, state = decode(value)
    >>> applied, PatientState.model_validate_json(state).patient_id
    ({'t': (0, 41, 1772442300000)}, 'p-1')
    >>> PatientState.model_validate_json(value).patient_id  # read as a state, it is one
    'p-1'
    """
    body = state.json_bytes()
    if not applied:
        return body
    member = ",".join(
        f"{_topic_key(topic)}[{partition},{offset},{timestamp}]"
        for topic, (partition, offset, timestamp) in applied.items()
    )
    return _PREFIX + b"{" + member.encode() + b"}," + body[1:]


@lru_cache(maxsize=64)
def _topic_key(topic: str) -> str:
    """``"topic":`` as ``json.dumps`` writes it (a worker reads a handful of topics)."""
    return json.dumps(topic) + ":"


def decode(value: bytes) -> tuple[dict[str, tuple[int, int, int]], bytes]:
    """``(applied, the state's JSON)`` of a table value; a bare state has applied ``{}``.

    >>> decode(b'{"patient_id":"p-1"}')
    ({}, b'{"patient_id":"p-1"}')

    Raises
    ------
    ValueError
        The ``applied`` member is not ``{topic: [partition, offset, timestamp_ms]}``
        (the value was not written by this module).
    """
    if not value.startswith(_PREFIX):
        return {}, value
    text = value.decode()
    try:
        member, end = _DECODER.raw_decode(text, len(_PREFIX))
    except json.JSONDecodeError as error:
        raise ValueError(f"a state table value has a malformed 'applied' member: {error}") from None
    applied = _checked(member)
    rest = text[end:]
    if not rest.startswith(","):
        raise ValueError(
            "a state table value has no state after its 'applied' member "
            f"(expected ',' and the state's members, got {rest[:20]!r})"
        )
    return applied, b"{" + rest[1:].encode()


def _checked(member: object) -> dict[str, tuple[int, int, int]]:
    """The ``applied`` member as typed values, or a ValueError saying what is wrong."""
    accepted = "an object of topic -> [partition, offset, timestamp_ms] (integers)"
    if not isinstance(member, dict):
        raise ValueError(f"a state table value's 'applied' member is not {accepted}: {member!r}")
    applied: dict[str, tuple[int, int, int]] = {}
    for topic, last in member.items():
        if not (
            isinstance(last, list)
            and len(last) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) for n in last)
        ):
            raise ValueError(
                f"a state table value's 'applied' entry for {topic!r} is {last!r}; "
                f"expected {accepted}"
            )
        applied[topic] = (last[0], last[1], last[2])
    return applied


def seen_before(
    applied: Applied, topic: str, partition: int, offset: int, timestamp_ms: int
) -> bool:
    """Whether the record at ``topic[partition]@offset`` was handled before this state was stored.

    >>> applied = {"t": (1, 40, 5_000)}
    >>> seen_before(applied, "t", 1, 40, 5_000), seen_before(applied, "t", 1, 39, 4_990)
    (True, True)
    >>> seen_before(applied, "t", 1, 41, 5_010)  # the next record
    False
    >>> seen_before(applied, "t", 1, 3, 9_000)  # a broker that lost its log numbers anew
    False
    >>> seen_before(applied, "t", 0, 3, 4_000), seen_before(applied, "u", 1, 3, 4_000)
    (False, False)
    """
    last = applied.get(topic)
    if last is None:
        return False
    last_partition, last_offset, last_timestamp = last
    return partition == last_partition and offset <= last_offset and timestamp_ms <= last_timestamp


def with_record(
    applied: Applied, topic: str, partition: int, offset: int, timestamp_ms: int
) -> dict[str, tuple[int, int, int]]:
    """``applied`` after the record at ``topic[partition]@offset`` was applied.

    >>> with_record({"t": (1, 40, 5_000)}, "u", 1, 7, 5_020)
    {'t': (1, 40, 5000), 'u': (1, 7, 5020)}
    """
    return {**applied, topic: (partition, offset, timestamp_ms)}
