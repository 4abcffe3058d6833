"""The exact model's MAP fit to noisy profiles: the reference the reconstruction goal is read against."""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.groundtruth import get_model
from vae_simulator.irregular import simulate_regimen_dataset
from vae_simulator.validation.exact_fit import exact_map_profiles
from vae_simulator.validation.metrics import median_ape


def test_the_exact_fit_recovers_profiles_far_better_than_the_typical_patient():
    data = simulate_regimen_dataset("vancomycin", 200, seed=4, irregular_fraction=0.0, progress=False)
    regular = data.take(np.flatnonzero(~data.irregular)[:4])
    fitted = exact_map_profiles(regular)
    m = regular.obs_mask
    assert np.isnan(fitted[~m]).all() and np.isfinite(fitted[m]).all() and (fitted[m] >= 0).all()
    truth = get_model("vancomycin")
    typical = exact_map_profiles(regular.take([0]))  # deterministic: the same patient, the same fit
    np.testing.assert_array_equal(typical[0, m[0]], fitted[0, m[0]])
    lloq = truth.lloq_mg_l
    fit_ape = median_ape(fitted[m], regular.conc_true[m], lloq)
    noisy_ape = median_ape(regular.conc_obs[m], regular.conc_true[m], lloq)
    assert fit_ape < 0.05 < noisy_ape  # dense samples pin the exact model down well below the assay noise


def test_irregular_regimens_are_refused():
    data = simulate_regimen_dataset("vancomycin", 200, seed=4, irregular_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="takes regular-regimen patients"):
        exact_map_profiles(data.take([0]))
