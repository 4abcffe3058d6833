"""Multimodal patient features of the combination cohort: pharmacogenomics, performance status,
nuisance features, with the missingness of real records.

=====================  ======================================  ==============================================
feature                frequency                               effect in the simulator
=====================  ======================================  ==============================================
CYP2C8*3 carrier       24.3 % (allele frequency 0.13 in        neuropathy sensitivity x 1.93 (Hertz 2013,
                       Europeans, Hardy-Weinberg; recalled,    :mod:`adverse_events`). Its reported effect on
                       not verified here)                      paclitaxel clearance (about 10 % lower in
                                                               carriers, Bergmann 2011, recalled) is *not*
                                                               applied: the PK-VAE decoder takes no genotype
ABCB1 3435 TT          27 % (T allele 0.52; recalled)          none: published associations with paclitaxel
                                                               PK and neuropathy conflict, so no effect size
                                                               is used (a feature without causal effect)
genotyped              50 % of patients (ours: genotyping is   both genotypes are 0 in the observation when
                       not routine)                            not genotyped
ECOG performance       0 / 1 / 2 with 40 / 50 / 10 % (ours,    none (it is prognostic of survival, e.g. in
status                 a typical trial mix)                    Zecchin 2016's survival model, which is not
                                                               simulated here)
nuisance_1, _2         standard normal                         none (noise features, as real data has them)
=====================  ======================================  ==============================================

Tumour type (:mod:`tumour_types`), baseline blood counts and the covariates of
:mod:`vae_simulator.covariates` complete the record. No tumour biomarker is modelled: none with a
published effect size on paclitaxel/carboplatin sensitivity could be read here.
"""

from __future__ import annotations

import numpy as np

CYP2C8_STAR3_ALLELE_FREQUENCY = 0.13
ABCB1_3435_T_ALLELE_FREQUENCY = 0.52
GENOTYPED_FRACTION = 0.5
ECOG_PROBABILITIES = (0.4, 0.5, 0.1)
#: Names of :func:`draw_features`'s values, in order.
FEATURE_NAMES: tuple[str, ...] = ("genotyped", "cyp2c8_star3_carrier", "abcb1_3435_tt", "ecog", "nuisance_1",
                                  "nuisance_2")


def carrier_probability(allele_frequency: float) -> float:
    """Probability of carrying at least one copy of an allele under Hardy-Weinberg equilibrium."""
    return 1.0 - (1.0 - allele_frequency) ** 2


def draw_features(rng: np.random.Generator) -> np.ndarray:
    """One patient's :data:`FEATURE_NAMES` values, from a fixed number of draws in a fixed order.

    The true genotypes are always drawn (CYP2C8*3 acts whether or not it was tested); the
    observation shows them only when ``genotyped`` is 1.
    """
    u = rng.random(4)
    nuisance = rng.standard_normal(2)
    cyp2c8 = float(u[0] < carrier_probability(CYP2C8_STAR3_ALLELE_FREQUENCY))
    abcb1 = float(u[1] < ABCB1_3435_T_ALLELE_FREQUENCY ** 2)
    genotyped = float(u[2] < GENOTYPED_FRACTION)
    ecog = float(np.searchsorted(np.cumsum(ECOG_PROBABILITIES), u[3], side="right"))
    return np.array([genotyped, cyp2c8, abcb1, min(ecog, len(ECOG_PROBABILITIES) - 1), *nuisance])


def check_features(values) -> np.ndarray:
    """A pinned feature row, checked: genotyped and genotypes 0/1, ECOG 0-2, nuisance finite."""
    row = np.asarray(values, dtype=float).reshape(-1)
    if row.shape != (len(FEATURE_NAMES),):
        raise ValueError(f"features must have {len(FEATURE_NAMES)} values {list(FEATURE_NAMES)}, got shape "
                         f"{row.shape}")
    for i, name in enumerate(FEATURE_NAMES[:3]):
        if row[i] not in (0.0, 1.0):
            raise ValueError(f"feature {name} must be 0 or 1, got {row[i]!r}")
    if row[3] not in (0.0, 1.0, 2.0):
        raise ValueError(f"feature ecog must be 0, 1 or 2 (the modelled performance statuses), got {row[3]!r}")
    if not np.all(np.isfinite(row[4:])):
        raise ValueError(f"nuisance features must be finite, got {row[4:]}")
    return row
