"""Pembrolizumab: IV anti-PD-1 IgG4 antibody with target-mediated (saturable) clearance.

Why it is here: the biologic of the set. Its clearance has a linear (catabolic, FcRn)
part and a saturable target-mediated part, the Michaelis-Menten approximation of
target-mediated drug disposition (TMDD): at low doses the target sink removes a large
fraction of the drug, so dose-normalised exposure rises with dose until the target is
saturated (above ~1 mg/L) and the kinetics become linear.

Structure (amounts in mg, time in h; 30-min infusion into CENTRAL every 3 weeks)::

    C = CENTRAL / VC
    dCENTRAL/dt = -CL*C - VMAX*C/(KM + C) - Q*C + Q*PERIPH/VP + infusion
    dPERIPH/dt  =  Q*C - Q*PERIPH/VP

Sources and parameter values (day-based values of the papers / 24 -> per hour)
------------------------------------------------------------------------------
Linear part: Ahamadi M, Freshwater T, Prohn M, et al. Model-based characterization of
the pharmacokinetics of pembrolizumab: a humanized anti-PD-1 monoclonal antibody in
advanced solid tumors. CPT Pharmacometrics Syst Pharmacol 2017;6(1):49-57, Table 3
(2188 patients, KEYNOTE-001/-002/-006; time-invariant clearance in the final model):

* ``CL`` = 0.22 L/day * (WT/76.8)^0.595 * (1 - 0.152 if female)
* ``VC`` = 3.48 L * (WT/76.8)^0.489 * (1 - 0.134 if female)
* ``Q``  = 0.795 L/day * (WT/76.8)^0.595, ``VP`` = 4.06 L * (WT/76.8)^0.489
* IIV: omega^2 0.134 (CV ~38 %) shared by CL and Q, 0.0417 (~21 %) shared by VC and VP.
  The base class draws one eta per parameter, so CL, Q, VC and VP get independent etas
  with these variances (same marginal spread; the source's full CL-Q and VC-VP
  correlation is lost -- a simplification of ours).
* Residual error: additive on the log scale, SD 0.272 -> proportional 27.2 %.
* Covariates of Ahamadi that our population lacks (albumin, eGFR, tumour burden, tumour
  type, ECOG, prior ipilimumab) are held at the reference values (ALB 39.6 g/L, eGFR
  88.47 mL/min/1.73 m2, BSLD 89.6 mm, melanoma, ECOG 0, ipilimumab-naive).
  Verified against the nlmixr2lib transcription ``Ahamadi_2017_pembrolizumab.R``
  (Table 3 values and footnote equations), not against the paper itself.

Target-mediated part: Elassaiss-Schaap J, Rossenu S, Lindauer A, et al. Using
model-based "learn and confirm" to reveal the pharmacokinetics-pharmacodynamics
relationship of pembrolizumab in the KEYNOTE-001 trial. CPT Pharmacometrics Syst
Pharmacol 2017;6(1):21-28, Table 2 (parallel linear + Michaelis-Menten model, fitted to
0.005-10 mg/kg doses):

* ``VMAX`` = 0.114 mg/day, ``KM`` = 0.0784 mg/L, IIV on VMAX 22.7 % CV.
  Verified against the nlmixr2lib transcription ``Elassaiss-Schaap_2017_pembrolizumab.R``
  and the mrgsolve/depot ``pembro`` model (the project reference's numbers: CL 0.168
  L/day, VC 2.88 L, Q 0.384 L/day, VP 2.85 L, VMAX 0.114 mg/day, KM 0.0784 mg/L are that
  paper's Table 2). The (WT/78)^0.75 scaling of the depot file is not in the paper's
  final model (which had no covariates).

Our combination (derived, say so when citing): Elassaiss-Schaap's linear part came from
a small phase-I data set (KEYNOTE-001 parts A-A2) with IIV only on VMAX (plus
inter-occasion variability on F); we use Ahamadi's linear part (large population,
IIV and weight/sex effects, and the model behind the label's fixed-dose bridging) and
add Elassaiss-Schaap's saturable pathway. At clinical concentrations (> 10 mg/L) the
saturable pathway adds < 0.011 L/day (< 5 % of CL), so Ahamadi's linear estimate, fitted
at 1-10 mg/kg, is barely double-counted. The time-varying clearance of later analyses
(label: CL ~252 mL/day after the first dose, ~195 mL/day at steady state; numbers from
memory, not re-read) is not modelled.
A full quasi-steady-state TMDD parameterisation (Gibiansky) with published pembrolizumab
values was not found; the Michaelis-Menten approximation is used.

Solver: not stiff (rate constants 1e-3 to 3e-2 per hour: CL/VC 0.0026, Q/VC 0.0095,
Q/VP 0.0082, VMAX/(KM*VC) 0.017 per h), so explicit RK45 is used.

Reproduced numbers (tests; typical male, 76.8 kg): 200 mg q3w Cavg,ss 42.8 mg/L vs
Freshwater T et al. J Immunother Cancer 2017;5:43 (AUCss over 6 weeks, 200 mg q3w: mean
1.87 mg*day/mL, CV 37 %, i.e. Cavg,ss 44.5 mg/L; our sampled population: mean 48.5 mg/L,
CV 39 %); steady-state trough 29 mg/L (our population: median 31, 5-95 % 12-66 mg/L; no
published trough was verified); accumulation of Cavg 2.16 (label 2.1, Ahamadi ~2.2);
half-life between day 21 and 42 after one dose 24.4 d (label 22 d; Ahamadi ~27 d).
Dose-normalised AUC of the first interval: 24, 45, 52, 52 mg*h/L per mg at 1, 10, 200,
400 mg (nonlinear below ~1 mg/L, linear above).

Target (trough, mg/L): pembrolizumab has no established exposure-efficacy or
exposure-toxicity relationship over 2-10 mg/kg (flat exposure-response; KEYNOTE-002 and
-010 showed similar efficacy and grade 3-5 adverse-event rates at 2 and 10 mg/kg). The
window is therefore one of target engagement and clinical experience, derived by us:

* low = 4.8 mg/L: 9 x IC50 of the ex-vivo IL-2 stimulation-ratio (PD-1 engagement)
  model, IC50 0.535 mg/L (Elassaiss-Schaap 2017 Table 2), i.e. >= 90 % of maximal
  target engagement at trough.
* high = 113 mg/L: steady-state trough of 10 mg/kg q3w (the highest q3w dose studied,
  with efficacy and safety like 2 mg/kg) for the typical 76.8 kg patient of this model.
* toxic_above = 188 mg/L: steady-state trough of 10 mg/kg q2w, the maximum clinical
  dose used as the safety bound by Lala M et al. Eur J Cancer 2020;131:68-75. No
  toxicity is known to start there; above it there is simply no clinical experience.
  (Both bounds computed with this model, typical patient; see the tests.)

Standard dose: 200 mg every 3 weeks, fixed (KEYTRUDA label). Interval 504 h, 30-min
infusion, dose range 0-400 mg. LLOQ 0.01 mg/L: a realistic value for ligand-binding
assays of therapeutic antibodies (our statement, not from the sources).
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.base import DrugModel, ExposureTarget, Parameters, ResidualError, omega_from_cv
from vae_simulator.groundtruth.ode import Infusion, integrate_regimen

CENTRAL, PERIPH = 0, 1
#: Ahamadi 2017 Table 3 (per day -> per hour below), reference weight 76.8 kg.
CL_L_DAY, VC_L, Q_L_DAY, VP_L = 0.22, 3.48, 0.795, 4.06
WT_REF_KG, WT_EXP_CL_Q, WT_EXP_V = 76.8, 0.595, 0.489
FEMALE_CL, FEMALE_VC = -0.152, -0.134
#: Elassaiss-Schaap 2017 Table 2.
VMAX_MG_DAY, KM_MG_L = 0.114, 0.0784
#: IL-2 stimulation-ratio IC50 (mg/L), Elassaiss-Schaap 2017 Table 2.
IL2_IC50_MG_L = 0.535


def _rhs(t, y, u, seg_start, p):
    """Two compartments with parallel linear and saturable elimination; y (m, 2) in mg."""
    conc = y[:, CENTRAL] / p["VC"]
    conc_p = y[:, PERIPH] / p["VP"]
    distribution = p["Q"] * (conc - conc_p)
    elimination = p["CL"] * conc + p["VMAX"] * conc / (p["KM"] + conc)
    return np.stack([u[:, CENTRAL] - elimination - distribution, distribution], axis=1)


class Pembrolizumab(DrugModel):
    """Pembrolizumab, 2-compartment with linear + Michaelis-Menten (TMDD) clearance; see module docstring."""

    name = "pembrolizumab"
    route = "iv_infusion"
    interval_h = 504.0
    infusion_h = 0.5
    #: the label gives a 30-min infusion only; no other length is simulated.
    infusion_range_h = (0.5, 0.5)
    dose_range_mg = (0.0, 400.0)
    interval_grid_h = np.array([0.5, 1.0, 2.0, 6.0, 12.0, 24.0, 48.0, 72.0, 120.0, 168.0, 240.0, 336.0,
                                420.0, 504.0])
    monitoring_times_h = (1.0, 504.0)  # post-infusion peak and pre-dose trough
    lloq_mg_l = 0.01
    residual = ResidualError(prop_cv=0.272, add_sd_mg_l=0.0)
    iiv_omega = {"CL": float(np.sqrt(0.134)), "Q": float(np.sqrt(0.134)),
                 "VC": float(np.sqrt(0.0417)), "VP": float(np.sqrt(0.0417)),
                 "VMAX": omega_from_cv(0.227)}
    target = ExposureTarget(
        metric="trough", low=4.8, high=113.0, toxic_above=188.0, unit="mg/L",
        source="low: 90 % PD-1 engagement, 9 x IL-2 IC50 0.535 mg/L (Elassaiss-Schaap 2017 CPT PSP 6:21); "
               "high / toxic: steady-state troughs of 10 mg/kg q3w / q2w, the highest studied exposures "
               "(Lala 2020 Eur J Cancer 131:68), computed with this model; no exposure-toxicity "
               "relationship is established")
    source = ("Ahamadi M et al. CPT Pharmacometrics Syst Pharmacol 2017;6:49-57 (linear 2-compartment "
              "PK, covariates, IIV, residual); Elassaiss-Schaap J et al. CPT Pharmacometrics Syst Pharmacol "
              "2017;6:21-28 (Michaelis-Menten target-mediated clearance, IL-2 IC50); Freshwater T et al. "
              "J Immunother Cancer 2017;5:43 (200 mg q3w exposure); KEYTRUDA label (200 mg q3w)")
    #: Per-patient relative tolerance of the ODE solver (tests halve it to check convergence).
    rtol = 1e-6
    STANDARD_DOSE_MG = 200.0

    def typical_parameters(self, cov: Covariates) -> Parameters:
        """CL and Q (L/h), VC and VP (L), VMAX (mg/h), KM (mg/L)."""
        size_cl = (cov.WT / WT_REF_KG) ** WT_EXP_CL_Q
        size_v = (cov.WT / WT_REF_KG) ** WT_EXP_V
        female = 1.0 - cov.SEX
        n = len(cov)
        return {
            "CL": CL_L_DAY / 24.0 * size_cl * (1.0 + FEMALE_CL * female),
            "VC": VC_L * size_v * (1.0 + FEMALE_VC * female),
            "Q": Q_L_DAY / 24.0 * size_cl,
            "VP": VP_L * size_v,
            "VMAX": np.full(n, VMAX_MG_DAY / 24.0),
            "KM": np.full(n, KM_MG_L),
        }

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """200 mg every 3 weeks for every adult (label)."""
        return np.clip(np.full(len(cov), self.STANDARD_DOSE_MG), *self.dose_range_mg)

    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
                  infusion_h: np.ndarray) -> np.ndarray:
        n, k = doses_mg.shape
        infusions = [Infusion(float(dose_times_h[j]), float(dose_times_h[j] + infusion_h[j]),
                              doses_mg[:, j] / infusion_h[j], CENTRAL) for j in range(k)]
        states = integrate_regimen(_rhs, params, np.zeros((n, 2)), times_h, [], infusions,
                                   method="RK45", rtol=self.rtol, atol=1e-9, chunk=1024)
        return states[:, CENTRAL, :] / params["VC"][:, None]
