"""Mycophenolic acid (MPA) after oral mycophenolate mofetil (MMF), with enterohepatic recirculation.

MPA is the drug whose profile shows what no plain compartment model gives: a secondary
peak hours after the dose, when the gallbladder empties MPA glucuronide (MPAG) into the
gut at a meal, gut bacteria deconjugate it, and the MPA is absorbed again.

Structure (Sheng et al. 2020, Figure 1; five compartments, linear)
------------------------------------------------------------------
depot --ka--> unbound MPA central <--Q--> peripheral
central --CL_u--> 87 % to MPAG (fm, fixed), 13 % eliminated
MPAG central --CL_MPAG--> urine, and biliary flux to the gallbladder such that a fraction
``ehc_fraction`` = k_GG / (k_GG + k_MPAG) of MPAG elimination goes to bile (Sheng Eq. 4)
gallbladder --k_GB (only in meal windows)--> depot (MPAG fully deconjugated, reabsorbed)

The observed total MPA is ``C_total = A_central / V_c,u * (1 + kB)`` with kB the linear
protein-binding ratio (bound:unbound). Amounts are kept in mg of MPA (MPAG in mg MPA
equivalents; the source works in umol with 1:1 molar conversions, which is the same).
An MMF dose enters the depot as MPA mass = 0.7390 x MMF mass (MW MPA 320.34 / MMF 433.50
g/mol, as in the source), after a lag time.

Gallbladder emptying is a piecewise-constant switch: rate k_GB during [meal, meal + 0.5 h)
and 0 otherwise, meals at 4 h and 10 h after every dose (the source's study-1 meal times),
the same for every patient and every 12-h interval. Between switches and doses the system
is linear with constant coefficients, so it is solved exactly by matrix exponentials (one
batched ``expm`` per distinct step length); :meth:`Mycophenolate.rate_rhs` gives the same
system to :func:`~vae_simulator.groundtruth.ode.integrate_regimen` (switch times in
``extra_breaks_h``, mode read from the segment start), which the tests use as a cross-check.

Parameter values (typical, 70 kg; IIV as log-normal omega)
---------------------------------------------------------
Source: Sheng C, Zhao Q, Niu W, Qiu X, Zhang M, Jiao Z. Effect of protein binding on exposure
of unbound and total mycophenolic acid: a population pharmacokinetic analysis in Chinese adult
kidney transplant recipients. Front Pharmacol 2020;11:340 (58 kidney recipients, MMF 750-2000
mg/day q12h, all on ciclosporin). Table 2, as transcribed with table references in nlmixr2lib
``inst/modeldb/specificDrugs/Sheng_2020_mycophenolic_acid.R`` (read for this model; the
primary article itself was not read: not verified against the primary source).

* ka 1.35 /h (omega 0.465), tlag 0.447 h (published IIV 107.7 % dropped, see below)
* CL_u/F 851 L/h (0.510), V_c,u/F 718 L (0.800), Q_u/F 857 L/h x (WT/70)^2.11 (0.455),
  V_p,u/F 34,300 L (fixed by the authors to de Winter 2009's value; no IIV)
* kB 53.4 x (ALB/40) (0.10, fixed by the authors); fm 0.87 (fixed, FDA CellCept label)
* CL_MPAG,u/F 5.71 L/h x (GFR/80)^0.865 (0.318), V_MPAG,u/F 29.9 L (0.484); the published
  correlation 0.574 of these two etas is dropped (the contract samples independent etas)
* k_GB 3.708 /h (fixed by the authors after Guiastrennec 2016), emptying duration 0.5 h
* residual: exponential, log-scale SD 0.459 for total MPA -> proportional 45.9 %, additive 0
  (the first-order equivalent of the published exponential error)
* BSV in Sheng's table is %CV = 100 x omega, so omega = CV / 100 here.

EHC fraction. Sheng's cohort all took ciclosporin, which blocks MRP2-mediated biliary MPAG
excretion and so shrinks EHC ("Mechanism-based enterohepatic circulation model of mycophenolic
acid and its glucuronide metabolite", J Clin Pharmacol 2009;49(6), "Jiao 2009" in our notes,
abstract read: EHC fell with the ciclosporin dose, and the bile-release time set the second
peak's time and height). Sheng estimated ehc_fraction 5.53 % (omega 0.616). Today's standard
co-therapy is tacrolimus, which does not block MRP2, so the default (``comedication=
"tacrolimus"``) takes the ciclosporin-free estimate of the parent model of the same group
and structure: Jiao Z et al. Br J Clin Pharmacol 2008;65:893, Table 3, EHCP 29.1 % with IIV
29.0 % CV (omega = sqrt(log(1 + 0.29^2)) = 0.284), read from nlmixr2lib
``Jiao_2008_mycophenolic_acid.R`` (healthy volunteers, fm fixed to 1 there). Combining it
with Sheng's disposition is our choice, not a published model. With it EHC contributes
fm x 0.291 = 25 % of the steady-state AUC (removing EHC keeps everything else), inside the
10-61 % (mean ~37 %) of Bullingham RES et al. Clin Pharmacokinet 1998;34:429 (as quoted in our
brief; Sherwin CMT et al. Br J Clin Pharmacol 2012;73:727 quote ~40 %, range 10-60 %), and near
the ~40 % AUC loss when cholestyramine interrupts EHC (CellCept label). ``comedication=
"ciclosporin"`` gives Sheng's model as published. Sampled fractions are capped at 0.95 (ours:
the log-normal tail could otherwise exceed 1).

Covariates and what we changed (our derivations, stated plainly)
----------------------------------------------------------------
* Albumin (on kB) is not among our covariates: fixed at the source's reference 40 g/L.
* GFR is the source's CKD-EPI estimate (Levey AS et al. Ann Intern Med 2009;150:604), which
  we compute from SCR, AGE and SEX without a race factor (Chinese cohort), in mL/min/1.73 m2
  as the source used it. WT and GFR are clipped to the source's cohort ranges (40-82.5 kg,
  11.2-123.8 mL/min) before the power laws, so we do not extrapolate WT^2.11 to 180 kg.
* The lag time has no IIV: one lag for all patients keeps the dose times shared breakpoints
  of the piecewise solution.
* Meal (gallbladder emptying) times are the same for everyone and repeat every interval.

Behaviour of the typical patient at 1000 mg MMF q12h (tacrolimus): Tmax 1.0 h, Cmax ~15
mg/L after the first dose; secondary peaks ~4.5-5 h and ~10.5-11 h post-dose; AUC0-12 29 mg*h/L
after the first dose, ~52 on day 5, 63 at steady state (ciclosporin: 27, 43, 50). The slow
distribution phase (V_p,u fixed by the authors) gives a terminal half-life of ~56 h, longer
than the ~18 h usually reported for MPA, so exposure keeps rising for about two weeks: a
property of the published model that we keep (it resembles the observed rise of MPA exposure
over the first post-transplant weeks, which has other causes).

Exposure target: MPA AUC0-12 30-60 mg*h/L with a calcineurin inhibitor (Kuypers DRJ et al.
Consensus report on therapeutic drug monitoring of mycophenolic acid in solid organ
transplantation. Clin J Am Soc Nephrol 2010;5:341-358); below 30 more acute rejection, above
60 more leukopenia / GI toxicity. Standard dose: 1000 mg MMF q12h (CellCept label, kidney).
Monitoring: C0 (pre-dose), C0.5 and C2, the limited-sampling set of Pawinski T et al. Clin
Chem 2002;48:1497 (MMF with tacrolimus; cited from memory, not re-read). LLOQ 0.1 mg/L: a
typical HPLC-UV value, our choice, not from the source.

Also checked: the Shum 2003 values of our reference notes (CL/F 27.1 L/h, V1 97.7 L, ka 2.27
/h, Q 25.7 L/h, V2 206 L, tlag 0.145 h; Br J Clin Pharmacol 56:188) match Table II of the
review Sherwin CMT et al. Clin Pharmacokinet 2011;50:1 (PMC5565486). We do not use them: that
model has no EHC and its CL/F is an apparent net clearance of early (day 2-28), ciclosporin-
treated recipients; Sheng 2020 estimates disposition and EHC together.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from vae_simulator.covariates import Covariates
from vae_simulator.groundtruth.base import DrugModel, ExposureTarget, Parameters, ResidualError

MW_MPA_G_MOL = 320.34
MW_MMF_G_MOL = 433.50
#: mg MPA per mg MMF (1:1 molar hydrolysis).
MPA_PER_MMF = MW_MPA_G_MOL / MW_MMF_G_MOL

_N_STATES = 5
_DEPOT, _CENTRAL, _PERIPHERAL, _MPAG, _GALLBLADDER = range(_N_STATES)
_FRACTION_TO_MPAG = 0.87          # fm, fixed in Sheng 2020
_GALLBLADDER_EMPTYING_PER_H = 3.708
_EHC_FRACTION_CAP = 0.95          # ours: keeps k_GG finite for sampled fractions
_TIME_TOL_H = 1e-9
_WT_RANGE_KG = (40.0, 82.5)       # Sheng 2020 Table 1
_GFR_RANGE = (11.2, 123.8)        # Sheng 2020 Table 1, mL/min (CKD-EPI)

#: comedication -> (typical ehc_fraction, omega): ciclosporin Sheng 2020; tacrolimus Jiao 2008.
EHC_BY_COMEDICATION: dict[str, tuple[float, float]] = {
    "tacrolimus": (0.291, float(np.sqrt(np.log(1.0 + 0.290 ** 2)))),
    "ciclosporin": (0.0553, 0.616),
}


def batched_expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponentials of a stack ``(n, m, m)``: scaling and squaring with a degree-12 Taylor sum.

    After scaling every matrix to an infinity norm <= 0.5 the truncation error is below
    0.5^13 / 13! ~ 2e-14; all matrices share one scaling so the work is a few batched matmuls
    (scipy's expm loops over the stack, ~0.5 ms per 5x5 matrix).
    """
    norm = float(np.abs(a).sum(axis=-1).max(initial=0.0))
    squarings = max(0, int(np.ceil(np.log2(norm / 0.5)))) if norm > 0 else 0
    b = a / 2.0 ** squarings
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    result = eye + b / 12.0
    for order in range(11, 0, -1):  # Horner: I + b/1 (I + b/2 (I + ... ))
        result = eye + (b @ result) / order
    for _ in range(squarings):
        result = result @ result
    return result


def ckd_epi_2009_gfr(scr_mg_dl, age_y, sex) -> np.ndarray:
    """CKD-EPI 2009 eGFR (mL/min/1.73 m2) without the race factor (Levey 2009)."""
    scr, age, male = (np.asarray(a, dtype=float) for a in (scr_mg_dl, age_y, sex))
    male = male >= 0.5
    kappa = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.411, -0.329)
    ratio = scr / kappa
    return (141.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.209
            * 0.993 ** age * np.where(male, 1.0, 1.018))


class Mycophenolate(DrugModel):
    """Oral MMF -> MPA with gallbladder enterohepatic recirculation (Sheng 2020; see module doc).

    ``comedication`` ("tacrolimus" default, or "ciclosporin") sets the EHC fraction;
    ``meal_times_h`` the gallbladder-emptying times after each dose (h), each window
    ``emptying_duration_h`` long and inside the 12-h interval.
    """

    name = "mycophenolate"
    route = "oral"
    interval_h = 12.0
    infusion_h = 0.0
    dose_range_mg = (0.0, 3000.0)          # mg MMF per dose
    interval_grid_h = np.arange(1, 49) * 0.25  # every 15 min: resolves both peaks
    monitoring_times_h = (0.5, 2.0, 12.0)  # C0.5, C2 and C0 (= 12 h of the previous interval)
    lloq_mg_l = 0.1
    residual = ResidualError(prop_cv=0.459, add_sd_mg_l=0.0)
    molar_mass_g_mol = MW_MPA_G_MOL
    lag_h = 0.447
    target = ExposureTarget(
        metric="auc_interval", low=30.0, high=60.0, toxic_above=60.0, unit="mg*h/L",
        source="Kuypers DRJ et al. Clin J Am Soc Nephrol 2010;5:341-358 (MPA AUC0-12 30-60 mg*h/L)")
    source = (
        "Sheng C, Zhao Q, Niu W, Qiu X, Zhang M, Jiao Z. Front Pharmacol 2020;11:340 (structure, "
        "disposition, gallbladder emptying); Jiao Z et al. Br J Clin Pharmacol 2008;65:893 (EHC "
        "fraction without ciclosporin); Levey AS et al. Ann Intern Med 2009;150:604 (CKD-EPI); "
        "Kuypers DRJ et al. Clin J Am Soc Nephrol 2010;5:341 (target)")

    def __init__(self, comedication: str = "tacrolimus", meal_times_h: tuple[float, ...] = (4.0, 10.0),
                 emptying_duration_h: float = 0.5) -> None:
        if comedication not in EHC_BY_COMEDICATION:
            raise ValueError(f"comedication must be one of {sorted(EHC_BY_COMEDICATION)}, "
                             f"got {comedication!r}")
        if not (np.isfinite(emptying_duration_h) and 0 < emptying_duration_h <= self.interval_h):
            raise ValueError(f"emptying_duration_h must be in (0, {self.interval_h:g}] h, "
                             f"got {emptying_duration_h!r}")
        meals = tuple(sorted(float(m) for m in meal_times_h))
        for m in meals:
            if not (np.isfinite(m) and 0.0 <= m and m + emptying_duration_h <= self.interval_h):
                latest = self.interval_h - emptying_duration_h
                raise ValueError(f"meal time {m!r} h must lie in [0, {latest:g}] h so its "
                                 f"{emptying_duration_h:g}-h emptying window ends within the interval")
        if any(b < a + emptying_duration_h for a, b in pairwise(meals)):
            raise ValueError(f"emptying windows of meals {meals} h overlap")
        self.comedication = comedication
        self.meal_times_h = meals
        self.emptying_duration_h = float(emptying_duration_h)
        ehc_typical, ehc_omega = EHC_BY_COMEDICATION[comedication]
        self._ehc_typical = ehc_typical
        self.iiv_omega = {"ka": 0.465, "cl_unbound": 0.510, "v_central_unbound": 0.800, "q_unbound": 0.455,
                          "binding_ratio": 0.10, "cl_mpag": 0.318, "v_mpag": 0.484, "ehc_fraction": ehc_omega}

    # ------------------------------------------------------------------ parameters
    def typical_parameters(self, cov: Covariates) -> Parameters:
        """Typical individual parameters (L, L/h, 1/h; ratios unitless) for ``cov``."""
        n = len(cov)
        wt = np.clip(cov.WT, *_WT_RANGE_KG)
        gfr = np.clip(ckd_epi_2009_gfr(cov.SCR, cov.AGE, cov.SEX), *_GFR_RANGE)

        def full(value: float) -> np.ndarray:
            return np.full(n, float(value))

        return {
            "ka": full(1.35),
            "cl_unbound": full(851.0),
            "v_central_unbound": full(718.0),
            "q_unbound": 857.0 * (wt / 70.0) ** 2.11,
            "v_peripheral_unbound": full(34300.0),
            "binding_ratio": full(53.4),  # albumin at the reference 40 g/L
            "cl_mpag": 5.71 * (gfr / 80.0) ** 0.865,
            "v_mpag": full(29.9),
            "ehc_fraction": full(self._ehc_typical),
        }

    def standard_dose_mg(self, cov: Covariates) -> np.ndarray:
        """1000 mg MMF q12h for every adult kidney recipient (CellCept label)."""
        return np.clip(np.full(len(cov), 1000.0), *self.dose_range_mg)

    # ------------------------------------------------------------------ the linear system
    def rate_matrices(self, params: Parameters) -> tuple[np.ndarray, np.ndarray]:
        """Rate matrices (1/h) without and with gallbladder emptying, each ``(n, 5, 5)``.

        ``dA/dt = M @ A`` for the amounts A = (depot, central, peripheral, MPAG, gallbladder).
        """
        p = {k: np.asarray(v, dtype=float) for k, v in params.items()}
        for volume in ("v_central_unbound", "v_peripheral_unbound", "v_mpag"):
            if np.any(p[volume] <= 0):
                raise ValueError(f"{self.name}: parameter {volume} must be > 0 L, got {p[volume].min():g}")
        n = p["ka"].shape[0]
        kel = p["cl_unbound"] / p["v_central_unbound"]
        k_cp = p["q_unbound"] / p["v_central_unbound"]
        k_pc = p["q_unbound"] / p["v_peripheral_unbound"]
        k_mpag = p["cl_mpag"] / p["v_mpag"]
        ehc = np.minimum(p["ehc_fraction"], _EHC_FRACTION_CAP)
        k_bile = k_mpag * ehc / (1.0 - ehc)  # Sheng Eq. 4: ehc = k_bile / (k_bile + k_mpag)
        m = np.zeros((n, _N_STATES, _N_STATES))
        m[:, _DEPOT, _DEPOT] = -p["ka"]
        m[:, _CENTRAL, _DEPOT] = p["ka"]
        m[:, _CENTRAL, _CENTRAL] = -(kel + k_cp)
        m[:, _CENTRAL, _PERIPHERAL] = k_pc
        m[:, _PERIPHERAL, _CENTRAL] = k_cp
        m[:, _PERIPHERAL, _PERIPHERAL] = -k_pc
        m[:, _MPAG, _CENTRAL] = _FRACTION_TO_MPAG * kel
        m[:, _MPAG, _MPAG] = -(k_mpag + k_bile)
        m[:, _GALLBLADDER, _MPAG] = k_bile
        emptying = m.copy()
        emptying[:, _DEPOT, _GALLBLADDER] = _GALLBLADDER_EMPTYING_PER_H
        emptying[:, _GALLBLADDER, _GALLBLADDER] = -_GALLBLADDER_EMPTYING_PER_H
        return m, emptying

    def gallbladder_emptying(self, time_h: float) -> bool:
        """Whether the gallbladder empties on the segment starting at ``time_h`` (h from first dose)."""
        phase = time_h - self.interval_h * np.floor((time_h + _TIME_TOL_H) / self.interval_h)
        return any(m - _TIME_TOL_H <= phase < m + self.emptying_duration_h - _TIME_TOL_H
                   for m in self.meal_times_h)

    def switch_times_h(self, n_intervals: int) -> np.ndarray:
        """Start and end of every emptying window over ``n_intervals`` intervals (h)."""
        starts = np.array([(m, m + self.emptying_duration_h) for m in self.meal_times_h]).ravel()
        return (self.interval_h * np.arange(n_intervals)[:, None] + starts[None, :]).ravel()

    def dose_boluses(self, doses_mg: np.ndarray, dose_times_h: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """(time h, MPA amount mg per patient) entering the depot for each dose, after the lag."""
        return [(float(t) + self.lag_h, doses_mg[:, k] * MPA_PER_MMF) for k, t in enumerate(dose_times_h)]

    def total_mpa_mg_l(self, params: Parameters, central_mg: np.ndarray) -> np.ndarray:
        """Total MPA (mg/L) from the unbound central amount (mg), ``(n, ...)``."""
        scale = (1.0 + params["binding_ratio"]) / params["v_central_unbound"]
        return central_mg * scale.reshape((-1,) + (1,) * (central_mg.ndim - 1))

    def rate_rhs(self, params: Parameters):
        """The rhs for :func:`~vae_simulator.groundtruth.ode.integrate_regimen` (mode from segment start)."""
        def rhs(t, y, u, segment_start_h, chunk_params):
            off, on = self.rate_matrices(chunk_params)
            m = on if self.gallbladder_emptying(segment_start_h) else off
            return np.einsum("nij,nj->ni", m, y) + u
        return rhs

    # ------------------------------------------------------------------ simulation
    def _simulate(self, params: Parameters, doses_mg: np.ndarray, times_h: np.ndarray, dose_times_h: np.ndarray,
                  infusion_h: np.ndarray) -> np.ndarray:
        n = doses_mg.shape[0]
        matrices = self.rate_matrices(params)
        boluses = [(t, a) for t, a in self.dose_boluses(doses_mg, dose_times_h) if t <= times_h[-1] + _TIME_TOL_H]
        bolus_times = np.array([t for t, _ in boluses])
        # Meals are at clock times (mod interval_h): cover every interval up to the last sample.
        n_clock_intervals = int(np.floor(times_h[-1] / self.interval_h)) + 1
        # Event times rounded to 1e-9 h so that coinciding grid, dose and switch times merge.
        events = np.concatenate([[0.0], bolus_times, self.switch_times_h(n_clock_intervals), times_h])
        events = np.unique(np.round(events[events <= times_h[-1] + _TIME_TOL_H], 9))
        record = np.searchsorted(events, np.round(times_h, 9))  # each time's index among the events
        bolus_index = np.searchsorted(events, np.round(bolus_times, 9))
        propagators: dict[tuple[bool, float], np.ndarray] = {}
        state = np.zeros((n, _N_STATES))
        central = np.empty((n, times_h.size))
        out_j = 0
        for i, t in enumerate(events):
            while out_j < times_h.size and record[out_j] == i:  # record before a bolus at t (pre-dose)
                central[:, out_j] = state[:, _CENTRAL]
                out_j += 1
            for (_, amount) in (boluses[b] for b in np.flatnonzero(bolus_index == i)):
                state[:, _DEPOT] += amount
            if i + 1 == events.size:
                break
            key = (self.gallbladder_emptying(t), round(float(events[i + 1] - t), 9))
            if key not in propagators:
                propagators[key] = batched_expm(matrices[int(key[0])] * key[1])
            state = np.einsum("nij,nj->ni", propagators[key], state)
        return self.total_mpa_mg_l(params, central)
