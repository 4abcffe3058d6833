"""Carboplatin thrombocytopenia: the Friberg 2002 model on platelets, driven by carboplatin.

Structure: the semi-mechanistic myelosuppression model of :mod:`~vae_simulator.groundtruth.pd.friberg`
(Friberg LE et al. J Clin Oncol 20:4713-4721, 2002; proliferating pool, three transit
compartments, circulating cells, feedback ``(Circ0/Circ)^gamma``), with the circulating
compartment the platelet count (1e9/L) and a linear effect of total carboplatin only. That
carboplatin and not paclitaxel drives thrombocytopenia is the finding of Joerger M et al. Clin
Cancer Res 13:6410-6418, 2007 (139 ovarian cancer patients on paclitaxel 175 mg/m2 + carboplatin
AUC 5: "carboplatin exposure ... was the best predictor for thrombocytopenia", thrombocytes
described by "an inhibitory linear response model"; read in its abstract). Paclitaxel's reported
platelet-sparing effect in the combination is not modelled (slope A = 0).

Parameters (typical values; IIV as log-normal SD)
--------------------------------------------------
No published parameter set of a platelet Friberg model for carboplatin could be read here
(Joerger 2007's estimates were not available), so:

* Circ0 = 237e9/L with omega 0.33: the baseline platelet count (and its 32.9 % IIV) estimated in
  80 cancer patients by Perez-Ruixo C et al. AAPS J 18:239-250, 2016 (oxaliplatin platelet
  model; read in its abstract). Only this system parameter is taken from it: its structure
  (random platelet destruction, a power drug effect) differs from Friberg's.
* gamma = 0.22 and omega(MTT) = 0.17: the neutrophil values of :mod:`friberg` (our assumption:
  the same feedback and transit variability for both lineages).
* **MTT calibrated** (``calibration_v1``) so that the typical platelet nadir after carboplatin
  AUC 6 alone falls on day 21, "the nadir of platelet count occurs generally around day 21 in
  patients receiving single-agent" carboplatin (Paraplatin US prescribing information,
  Clinical Pharmacology; recalled, not verified here).
* **Slope calibrated** (``calibration_v1``) so that paclitaxel 175 mg/m2 + carboplatin AUC 6
  q3w for 7 cycles gives grade >= 3 thrombocytopenia (< 50e9/L) in 12 % of patients, the
  carboplatin-paclitaxel arm of NRG Oncology/GOG0209 (Miller DS et al. J Clin Oncol
  38:3841-3850, 2020, 1,381 women with advanced endometrial cancer; read in its abstract).
  Cross-check: Siddiqui N et al. Br J Cancer 75:287-294, 1997 report grade 3-4
  thrombocytopenia in 24 % of courses with paclitaxel 150-225 mg/m2 + carboplatin AUC 7 q4w
  (read in its abstract). Slope IIV omega 0.38 (the neutrophil value; our assumption), its own
  random effect.
* Assay error: proportional 20 % (ours; no published value read here; the model residual of
  platelet Friberg fits is usually of this order).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vae_simulator.groundtruth.pd.friberg import FribergPopulation, observe_anc

#: Platelet MTT (h) and carboplatin slope (L/umol on total carboplatin), derived by ``calibration_v1``.
PLATELET_MTT_H = 287.0
CARBOPLATIN_PLATELET_SLOPE_L_UMOL = 0.192

#: Carboplatin (drug B) platelet model (module docstring).
CARBOPLATIN_PLATELETS = FribergPopulation(
    circ0_e9_l=237.0, mtt_h=PLATELET_MTT_H, gamma=0.22, slope_a_l_umol=0.0,
    slope_b_l_umol=CARBOPLATIN_PLATELET_SLOPE_L_UMOL, omega_circ0=0.33, omega_mtt=0.17, omega_slope=0.38,
    residual_prop_cv=0.20,
    source="Friberg 2002 J Clin Oncol 20:4713 (structure); Joerger 2007 Clin Cancer Res 13:6410 (carboplatin "
           "drives thrombocytopenia); Perez-Ruixo 2016 AAPS J 18:239 (baseline count); MTT calibrated to the "
           "day-21 nadir of the Paraplatin label, slope to the grade >= 3 rate of GOG0209 (Miller 2020)")


def with_platelet_constants(mtt_h: float, slope_l_umol: float) -> FribergPopulation:
    """The platelet population with other MTT and slope (used by the calibration)."""
    return replace(CARBOPLATIN_PLATELETS, mtt_h=float(mtt_h), slope_b_l_umol=float(slope_l_umol))


def observe_platelets(platelets_e9_l, rng: np.random.Generator, error_scale: float = 1.0) -> np.ndarray:
    """Measured platelet counts (1e9/L): proportional assay error (module docstring), floored at 0."""
    return observe_anc(platelets_e9_l, rng, CARBOPLATIN_PLATELETS, error_scale)
