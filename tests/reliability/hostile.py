"""Hostile records: the curated corpus, big generated ones, and a hypothesis generator.

* :func:`corpus`: the records of ``tests/reliability/corpus/records`` with what
  each tries and what psymon must do (``manifest.json``; made by
  ``corpus/make_corpus.py``);
* :func:`generated`: records too big to keep in the repository (a 5 MB
  upload, a full 10,080-reading upload, 100,000 levels of nesting);
* :func:`hostile_documents` / :func:`generated_records`: hypothesis mutates
  valid events (fields replaced by any JSON value, dropped, added, times
  scrambled, bytes truncated or corrupted); drawn deterministically.

Every record is one line of bytes (no newline inside), so that the JSONL
paths see exactly one record per record sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from schemas.examples import EXAMPLE_PATIENT

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass(frozen=True)
class Hostile:
    """One hostile record: its bytes, what it tries, what psymon must do with it."""

    name: str
    data: bytes
    expect: str  # "reject", "accept" or "either"
    what: str

    @property
    def document(self) -> Any:
        """The record parsed as JSON, ``None`` when it is not JSON."""
        try:
            return json.loads(self.data)
        except (ValueError, RecursionError):
            return None


def corpus() -> list[Hostile]:
    """The curated records, in file order."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    found = []
    for name, info in manifest.items():
        data = (CORPUS / "records" / name).read_bytes().rstrip(b"\n")
        found.append(Hostile(name.removesuffix(".jsonl"), data, info["expect"], info["what"]))
    return found


def _upload(n: int, readings: int, *, pad: str = "") -> dict[str, Any]:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return {
        "kind": "wearable_upload",
        "event_id": f"0badc0de-0000-4000-9000-{n:012d}",
        "patient_id": EXAMPLE_PATIENT,
        "observed_at": start.isoformat(),
        "window_end": (start + timedelta(minutes=readings)).isoformat(),
        "received_at": "2026-03-02T09:05:00+00:00",
        "source": {"system": "hostile-generated", "device": "watch-1"},
        "readings": [
            {
                "event_id": f"0badc0de-{n:04d}-4000-a000-{i:012d}",
                "metric": "steps",
                "value": i % 90,
                "unit": "count",
                "start": (start + timedelta(minutes=i)).isoformat(),
                "end": (start + timedelta(minutes=i, seconds=59)).isoformat() + pad,
            }
            for i in range(readings)
        ],
    }


def generated() -> list[Hostile]:
    """Big records, made at run time."""
    five_mb = json.dumps(_upload(1, 24_000)).encode()
    deep = b'{"kind": "clinical_score", "items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    full = json.dumps(_upload(2, 10_080)).encode()
    return [
        Hostile(
            "generated-5mb-upload",
            five_mb,
            "reject",
            f"a {len(five_mb) / 1e6:.1f} MB upload of 24,000 readings (at most 10,080)",
        ),
        Hostile(
            "generated-deep-nesting",
            deep,
            "reject",
            "100,000 levels of nested arrays",
        ),
        Hostile(
            "generated-full-upload",
            full,
            "accept",
            f"a {len(full) / 1e6:.1f} MB upload of a week of minutes (10,080 readings): valid",
        ),
    ]


# --------------------------------------------------------------------------- hypothesis


def _base(kind: str, n: int) -> dict[str, Any]:
    envelope = {
        "event_id": f"0badc0de-0000-4000-b000-{n:012d}",
        "patient_id": EXAMPLE_PATIENT,
        "observed_at": "2026-03-02T08:00:00+00:00",
        "received_at": "2026-03-02T09:05:00+00:00",
        "source": {"system": "hostile-hypothesis"},
    }
    bodies: dict[str, dict[str, Any]] = {
        "clinical_score": {
            "instrument": "phq9",
            "rater": "self",
            "items": {str(i): 1 for i in range(1, 10)},
        },
        "lab_result": {"analyte": "lithium", "value": 0.8, "unit": "mmol/L"},
        "wearable_sample": {
            "metric": "heart_rate",
            "value": 71,
            "unit": "bpm",
            "interval_end": "2026-03-02T08:01:00+00:00",
        },
        "clinical_outcome": {"outcome": "relapse", "episode": "depressive"},
    }
    return {"kind": kind, **envelope, **bodies[kind]}


_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=40
) | st.sampled_from(
    [
        "",
        "x" * 5000,
        "'; DROP TABLE alerts; --",
        "<script>alert(1)</script>",
        "\u202e\u200b",
        "\x00",
        "MRN-0000042",
        "9999-12-31T23:59:59+00:00",
        "2026-03-02T08:00:00",
        "NaN",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_TIMES = st.sampled_from(
    [
        "2026-03-02T08:00:00",
        "2026-03-02T08:00:00+14:00",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59Z",
        "2026-02-30T08:00:00Z",
        "yesterday",
        "",
    ]
) | st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat())


@st.composite
def hostile_documents(draw: st.DrawFn) -> bytes:
    """A valid event mutated one to three times, as one line of bytes."""
    kind = draw(
        st.sampled_from(["clinical_score", "lab_result", "wearable_sample", "clinical_outcome"])
    )
    document = _base(kind, draw(st.integers(0, 10**9)))
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(sorted(document)))
        mutation = draw(st.sampled_from(["replace", "drop", "add", "time", "kind"]))
        if mutation == "replace":
            document[field] = draw(_JSON)
        elif mutation == "drop":
            document.pop(field, None)
        elif mutation == "add":
            document[draw(_TEXT)] = draw(_JSON)
        elif mutation == "time":
            document[draw(st.sampled_from(["observed_at", "received_at"]))] = draw(_TIMES)
        else:
            document["kind"] = draw(st.sampled_from(["alert", "dead_letter", "x", None, 7]))
    data = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    corruption = draw(st.sampled_from(["none", "none", "truncate", "byte"]))
    if corruption == "truncate" and len(data) > 2:
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif corruption == "byte":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    data = data.replace(b"\n", b" ").replace(b"\r", b" ")
    return data if data.strip() else b"{}"


def generated_records(count: int) -> list[Hostile]:
    """``count`` distinct hypothesis-made records, the same ones on every run."""
    found: dict[bytes, None] = {}

    @settings(
        max_examples=count * 3,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(hostile_documents())
    def collect(data: bytes) -> None:
        if len(found) < count:
            found[data] = None

    collect()
    return [
        Hostile(f"hypothesis-{n:03d}", data, "either", "a mutated valid event")
        for n, data in enumerate(found, 1)
    ]
