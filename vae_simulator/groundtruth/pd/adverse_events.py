"""Non-haematological and infectious serious adverse events of the pair: paclitaxel peripheral
neuropathy and febrile neutropenia, one cycle at a time.

Peripheral neuropathy (cumulative paclitaxel exposure)
------------------------------------------------------
Paclitaxel neuropathy is cumulative and dose-related (Taxol US prescribing information;
Mielke S et al. Clin Cancer Res 11:4843-4850, 2005), and the time above 0.05 umol/L
(Tc>0.05) is its exposure measure: Tc>0.05 >= 10.6 h was the only independent risk factor in
Mielke 2005 (relative risk 18.4; read in its abstract), and Kraff S et al. Cancer Chemother
Pharmacol 76:1047, 2015 built their proportional-odds neuropathy model and dosing algorithm on
it (read in its abstract). Structure (ours, the simplest consistent with both): a damage index
accumulates each cycle's Tc>0.05 (h) times the patient's sensitivity, without recovery within a
course (neuropathy recovers over months)::

    D_k = D_(k-1) + s * Tc>0.05_k,      grade 3 (severe) once D >= 1

with grade 1 and 2 at D >= 0.25 and 0.5 (cut points ours, not calibrated: only grade >= 3
counts as a serious adverse event). ``s = S_TYPICAL * exp(omega * eta) * HR`` with omega 0.8
(ours) and ``HR = 1.93`` for CYP2C8*3 carriers: the hazard ratio of paclitaxel neuropathy per
CYP2C8*3 allele of Hertz DL et al. Ann Oncol 24:1472-1478, 2013 (recalled, not verified here;
applied per carrier). S_TYPICAL is calibrated (``calibration_v1``) so that paclitaxel 175 mg/m2
+ carboplatin AUC 6 q3w for 7 cycles gives grade > 2 sensory neuropathy in 20 % of patients,
the carboplatin-paclitaxel arm of NRG Oncology/GOG0209 (Miller DS et al. J Clin Oncol
38:3841-3850, 2020; read in its abstract).

Febrile neutropenia
-------------------
The risk of infection rises with the duration of severe neutropenia (Bodey GP et al. Ann
Intern Med 64:328-340, 1966; recalled). Structure (ours): each day with ANC < 0.5e9/L carries
a constant hazard ``h``, so a cycle with ``d`` grade-4 days has febrile neutropenia with
probability ``1 - exp(-h d)``, drawn with a uniform fixed at reset. ``h`` is calibrated so that 7
conventional cycles give febrile neutropenia in 6 % of patients (GOG0209, TC arm; read in its
abstract).
"""

from __future__ import annotations

import numpy as np

#: Neuropathy sensitivity per hour of Tc>0.05 umol/L, derived by ``calibration_v1``.
NEUROPATHY_S_TYPICAL_PER_H = 0.00270
NEUROPATHY_OMEGA = 0.8
#: Hazard ratio of paclitaxel neuropathy for CYP2C8*3 carriers (Hertz 2013; module docstring).
CYP2C8_STAR3_NEUROPATHY_HR = 1.93
#: Damage index at which neuropathy reaches CTCAE grade 1, 2 and 3 (3 = severe, a serious adverse event).
NEUROPATHY_GRADE_CUTS = (0.25, 0.5, 1.0)
SEVERE_NEUROPATHY_GRADE = 3
#: Febrile-neutropenia hazard per day of ANC < 0.5e9/L, derived by ``calibration_v1``.
FEBRILE_HAZARD_PER_GRADE4_DAY = 0.0076


def neuropathy_sensitivity(eta, cyp2c8_star3_carrier, typical_per_h: float = NEUROPATHY_S_TYPICAL_PER_H,
                           iiv_scale: float = 1.0) -> np.ndarray:
    """Per-patient sensitivity ``s`` (per h of Tc>0.05) from standard normals and carrier flags (0/1)."""
    eta = np.asarray(eta, dtype=float)
    carrier = np.asarray(cyp2c8_star3_carrier, dtype=float)
    if not (np.all(np.isfinite(eta)) and np.all(np.isin(carrier, (0.0, 1.0)))):
        raise ValueError("eta must be finite and cyp2c8_star3_carrier 0 or 1")
    return typical_per_h * np.exp(iiv_scale * NEUROPATHY_OMEGA * eta) * np.where(
        carrier > 0, CYP2C8_STAR3_NEUROPATHY_HR, 1.0)


def neuropathy_damage(damage_before, sensitivity_per_h, time_above_h) -> np.ndarray:
    """The damage index after one more cycle with ``time_above_h`` hours of Tc>0.05 (element-wise)."""
    time_above = np.asarray(time_above_h, dtype=float)
    if not np.all(np.isfinite(time_above)) or np.any(time_above < 0):
        raise ValueError("time_above_h must be finite and >= 0 (h)")
    return np.asarray(damage_before, dtype=float) + np.asarray(sensitivity_per_h, dtype=float) * time_above


def neuropathy_grade(damage) -> np.ndarray:
    """CTCAE-like grade 0-3 (int) of a damage index (module docstring)."""
    d = np.asarray(damage, dtype=float)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("damage must be finite and >= 0")
    return np.searchsorted(np.asarray(NEUROPATHY_GRADE_CUTS), d, side="right").astype(int)


def febrile_probability(grade4_days, hazard_per_day: float = FEBRILE_HAZARD_PER_GRADE4_DAY) -> np.ndarray:
    """Probability of febrile neutropenia in a cycle with ``grade4_days`` days of ANC < 0.5e9/L."""
    days = np.asarray(grade4_days, dtype=float)
    if not np.all(np.isfinite(days)) or np.any(days < 0):
        raise ValueError("grade4_days must be finite and >= 0 (days)")
    return -np.expm1(-hazard_per_day * days)
