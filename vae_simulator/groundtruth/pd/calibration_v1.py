"""Derivation of the multimodal combination patient's unpublished constants from trial figures.

Same method as :mod:`~vae_simulator.groundtruth.pd.calibration` (virtual cohort, fixed seeds,
common random numbers, log-scale bisection on one constant at a time; one PK cycle repeated, the
next cycle starting from an empty body), for what ``PKDose/PaclitaxelCarboplatin-v1`` adds:

1. platelet MTT: typical nadir of carboplatin AUC 6 alone on day 21 (Paraplatin label);
2. platelet slope: grade >= 3 thrombocytopenia in 12 % of patients after 7 cycles of paclitaxel
   175 mg/m2 + carboplatin AUC 6 (GOG0209, Miller 2020); 1 and 2 alternate twice;
3. neuropathy sensitivity: grade 3 in 20 % after the same 7 cycles (GOG0209);
4. febrile-neutropenia hazard: 6 % of patients after the same 7 cycles (GOG0209);
5. tumour kill scale of the ovarian and endometrial populations: their target response rates
   (:data:`tumour_types.TARGET_ORR`).

Sources and structures are in :mod:`platelets`, :mod:`adverse_events` and :mod:`tumour_types`.
The trial cohorts received dose delays and reductions that the repeated full-dose cycles here do
not, so the constants are, if anything, on the toxic side.

Results (``python -m vae_simulator.groundtruth.pd.calibration_v1``, 2000 patients, seed 2024;
copied into the modules by hand):

=============================================  ==========  ==============================
quantity                                        model       published
=============================================  ==========  ==============================
platelet MTT (h)                                287         nadir day 21 (label)
typical platelet nadir, AUC 6 alone (day)       20.75       21 (6-h grid)
carboplatin platelet slope (L/umol)             0.192       --
grade >= 3 thrombocytopenia, 7 TC cycles        12.0 %      12 % (GOG0209)
neuropathy sensitivity (per h of Tc>0.05)       0.00270     --
median Tc>0.05 per cycle, 175 mg/m2 (h)         21.4        --
grade 3 neuropathy, 7 TC cycles                 20.0 %      20 % (GOG0209)
febrile-neutropenia hazard (per grade-4 day)    0.0076      --
febrile neutropenia, 7 TC cycles                6.0 %       6 % (GOG0209)
grade 4 neutropenia, 7 TC cycles                36.4 %      --
ovarian kill per cycle / ORR (175 + AUC 5)      0.191 / 76 %  76 % (Joerger 2007)
endometrial kill per cycle / ORR (175 + AUC 6)  0.163 / 47 %  47 % (Sovak 2007)
=============================================  ==========  ==============================
"""

from __future__ import annotations

import numpy as np

from vae_simulator.exposure import IntervalExposure
from vae_simulator.groundtruth.pd import adverse_events, friberg, platelets, tumour, tumour_types
from vae_simulator.groundtruth.pd.calibration import (
    _bisect_log,
    cohort_cycles,
    repeat_cycles,
    run_calibration,
    tumour_sizes_at_assessments,
)
from vae_simulator.groundtruth.pd.grading import (
    neutropenia_grade,
    objective_response_rate,
    thrombocytopenia_grade,
)
from vae_simulator.groundtruth.pd.patient_features import CYP2C8_STAR3_ALLELE_FREQUENCY, carrier_probability

GOG0209_CYCLES = 7
TARGET_PLATELET_NADIR_DAY = 21.0
TARGET_THROMBOCYTOPENIA_GRADE3 = 0.12
TARGET_NEUROPATHY_GRADE3 = 0.20
TARGET_FEBRILE_NEUTROPENIA = 0.06


def platelet_counts(exposure, params: friberg.FribergParameters) -> np.ndarray:
    """``(n, T)`` platelet counts (1e9/L) over an exposure."""
    return friberg.simulate(friberg.steady_state(params), exposure.times_h, exposure.paclitaxel_umol_l,
                            exposure.carboplatin_umol_l, params)[:, friberg.CIRC]


def typical_nadir_day(exposure, mtt_h: float, slope: float) -> float:
    """Median (over the cohort's PK) day of the platelet nadir of typical PD patients."""
    n = exposure.paclitaxel_umol_l.shape[0]
    params = friberg.FribergParameters.typical(n, platelets.with_platelet_constants(mtt_h, slope))
    counts = platelet_counts(exposure, params)
    return float(np.median(exposure.times_h[np.argmin(counts, axis=1)] / 24.0))


def grade3_thrombocytopenia(exposure, eta: np.ndarray, mtt_h: float, slope: float) -> float:
    params = friberg.FribergParameters.from_normals(eta, population=platelets.with_platelet_constants(mtt_h, slope))
    return float(np.mean(thrombocytopenia_grade(platelet_counts(exposure, params).min(axis=1)) >= 3))


def calibrate(n: int = 2000, seed: int = 2024) -> dict[str, float]:
    """Run the five calibrations (module docstring); returns the constants and achieved figures."""
    grid, ((pac175, carbo6), (_, carbo5)) = cohort_cycles(n, seed, [(175.0, 6.0), (175.0, 5.0)])
    no_drug = np.zeros_like(carbo6)
    conventional = repeat_cycles(grid, pac175, carbo6, GOG0209_CYCLES)
    carbo_alone = repeat_cycles(grid, no_drug, carbo6, 1, n_untreated_cycles=1)
    out: dict[str, float] = {"n": n, "seed": seed}

    eta_platelets = np.random.default_rng(seed + 3).standard_normal((friberg.N_RANDOM_EFFECTS, n))
    mtt, slope = platelets.PLATELET_MTT_H, platelets.CARBOPLATIN_PLATELET_SLOPE_L_UMOL
    for _ in range(2):
        mtt = _bisect_log(lambda m, s=slope: typical_nadir_day(carbo_alone, m, s), TARGET_PLATELET_NADIR_DAY, 50.0, 2000.0,
                          iterations=30, desc="platelet MTT")
        slope = _bisect_log(lambda s, m=mtt: grade3_thrombocytopenia(conventional, eta_platelets, m, s),
                            TARGET_THROMBOCYTOPENIA_GRADE3, 1e-4, 1.0, iterations=30,
                            desc="platelet slope")
    out["platelet_mtt_h"], out["platelet_slope_l_umol"] = mtt, slope
    out["platelet_nadir_day_typical"] = typical_nadir_day(carbo_alone, mtt, slope)
    out["thrombocytopenia_grade3_7_cycles"] = grade3_thrombocytopenia(conventional, eta_platelets, mtt, slope)

    time_above = IntervalExposure(grid[1:], "time_above", 0.05)(pac175[:, 1:], pac175[:, 0])
    normals = np.random.default_rng(seed + 4)
    eta = normals.standard_normal(n)
    carrier = (normals.random(n) < carrier_probability(CYP2C8_STAR3_ALLELE_FREQUENCY)).astype(float)

    def severe_neuropathy(typical: float) -> float:
        s = adverse_events.neuropathy_sensitivity(eta, carrier, typical)
        damage = adverse_events.neuropathy_damage(0.0, s, GOG0209_CYCLES * time_above)
        return float(np.mean(adverse_events.neuropathy_grade(damage) >= adverse_events.SEVERE_NEUROPATHY_GRADE))

    typical = _bisect_log(severe_neuropathy, TARGET_NEUROPATHY_GRADE3, 1e-5, 1.0, desc="neuropathy sensitivity")
    out["median_time_above_0_05_h"] = float(np.median(time_above))
    out["neuropathy_s_typical_per_h"], out["neuropathy_grade3_7_cycles"] = typical, severe_neuropathy(typical)

    anc_params = friberg.FribergParameters.sample(n, np.random.default_rng(seed + 1))
    anc = friberg.simulate(friberg.steady_state(anc_params), conventional.times_h, conventional.paclitaxel_umol_l,
                           conventional.carboplatin_umol_l, anc_params)[:, friberg.CIRC]
    below = (anc < 0.5).astype(float)
    grade4_days = np.sum(0.5 * (below[:, 1:] + below[:, :-1]) * np.diff(conventional.times_h), axis=1) / 24.0

    def febrile(hazard: float) -> float:
        return float(np.mean(adverse_events.febrile_probability(grade4_days, hazard)))

    hazard = _bisect_log(febrile, TARGET_FEBRILE_NEUTROPENIA, 1e-5, 10.0, desc="febrile hazard")
    out["febrile_hazard_per_grade4_day"], out["febrile_neutropenia_7_cycles"] = hazard, febrile(hazard)
    out["grade4_neutropenia_7_cycles"] = float(np.mean(neutropenia_grade(anc.min(axis=1)) == 4))

    exposures = {"ovarian": repeat_cycles(grid, pac175, carbo5, 6), "endometrial": repeat_cycles(grid, pac175, carbo6, 6)}
    factories = {"ovarian": tumour_types.ovarian, "endometrial": tumour_types.endometrial}
    eta_tumour = np.random.default_rng(seed + 2).standard_normal((tumour.N_RANDOM_EFFECTS, n))
    for name, exposure in exposures.items():
        def orr(kill: float, name=name, exposure=exposure) -> float:
            params = tumour.TumourParameters.from_normals(eta_tumour, population=factories[name](kill))
            return objective_response_rate(tumour_sizes_at_assessments(exposure, params))

        kill = _bisect_log(orr, tumour_types.TARGET_ORR[name], 1e-3, 20.0, iterations=30,
                            desc=f"{name} kill")
        out[f"{name}_kill_per_cycle"], out[f"{name}_orr"] = kill, orr(kill)
    return out


def main(argv: list[str] | None = None) -> None:
    run_calibration(calibrate, "pkdose calibrate-v1", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    main()
