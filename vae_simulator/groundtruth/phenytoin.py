"""Phenytoin: oral, one compartment, saturable (Michaelis-Menten) elimination.

Why it is here: phenytoin's hepatic metabolism saturates at therapeutic concentrations,
so the steady-state concentration rises disproportionately with the dose rate (a 20 %
dose increase can double it) and steady state takes one to several weeks to reach.

Structure (amounts in mg, time in h)::

    dDEPOT/dt   = -KA * DEPOT
    dCENTRAL/dt =  KA * DEPOT - VM/24 * C / (KM + C),      C = CENTRAL / V

Each daily dose (q24h) is a bolus into DEPOT. For a constant daily dose rate R < VM the
steady-state (mean) concentration is Css = KM * R / (VM - R); for R >= VM there is no
steady state and the concentration keeps rising.

Parameters (typical adult; WT in kg)
------------------------------------
* ``VM`` (mg/day) = 415 * (WT/70)^0.6 -- maximal elimination rate. ``KM`` (mg/L) = 5.7.
  Grasela TH, Sheiner LB, Rambeck B, et al. Steady-state pharmacokinetics of phenytoin
  from routinely collected patient data. Clin Pharmacokinet 1983;8(4):355-364 (NONMEM,
  322 patients / 780 steady-state levels): Vm 415 mg/day and Km 5.7 mg/L for a 70 kg
  adult male European; Vm proportional to WT^0.6; Vm not influenced by sex or age;
  Km not influenced by sex, 43 % lower under 15 years (irrelevant for our adults) and
  23 % lower in Japanese patients (not modelled). Verified against the published
  abstract (PubMed 6617043).
* IIV: Grasela report "a coefficient of variation between 10 to 20 %" for Vm and
  "approximately 50 %" for Km (abstract). We use CV 15 % (the midpoint) for VM and 50 %
  for KM; omega = sqrt(log(CV^2 + 1)).
* ``V`` (L) = 0.7 L/kg * WT -- the textbook adult value for normal protein binding
  (Bauer LA, Applied Clinical Pharmacokinetics, 2nd ed., McGraw-Hill 2008, ch. 10
  "Phenytoin"; Winter ME, Basic Clinical Pharmacokinetics). IIV on V 33.9 % CV from the
  phenytoin model of Ther Drug Monit 2016;38(6):728-737, doi:10.1097/FTD.0000000000000354
  (Ku LC et al.; author names from memory), Table 2 (V 78.6 L per 70 kg, IIV 33.9 %),
  read from the PMC copy of the table (PMC5113813); borrowed from that model.
* ``KA`` (1/h) = 0.459 -- oral phenytoin absorption rate, Ku 2016 Table 2 (the
  table lists 0.513 /h as the previously published value). Absorption half-life
  1.5 h; no IIV (not estimated in the source).
* Bioavailability and salt factor: Grasela's Vm is *apparent*, estimated from the daily
  dose rate as given (mg/day) against steady-state levels, so F * S is absorbed into VM.
  We therefore put the administered dose into DEPOT unchanged (F * S = 1 relative to
  the apparent VM). Converting with S = 0.92 (phenytoin sodium) and F ~ 1 on top would
  double-count it. This is our reading of the model; say so when comparing with
  formulations.

Residual error: proportional 17.1 % (Ku 2016 Table 2, total and free phenytoin);
Grasela 1983 modelled steady-state levels only and its residual is not used. No additive
term (the source has none).

LLOQ 0.5 mg/L: a realistic value for clinical immunoassays of total phenytoin (our
statement, not taken from the sources above).

Target: total concentration 10-20 mg/L, metric ``trough`` (TDM of phenytoin uses trough /
pre-dose levels; with q24h dosing the within-day fluctuation is small). Toxic above
20 mg/L: nystagmus 20-30, ataxia 30-40, lethargy/confusion 40-50, coma > 50 mg/L
(Craig S. Phenytoin poisoning. Neurocrit Care 2005 -- known only via secondary sources
such as teaching material based on Bauer 2008 ch. 10; the original was not read).

Standard dose: 300 mg/day for every adult -- the Dilantin (extended phenytoin sodium
capsules) label's adult starting dose, 100 mg three times daily or 300 mg once daily,
adjusted afterwards by levels (label wording from memory, not re-read here). We do not
use 5 mg/kg/day: that is the label's *paediatric* starting dose, and because VM grows
only with WT^0.6, mg/kg dosing overshoots in heavy adults. In 500 sampled patients of
our population (mean weight ~85 kg), 5 mg/kg/day (rounded to 50 mg, even capped at 400 mg/day) put 59 % above
20 mg/L at steady state and 11 % above VM (no steady state), against 21 % above
20 mg/L and 31 % within 10-20 mg/L for 300 mg/day (our simulation, Css formula below).

Reproduced numbers (tests; typical 70 kg adult): after 6 weeks the mean concentration at
150, 200, 300 mg/day is within 1.3 % of Css = 3.23, 5.30, 14.9 mg/L (interval means lie
slightly above the constant-rate formula because elimination is concave in C); doubling
150 -> 300 mg/day raises Css 4.6-fold; at 300 mg/day the trough reaches 89 % of its
steady-state value by day 14 and 98 % by day 28.

Steady state with Michaelis-Menten kinetics takes 1-3 weeks at usual doses (t90 =
KM*V/(VM-R)^2 * (2.3*VM - 0.9*R) days, Winter's formula: ~5 days at 200 mg/day, ~2 weeks
at 300 mg/day, ~6 weeks at 350 mg/day for a typical 70 kg adult). Simulate enough
intervals before judging steady-state exposure.
"""

from __future__ import annotations

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.base import DrugModel, ExposureTarget, Parameters, ResidualError, omega_from_cv
from vae_simulator.groundtruth.ode import Bolus, integrate_regimen

#: Grasela 1983: typical Vm (mg/day) and Km (mg/L) of a 70 kg adult.
VM_MG_DAY_70KG, KM_MG_L, VM_WT_EXPONENT = 415.0, 5.7, 0.6
#: Volume per kg (Bauer 2008) and absorption rate (Ku 2016).
V_L_PER_KG, KA_PER_H = 0.7, 0.459
DEPOT, CENTRAL = 0, 1


def steady_state_concentration_mg_l(dose_rate_mg_day, vm_mg_day, km_mg_l) -> np.ndarray:
    """Closed-form Michaelis-Menten steady state Css = Km*R/(Vm-R) (mg/L); inf where R >= Vm."""
    r, vm, km = (np.asarray(a, dtype=float) for a in (dose_rate_mg_day, vm_mg_day, km_mg_l))
    with np.errstate(divide="ignore"):
        return np.where(r < vm, km * r / np.where(r < vm, vm - r, 1.0), np.inf)


def _rhs(t, y, u, seg_start, p):
    """Depot -> central with saturable elimination; y (m, 2) in mg."""
    conc = y[:, CENTRAL] / p["V"]
    absorbed = p["KA"] * y[:, DEPOT]
    eliminated = (p["VM"] / 24.0) * conc / (p["KM"] + conc)
    return np.stack([-absorbed, absorbed - eliminated], axis=1)


class Phenytoin(DrugModel):
    """Oral phenytoin with Michaelis-Menten elimination (Grasela 1983); see the module docstring."""

    name = "phenytoin"
    route = "oral"
    interval_h = 24.0
    infusion_h = 0.0
    dose_range_mg = (0.0, 1000.0)
    interval_grid_h = np.array([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0])
    monitoring_times_h = (24.0,)  # pre-dose trough
    lloq_mg_l = 0.5
    residual = ResidualError(prop_cv=0.171, add_sd_mg_l=0.0)
    iiv_omega = {"VM": omega_from_cv(0.15), "KM": omega_from_cv(0.50), "V": omega_from_cv(0.339)}
    target = ExposureTarget(
        metric="trough", low=10.0, high=20.0, toxic_above=20.0, unit="mg/L",
        source="Total phenytoin 10-20 mg/L; nystagmus 20-30, ataxia 30-40 mg/L (Craig 2005 Neurocrit "
               "Care 2005, via secondary sources; Bauer, Applied Clinical Pharmacokinetics 2008, ch. 10)")
    source = ("Grasela TH et al. Clin Pharmacokinet 1983;8:355-364 (Vm, Km, WT^0.6, IIV); "
              "Ku LC et al. Ther Drug Monit 2016;38:728-737 (ka, IIV of V, residual error); "
              "Bauer LA. Applied Clinical Pharmacokinetics, 2nd ed., 2008, ch. 10 (V 0.7 L/kg, "
              "therapeutic range, dosing)")
    #: Per-patient relative tolerance of the ODE solver (tests halve it to check convergence).
    rtol = 1e-6
    #: Label adult starting dose (mg/day), see the module docstring.
    STANDARD_DOSE_MG_DAY = 300.0

    def typical_parameters(self, cov: Covariates) -> Parameters:
        """KA (1/h), V (L), VM (mg/day), KM (mg/L) for adults (no covariate on KM, KA)."""
        wt = cov.WT
        return {
            "KA": np.full(len(cov), KA_PER_H),
            "V": V_L_PER_KG * wt,
            "VM": VM_MG_DAY_70KG * (wt / 70.0) ** VM_WT_EXPONENT,
            "KM": np.full(len(cov), KM_MG_L),
        }

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """300 mg per 24 h for every adult (label starting dose)."""
        return np.clip(np.full(len(cov), self.STANDARD_DOSE_MG_DAY), *self.dose_range_mg)

    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
                  infusion_h: np.ndarray) -> np.ndarray:
        n, k = doses_mg.shape
        boluses = [Bolus(float(dose_times_h[j]), doses_mg[:, j], DEPOT) for j in range(k)]
        states = integrate_regimen(_rhs, params, np.zeros((n, 2)), times_h, boluses, [],
                                   method="RK45", rtol=self.rtol, atol=1e-9, chunk=1024)
        return states[:, CENTRAL, :] / params["V"][:, None]
