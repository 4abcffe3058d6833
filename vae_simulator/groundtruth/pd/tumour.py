"""Tumour growth inhibition by two drugs: the Claret 2009 model with a Greco-type interaction.

Structure (Claret L, Girard P, Hoff PM et al. J Clin Oncol 27:4103-4108, 2009), with the
tumour size ``y`` the RECIST sum of longest diameters (SLD, mm) and time in h::

    dy/dt   = KL * y - exp(-lambda * tau) * (KDA * EA + KDB * EB + KDAB * EA * EB) * y
    dEA/dt  = kexp * (CA - EA),   dEB/dt = kexp * (CB - EB)      (exposures, umol/L)
    dtau/dt = 1                                                   (time since treatment start)

KL is the exponential growth rate, KDx the kill rate per unit exposure of drug x and
``exp(-lambda * tau)`` Claret's resistance (the kill wanes with time on treatment). Claret
drove the kill with the administered dose; here the drive is a first-order smoothed
plasma concentration ``Ex`` (our choice): it conserves the exposure (the integral of Ex
equals the AUC of Cx), so one cycle's log-kill is ``KDx * AUC`` as in per-cycle-AUC models
(Zecchin C et al. Br J Clin Pharmacol 82:717, 2016, carboplatin in ovarian cancer), and it
spreads the kill over days, as tumours shrink between scans, instead of during the infusion.
KDAB is the interaction (Greco WR et al. Pharmacol Rev 47:331, 1995; used on the kill rate
by Terranova N et al. Cancer Chemother Pharmacol 72:471, 2013, as gamma*CA*CB): 0 = additive
(default), > 0 synergy, < 0 antagonism (the total kill is floored at 0).

``ln y`` is integrated, so the size stays positive. The state ``(n, 4)`` =
``(size_mm, exposure_a_umol_l, exposure_b_umol_l, tau_h)`` resumes cycle by cycle.

Parameters and sources
----------------------
* Baseline SLD 66.6 mm: typical NSCLC baseline of Tham LS et al. Clin Cancer Res 14:4213,
  2008 (carboplatin + gemcitabine in NSCLC; BioModels BIOMD0000000234, Size_0 = 6.66 cm,
  read in a public transcription of the BioModels code). IIV log-normal SD 0.5 (ours,
  giving a 5-95% range of ~29-150 mm, the spread of SLD in NSCLC trials; not from a source).
* KL = 0.003 /day (SLD doubling 231 days, tumour volume doubling ~77 days as SLD ~
  volume^(1/3)); IIV SD 0.7 (ours). Not fitted to tumour-size data: chosen (ours) so that
  the median time to target-lesion progression (RECIST every 6 weeks) is 12 weeks untreated
  and 30 weeks with 6 cycles of conventional dosing, longer than the published median
  progression-free survival of 1.8 months on placebo (Shepherd FA et al. N Engl J Med
  353:123, 2005, second line) and 4.5 months on carboplatin-paclitaxel (Sandler A et al.
  N Engl J Med 355:2542, 2006), which also count new lesions and deaths (both recalled, not
  verified here). Volume doubling times of ~2-6 months are commonly reported for NSCLC.
* lambda = 0.035 /week = 0.005 /day: the kill halves after ~20 weeks of treatment, the
  order of magnitude of Claret 2009 (colorectal cancer; not verified); no IIV.
* kexp = ln 2 / 5 days (exposure half-life 5 days; ours, so that a cycle's kill falls within
  its 21 days).
* KDA = 0.00276 and KDB = 0.000135 L/(umol h): derived here by ``calibration.calibrate``.
  Each drug gives half of the log-kill at the cohort-median exposure of conventional dosing
  (paclitaxel 175 mg/m2 + carboplatin AUC 6; median AUC per cycle 15.7 and 321 umol*h/L;
  our assumption: both are active single agents in NSCLC), i.e. a typical log-kill of 0.087
  per cycle before resistance, with one shared sensitivity random effect (IIV SD 0.6, ours).
  The scale was set so that 6 cycles, RECIST every 6 weeks, give an objective response rate
  of 17.0% in 2000 virtual patients, the carboplatin-paclitaxel arm of Schiller JH et al.
  N Engl J Med 346:92, 2002 (17%; recalled, not verified). Cross-checks: paclitaxel
  200 mg/m2 + AUC 6 gives 22% (published for that dose: 15% in Sandler 2006, recalled; 33%
  in Schuette W et al. Clin Lung Cancer 7:338, 2006, PMID 16640806, read in its abstract);
  median time to target-lesion progression 30 weeks with 6 conventional cycles and 12 weeks
  untreated.

What is not modelled: new lesions and non-target progression (RECIST progression here is
target-lesion growth only), tumour shrinkage to exactly 0 (complete response needs a
size threshold, see ``grading``), measurement error.
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

#: State order: SLD (mm), smoothed exposures of drug A and B (umol/L), time since treatment start (h).
STATE_NAMES: tuple[str, ...] = ("size_mm", "exposure_a_umol_l", "exposure_b_umol_l", "tau_h")
SIZE, EXPOSURE_A, EXPOSURE_B, TAU = 0, 1, 2, 3
#: standard normals one patient's parameters take (baseline, KL, kill sensitivity)
N_RANDOM_EFFECTS = 3
HOURS_PER_DAY = 24.0
#: Kill rate per unit exposure, L/(umol h), derived by ``calibration.calibrate`` (docstring).
KD_PACLITAXEL = 0.00276
KD_CARBOPLATIN = 0.000135


@dataclass(frozen=True)
class TumourPopulation:
    """Typical values (per h where a rate) and IIV (log-normal SD) of the tumour model."""

    baseline_mm: float
    kl_per_h: float
    kd_a_l_umol_h: float
    kd_b_l_umol_h: float
    kd_ab_l2_umol2_h: float
    lambda_per_h: float
    k_exposure_per_h: float
    omega_baseline: float
    omega_kl: float
    omega_kd: float
    source: str


#: NSCLC with paclitaxel (A) + carboplatin (B); see the module docstring.
NSCLC_PACLITAXEL_CARBOPLATIN = TumourPopulation(
    baseline_mm=66.6, kl_per_h=0.003 / HOURS_PER_DAY, kd_a_l_umol_h=KD_PACLITAXEL,
    kd_b_l_umol_h=KD_CARBOPLATIN, kd_ab_l2_umol2_h=0.0, lambda_per_h=0.005 / HOURS_PER_DAY,
    k_exposure_per_h=np.log(2.0) / (5.0 * HOURS_PER_DAY), omega_baseline=0.5, omega_kl=0.7, omega_kd=0.6,
    source="Claret 2009 J Clin Oncol 27:4103 (structure); Tham 2008 Clin Cancer Res 14:4213 (baseline SLD); "
           "KL chosen from NSCLC progression times; kill calibrated to the ORR of Schiller 2002 "
           "N Engl J Med 346:92")


@dataclass(frozen=True)
class TumourParameters:
    """Per-patient parameters, each an ``(n,)`` array (units as in :class:`TumourPopulation`).

    ``kd_ab_l2_umol2_h`` may be negative (antagonism); every other value is >= 0, and
    ``baseline_mm`` and ``k_exposure_per_h`` are > 0.
    """

    baseline_mm: np.ndarray
    kl_per_h: np.ndarray
    kd_a_l_umol_h: np.ndarray
    kd_b_l_umol_h: np.ndarray
    kd_ab_l2_umol2_h: np.ndarray
    lambda_per_h: np.ndarray
    k_exposure_per_h: np.ndarray

    def __post_init__(self) -> None:
        values = {f.name: np.atleast_1d(np.asarray(getattr(self, f.name), dtype=float)) for f in fields(self)}
        interaction = values["kd_ab_l2_umol2_h"]
        check_parameter_arrays({k: v for k, v in values.items() if k != "kd_ab_l2_umol2_h"},
                               positive=("baseline_mm", "k_exposure_per_h"))
        if interaction.shape != values["baseline_mm"].shape or not np.all(np.isfinite(interaction)):
            raise ValueError(f"parameter kd_ab_l2_umol2_h must be finite with one value per patient, got "
                             f"shape {interaction.shape}")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return int(self.baseline_mm.size)

    @classmethod
    def typical(cls, n: int, population: TumourPopulation = NSCLC_PACLITAXEL_CARBOPLATIN) -> TumourParameters:
        """``n`` copies of the typical patient."""
        n = check_n(n)
        return cls(*(np.full(n, getattr(population, f.name)) for f in fields(cls)))

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator, iiv_scale: float = 1.0,
               population: TumourPopulation = NSCLC_PACLITAXEL_CARBOPLATIN,
               interaction_l2_umol2_h: float | None = None) -> TumourParameters:
        """``n`` patients with log-normal IIV scaled by ``iiv_scale`` (0 = typical patients).

        One random effect scales both kill rates and the interaction (tumour chemosensitivity).
        ``interaction_l2_umol2_h`` overrides the population's KDAB (e.g. to study synergy).
        Draw order is fixed (baseline, KL, sensitivity).
        """
        return cls.from_normals(rng.standard_normal((N_RANDOM_EFFECTS, check_n(n))), iiv_scale, population,
                                interaction_l2_umol2_h)

    @classmethod
    def from_normals(cls, eta: np.ndarray, iiv_scale: float = 1.0,
                     population: TumourPopulation = NSCLC_PACLITAXEL_CARBOPLATIN,
                     interaction_l2_umol2_h: float | None = None) -> TumourParameters:
        """The patients of :meth:`sample` from its standard normals ``eta (3, n)`` (baseline, KL,
        sensitivity rows): ``sample(n, rng)`` equals ``from_normals(rng.standard_normal((3, n)))``."""
        iiv_scale = check_iiv_scale(iiv_scale)
        eta = np.asarray(eta, dtype=float)
        if eta.ndim != 2 or eta.shape[0] != N_RANDOM_EFFECTS:
            raise ValueError(f"eta must have shape ({N_RANDOM_EFFECTS}, n), got {eta.shape}")
        n = eta.shape[1]
        baseline = lognormal_from(population.baseline_mm, population.omega_baseline, iiv_scale, eta[0])
        kl = lognormal_from(population.kl_per_h, population.omega_kl, iiv_scale, eta[1])
        sensitivity = lognormal_from(1.0, population.omega_kd, iiv_scale, eta[2])
        kd_ab = population.kd_ab_l2_umol2_h if interaction_l2_umol2_h is None else interaction_l2_umol2_h
        return cls(baseline, kl, population.kd_a_l_umol_h * sensitivity,
                   population.kd_b_l_umol_h * sensitivity, kd_ab * sensitivity,
                   np.full(n, population.lambda_per_h),
                   np.full(n, population.k_exposure_per_h))

    def scale_kill(self, factor: float) -> TumourParameters:
        """A copy with every kill rate (KDA, KDB, KDAB) multiplied by ``factor``; used by the calibration."""
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"kill scale factor must be a finite number >= 0, got {factor!r}")
        return TumourParameters(self.baseline_mm, self.kl_per_h, self.kd_a_l_umol_h * factor,
                                self.kd_b_l_umol_h * factor, self.kd_ab_l2_umol2_h * factor,
                                self.lambda_per_h, self.k_exposure_per_h)


def initial_state(params: TumourParameters) -> np.ndarray:
    """The state at treatment start, ``(n, 4)``: baseline size, no exposure, tau 0."""
    n = len(params)
    state = np.zeros((n, len(STATE_NAMES)))
    state[:, SIZE] = params.baseline_mm
    return state


def simulate(state0: np.ndarray, times_h, conc_a_umol_l, conc_b_umol_l, params: TumourParameters,
             max_step_h: float = 4.0) -> np.ndarray:
    """Integrate the tumour model over ``times_h`` from ``state0``; resumable cycle by cycle.

    Parameters
    ----------
    state0: ``(n, 4)`` state (:data:`STATE_NAMES`) at ``times_h[0]``, e.g. :func:`initial_state`
        or the last column of a previous call.
    times_h: strictly increasing grid (h); the concentrations are linearly interpolated between
        grid points; ``tau`` advances by the elapsed time.
    conc_a_umol_l, conc_b_umol_l: ``(n, T)`` total plasma concentrations (umol/L), finite, >= 0.
    params: per-patient :class:`TumourParameters`.
    max_step_h: longest RK4 sub-step (h); 4 h agrees with 0.25-h steps within 1e-6 and with
        a tight-tolerance LSODA solution within 0.1% (tests).

    Returns the ``(n, 4, T)`` states at ``times_h`` (SLD = ``[:, SIZE, :]`` in mm).
    """
    state0, conc_a, conc_b, times = check_inputs(state0, times_h, conc_a_umol_l, conc_b_umol_l, params)
    rhs, y0, inputs = problem(state0, conc_a, conc_b, params)
    return finish(rk4_on_grid(rhs, y0, times, inputs, max_step_h))


def check_inputs(state0, times_h, conc_a_umol_l, conc_b_umol_l, params) -> tuple[np.ndarray, ...]:
    """The arguments of :func:`simulate`, checked: ``(state0, conc_a, conc_b, times)`` as float arrays."""
    times = check_times(times_h)
    n = len(params)
    state0 = check_state(state0, len(STATE_NAMES), STATE_NAMES, lower=(0.0, 0.0, 0.0, 0.0))
    if state0.shape[0] != n:
        raise ValueError(f"state0 has {state0.shape[0]} patients but params has {n}")
    if np.any(state0[:, SIZE] <= 0):
        raise ValueError(f"state size_mm must be > 0, got {float(state0[state0[:, SIZE] <= 0, SIZE][0])!r}")
    conc_a = check_concentrations(conc_a_umol_l, n, times.size, "conc_a_umol_l")
    conc_b = check_concentrations(conc_b_umol_l, n, times.size, "conc_b_umol_l")
    return state0, conc_a, conc_b, times


def problem(state0: np.ndarray, conc_a: np.ndarray, conc_b: np.ndarray, params) -> tuple:
    """The model as :func:`rk4_on_grid` integrates it, on checked inputs (:func:`simulate` checks them).

    Returns ``(rhs, y0, inputs)``: ``rhs(t, y, u, out=None)`` on the state-major transformed state
    (``ln size`` first), ``y0`` ``(n, 4)`` and the inputs ``(2, n, T)`` (the two concentrations).
    """
    p = params

    def rhs(_t: float, y: np.ndarray, u: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        ea, eb = y[EXPOSURE_A], y[EXPOSURE_B]
        kill = np.maximum(p.kd_a_l_umol_h * ea + p.kd_b_l_umol_h * eb + p.kd_ab_l2_umol2_h * ea * eb, 0.0)
        dy = np.empty_like(y) if out is None else out
        dy[SIZE] = p.kl_per_h - np.exp(-p.lambda_per_h * y[TAU]) * kill  # d ln(size)/dt
        dy[EXPOSURE_A] = p.k_exposure_per_h * (u[0] - ea)
        dy[EXPOSURE_B] = p.k_exposure_per_h * (u[1] - eb)
        dy[TAU] = 1.0
        return dy

    y0 = state0.copy()
    y0[:, SIZE] = np.log(state0[:, SIZE])
    return rhs, y0, np.stack([conc_a, conc_b])


def finish(states: np.ndarray) -> np.ndarray:
    """Integrated transformed states ``(n, 4, T)`` -> the model's states (size back from ``ln size``), in place."""
    states[:, SIZE, :] = np.exp(states[:, SIZE, :])
    return states
