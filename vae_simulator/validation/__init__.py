"""Validation of the trained PK-VAEs on held-out virtual patients.

Sections (each a function returning numbers, usable from tests and the README):

1-2. :mod:`.profiles` -- reconstruction of full noisy multi-dose profiles by the PK-VAE and by
     a per-patient one-compartment fit (:mod:`.one_compartment`); median APE and log-RMSE
     against the true profiles (:mod:`.metrics`).
3-4. :mod:`.sparse` -- next-interval exposure from two clinic samples (encoder + MAP) vs the
     population-typical prediction and, as a reference, MAP with the true model
     (:mod:`.reference_map`); coverage of the 90 % posterior-predictive interval.
5-6. :mod:`.profiles` -- visual predictive check and exposure percentiles of a standard-dose
     cohort against the PK-VAE's latent population.
MIPD study: :mod:`.mipd_study` -- one dosing decision (standard / VAE-MIPD / true-model MAP /
oracle) scored on the ground truth.

:mod:`.common` holds the shared pieces (numpy decoding, cohorts, clinic samples), :mod:`.run`
runs the sections for one drug, :mod:`.report` writes ``report.md``, :mod:`.figures` the PNGs,
and :mod:`.cli` is ``python -m vae_simulator.validate``.
"""
