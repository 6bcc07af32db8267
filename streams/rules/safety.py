"""Safety rules: they act on arrival, every time, and never wait for the watermark.

Each report raises its own urgent alert (CLINICAL.md, "Safety rules that
never wait for a model"); none is held back by a cooldown, and none is closed
by a later value: only the care team resolves them.

* :class:`SelfHarmItem`: PHQ-9 item 9 (thoughts of death or self-harm) > 0
  (Kroenke 2001; measurement-based-care practice);
* :class:`SafetyOutcome`: a self-harm or suicidal-ideation outcome;
* :class:`LithiumToxicity`: lithium > 1.5 mmol/L (NICE CG185; Malhi 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import SAFETY_OUTCOMES, ClinicalOutcome, ClinicalScore, LabResult
from streams.config import CoreConfig
from streams.rules.base import AlertChange, single_alert


@dataclass(frozen=True, slots=True)
class SelfHarmItem:
    """PHQ-9 item 9 > 0: an urgent alert for every such questionnaire.

    >>> from schemas.examples import envelope_fields
    >>> items = {str(i): 0 for i in range(1, 10)} | {"9": 1}
    >>> score = ClinicalScore(**envelope_fields(), instrument="phq9", rater="self", items=items)
    >>> [(a.rule, a.severity) for a in SelfHarmItem().evaluate(score, CoreConfig())]
    [('phq9_item9', 'urgent')]
    """

    rule: str = "phq9_item9"

    def evaluate(self, score: ClinicalScore, config: CoreConfig) -> list[AlertChange]:
        """The alert for ``score``, if its item 9 is above 0."""
        if score.instrument != "phq9" or not score.items:
            return []
        answer = score.items.get(config.alerts.phq9_item9_key, 0)
        if answer <= 0:
            return []
        return [
            single_alert(
                self.rule,
                patient_id=score.patient_id,
                trigger=str(score.event_id),
                at=score.observed_at,
                message=(
                    f"PHQ-9 item 9 (thoughts of death or self-harm) answered {answer} of 3: "
                    "contact the patient and assess suicide risk now"
                ),
                evidence={"item9": answer, "phq9_total": score.total},
            )
        ]


@dataclass(frozen=True, slots=True)
class SafetyOutcome:
    """A self-harm or suicidal-ideation outcome: an urgent alert for each.

    >>> from schemas.examples import envelope_fields
    >>> outcome = ClinicalOutcome(**envelope_fields(), outcome="self_harm")
    >>> [a.severity for a in SafetyOutcome().evaluate(outcome, CoreConfig())]
    ['urgent']
    """

    rule: str = "safety_outcome"

    def evaluate(self, outcome: ClinicalOutcome, config: CoreConfig) -> list[AlertChange]:
        """The alert for ``outcome``, if it is a safety outcome."""
        if outcome.outcome not in SAFETY_OUTCOMES:
            return []
        what = outcome.outcome.replace("_", " ")
        return [
            single_alert(
                self.rule,
                patient_id=outcome.patient_id,
                trigger=str(outcome.event_id),
                at=outcome.observed_at,
                message=f"{what} recorded: review the patient's safety plan now",
                evidence={"outcome": outcome.outcome},
            )
        ]


@dataclass(frozen=True, slots=True)
class LithiumToxicity:
    """Lithium above the toxicity threshold: an urgent alert for each such result.

    >>> from schemas.examples import envelope_fields
    >>> lab = LabResult(**envelope_fields(), analyte="lithium", value=1.6, unit="mmol/L")
    >>> [a.message[:25] for a in LithiumToxicity().evaluate(lab, CoreConfig())]
    ['lithium 1.6 mmol/L is abo']
    """

    rule: str = "lithium_toxicity"

    def evaluate(self, lab: LabResult, config: CoreConfig) -> list[AlertChange]:
        """The alert for ``lab``, if it is a toxic lithium level."""
        limit = config.alerts.lithium_toxic_above
        if lab.analyte != "lithium" or lab.value <= limit:
            return []
        return [
            single_alert(
                self.rule,
                patient_id=lab.patient_id,
                trigger=str(lab.event_id),
                at=lab.observed_at,
                message=(
                    f"lithium {lab.value:g} mmol/L is above {limit:g} mmol/L (toxicity): "
                    "urgent clinical review (NICE CG185)"
                ),
                evidence={"value": lab.value, "unit": lab.unit, "threshold": limit},
            )
        ]
