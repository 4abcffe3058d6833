"""Validation of the trained PK-VAEs on held-out virtual patients.

Sections (each a function returning numbers, usable from tests and the README):

1-2. :mod:`.profiles` -- reconstruction of full noisy multi-dose profiles by the PK-VAE and by
     a per-patient one-compartment fit (:mod:`.one_compartment`); median APE and log-RMSE
     against the true profiles (:mod:`.metrics`).
3-4. :mod:`.sparse` -- next-interval exposure from two clinic samples (encoder + MAP) vs the
     population-typical prediction; coverage of the 90 % posterior-predictive interval.
5-6. :mod:`.profiles` -- visual predictive check and prior-sample exposure percentiles of a
     standard-dose cohort.
MIPD study: :mod:`.mipd_study` -- one dosing decision (standard / VAE-MIPD / oracle) scored on
the ground truth.

:mod:`.run` runs them for one drug, :mod:`.report` writes ``report.md``, :mod:`.figures` the
PNGs, and :mod:`.cli` is ``python -m vae_simulator.validate``.
"""
