"""Vancomycin: two-compartment IV intermittent-infusion model of Goti et al. (2018).

Source
------
Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Hospitalized patients with and
without hemodialysis have markedly different vancomycin pharmacokinetics: a population
pharmacokinetic model-based analysis. Ther Drug Monit 2018;40(2):212-221,
doi:10.1097/FTD.0000000000000490. 1812 hospitalised adults, 2765 routine TDM samples.

Structure: central (V1) and peripheral (V2) compartments, intercompartmental clearance Q,
elimination CL from the central compartment, 1-h intermittent infusions every 12 h.
Solved in closed form by superposition (:func:`linear.two_compartment_infusion`).

Parameters (Goti 2018 Table 2, final model; 70-kg, non-dialysis reference)
-------------------------------------------------------------------------
* CL = 4.5 L/h * (CrCL/120)^0.8 * 0.7^DIAL      (CrCL in mL/min)
* V1 = 58.4 L * (WT/70) * 0.5^DIAL
* V2 = 38.4 L * (WT/70)
* Q  = 6.5 L/h (no covariate, no IIV)
* IIV (log-normal, omega^2 = log(CV^2 + 1)): CL 39.8% CV, V1 81.6%, V2 57.1%
* Residual: additive 3.4 mg/L + proportional 22.7%

CrCL is the Cockcroft-Gault estimate (total body weight) computed the way Goti's
Methods prescribe: serum creatinine below 1 mg/dL is raised to 1 mg/dL in patients older
than 60 years, and CrCL above 150 mL/min is truncated to 150. The population's
``Covariates.CRCL`` is the uncapped estimate, so the model recomputes CrCL from AGE, WT,
SCR and SEX with these rules. DIAL (intermittent haemodialysis) is 0 for our whole
population: the virtual patients are not on dialysis, so the 0.7 and 0.5 factors never
apply (they are kept as constants for completeness).

Verification: every value above was checked against the nlmixr2lib transcription
``inst/modeldb/specificDrugs/Goti_2018_vancomycin.R`` (which cites Table 2 row by row and
the Methods for the CrCL preprocessing and the WT/70 scaling of V2); the primary paper
itself was not opened (not verified against the primary source beyond that transcription).

Assay LLOQ: 5 mg/L, the below-quantification limit under which Goti excluded samples
(as summarised in the nlmixr2lib model's population notes).

Exposure target (Rybak MJ et al. Therapeutic monitoring of vancomycin for serious
methicillin-resistant Staphylococcus aureus infections: a revised consensus guideline.
Am J Health Syst Pharm 2020;77(11):835-864): AUC24 400-600 mg*h/L (MIC 1 mg/L).
Nephrotoxicity rises above 600: AUC0-24 >= 677 mg*h/L or a day-1 trough >= 18.8 mg/L gave
a 3-4 fold acute-kidney-injury risk (Lodise/Neely, Antimicrob Agents Chemother
2018;62:e01684-17), and AUC > 563 mg*h/L went with 40% vs 11.2% AKI (Antimicrob Agents
Chemother 2017;61:e02535-16).

Standard dose (the conventional, pre-AUC baseline): the renal-function-banded
maintenance table of the CAMERA2 trial protocol (Tong SYC et al. Trials 2016;17:170,
Table 1, "for a 70-kg adult"): CrCL > 90 mL/min 1.5 g q12h; 60-90: 1 g q12h; 20-<60: 1 g
q24h; < 20: 1 g q48h, with the Cockcroft-Gault CrCL of the covariates. Derived by us: the
q24h and q48h regimens are given as the same daily amount every 12 h (500 mg and 250 mg
q12h, since our interval is fixed). The table has no weight adjustment and none is added
(scaling by WT/70 pushed the median AUC24 of our population to ~790 mg*h/L). Its doses
(14-21 mg/kg at 70 kg, the 15-20 mg/kg of the consensus guidelines) were designed for
troughs of 15-20 mg/L and overshoot the AUC target in many patients under Goti's
clearance: in 5000 virtual patients the median AUC24 is ~650 mg*h/L, ~36% are within
400-600 and ~63% above 600 -- the known shortcoming of trough-guided dosing that motivated
the 2020 guideline, and the room a precision-dosing policy has to improve.

Monitoring: peak 1 h after the end of the 1-h infusion (2 h after the start) and trough
just before the next dose (end of the interval).
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates, cockcroft_gault_crcl
from vae_simulator.groundtruth.base import ExposureTarget, Parameters, ResidualError, omega_from_cv
from vae_simulator.groundtruth.linear import TwoCompartmentInfusionModel

# Goti 2018 Table 2 (final model).
CL_REF_L_H = 4.5
CRCL_REF_ML_MIN = 120.0
CRCL_EXPONENT = 0.8
V1_REF_L = 58.4
V2_REF_L = 38.4
Q_L_H = 6.5
WT_REF_KG = 70.0
DIALYSIS_CL_FACTOR = 0.7
DIALYSIS_V1_FACTOR = 0.5
# Goti 2018 Methods: CrCL preprocessing.
CRCL_CAP_ML_MIN = 150.0
ELDERLY_AGE_Y = 60.0
ELDERLY_SCR_FLOOR_MG_DL = 1.0

# CAMERA2 protocol Table 1 (70-kg adult) as doses per 12 h (mg): CrCL > 90, 60-90, 20-<60, < 20 mL/min.
_NOMOGRAM_DOSE_Q12H_MG = (1500.0, 1000.0, 500.0, 250.0)


def goti_creatinine_clearance(cov: Covariates) -> np.ndarray:
    """Cockcroft-Gault CrCL (mL/min) with Goti's rules: SCr >= 1 mg/dL if age > 60; cap 150."""
    scr = np.where(cov.AGE > ELDERLY_AGE_Y, np.maximum(cov.SCR, ELDERLY_SCR_FLOOR_MG_DL), cov.SCR)
    return np.minimum(cockcroft_gault_crcl(cov.AGE, cov.WT, scr, cov.SEX), CRCL_CAP_ML_MIN)


class Vancomycin(TwoCompartmentInfusionModel):
    """Goti 2018 two-compartment vancomycin model; 1-h infusions q12h (see module docstring)."""

    name = "vancomycin"
    route = "iv_infusion"
    interval_h = 12.0
    infusion_h = 1.0
    #: at least 1 h, at most ~1 g/h (Rybak 2020, above): 4 h for the 4,000-mg ceiling.
    infusion_range_h = (1.0, 4.0)
    dose_range_mg = (0.0, 4000.0)
    #: recording times (h after dose): dense over the infusion and the distribution phase.
    interval_grid_h = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    #: peak 1 h after the infusion ends; trough just before the next dose.
    monitoring_times_h = (2.0, 12.0)
    lloq_mg_l = 5.0
    residual = ResidualError(prop_cv=0.227, add_sd_mg_l=3.4)
    iiv_omega = {  # noqa: RUF012 (contract class attribute, never mutated)
        "CL": omega_from_cv(0.398), "V1": omega_from_cv(0.816), "V2": omega_from_cv(0.571)}
    target = ExposureTarget(
        metric="auc24", low=400.0, high=600.0, toxic_above=600.0, unit="mg*h/L",
        source="Rybak MJ et al. Am J Health Syst Pharm 2020;77(11):835-864 (AUC24/MIC 400-600, MIC 1 mg/L)")
    source = ("Goti V, Chaturvedula A, Fossler MJ, Mok S, Jacob JT. Ther Drug Monit 2018;40(2):212-221, "
              "doi:10.1097/FTD.0000000000000490 (Table 2); target: Rybak MJ et al. Am J Health Syst Pharm "
              "2020;77(11):835-864; standard dose: Tong SYC et al. (CAMERA2 protocol) Trials 2016;17:170, "
              "Table 1")
    #: intermittent haemodialysis indicator; our virtual population is not on dialysis.
    dialysis = 0.0

    def typical_parameters(self, cov: Covariates) -> Parameters:
        """CL (L/h), V1 (L), Q (L/h), V2 (L) of a typical patient with these covariates."""
        crcl = goti_creatinine_clearance(cov)
        weight_ratio = cov.WT / WT_REF_KG
        return {
            "CL": CL_REF_L_H * (crcl / CRCL_REF_ML_MIN) ** CRCL_EXPONENT
            * DIALYSIS_CL_FACTOR ** self.dialysis,
            "V1": V1_REF_L * weight_ratio * DIALYSIS_V1_FACTOR ** self.dialysis,
            "Q": np.full(len(cov), Q_L_H),
            "V2": V2_REF_L * weight_ratio,
        }

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """CAMERA2 CrCL-banded maintenance dose per 12 h (mg), by Cockcroft-Gault CrCL."""
        above_90, from_60, from_20, below_20 = _NOMOGRAM_DOSE_Q12H_MG
        dose = np.select([cov.CRCL > 90.0, cov.CRCL >= 60.0, cov.CRCL >= 20.0],
                         [above_90, from_60, from_20], default=below_20)
        return np.clip(dose, *self.dose_range_mg)
