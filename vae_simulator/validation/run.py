"""Validate one drug's PK-VAE: load it, run every section, draw its figures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_simulator.groundtruth import get_model
from vae_simulator.population import simulate_dataset
from vae_simulator.vae.io import load_model, load_pretrained
from vae_simulator.vae.model import PKVAE
from vae_simulator.validation import figures
from vae_simulator.validation.common import population_is_fitted, standard_dose_cohort
from vae_simulator.validation.mipd_study import MipdStudy, mipd_study
from vae_simulator.validation.profiles import (
    CohortCheck,
    Reconstruction,
    cohort_check,
    grid_times,
    one_compartment_reconstruction,
    score_profiles,
    vae_reconstruction,
)
from vae_simulator.validation.sparse import Calibration, SparsePrediction, calibration, sparse_prediction

#: Progress steps of one drug (the CLI's bar advances once per step).
STEPS = ("held-out data", "reconstruction", "one-compartment fits", "sparse prediction", "calibration",
         "standard-dose cohort", "MIPD study", "figures")
N_RECONSTRUCTION_EXAMPLES = 3


@dataclass(frozen=True)
class ValidationSettings:
    """Sizes and seeds of a validation run (see the CLI for meanings and defaults)."""

    n_patients: int = 1000
    n_fit: int = 200
    n_mipd: int = 500
    interval: int = 2
    seed: int = 12345
    n_draws: int = 200
    weights_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("n_patients", "n_fit", "n_mipd"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_draws < 2:
            raise ValueError(f"n_draws must be >= 2, got {self.n_draws}")
        if self.interval < 0:
            raise ValueError(f"interval must be >= 0, got {self.interval}")


@dataclass
class DrugValidation:
    """All numbers of one drug (``skipped`` holds the reason when it could not be validated)."""

    drug: str
    skipped: str | None = None
    seconds: float = 0.0
    training: dict = field(default_factory=dict)
    n_intervals: int = 0
    latent: str = ""
    reconstruction: Reconstruction | None = None
    reconstruction_subset: Reconstruction | None = None
    one_compartment: Reconstruction | None = None
    sparse: SparsePrediction | None = None
    calibration: Calibration | None = None
    cohort: CohortCheck | None = None
    mipd: MipdStudy | None = None
    figures: dict[str, str] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)


class StepClock:
    """Reports each step's start to ``notify`` and records how long each step took (s)."""

    def __init__(self, notify: Callable[[str], None]):
        self.notify, self.seconds = notify, {}
        self._name: str | None = None
        self._since = time.perf_counter()

    def __call__(self, name: str | None) -> None:
        now = time.perf_counter()
        if self._name is not None:
            self.seconds[self._name] = now - self._since
        self._name, self._since = name, now
        if name is not None:
            self.notify(name)


def load_vae(drug: str, weights_dir: Path | None) -> tuple[PKVAE, dict]:
    """The shipped PK-VAE of ``drug``, or ``<weights_dir>/<drug>.json`` when a folder is given."""
    if weights_dir is None:
        return load_pretrained(drug)
    return load_model(Path(weights_dir) / f"{drug}.json", expected_drug=drug)


def _no_model_reason(drug: str, weights_dir: Path | None, exc: Exception) -> str:
    """A one-line reason without absolute paths."""
    folder = weights_dir.name if weights_dir is not None else "vae_simulator/weights"
    where = f"{folder}/{drug}.json"
    if isinstance(exc, FileNotFoundError):
        return f"no trained PK-VAE weights ({where} missing)"
    # the loader's message names files by absolute path; keep only their names
    message = re.sub(r"(?<![\w.])/(?:[^\s/'\"]+/)+", "", str(exc))
    return f"weights {where} could not be loaded: {message}"


def validate_drug(drug: str, settings: ValidationSettings, out_dir: Path,
                  step: Callable[[str], None] = lambda name: None) -> DrugValidation:
    """Run every section for ``drug``; figures go to ``out_dir`` (names relative to it in the result)."""
    truth = get_model(drug)  # ValueError for an unknown drug, before anything else
    try:
        model, manifest = load_vae(drug, settings.weights_dir)
    except (FileNotFoundError, ValueError) as exc:
        for name in STEPS:
            step(name)
        return DrugValidation(drug=drug, skipped=_no_model_reason(drug, settings.weights_dir, exc))
    training = dict(manifest.get("training", {}))
    if training.get("data_seed") == settings.seed:
        raise ValueError(f"{drug}: the held-out seed {settings.seed} is the PK-VAE's training data seed; "
                         f"choose another --seed")
    started = time.perf_counter()
    k = int(model.cfg.max_intervals)
    if k < settings.interval + 2:
        raise ValueError(f"{drug}: the PK-VAE covers {k} intervals; sample interval j={settings.interval} "
                         f"needs at least j+2 = {settings.interval + 2}")
    result = DrugValidation(drug=drug, training=training, n_intervals=k,
                            latent="fitted" if population_is_fitted(model) else "N(0, I) (not fitted)")
    clock = StepClock(step)  # notifies the caller and times each step

    clock("held-out data")
    data = simulate_dataset(drug, settings.n_patients, k, settings.seed, progress=False)
    clock("reconstruction")
    vae_profiles = vae_reconstruction(model, data)
    result.reconstruction = score_profiles(vae_profiles, data.conc_true, truth)
    clock("one-compartment fits")
    one_cmt, fitted = one_compartment_reconstruction(truth, data, settings.n_fit)
    result.one_compartment = score_profiles(one_cmt, data.conc_true[fitted], truth)
    result.reconstruction_subset = score_profiles(vae_profiles[fitted], data.conc_true[fitted], truth)
    clock("sparse prediction")
    result.sparse = sparse_prediction(model, truth, data, settings.interval)
    clock("calibration")
    result.calibration = calibration(model, truth, data, settings.interval,
                                     np.random.default_rng([settings.seed, 3]), n_draws=settings.n_draws)
    clock("standard-dose cohort")
    cohort = standard_dose_cohort(truth, settings.n_patients, k, np.random.default_rng([settings.seed, 5]))
    result.cohort = cohort_check(model, truth, cohort, np.random.default_rng([settings.seed, 6]))
    clock("MIPD study")
    result.mipd = mipd_study(model, truth, settings.n_mipd, settings.interval,
                             np.random.default_rng([settings.seed, 7]))
    clock("figures")
    paths = {"vpc": figures.plot_vpc(result.cohort, drug, truth.lloq_mg_l, out_dir / f"vpc_{drug}.png"),
             "mipd": figures.plot_mipd(result.mipd, truth.target, drug, out_dir / f"mipd_{drug}.png")}
    examples = fitted[:N_RECONSTRUCTION_EXAMPLES]
    if examples.size:
        m = examples.size
        paths["reconstruction"] = figures.plot_reconstruction(
            grid_times(data), data.conc_true[examples].reshape(m, -1), data.conc_obs[examples].reshape(m, -1),
            vae_profiles[examples].reshape(m, -1), one_cmt[:m].reshape(m, -1), drug, truth.lloq_mg_l,
            out_dir / f"reconstruction_{drug}.png")
    result.figures = {name: p.name for name, p in paths.items()}
    clock(None)
    result.step_seconds = clock.seconds
    result.seconds = time.perf_counter() - started
    return result
