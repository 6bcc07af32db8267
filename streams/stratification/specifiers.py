"""Rule-based specifiers: published subgroups, each with the rule and the source behind it.

A specifier reads a :class:`~streams.stratification.profile.BiomarkerProfile`
and says whether the patient belongs to its subgroup: ``True``, ``False``, or
``None`` when the data cannot tell yet. The rule is deliberately transparent,
so a clinician can check it by hand.

:class:`InflammatoryDepression` — depression with low-grade inflammation
---------------------------------------------------------------------------

* **Depressive syndrome**: a rating on a depression scale at or above its
  episode-onset total (PHQ-9 >= 10, MADRS >= 20, ...), or (unless
  ``require_depressive_episode``) a clinician-rated depression scale in use.
* **Low-grade inflammation on repeated measures**: at least 2 of the last 3
  CRP results above 3 mg/L, results above 10 mg/L (an acute-phase response)
  left out.

CRP > 3 mg/L is found in about 27 % of patients with depression (Osimo 2019,
meta-analysis), and inflammation has been proposed to mark a subgroup of
depression with its own mechanisms and treatment response (Miller & Raison
2016); an anti-inflammatory drug helped only patients with raised CRP
(Raison 2013). CRP fluctuates, so one value is not enough: Pearson 2003
(AHA/CDC) asks for two measurements and a repeat of any value above 10 mg/L.
"At least 2 of the last 3" is psymon's operationalisation of "raised on
repeated measures": no published criterion fixes the count.

>>> from streams.stratification.config import StratificationConfig
>>> from streams.stratification.profile import BiomarkerProfile
>>> profile = BiomarkerProfile(episode_ratings=1, depression_ratings=1)
>>> config = StratificationConfig()
>>> for n, crp in enumerate([4.2, 2.1]):
...     profile.observe_lab("crp", crp, n, config)
>>> INFLAMMATORY_DEPRESSION.judge(profile, config).met is None  # 1 of 2: not yet known
True
>>> profile.observe_lab("crp", 5.0, 3, config)
>>> judgement = INFLAMMATORY_DEPRESSION.judge(profile, config)
>>> judgement.met, judgement.evidence["crp_above"], judgement.evidence["crp_results"]
(True, 2, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from streams.stratification.config import StratificationConfig
from streams.stratification.profile import BiomarkerProfile

Scalar = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Judgement:
    """A specifier's verdict on one profile: met (or None: cannot tell yet), and why."""

    met: bool | None
    reason: str
    evidence: dict[str, Scalar] = field(default_factory=dict)


class Specifier(Protocol):
    """A published subgroup rule: its name, description, citation and verdict."""

    @property
    def name(self) -> str:
        """The subgroup label it assigns (``inflammatory_depression``)."""

    @property
    def description(self) -> str:
        """The rule in plain words."""

    @property
    def citation(self) -> str:
        """Where the rule comes from."""

    def judge(self, profile: BiomarkerProfile, config: StratificationConfig) -> Judgement:
        """Whether ``profile`` meets the rule."""


@dataclass(frozen=True, slots=True)
class InflammatoryDepression:
    """Depression with low-grade inflammation on repeated CRP measures (module docstring)."""

    name: str = "inflammatory_depression"
    description: str = (
        "depressive syndrome with low-grade inflammation: CRP above 3 mg/L on at least 2 of "
        "the last 3 results (results above 10 mg/L, an acute-phase response, left out)"
    )
    citation: str = (
        "Osimo EF et al. 2019 (Psychol Med 49:1958-1970): CRP > 3 mg/L in 27 % of patients "
        "with depression; Miller AH, Raison CL 2016 (Nat Rev Immunol 16:22-34): inflammation "
        "marks a subgroup of depression; Raison CL et al. 2013 (JAMA Psychiatry 70:31-41): "
        "infliximab helped only with raised CRP; Pearson TA et al. 2003 (Circulation "
        "107:499-511): measure CRP twice, repeat values > 10 mg/L. '2 of the last 3' is "
        "psymon's operationalisation of repeated measures."
    )

    def judge(self, profile: BiomarkerProfile, config: StratificationConfig) -> Judgement:
        """Whether the profile shows a depressive syndrome with repeatedly raised CRP."""
        recent = profile.crp[-config.crp_window :]
        above = sum(1 for value in recent if value > config.crp_above)
        not_above = len(recent) - above
        evidence: dict[str, Scalar] = {
            "crp_results": profile.crp_results,
            "crp_considered": len(recent),
            "crp_above": above,
            "crp_acute_left_out": profile.crp_acute,
            "crp_latest": recent[-1] if recent else None,
            "crp_cut_off": config.crp_above,
            "depression_ratings": profile.depression_ratings,
            "episode_ratings": profile.episode_ratings,
            "clinician_depression_ratings": profile.clinician_depression,
        }
        depressive = profile.episode_ratings > 0 or (
            not config.require_depressive_episode and profile.clinician_depression > 0
        )
        if not depressive:
            return Judgement(None, "no depressive syndrome recorded", evidence)
        if above >= config.crp_min_above:
            reason = f"CRP above {config.crp_above:g} mg/L on {above} of the last {len(recent)}"
            return Judgement(True, reason, evidence)
        if not_above > config.crp_window - config.crp_min_above:
            reason = f"CRP at or below {config.crp_above:g} mg/L on {not_above} of the last "
            return Judgement(False, reason + f"{len(recent)}", evidence)
        return Judgement(None, "too few CRP results to tell", evidence)


INFLAMMATORY_DEPRESSION = InflammatoryDepression()

#: Every specifier the core evaluates, in a stable order.
SPECIFIERS: tuple[Specifier, ...] = (INFLAMMATORY_DEPRESSION,)
