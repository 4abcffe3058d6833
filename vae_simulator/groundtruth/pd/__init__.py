"""Pharmacodynamic ground truth of the paclitaxel + carboplatin (q3w) combination.

Resumable, vectorised state-space models driven by plasma concentrations (umol/L) given on
a time grid, so an environment can step one 21-day cycle at a time:

* :mod:`~vae_simulator.groundtruth.pd.friberg` -- neutrophils (Friberg 2002 myelosuppression,
  additive effects of the two drugs);
* :mod:`~vae_simulator.groundtruth.pd.tumour` -- NSCLC tumour size (Claret 2009 growth
  inhibition with resistance and an optional interaction);
* :mod:`~vae_simulator.groundtruth.pd.grading` -- CTCAE v5 neutropenia grades and RECIST 1.1;
* :mod:`~vae_simulator.groundtruth.pd.calibration` -- the derivation of the carboplatin slope and
  of the tumour kill rates from published trial figures (needs the PK models; re-run with
  ``python -m vae_simulator.groundtruth.pd.calibration``).

One cycle at a time (``n`` patients; concentrations in umol/L = mg/L / molar mass * 1000)::

    anc_params = friberg.FribergParameters.sample(n, rng)
    tum_params = tumour.TumourParameters.sample(n, rng)
    anc_state, tum_state = friberg.steady_state(anc_params), tumour.initial_state(tum_params)
    for k in range(n_cycles):
        # times: cycle start k*504 h first (the states refer to it), then the PK grid of the cycle
        times, c_pac, c_carbo = refine_grid(times_k, c_pac_k, c_carbo_k, max_gap_h=6.0)
        anc = friberg.simulate(anc_state, times, c_pac, c_carbo, anc_params)
        sld = tumour.simulate(tum_state, times, c_pac, c_carbo, tum_params)
        anc_state, tum_state = anc[:, :, -1], sld[:, :, -1]
        grade = grading.worst_neutropenia_grade(anc[:, friberg.CIRC])
"""

from vae_simulator.groundtruth.pd import friberg, grading, tumour
from vae_simulator.groundtruth.pd._statespace import refine_grid
from vae_simulator.groundtruth.pd.friberg import FribergParameters, FribergPopulation
from vae_simulator.groundtruth.pd.grading import Recist
from vae_simulator.groundtruth.pd.tumour import TumourParameters, TumourPopulation

__all__ = [
           "FribergParameters",
           "FribergPopulation",
           "Recist",
           "TumourParameters",
           "TumourPopulation",
           "friberg",
           "grading",
           "refine_grid",
           "tumour",
]
