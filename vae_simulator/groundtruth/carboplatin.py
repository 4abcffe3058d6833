"""Carboplatin (free, ultrafilterable platinum): two-compartment model of Zandvliet et al. (2008).

Source
------
Zandvliet AS, Schellens JHM, Dittrich C, Wanders J, Beijnen JH, Huitema ADR. Population
pharmacokinetic and pharmacodynamic analysis to support treatment optimization of
combination chemotherapy with indisulam and carboplatin. Br J Clin Pharmacol
2008;66(4):485-497, doi:10.1111/j.1365-2125.2008.03230.x. 16 adults with solid tumours,
carboplatin by the Calvert formula (AUC 5-6 mg*min/mL) as a 30-min infusion.

Structure: central (V1) and peripheral (V2) compartments, intercompartmental clearance Q,
elimination CL from the central compartment; one 30-min infusion every 3 weeks (504 h).
Solved in closed form by superposition (:func:`linear.two_compartment_infusion`).
Concentrations are carboplatin-equivalent mg/L: the paper measured platinum in umol/L,
which maps one to one onto carboplatin (371.25 g/mol), so volumes and clearances are the
same on either scale.

Parameters (Zandvliet 2008 Table 2 and Equations 1-2)
----------------------------------------------------
* CL = 0.76 * CLcr + 1.5 L/h  (1.5 L/h non-renal clearance fixed to Calvert 1989)
  with CLcr in **L/h**: CLcr = (140 - age) * WT * (0.85 if female) * 0.074 / SCr[umol/L]
  (Equation 1; 0.074 = 88.4 umol/L per mg/dL * 0.06 (L/h)/(mL/min) / 72, so this is
  Cockcroft-Gault in L/h; our SCR in mg/dL is multiplied by 88.4 umol/L per mg/dL).
  For CrCL = 100 mL/min (6.0 L/h): CL = 0.76 * 6.03 + 1.5 = 6.1 L/h.
* V1 = 15.5 L, Q = 3.46 L/h, V2 = 9.86 L (no covariates)
* IIV (log-normal, omega^2 = log(CV^2 + 1)): CL 13% CV (on the total CL), V1 54%,
  Q 46%, V2 31%
* Residual: 8.2% proportional (the paper fitted log-transformed data; the proportional
  form is its linear-scale equivalent)

Verification: all values and the L/h units of CLcr in Equation 1 were checked against
the nlmixr2lib transcription ``inst/modeldb/specificDrugs/Zandvliet_2008_carboplatin.R``
(which cites Table 2 row by row and Equations 1-2); the primary paper itself was not
opened (not verified against the primary source beyond that transcription).

Assay LLOQ: 0.24 umol/L platinum (Zandvliet 2008, per nlmixr2lib) = 0.24 umol/L *
371.25 g/mol = 0.089 mg/L carboplatin.

Infusion: 30 min, as in the source study.

Exposure target: the Calvert target AUC of free carboplatin, 5-6 mg*min/mL. Unit
conversion: 1 mg*min/mL = 1000 mg*min/L = 16.667 mg*h/L, so AUC 5-6 = 83.3-100 mg*h/L per
cycle (metric ``auc_interval``); toxic above AUC 7 mg*min/mL = 116.7 mg*h/L.

Standard dose: Calvert formula (Calvert AH et al. Carboplatin dosage: prospective
evaluation of a simple formula based on renal function. J Clin Oncol 1989;7(11):1748-1756),
dose (mg) = target AUC (mg*min/mL) * (GFR (mL/min) + 25) with target AUC 5 and GFR
estimated by Cockcroft-Gault capped at 125 mL/min (US FDA, Carboplatin dosing
communication, 2010), i.e. at most 750 mg.
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.base import ExposureTarget, Parameters, ResidualError, omega_from_cv
from vae_simulator.groundtruth.linear import TwoCompartmentInfusionModel

MG_MIN_PER_ML_TO_MG_H_PER_L = 1000.0 / 60.0  # 1 mg*min/mL = 16.667 mg*h/L
CARBOPLATIN_MOLAR_MASS_G_MOL = 371.25
UMOL_L_PER_MG_DL_CREATININE = 88.4

# Zandvliet 2008 Table 2 and Equations 1-2.
RENAL_FRACTION = 0.76
NONRENAL_CL_L_H = 1.5
CG_CONSTANT_L_H = 0.074  # Equation 1 with SCr in umol/L -> CLcr in L/h
FEMALE_FACTOR = 0.85
V1_L = 15.5
Q_L_H = 3.46
V2_L = 9.86

# Calvert 1989 with the FDA 2010 GFR cap.
CALVERT_TARGET_AUC_MG_MIN_ML = 5.0
CALVERT_NONRENAL_ML_MIN = 25.0
GFR_CAP_ML_MIN = 125.0


def zandvliet_creatinine_clearance_l_h(cov: Covariates) -> np.ndarray:
    """Cockcroft-Gault creatinine clearance in L/h as in Zandvliet 2008 Equation 1."""
    scr_umol_l = cov.SCR * UMOL_L_PER_MG_DL_CREATININE
    sex_factor = np.where(cov.SEX >= 0.5, 1.0, FEMALE_FACTOR)
    return (140.0 - cov.AGE) * cov.WT * sex_factor * CG_CONSTANT_L_H / scr_umol_l


def calvert_dose_mg(cov: Covariates,
                    target_auc_mg_min_ml: float = CALVERT_TARGET_AUC_MG_MIN_ML) -> np.ndarray:
    """Calvert dose (mg) = AUC * (GFR + 25), GFR = Cockcroft-Gault CrCL capped at 125 mL/min."""
    if not np.isfinite(target_auc_mg_min_ml) or target_auc_mg_min_ml <= 0:
        raise ValueError(f"target AUC must be a finite number > 0 mg*min/mL, got {target_auc_mg_min_ml!r}")
    gfr = np.minimum(cov.CRCL, GFR_CAP_ML_MIN)
    return target_auc_mg_min_ml * (gfr + CALVERT_NONRENAL_ML_MIN)


class Carboplatin(TwoCompartmentInfusionModel):
    """Zandvliet 2008 free-carboplatin model; 30-min infusion every 3 weeks (module docstring)."""

    name = "carboplatin"
    route = "iv_infusion"
    interval_h = 504.0
    infusion_h = 0.5
    #: PARAPLATIN label: "infusion lasting 15 minutes or longer"; up to 1 h in practice.
    infusion_range_h = (0.25, 1.0)
    dose_range_mg = (0.0, 1500.0)
    #: recording times (h after dose): dense while the alpha (t1/2 ~1 h) and beta (~4 h)
    #: phases run, sparse once free platinum is gone (> ~48 h).
    interval_grid_h = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0,
                                36.0, 48.0, 72.0, 168.0, 336.0, 504.0])
    #: end of infusion, distribution phase, elimination phase (a limited-sampling design).
    monitoring_times_h = (0.5, 2.5, 6.0)
    lloq_mg_l = 0.24e-3 * CARBOPLATIN_MOLAR_MASS_G_MOL  # 0.24 umol/L -> 0.089 mg/L
    residual = ResidualError(prop_cv=0.082, add_sd_mg_l=0.0)
    iiv_omega = {  # noqa: RUF012 (contract class attribute, never mutated)
        "CL": omega_from_cv(0.13), "V1": omega_from_cv(0.54),
        "Q": omega_from_cv(0.46), "V2": omega_from_cv(0.31)}
    target = ExposureTarget(
        metric="auc_interval", low=5.0 * MG_MIN_PER_ML_TO_MG_H_PER_L, high=6.0 * MG_MIN_PER_ML_TO_MG_H_PER_L,
        toxic_above=7.0 * MG_MIN_PER_ML_TO_MG_H_PER_L, unit="mg*h/L",
        source="Calvert AH et al. J Clin Oncol 1989;7(11):1748-1756 (target AUC 5-6 mg*min/mL, "
               "1 mg*min/mL = 16.667 mg*h/L)")
    molar_mass_g_mol = CARBOPLATIN_MOLAR_MASS_G_MOL
    source = ("Zandvliet AS, Schellens JHM, Dittrich C, Wanders J, Beijnen JH, Huitema ADR. Br J Clin "
              "Pharmacol 2008;66(4):485-497, doi:10.1111/j.1365-2125.2008.03230.x (Table 2, Equations 1-2); "
              "dose: Calvert AH "
              "et al. J Clin Oncol 1989;7(11):1748-1756 with the FDA 2010 GFR cap of 125 mL/min")

    def typical_parameters(self, cov: Covariates) -> Parameters:
        """CL (L/h), V1 (L), Q (L/h), V2 (L) of a typical patient with these covariates."""
        n = len(cov)
        return {
            "CL": RENAL_FRACTION * zandvliet_creatinine_clearance_l_h(cov) + NONRENAL_CL_L_H,
            "V1": np.full(n, V1_L),
            "Q": np.full(n, Q_L_H),
            "V2": np.full(n, V2_L),
        }

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """Calvert dose for AUC 5 mg*min/mL (GFR = CG CrCL capped at 125 mL/min), per cycle."""
        return np.clip(calvert_dose_mg(cov), *self.dose_range_mg)
