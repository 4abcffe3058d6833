"""Three tumour types for which paclitaxel + carboplatin every 3 weeks is a standard regimen.

Each is a :class:`~vae_simulator.groundtruth.pd.tumour.TumourPopulation` of the Claret 2009
growth-inhibition model of :mod:`~vae_simulator.groundtruth.pd.tumour`; what differs is where its
numbers come from.

* **NSCLC** (non-small-cell lung cancer): :data:`tumour.NSCLC_PACLITAXEL_CARBOPLATIN`, unchanged
  (baseline SLD of Tham 2008; kill calibrated to the 17 % objective response rate of ECOG 1594,
  Schiller 2002; see :mod:`~vae_simulator.groundtruth.pd.tumour`).
* **Ovarian** (advanced epithelial ovarian cancer): baseline SLD 71.3 mm (IIV variance 0.515) and
  exponential growth rate 0.611e-3 /day (IIV variance 1.72), no resistance term, and the shared
  kill random effect's variance 1.09, from the tumour-size model of Zecchin C, Gueorguieva I, Enas
  NH, Friberg LE. Br J Clin Pharmacol 82:717-727, 2016 (336 patients on carboplatin +/- gemcitabine;
  DDMoRe DDMODEL00000217 final estimates as transcribed in nlmixr2lib
  ``Zecchin_2016_tumorovarian.R``; not verified against the paper). Its drug terms (per-cycle
  carboplatin AUC, units not recoverable from the transcription) are not used: the kill scale is
  **calibrated** (``calibration_v1``) to an objective response rate of 76 % with paclitaxel
  175 mg/m2 + carboplatin AUC 5 (Joerger M et al. Clin Cancer Res 13:6410, 2007, 34 patients
  with measurable disease; read in its abstract), 6 cycles.
* **Endometrial** (advanced or recurrent endometrial cancer): no published tumour-size model was
  found, so baseline, growth, resistance and IIV are the NSCLC values (our assumption, said
  here); the kill scale is **calibrated** to an objective response rate of 47 % with paclitaxel
  175 mg/m2 + carboplatin AUC 6, 6 cycles: the chemotherapy-naive patients of Sovak MA et al.
  (85 patients treated with paclitaxel and carboplatin at Memorial Sloan Kettering, RECIST, ORR
  43 % overall and 47 % chemotherapy-naive; read in its abstract in the MSKCC publication record;
  Int J Gynecol Cancer 17:197, 2007, recalled; the AUC used there was not stated in what we read).

In every type the two drugs give half of the typical log-kill each at the cohort-median AUC of
conventional dosing, and one random effect scales both (the NSCLC assumption). The cohort mixes
the types in :data:`TUMOUR_TYPE_PROPORTIONS` (50 % NSCLC, 30 % ovarian, 20 % endometrial; ours,
not an epidemiological figure); ovarian and endometrial patients are female.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vae_simulator.groundtruth.pd.tumour import HOURS_PER_DAY, NSCLC_PACLITAXEL_CARBOPLATIN, TumourPopulation

TUMOUR_TYPES: tuple[str, ...] = ("nsclc", "ovarian", "endometrial")
TUMOUR_TYPE_PROPORTIONS: tuple[float, ...] = (0.5, 0.3, 0.2)
FEMALE_ONLY: frozenset[str] = frozenset({"ovarian", "endometrial"})
#: Published objective response rates the kill scales are calibrated to, and their regimens
#: (paclitaxel mg/m2, carboplatin AUC, cycles); NSCLC's is in ``calibration`` (v0).
TARGET_ORR = {"ovarian": 0.76, "endometrial": 0.47}
CALIBRATION_REGIMEN = {"ovarian": (175.0, 5.0, 6), "endometrial": (175.0, 6.0, 6)}
#: Typical log-kill per cycle at the conventional median AUCs, derived by ``calibration_v1``
#: (the NSCLC value, 0.0867, is implied by its KD constants).
KILL_PER_CYCLE = {"ovarian": 0.191, "endometrial": 0.163}
#: Cohort-median AUC per conventional cycle (umol*h/L), paclitaxel and carboplatin (``calibration``).
MEDIAN_AUC_UMOL_H_L = (15.7, 321.0)


def kill_rates(kill_per_cycle: float) -> tuple[float, float]:
    """KDA, KDB (L/(umol h)) giving ``kill_per_cycle`` log-kill at the median AUCs, half from each drug."""
    return 0.5 * kill_per_cycle / MEDIAN_AUC_UMOL_H_L[0], 0.5 * kill_per_cycle / MEDIAN_AUC_UMOL_H_L[1]


def ovarian(kill_per_cycle: float = KILL_PER_CYCLE["ovarian"]) -> TumourPopulation:
    """Advanced epithelial ovarian cancer (module docstring)."""
    kd_a, kd_b = kill_rates(kill_per_cycle)
    return TumourPopulation(
        baseline_mm=71.3, kl_per_h=0.611e-3 / HOURS_PER_DAY, kd_a_l_umol_h=kd_a, kd_b_l_umol_h=kd_b,
        kd_ab_l2_umol2_h=0.0, lambda_per_h=0.0, k_exposure_per_h=NSCLC_PACLITAXEL_CARBOPLATIN.k_exposure_per_h,
        omega_baseline=float(np.sqrt(0.515)), omega_kl=float(np.sqrt(1.72)), omega_kd=float(np.sqrt(1.09)),
        source="Zecchin 2016 Br J Clin Pharmacol 82:717 (baseline, growth, IIV); kill calibrated to the ORR "
               "of Joerger 2007 Clin Cancer Res 13:6410")


def endometrial(kill_per_cycle: float = KILL_PER_CYCLE["endometrial"]) -> TumourPopulation:
    """Advanced or recurrent endometrial cancer (module docstring): NSCLC growth, own kill scale."""
    kd_a, kd_b = kill_rates(kill_per_cycle)
    return replace(NSCLC_PACLITAXEL_CARBOPLATIN, kd_a_l_umol_h=kd_a, kd_b_l_umol_h=kd_b,
                   source="growth and IIV of the NSCLC population (no published endometrial tumour-size "
                          "model found); kill calibrated to the ORR of Sovak 2007 (chemotherapy-naive)")


#: The three populations, in :data:`TUMOUR_TYPES` order.
POPULATIONS: tuple[TumourPopulation, ...] = (NSCLC_PACLITAXEL_CARBOPLATIN, ovarian(), endometrial())


def tumour_type_code(name: str) -> int:
    """The index of a tumour type in :data:`TUMOUR_TYPES`; anything else is refused with the list."""
    if name not in TUMOUR_TYPES:
        raise ValueError(f"unknown tumour type {name!r}; modelled types: {list(TUMOUR_TYPES)}")
    return TUMOUR_TYPES.index(name)
