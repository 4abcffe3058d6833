"""Semi-mechanistic myelosuppression (Friberg 2002) for two drugs with additive effects.

Structure (Friberg LE, Henningsson A, Maas H, Nguyen L, Karlsson MO. J Clin Oncol
20:4713-4721, 2002), cells in 1e9/L, time in h::

    dProl/dt = ktr * Prol * (1 - E) * (Circ0 / Circ)^gamma - ktr * Prol
    dT1/dt   = ktr * (Prol - T1),  dT2/dt = ktr * (T1 - T2),  dT3/dt = ktr * (T2 - T3)
    dCirc/dt = ktr * (T3 - Circ),  ktr = 4 / MTT
    E        = SlopeA * CA + SlopeB * CB        (CA, CB total plasma concentrations, umol/L)

``Circ`` is the absolute neutrophil count (ANC). Two drugs act additively on proliferation,
the combination form suggested for this pair (paclitaxel = drug A, carboplatin = drug B).

**E is not capped below 1.** ``(1 - E) < 0`` means net kill of proliferating cells; that is
the published model (Friberg's linear effect reaches E >> 1 at paclitaxel peaks), and its
slopes were estimated with it, so a cap such as ``min(E, 0.999)`` would change the fitted
model (with a cap the pool can fall no faster than ``ktr``, and the published slopes would no
longer reproduce the observed neutropenia). The proliferation equation is linear in Prol,
so Prol stays positive for any E. It is integrated as ``ln Prol``,
``d ln Prol/dt = ktr * ((1 - E) * (Circ0/Circ)^gamma - 1)``: positivity is then exact and the
kill term, whose rate ``ktr * E`` reaches ~1 /h at conventional peak concentrations and
several per h at the highest doses (RK4 with a 4-h step is unstable above ~0.7 /h), becomes
a plain quadrature of E, which RK4 integrates exactly while the concentration is linear
between grid points.

Numerical safeguard (ours): in the feedback, Circ is floored at 1e-3 x 1e9/L (1 cell/uL,
far below any measured ANC), so the feedback stays below ~7. Without it, a marrow ablated
by an extreme dose (ANC ~1e-20) gives a feedback of ~1e5 and an explosive, stiff regrowth
that no explicit step can follow. Nothing changes while ANC >= 1e-3 x 1e9/L.

Parameters (typical values; IIV as log-normal SD)
--------------------------------------------------
The system parameters come from a paclitaxel **neutrophil** fit: Wahlby U, Thomson AH,
Milligan PA, Karlsson MO. Br J Clin Pharmacol 58:367-377, 2004, Table 8 final model (the
paclitaxel neutrophil data of Friberg 2002; bilirubin covariates at their reference, median
bilirubin 6 umol/L and no change from baseline, where they vanish), as transcribed in
nlmixr2lib ``Wahlby_2004_paclitaxel_myelosuppression.R`` (not verified against the primary
source): Circ0 5.47e9/L (omega 0.36), MTT 131 h (omega 0.17), gamma 0.22, Slope 48.6 L/umol
on *unbound* paclitaxel (omega 0.38), proportional residual error 38%.

Why not the DDMoRe 186 values (Circ0 7.21e9/L, MTT 124 h, gamma 0.239, Slope 28.9 L/umol,
IIV variances 0.107/0.030/0.176, residual 28.6%)? Checked against nlmixr2lib
``Friberg_2002_paclitaxel.R`` (DDMODEL00000186): they are right, but they are the
*leukocyte* fit (WBC, 1e9/L), and CTCAE neutropenia grades are defined on ANC.

Unbound -> total concentration (derived here): the paclitaxel PK under Friberg's PD is the
unbound drug (the DDMoRe bundle's individual CL ~285 L/h and V1 ~290 L are ~1/fu times the
total-drug values). The PK model of this package (Crombag 2019 / Joerger 2012) gives
*total* paclitaxel. Converting with fu 0.05 (95% protein binding, Janssen 2023 Clin
Pharmacokinet 62:1157 Table 1, via nlmixr2lib ``Janssen_2023_paclitaxel.R``) gives
48.6 x 0.05 = 2.43 L/umol, but with it paclitaxel 175 mg/m2/3 h alone causes ANC < 0.5e9/L
in only 2.4% of patients, against 27% in the Taxol US label (Phase 3 ovarian study, worst
course; 28% in the breast study); a constant fu ignores the Cremophor-EL-dependent binding.
So **SlopeA = 5.07 L/umol on total paclitaxel was calibrated** to that label figure
(``calibration.calibrate``; 2000 virtual patients, 4 cycles, achieved 27.0%; grade 3-4
then 54%; typical nadir at day ~10-11, the label's median nadir day being 11).

**SlopeB = 0.0348 L/umol on total carboplatin was calibrated** (no published two-drug
slope exists): with SlopeA fixed, conventional dosing -- paclitaxel 175 mg/m2 (3 h) +
carboplatin AUC 6 (Calvert) q3w, 4 cycles -- gives grade 3-4 neutropenia in 63.0% of 2000
virtual patients (target 63%, recalled for ECOG 1594, Schiller 2002; not verified; grade 4
in 36%). Cross-check: paclitaxel 200 mg/m2 + AUC 6 gives 75% vs 70.2% observed in 94
Japanese patients (Shimizu 2013 Oncol Lett 5:761). Carboplatin AUC 6 alone gives no grade
3-4 neutropenia in the model: its myelotoxicity enters only through the combination
figure (its clinical dose-limiting toxicity, thrombocytopenia, is not modelled).
See ``vae_simulator.groundtruth.pd.calibration`` to re-run.

Both slopes share one random effect (omega 0.38): a patient's marrow sensitivity (our
assumption; the published model has one drug).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from vae_simulator.groundtruth.pd._statespace import (
    check_concentrations,
    check_iiv_scale,
    check_n,
    check_parameter_arrays,
    check_state,
    check_times,
    lognormal_from,
    rk4_on_grid,
)

#: State order of the model; all in 1e9 cells/L.
STATE_NAMES: tuple[str, ...] = ("prol", "transit1", "transit2", "transit3", "circ")
#: Index of the circulating (ANC) compartment.
CIRC = 4
#: ANC (1e9/L) below which the feedback (Circ0/Circ)^gamma stops rising (numerical safeguard).
FEEDBACK_CIRC_FLOOR_E9_L = 1e-3
#: standard normals one patient's parameters take (Circ0, MTT, slope sensitivity)
N_RANDOM_EFFECTS = 3
#: Paclitaxel unbound fraction used to put Friberg's unbound slope on total concentrations.
PACLITAXEL_FU = 0.05
#: Friberg/Wahlby paclitaxel slope on unbound paclitaxel (L/umol); x fu is the cross-check.
PACLITAXEL_SLOPE_UNBOUND_L_UMOL = 48.6
#: Paclitaxel slope on total paclitaxel (L/umol), calibrated to the Taxol label (docstring).
PACLITAXEL_SLOPE_L_UMOL = 5.07
#: Carboplatin slope on total carboplatin (L/umol), calibrated to the combination's grade 3-4
#: neutropenia incidence (docstring; ``calibration.calibrate`` re-derives it).
CARBOPLATIN_SLOPE_L_UMOL = 0.0348


@dataclass(frozen=True)
class FribergPopulation:
    """Typical values and IIV (log-normal SD) of the two-drug myelosuppression model."""

    circ0_e9_l: float
    mtt_h: float
    gamma: float
    slope_a_l_umol: float
    slope_b_l_umol: float
    omega_circ0: float
    omega_mtt: float
    omega_slope: float
    residual_prop_cv: float
    source: str


#: Paclitaxel (A, total concentration) + carboplatin (B) neutrophil model (module docstring).
PACLITAXEL_CARBOPLATIN_ANC = FribergPopulation(
    circ0_e9_l=5.47, mtt_h=131.0, gamma=0.22,
    slope_a_l_umol=PACLITAXEL_SLOPE_L_UMOL,
    slope_b_l_umol=CARBOPLATIN_SLOPE_L_UMOL,
    omega_circ0=0.36, omega_mtt=0.17, omega_slope=0.38, residual_prop_cv=0.38,
    source="Friberg 2002 J Clin Oncol 20:4713 (structure); Wahlby 2004 Br J Clin Pharmacol 58:367 "
           "Table 8 (paclitaxel neutrophil parameters); SlopeA (total paclitaxel) calibrated to the "
           "Taxol label grade 4 incidence; SlopeB calibrated to the grade 3-4 incidence of "
           "paclitaxel/carboplatin q3w")


@dataclass(frozen=True)
class FribergParameters:
    """Per-patient parameters, each an ``(n,)`` array.

    ``circ0_e9_l`` baseline ANC (1e9/L), ``mtt_h`` mean transit time (h), ``gamma`` feedback
    exponent, ``slope_a_l_umol`` / ``slope_b_l_umol`` linear drug effects (L/umol) of drug A
    (paclitaxel) and B (carboplatin) on total plasma concentration.
    """

    circ0_e9_l: np.ndarray
    mtt_h: np.ndarray
    gamma: np.ndarray
    slope_a_l_umol: np.ndarray
    slope_b_l_umol: np.ndarray

    def __post_init__(self) -> None:
        values = {f.name: np.atleast_1d(np.asarray(getattr(self, f.name), dtype=float)) for f in fields(self)}
        check_parameter_arrays(values, positive=("circ0_e9_l", "mtt_h"))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.circ0_e9_l.size)

    @classmethod
    def typical(cls, n: int, population: FribergPopulation = PACLITAXEL_CARBOPLATIN_ANC) -> FribergParameters:
        """``n`` copies of the typical patient."""
        n = check_n(n)
        return cls(*(np.full(n, getattr(population, f.name)) for f in fields(cls)))

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator, iiv_scale: float = 1.0,
               population: FribergPopulation = PACLITAXEL_CARBOPLATIN_ANC) -> FribergParameters:
        """``n`` patients with log-normal IIV scaled by ``iiv_scale`` (0 = typical patients).

        Draw order is fixed (Circ0, MTT, slope sensitivity), so a seed gives the same patients.
        """
        return cls.from_normals(rng.standard_normal((N_RANDOM_EFFECTS, check_n(n))), iiv_scale, population)

    @classmethod
    def from_normals(cls, eta: np.ndarray, iiv_scale: float = 1.0,
                     population: FribergPopulation = PACLITAXEL_CARBOPLATIN_ANC) -> FribergParameters:
        """The patients of :meth:`sample` from its standard normals ``eta (3, n)`` (Circ0, MTT, slope
        sensitivity rows): ``sample(n, rng)`` equals ``from_normals(rng.standard_normal((3, n)))``."""
        iiv_scale = check_iiv_scale(iiv_scale)
        eta = np.asarray(eta, dtype=float)
        if eta.ndim != 2 or eta.shape[0] != N_RANDOM_EFFECTS:
            raise ValueError(f"eta must have shape ({N_RANDOM_EFFECTS}, n), got {eta.shape}")
        circ0 = lognormal_from(population.circ0_e9_l, population.omega_circ0, iiv_scale, eta[0])
        mtt = lognormal_from(population.mtt_h, population.omega_mtt, iiv_scale, eta[1])
        sensitivity = lognormal_from(1.0, population.omega_slope, iiv_scale, eta[2])
        return cls(circ0, mtt, np.full(eta.shape[1], population.gamma), population.slope_a_l_umol * sensitivity,
                   population.slope_b_l_umol * sensitivity)

    def with_slopes(self, slope_a_l_umol=None, slope_b_l_umol=None) -> FribergParameters:
        """A copy with drug slopes replaced (scalars broadcast); used by the calibration."""
        n = len(self)
        a = self.slope_a_l_umol if slope_a_l_umol is None else np.broadcast_to(slope_a_l_umol, (n,))
        b = self.slope_b_l_umol if slope_b_l_umol is None else np.broadcast_to(slope_b_l_umol, (n,))
        return FribergParameters(self.circ0_e9_l, self.mtt_h, self.gamma, np.array(a, dtype=float),
                                 np.array(b, dtype=float))


def steady_state(params: FribergParameters) -> np.ndarray:
    """The drug-free steady state, ``(n, 5)``: every compartment at Circ0 (1e9/L)."""
    return np.repeat(params.circ0_e9_l[:, None], len(STATE_NAMES), axis=1)


def simulate(state0: np.ndarray, times_h, conc_a_umol_l, conc_b_umol_l, params: FribergParameters,
             max_step_h: float = 4.0) -> np.ndarray:
    """Integrate the model over ``times_h`` from ``state0``; resumable cycle by cycle.

    Parameters
    ----------
    state0: ``(n, 5)`` state (1e9 cells/L, order :data:`STATE_NAMES`) at ``times_h[0]``,
        e.g. :func:`steady_state` or the last column of a previous call.
    times_h: strictly increasing grid (h, any origin) on which the concentrations are known;
        they are linearly interpolated between grid points.
    conc_a_umol_l, conc_b_umol_l: ``(n, T)`` total plasma concentrations (umol/L) of drug A
        (paclitaxel) and drug B (carboplatin), finite and >= 0.
    params: per-patient :class:`FribergParameters` (``n`` patients).
    max_step_h: longest RK4 sub-step (h). With the default 4 h, ANC agrees with a
        tight-tolerance LSODA solution of the untransformed equations within ~1e-5 relative
        (tested at < 0.1%); 4096 patients x one 21-day cycle take ~0.2 s on one core.
        The grid points are step boundaries, so a fine PK grid means more (shorter) steps.

    The states are reported only at ``times_h``; refine a coarse grid first
    (:func:`vae_simulator.groundtruth.pd.refine_grid`) to see the nadir between grid points.

    Returns the ``(n, 5, T)`` states at ``times_h`` (ANC = ``[:, CIRC, :]``); the first
    column is ``state0``.
    """
    state0, conc_a, conc_b, times = check_inputs(state0, times_h, conc_a_umol_l, conc_b_umol_l, params)
    rhs, y0, inputs = problem(state0, conc_a, conc_b, params)
    return finish(rk4_on_grid(rhs, y0, times, inputs, max_step_h))


def check_inputs(state0, times_h, conc_a_umol_l, conc_b_umol_l, params) -> tuple[np.ndarray, ...]:
    """The arguments of :func:`simulate`, checked: ``(state0, conc_a, conc_b, times)`` as float arrays."""
    times = check_times(times_h)
    n = len(params)
    state0 = check_state(state0, len(STATE_NAMES), STATE_NAMES, lower=(0.0, 0.0, 0.0, 0.0, 0.0))
    if state0.shape[0] != n:
        raise ValueError(f"state0 has {state0.shape[0]} patients but params has {n}")
    if np.any(state0[:, CIRC] <= 0):
        raise ValueError(f"state circ (ANC) must be > 0 for the feedback (Circ0/Circ)^gamma, got "
                         f"{float(state0[state0[:, CIRC] <= 0, CIRC][0])!r}")
    conc_a = check_concentrations(conc_a_umol_l, n, times.size, "conc_a_umol_l")
    conc_b = check_concentrations(conc_b_umol_l, n, times.size, "conc_b_umol_l")
    return state0, conc_a, conc_b, times


def problem(state0: np.ndarray, conc_a: np.ndarray, conc_b: np.ndarray, params) -> tuple:
    """The model as :func:`rk4_on_grid` integrates it, on checked inputs (:func:`simulate` checks them).

    Returns ``(rhs, y0, inputs)``: ``rhs(t, y, u, out=None)`` on the state-major transformed state
    (``ln Prol`` first), ``y0`` ``(n, 5)`` and the one input, the drug effect ``E``, ``(1, n, T)``.
    """
    # Linear in the concentrations, so interpolating E equals interpolating CA and CB.
    effect = params.slope_a_l_umol[:, None] * conc_a + params.slope_b_l_umol[:, None] * conc_b

    ktr = 4.0 / params.mtt_h
    log_circ0 = np.log(params.circ0_e9_l)
    gamma = params.gamma
    tiny = np.finfo(float).tiny

    def rhs(_t: float, y: np.ndarray, u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        feedback = np.exp(gamma * (log_circ0 - np.log(np.maximum(y[CIRC], FEEDBACK_CIRC_FLOOR_E9_L))))
        dy = np.empty_like(y) if out is None else out
        dy[0] = ktr * ((1.0 - u[0]) * feedback - 1.0)  # d ln(Prol)/dt
        dy[1] = ktr * (np.exp(y[0]) - y[1])
        dy[2:] = ktr * (y[1:CIRC] - y[2:])
        return dy

    y0 = state0.copy()
    y0[:, 0] = np.log(np.maximum(state0[:, 0], tiny))
    return rhs, y0, effect[None, :, :]


def finish(states: np.ndarray) -> np.ndarray:
    """Integrated transformed states ``(n, 5, T)`` -> the model's states (Prol back from ``ln Prol``), in place."""
    states[:, 0, :] = np.exp(states[:, 0, :])
    return states


def observe_anc(anc_e9_l, rng: np.random.Generator,
                population: FribergPopulation = PACLITAXEL_CARBOPLATIN_ANC,
                error_scale: float = 1.0) -> np.ndarray:
    """Measured ANC (1e9/L): the published proportional residual error, floored at 0."""
    anc = np.asarray(anc_e9_l, dtype=float)
    if not np.all(np.isfinite(anc)) or np.any(anc < 0):
        raise ValueError("true ANC values must be finite and >= 0 (1e9/L)")
    if not np.isfinite(error_scale) or error_scale < 0:
        raise ValueError(f"error_scale must be a finite number >= 0, got {error_scale!r}")
    noisy = anc * (1.0 + error_scale * population.residual_prop_cv * rng.standard_normal(anc.shape))
    return np.maximum(noisy, 0.0)
