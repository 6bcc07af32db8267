"""The broker topics of psymon and which event kinds travel on each.

Every topic is keyed by the patient pseudonym: per-patient order is the
contract (ARCHITECTURE.md, "Topics").

>>> topic_for_kind("lab_result")
'psymon.lab-results.v1'
>>> sorted(KINDS_BY_TOPIC[CLINICAL_SCORES])
['clinical_score']
"""

from __future__ import annotations

CLINICAL_SCORES = "psymon.clinical-scores.v1"
WEARABLE_SAMPLES = "psymon.wearable-samples.v1"
LAB_RESULTS = "psymon.lab-results.v1"
CLINICAL_OUTCOMES = "psymon.clinical-outcomes.v1"
COURSE = "psymon.course.v1"
RISK = "psymon.risk.v1"
ALERTS = "psymon.alerts.v1"
DEAD_LETTER = "psymon.dead-letter.v1"

#: Topics that carry what the edge ingests, in the order a worker reads them.
INPUT_TOPICS: tuple[str, ...] = (CLINICAL_SCORES, WEARABLE_SAMPLES, LAB_RESULTS, CLINICAL_OUTCOMES)
#: Topics that carry what the core derives.
OUTPUT_TOPICS: tuple[str, ...] = (COURSE, RISK, ALERTS, DEAD_LETTER)
ALL_TOPICS: tuple[str, ...] = INPUT_TOPICS + OUTPUT_TOPICS
#: Numbered versions of the population models, keyed by model name: one
#: partition (versions in one order) and compacted (the newest version of each
#: model stays). Not an event topic, so not in :data:`ALL_TOPICS`: the sink does
#: not store it (the trainer archives every version) and it has its own
#: partition count (``services.embedded.ensure_models_topic``).
MODELS = "psymon.models.v1"

KINDS_BY_TOPIC: dict[str, frozenset[str]] = {
    CLINICAL_SCORES: frozenset({"clinical_score"}),
    WEARABLE_SAMPLES: frozenset({"wearable_upload", "wearable_sample"}),
    LAB_RESULTS: frozenset({"lab_result"}),
    CLINICAL_OUTCOMES: frozenset({"clinical_outcome"}),
    COURSE: frozenset({"course_update", "subgroup_assigned"}),
    RISK: frozenset({"risk_assessment"}),
    ALERTS: frozenset({"alert"}),
    DEAD_LETTER: frozenset({"dead_letter"}),
}


def topic_for_kind(kind: str) -> str:
    """The topic an event of ``kind`` is produced to."""
    for topic, kinds in KINDS_BY_TOPIC.items():
        if kind in kinds:
            return topic
    accepted = ", ".join(sorted(k for kinds in KINDS_BY_TOPIC.values() for k in kinds))
    raise ValueError(f"no topic carries event kind {kind!r}; accepted kinds: {accepted}")
