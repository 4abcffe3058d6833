"""Rewards of every pkdose environment, as pure functions of one step's outcomes.

* single drug and regimen ids: :func:`interval_objectives` (efficacy against the therapeutic window,
  :func:`window_efficacy`; toxicity as the relative excess over the toxic threshold,
  :func:`relative_excess`, or an event risk curve, :class:`LogisticRisk`; +1 on a serious event);
* combination v0: :func:`combination_objectives` (tumour log-shrinkage and RECIST progression
  against the neutropenia grade and grade-4 days);
* combination v1: :func:`multimodal_objectives` (v0's, plus the first objective response and the
  thrombocytopenia, febrile-neutropenia and neuropathy costs).

The formulas and their reasons are in the environment class docstrings (Rewards sections); the
environments' ``advance`` calls these functions, so this module is where a reward is read or changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vae_simulator.groundtruth.pd.grading import Recist

LN2 = float(np.log(2.0))


def window_efficacy(exposure: np.ndarray, low: float, high: float) -> np.ndarray:
    """Efficacy in [0, 1] of an exposure against a therapeutic window ``[low, high]`` (low > 0).

    ``exp(-ln 2 * x^2)`` with ``x = (ln E - ln sqrt(low * high)) / (ln(high / low) / 2)``: 1 at
    the window's log-centre, 0.5 at either edge, falling fast outside, 0 for no exposure.
    The log scale treats a 2-fold overshoot like a 2-fold undershoot, as concentrations do.
    """
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise ValueError(f"target window must satisfy 0 < low < high, got [{low}, {high}]")
    centre, half_width = 0.5 * (np.log(low) + np.log(high)), 0.5 * (np.log(high) - np.log(low))
    x = (np.log(np.maximum(np.asarray(exposure, dtype=float), 1e-300)) - centre) / half_width
    return np.exp(-LN2 * x * x)


def relative_excess(exposure: np.ndarray, threshold: float, cap: float = 1.0) -> np.ndarray:
    """Toxicity in [0, cap]: exposure above ``threshold`` relative to it (1 at twice the threshold)."""
    return np.clip(np.asarray(exposure, dtype=float) / threshold - 1.0, 0.0, cap)


@dataclass(frozen=True)
class LogisticRisk:
    """Probability of an adverse event over a reference course: ``1 / (1 + exp(-(a + b * x)))``.

    ``x`` is an exposure (unit of the drug's target); ``course_h`` the course length the
    probability refers to, used to turn it into a per-interval hazard.
    """

    intercept: float
    slope: float
    course_h: float

    @classmethod
    def through(cls, point_1: tuple[float, float], point_2: tuple[float, float], course_h: float) -> LogisticRisk:
        """The curve through two ``(exposure, probability)`` points."""
        (x1, p1), (x2, p2) = point_1, point_2
        if not (0 < p1 < 1 and 0 < p2 < 1 and x1 != x2):
            raise ValueError(f"need two points with different exposures and probabilities in (0, 1), "
                             f"got {point_1}, {point_2}")
        logit_1, logit_2 = np.log(p1 / (1 - p1)), np.log(p2 / (1 - p2))
        slope = (logit_2 - logit_1) / (x2 - x1)
        return cls(float(logit_1 - slope * x1), float(slope), float(course_h))

    def probability(self, exposure: np.ndarray) -> np.ndarray:
        """Risk over ``course_h`` if the exposure were kept that long (overflow-free logistic)."""
        return 0.5 * (1.0 + np.tanh(0.5 * (self.intercept + self.slope * np.asarray(exposure, dtype=float))))

    def hazard(self, exposure: np.ndarray, interval_h: float) -> np.ndarray:
        """Per-interval event probability: a constant hazard that compounds to ``probability`` over the course."""
        return 1.0 - (1.0 - self.probability(exposure)) ** (interval_h / self.course_h)


def interval_objectives(exposure: np.ndarray, peak_mg_l: np.ndarray, target, event_risk: LogisticRisk | None,
                        event_peak_mg_l: float | None, hours, event_uniforms: np.ndarray,
                        per_day: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(efficacy, toxicity, event risk, event)`` of one dosing interval per patient.

    ``exposure``: the interval's exposure (unit of ``target``, an ``ExposureTarget``); ``peak_mg_l``
    its peak; ``event_risk`` a risk curve (the event probability is its per-interval hazard and also
    the toxicity) or, without one, toxicity is :func:`relative_excess` over ``target.toxic_above``
    and a peak above ``event_peak_mg_l`` (None: never) is the event; ``hours`` the interval length
    (h; scalar or ``(n,)``); an event happens when its uniform is below the risk and adds 1 to the
    toxicity. ``per_day``: efficacy and excess toxicity per 24 h of the interval (regimen ids, whose
    intervals differ in length).
    """
    efficacy = window_efficacy(exposure, target.low, target.high)
    if per_day:
        efficacy = efficacy * hours / 24.0
    if event_risk is not None:
        hazard = event_risk.hazard(exposure, hours)
        toxicity = hazard.copy()
    else:
        toxicity = relative_excess(exposure, target.toxic_above)
        if per_day:
            toxicity = toxicity * hours / 24.0
        hazard = (peak_mg_l > event_peak_mg_l).astype(float) if event_peak_mg_l else np.zeros(len(exposure))
    event = event_uniforms < hazard
    return efficacy, toxicity + event, hazard, event


# ---------------------------------------------------------------------------- combination
RESPONSE_PER_LN = 10.0       # response objective per unit of ln(size before / size after)
RESPONSE_CAP = 5.0           # |response| per cycle is clipped here (ln ratio 0.5: -40% or +65% SLD in 3 weeks)
PROGRESSION_PENALTY = 3.0    # subtracted from the response of the cycle at which RECIST PD is found
GRADE_COST = (0.0, 0.0, 0.0, 0.25, 1.0)  # toxicity per cycle by worst CTCAE neutropenia grade 0-4
GRADE4_DAY_COST = 1.0 / 7.0  # + per day of ANC < 0.5e9/L (grade 4 lasting 7 days doubles the cost)
DEFAULT_REWARD_WEIGHTS = (1.0, 1.0)


def combination_objectives(log_size_ratio, worst_grade, grade4_days, progressed) -> np.ndarray:
    """The ``(n, 2)`` reward vector ``[response, -toxicity]`` of one cycle (formula in the env docstring).

    ``log_size_ratio``: ln(SLD at cycle start / SLD at cycle end) (> 0 = shrinkage);
    ``worst_grade``: worst CTCAE neutropenia grade of the cycle (0-4); ``grade4_days``: days with
    ANC < 0.5e9/L; ``progressed``: RECIST PD found at this cycle's assessment.
    """
    ratio = np.asarray(log_size_ratio, dtype=float)
    grade = np.asarray(worst_grade)
    days = np.asarray(grade4_days, dtype=float)
    if not (np.all(np.isfinite(ratio)) and np.all(np.isfinite(days)) and np.all(days >= 0)):
        raise ValueError("log_size_ratio must be finite and grade4_days finite and >= 0")
    if grade.dtype.kind not in "iu" or grade.min(initial=0) < 0 or grade.max(initial=0) >= len(GRADE_COST):
        raise ValueError(f"worst_grade must be CTCAE grades 0-4 (integers), got {np.unique(grade)}")
    response = np.clip(RESPONSE_PER_LN * ratio, -RESPONSE_CAP, RESPONSE_CAP) - \
        PROGRESSION_PENALTY * np.asarray(progressed, dtype=float)
    toxicity = np.asarray(GRADE_COST)[grade] + GRADE4_DAY_COST * days
    return np.stack(np.broadcast_arrays(response, -toxicity), axis=-1)


# ---------------------------------------------------------------------------- combination v1
#: Toxicity costs added to v0's neutropenia cost: by worst CTCAE platelet grade of the cycle, per
#: febrile neutropenia, and on reaching neuropathy grade 1/2/3 (charged once, on the increase).
PLATELET_GRADE_COST = (0.0, 0.0, 0.0, 0.25, 1.0)
FEBRILE_COST = 1.0
NEUROPATHY_GRADE_COST = (0.0, 0.0, 0.25, 1.0)
#: Added to the response objective at the assessment that finds the first objective response (RECIST CR
#: or PR), mirroring v0's progression penalty: the published endpoints are response and progression.
RESPONSE_BONUS = PROGRESSION_PENALTY
OBJECTIVE_RESPONSES = (int(Recist.CR), int(Recist.PR))


def multimodal_objectives(log_size_ratio, neutropenia_grade, grade4_days, progressed, platelet_grade, febrile,
                          neuropathy_before, neuropathy_after, first_response) -> np.ndarray:
    """v0's ``[response, -toxicity]`` with the first-response bonus and the platelet, febrile-neutropenia and
    neuropathy costs added (``first_response``: this cycle's assessment found the first CR/PR)."""
    objectives = combination_objectives(log_size_ratio, neutropenia_grade, grade4_days, progressed)
    objectives[:, 0] += RESPONSE_BONUS * np.asarray(first_response, dtype=float)
    neuropathy_cost = np.asarray(NEUROPATHY_GRADE_COST)
    extra = np.asarray(PLATELET_GRADE_COST)[platelet_grade] + FEBRILE_COST * np.asarray(febrile, dtype=float) + \
        neuropathy_cost[neuropathy_after] - neuropathy_cost[neuropathy_before]
    objectives[:, 1] -= extra
    return objectives


#: ``reward_objectives="endpoints"`` of the v1 combination: the study's two endpoints themselves.
ENDPOINT_REWARD_LOW, ENDPOINT_REWARD_HIGH = np.array([0.0, -1.0]), np.array([1.0, 0.0])


def endpoint_objectives(first_response, first_serious_adverse_event) -> np.ndarray:
    """``[response, -toxicity]`` as the published study counts them: 1 at the assessment that finds a
    patient's first objective response (RECIST CR/PR) and -1 at the cycle of the patient's first
    serious adverse event, 0 otherwise, so an episode's return is ``[responded, -had an SAE]``
    exactly (the response rate and SAE rate of the study, per patient)."""
    response = np.asarray(first_response, dtype=float)
    serious = np.asarray(first_serious_adverse_event, dtype=float)
    if response.shape != serious.shape:
        raise ValueError(f"first_response {response.shape} and first_serious_adverse_event {serious.shape} "
                         "must have the same shape")
    return np.stack([response, -serious], axis=-1)
