"""PK-VAE: fast path = training model, safe and checked loading, exact resume, sparse encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vae_simulator.population import simulate_dataset
from vae_simulator.simulator import PKSimulator
from vae_simulator.vae.data import TrainingTensors, interval_position
from vae_simulator.vae.io import load_model, save_model
from vae_simulator.vae.train import TrainSettings, build_model, train_vae

SMALL = TrainSettings(epochs=2, batch_size=64, latent_dim=3, hidden=32, patience=50)


@pytest.fixture
def toy_data(toy_registered):
    return simulate_dataset(toy_registered.name, 240, 4, seed=3, progress=False)


@pytest.fixture
def toy_vae(toy_data):
    torch.manual_seed(0)
    return build_model(toy_data, SMALL)


def test_numpy_fast_path_equals_torch_decoder(toy_vae, toy_data):
    sim = PKSimulator(toy_vae)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 3))
    cov = toy_data.covariates[:7].astype(float)
    doses = rng.uniform(0, 2000, (7, 4))
    doses[:, 1] = 0.0
    with torch.no_grad():
        mean, log_sigma = toy_vae.decode(torch.tensor(z, dtype=torch.float32), torch.tensor(cov, dtype=torch.float32),
                                         torch.tensor(doses, dtype=torch.float32))
        expected = toy_vae.from_y(mean).numpy()
    patients = sim.make_patients(cov, z)
    state = sim.initial_state(patients)
    for k in range(4):
        conc, ls, state = sim.step(state, patients, doses[:, k])
        np.testing.assert_allclose(conc, expected[:, k], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(ls, log_sigma[:, k].numpy(), atol=2e-5)


def test_simulator_refuses_doses_outside_trained_range_and_never_goes_negative(toy_vae):
    sim = PKSimulator(toy_vae)
    rng = np.random.default_rng(1)
    patients = sim.sample_patients(5, rng)
    state = sim.initial_state(patients)
    with pytest.raises(ValueError, match=r"dose 2500 mg is outside the range the PK-VAE was trained on, \[0, 2000\]"):
        sim.step(state, patients, np.full(5, 2500.0))
    with pytest.raises(ValueError, match="dose nan mg"):
        sim.step(state, patients, np.array([1.0, np.nan, 1.0, 1.0, 1.0]))
    conc, log_sigma, _ = sim.step(state, patients, np.zeros(5))
    obs = sim.observe(conc, log_sigma, rng)
    assert np.all(conc >= 0) and np.all(obs >= 0) and np.all(np.isfinite(obs))
    with pytest.raises(ValueError, match=r"latent z must have shape \(2, 3\)"):
        sim.make_patients(patients.covariates[:2], np.zeros((2, 4)))


def test_save_load_roundtrip_and_manifest_checks(toy_vae, tmp_path):
    weights, manifest = save_model(toy_vae, tmp_path, {"data_seed": 3})
    loaded, meta = load_model(manifest, expected_drug="test-1cmt")
    for k, v in toy_vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    assert meta["training"]["data_seed"] == 3 and len(meta["sha256"]) == 64

    with pytest.raises(ValueError, match="holds the PK-VAE of 'test-1cmt', not of 'vancomycin'"):
        load_model(manifest, expected_drug="vancomycin")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nothing.json")

    good = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**good, "format": "someone-else/3"}))
    with pytest.raises(ValueError, match="not a pkdose PK-VAE manifest: format 'someone-else/3'"):
        load_model(manifest)
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_model(manifest)
    manifest.write_text(json.dumps({**good, "config": {**good["config"], "n_heads": 4}}))
    with pytest.raises(ValueError, match="incompatible with this version"):
        load_model(manifest)

    manifest.write_text(json.dumps(good))
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="corrupt or was replaced"):
        load_model(manifest)

    # a valid safetensors file of another architecture, with a matching checksum
    import hashlib
    other = dict(good, config={**good["config"], "hidden": 16})
    save_model(build_model_like(toy_vae, hidden=16), tmp_path / "other", {})
    other_weights = tmp_path / "other" / "test-1cmt.safetensors"
    weights.write_bytes(other_weights.read_bytes())
    manifest.write_text(json.dumps({**good, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}))
    with pytest.raises(ValueError, match="does not fit the PK-VAE architecture"):
        load_model(manifest)
    assert other["config"]["hidden"] == 16


def build_model_like(model, **changes):
    from dataclasses import replace

    from vae_simulator.vae.model import PKVAE
    return PKVAE(replace(model.cfg, **changes))


def test_killed_run_resumes_to_identical_weights(toy_data, tmp_path):
    straight, _ = train_vae(toy_data, tmp_path / "a", TrainSettings(**{**vars(SMALL), "epochs": 4}), progress=False)
    train_vae(toy_data, tmp_path / "b", SMALL, progress=False)  # "killed" after 2 epochs
    resumed, summary = train_vae(toy_data, tmp_path / "b", TrainSettings(**{**vars(SMALL), "epochs": 4}),
                                 resume=True, progress=False)
    assert summary["epochs_run"] == 4
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert (tmp_path / "b" / "tb").is_dir()


def test_resume_refuses_missing_or_foreign_checkpoints(toy_data, toy_registered, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pt does not exist"):
        train_vae(toy_data, tmp_path / "none", SMALL, resume=True, progress=False)
    train_vae(toy_data, tmp_path / "c", SMALL, progress=False)
    other = simulate_dataset(toy_registered.name, 240, 4, seed=4, progress=False)
    with pytest.raises(ValueError, match="was written for another run"):
        train_vae(other, tmp_path / "c", SMALL, resume=True, progress=False)
    (tmp_path / "c" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable pkdose training checkpoint"):
        train_vae(toy_data, tmp_path / "c", SMALL, resume=True, progress=False)


def test_encoder_accepts_one_observation_or_none(toy_vae, toy_data):
    tensors = TrainingTensors(toy_data, toy_vae)
    idx = np.arange(6)
    mask = torch.zeros(6, tensors.pool_tokens.shape[1], dtype=torch.bool)
    mask[0, 3] = True  # one grid observation for patient 0, nothing for the others
    batch = tensors.batch(idx, mask)
    with torch.no_grad():
        mu, logvar = toy_vae.encode(batch["tokens"], batch["interval_index"], batch["mask"], batch["doses_mg"],
                                    batch["cov"])
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()
    # views are reproducible for a seed and always show the encoder at least one observation
    a = tensors.view_masks(np.random.default_rng(5))
    b = tensors.view_masks(np.random.default_rng(5))
    assert torch.equal(a, b) and bool(a.any(dim=1).all())


def test_interval_position_puts_troughs_at_the_end_of_their_interval():
    k, frac = interval_position(np.array([0.0, 6.0, 12.0, 12.5, 24.0]), 12.0)
    np.testing.assert_array_equal(k, [0, 0, 0, 1, 1])
    np.testing.assert_allclose(frac, [0.0, 0.5, 1.0, 0.5 / 12, 1.0])


def test_below_lloq_points_are_censored_in_the_training_loss(toy_vae, toy_data, monkeypatch):
    tensors = TrainingTensors(toy_data, toy_vae)
    idx = np.arange(8)
    batch = tensors.batch(idx, tensors.view_masks(np.random.default_rng(0), idx))
    shape = batch["y"].shape
    low = batch["y_lloq"] - 4.0  # decoder says: four noise SDs below the LLOQ
    monkeypatch.setattr(toy_vae, "decode", lambda z, cov, doses: (low, torch.zeros(shape)))
    batch["blq"] = torch.ones(shape, dtype=torch.bool)
    _, censored = toy_vae.loss(batch, sample=False)
    batch["blq"] = torch.zeros(shape, dtype=torch.bool)
    _, measured = toy_vae.loss(batch, sample=False)
    n_points = shape[1] * shape[2]
    # censored: -log Phi(4) = 3.2e-5 per point; as measured values (y sits at most log 2 / y_scale
    # below y_lloq) each point would cost at least (4 - 0.7)^2 / 2 = 5.4
    assert float(censored["nll"]) == pytest.approx(n_points * 3.167e-5, rel=1e-2)
    assert float(measured["nll"]) > 5 * n_points


def test_nothing_given_means_nothing_in_the_body(toy_vae, toy_data):
    sim = PKSimulator(toy_vae)
    rng = np.random.default_rng(2)
    patients = sim.sample_patients(4, rng)
    state = sim.initial_state(patients)
    doses = np.array([[0.0, 0.0, 500.0], [0.0, 800.0, 0.0], [300.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    profiles = []
    for k in range(3):
        conc, _, state = sim.step(state, patients, doses[:, k])
        profiles.append(conc)
    profiles = np.stack(profiles, axis=1)
    never = np.cumsum(doses, axis=1) == 0
    assert np.all(profiles[never] == 0.0)
    assert np.all(profiles[~never].max(axis=-1) > 0.0)
    with torch.no_grad():
        torch_conc = toy_vae.decode_profile(torch.tensor(patients.z, dtype=torch.float32),
                                            torch.tensor(patients.covariates, dtype=torch.float32),
                                            torch.tensor(doses, dtype=torch.float32)).numpy()
    assert np.all(torch_conc[never] == 0.0)
    np.testing.assert_allclose(profiles, torch_conc, rtol=2e-5, atol=1e-6)
