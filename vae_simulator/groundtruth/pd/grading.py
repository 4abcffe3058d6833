"""Clinical grading of the PD outputs: CTCAE v5 neutropenia and thrombocytopenia, RECIST 1.1 response.

* CTCAE v5.0 (NCI, 2017), "Neutrophil count decreased" (ANC, 1e9/L): grade 1 < LLN-1.5,
  grade 2 < 1.5-1.0, grade 3 < 1.0-0.5, grade 4 < 0.5; grade 0 at or above the LLN (the
  laboratory's lower limit of normal; 2.0e9/L by default, a common adult value).
* CTCAE v5.0, "Platelet count decreased" (1e9/L): grade 1 < LLN-75, grade 2 < 75-50,
  grade 3 < 50-25, grade 4 < 25; grade 0 at or above the LLN (150e9/L by default).
* RECIST 1.1 (Eisenhauer EA et al. Eur J Cancer 45:228-247, 2009), target lesions, on the
  sum of longest diameters (SLD, mm): complete response (CR) = disappearance (SLD at or
  below ``cr_threshold_mm``, 0 by default); partial response (PR) = at least 30% decrease
  from baseline; progressive disease (PD) = at least 20% increase over the smallest SLD on
  study (baseline included) *and* at least 5 mm absolute increase; stable disease (SD)
  otherwise. PD takes precedence. Best overall response = the best of the assessments
  before the first PD (confirmation of responses is not required here).

All functions are vectorised and raise ValueError on NaN, negative values or wrong shapes.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

#: CTCAE v5 ANC thresholds (1e9/L) of grades 2, 3 and 4; grade 1 starts below the LLN.
ANC_GRADE_THRESHOLDS_E9_L: tuple[float, float, float] = (1.5, 1.0, 0.5)
DEFAULT_ANC_LLN_E9_L = 2.0
#: CTCAE v5 platelet thresholds (1e9/L) of grades 2, 3 and 4, and the default LLN.
PLATELET_GRADE_THRESHOLDS_E9_L: tuple[float, float, float] = (75.0, 50.0, 25.0)
DEFAULT_PLATELET_LLN_E9_L = 150.0
PR_DECREASE = 0.30
PD_INCREASE = 0.20
PD_ABSOLUTE_MM = 5.0


class Recist(IntEnum):
    """RECIST 1.1 response categories, ordered from best to worst."""

    CR = 0
    PR = 1
    SD = 2
    PD = 3


def _as_nonnegative(values, name: str, unit: str, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise ValueError(f"{name} contains {float(arr[bad][0])!r} {unit}; allowed: finite values >= 0")
    return arr


def neutropenia_grade(anc_e9_l, lln_e9_l: float = DEFAULT_ANC_LLN_E9_L) -> np.ndarray:
    """CTCAE v5 grade (0-4, int) of each ANC value (1e9/L), any shape."""
    return _ctcae_grade(anc_e9_l, "anc_e9_l", lln_e9_l, ANC_GRADE_THRESHOLDS_E9_L)


def thrombocytopenia_grade(platelets_e9_l, lln_e9_l: float = DEFAULT_PLATELET_LLN_E9_L) -> np.ndarray:
    """CTCAE v5 grade (0-4, int) of each platelet count (1e9/L), any shape."""
    return _ctcae_grade(platelets_e9_l, "platelets_e9_l", lln_e9_l, PLATELET_GRADE_THRESHOLDS_E9_L)


def _ctcae_grade(counts_e9_l, name: str, lln_e9_l: float, thresholds: tuple[float, ...]) -> np.ndarray:
    counts = _as_nonnegative(counts_e9_l, name, "1e9/L")
    if not np.isfinite(lln_e9_l) or lln_e9_l <= thresholds[0]:
        raise ValueError(f"lln_e9_l must be finite and above {thresholds[0]} (1e9/L), got {lln_e9_l!r}")
    grade = np.zeros(counts.shape, dtype=int)
    for threshold in (lln_e9_l, *thresholds):
        grade += counts < threshold
    return grade


def worst_neutropenia_grade(anc_history_e9_l, lln_e9_l: float = DEFAULT_ANC_LLN_E9_L) -> np.ndarray:
    """Worst grade per patient over an ``(n, T)`` ANC history (1e9/L) -> ``(n,)`` ints."""
    anc = _as_nonnegative(anc_history_e9_l, "anc_history_e9_l", "1e9/L", ndim=2)
    if anc.shape[1] < 1:
        raise ValueError("anc_history_e9_l needs at least one time point")
    return neutropenia_grade(anc.min(axis=1), lln_e9_l)


def recist_status(baseline_mm, nadir_mm, current_mm, cr_threshold_mm: float = 0.0) -> np.ndarray:
    """RECIST 1.1 category (:class:`Recist` codes) of the current SLD, element-wise.

    ``baseline_mm``: SLD at baseline (> 0); ``nadir_mm``: smallest SLD on study *before* the
    current assessment (baseline included); ``current_mm``: the SLD now. Shapes broadcast.
    """
    baseline = _as_nonnegative(baseline_mm, "baseline_mm", "mm")
    nadir = _as_nonnegative(nadir_mm, "nadir_mm", "mm")
    current = _as_nonnegative(current_mm, "current_mm", "mm")
    if np.any(baseline <= 0):
        raise ValueError("baseline_mm must be > 0 (a measurable disease at baseline)")
    if np.any(nadir > baseline + 1e-9 * baseline):
        raise ValueError("nadir_mm cannot exceed baseline_mm (the nadir includes the baseline)")
    if not np.isfinite(cr_threshold_mm) or cr_threshold_mm < 0:
        raise ValueError(f"cr_threshold_mm must be finite and >= 0, got {cr_threshold_mm!r}")
    baseline, nadir, current = np.broadcast_arrays(baseline, nadir, current)
    status = np.full(current.shape, int(Recist.SD))
    status = np.where(current <= baseline * (1.0 - PR_DECREASE), int(Recist.PR), status)
    status = np.where(current <= cr_threshold_mm, int(Recist.CR), status)
    progression = (current >= nadir * (1.0 + PD_INCREASE)) & (current - nadir >= PD_ABSOLUTE_MM)
    return np.where(progression, int(Recist.PD), status)


def recist_from_history(sizes_mm, cr_threshold_mm: float = 0.0) -> np.ndarray:
    """RECIST status at each assessment of an ``(n, T)`` SLD history (mm; column 0 = baseline).

    Returns ``(n, T - 1)`` codes for assessments 1..T-1, each judged against the baseline and
    the smallest SLD among the earlier assessments.
    """
    sizes = _as_nonnegative(sizes_mm, "sizes_mm", "mm", ndim=2)
    if sizes.shape[1] < 2:
        raise ValueError(f"sizes_mm needs a baseline and at least one assessment, got shape {sizes.shape}")
    nadir_before = np.minimum.accumulate(sizes, axis=1)[:, :-1]
    return recist_status(sizes[:, :1], nadir_before, sizes[:, 1:], cr_threshold_mm)


def best_overall_response(status) -> np.ndarray:
    """Best response per patient from ``(n, A)`` RECIST codes: the best before the first PD."""
    codes = np.asarray(status)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise ValueError(f"status must be a 2-D array (n_patients, n_assessments), got shape {codes.shape}")
    if not np.all(np.isin(codes, [c.value for c in Recist])):
        raise ValueError(f"status codes must be in {[int(c) for c in Recist]} (Recist)")
    after_pd = np.cumsum(codes == Recist.PD, axis=1) > 0
    best = np.where(after_pd, int(Recist.PD), codes).min(axis=1)
    return best.astype(int)


def objective_response_rate(sizes_mm, cr_threshold_mm: float = 0.0) -> float:
    """Fraction of patients whose best overall response is CR or PR, from ``(n, T)`` SLD histories."""
    best = best_overall_response(recist_from_history(sizes_mm, cr_threshold_mm))
    return float(np.mean(best <= Recist.PR))
