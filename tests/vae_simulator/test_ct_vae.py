"""The continuous-time PK-VAE: structure, likelihood, training/resume, saving, irregular data."""

import numpy as np
import pytest
import torch

from vae_simulator.irregular import (
    INTERVAL_OPTIONS_H,
    RegimenData,
    irregular_schedule,
    regimen_limits,
    simulate_regimen_dataset,
)
from vae_simulator.vae.ct_model import CTPKVAE, TimeFeatures
from vae_simulator.vae.ct_train import CTTensors, CTTrainSettings, build_ct_model, ct_view_masks, train_ct_vae
from vae_simulator.vae.io import CT_MANIFEST_FORMAT, MANIFEST_FORMAT, load_model, save_model

TINY = CTTrainSettings(epochs=2, batch_size=32, hidden=16, latent_dim=3, log_warmup_epochs=1, kl_warmup_epochs=1)


@pytest.fixture(scope="module")
def vanco_data() -> RegimenData:
    return simulate_regimen_dataset("vancomycin", 240, seed=3, irregular_fraction=0.5, progress=False)


@pytest.fixture(scope="module")
def tiny_model(vanco_data) -> CTPKVAE:
    torch.manual_seed(0)
    return build_ct_model(vanco_data, TINY).eval()


# ----------------------------------------------------------------------------- data
def test_irregular_schedules_are_realistic_and_within_limits():
    limits = regimen_limits("vancomycin")
    rng = np.random.default_rng(0)
    gaps, lengths = [], []
    for _ in range(200):
        times, infusion = irregular_schedule("vancomycin", rng)
        assert times[0] == 0.0 and np.all(np.diff(times) > 0) and times[-1] < limits.horizon_h
        assert np.all(np.diff(np.append(times, limits.horizon_h)) <= limits.max_gap_h)
        gaps.append(np.diff(times))
        lengths.append(infusion)
    gaps, lengths = np.concatenate(gaps), np.concatenate(lengths)
    # every clinical interval occurs, jittered; infusions span the allowed range
    for tau in INTERVAL_OPTIONS_H["vancomycin"]:
        assert np.any(np.abs(gaps - tau) <= 2.0)
    assert np.any(np.abs(gaps - 12.0) > 0.5)  # not only exact schedules
    assert lengths.min() >= 1.0 and lengths.max() <= 4.0 and lengths.max() - lengths.min() > 2.0


def test_regimen_dataset_is_reproducible_and_consistent(vanco_data, tmp_path):
    again = simulate_regimen_dataset("vancomycin", 240, seed=3, irregular_fraction=0.5, progress=False)
    np.testing.assert_array_equal(again.conc_obs, vanco_data.conc_obs)
    assert vanco_data.irregular.any() and (~vanco_data.irregular).any()
    assert np.all(vanco_data.conc_true[vanco_data.obs_mask] >= 0)
    # loading doses may exceed the usual amount but never the allowed range
    assert vanco_data.dose_mg.max() <= 4000.0
    vanco_data.events.check(regimen_limits("vancomycin"))
    path = tmp_path / "r.npz"
    vanco_data.to_npz(path)
    np.testing.assert_array_equal(RegimenData.from_npz(path).dose_time_h, vanco_data.dose_time_h)
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a pkdose regimen file"):
        RegimenData.from_npz(tmp_path / "foreign.npz")


def test_view_masks_pick_samples_that_exist(vanco_data):
    rng = np.random.default_rng(1)
    mask = ct_view_masks(rng, vanco_data.obs_time_h, vanco_data.obs_mask)
    assert mask.any(axis=1).all() and not (mask & ~vanco_data.obs_mask).any()
    counts = mask.sum(axis=1)
    assert counts.min() == 1 and counts.max() == vanco_data.obs_mask.sum(axis=1).max()


# ----------------------------------------------------------------------------- model structure
def _batch(data, rows):
    return CTTensors(data).batch(rows)


def test_zero_before_first_dose_and_causal(tiny_model, vanco_data):
    """Exactly 0 at and before the first dose; a later dose does not change earlier concentrations."""
    batch = _batch(vanco_data, [0, 1])
    batch["dose_time_h"] = batch["dose_time_h"] + 5.0  # first dose at 5 h
    z = torch.zeros(2, TINY.latent_dim)
    query = torch.tensor([[0.0, 2.0, 5.0, 6.0, 30.0]] * 2)
    conc = tiny_model.predict(z, batch, query)
    assert torch.all(conc[:, :3] == 0.0) and torch.all(conc[:, 3:] > 0.0)
    later = dict(batch)
    later["dose_mg"] = batch["dose_mg"].clone()
    later["dose_mg"][:, 3:] = 0.0  # change every dose from the 4th on (given after 29 h)
    early = torch.tensor([[6.0, 10.0, 20.0]] * 2)
    assert float(batch["dose_time_h"][0, 3]) >= 20.0
    torch.testing.assert_close(tiny_model.predict(z, later, early), tiny_model.predict(z, batch, early), rtol=0, atol=0)


def test_likelihood_is_linear_scale_combined_error_with_m3(tiny_model):
    sp, sa = (float(torch.exp(p.detach())) for p in (tiny_model.log_sigma_prop, tiny_model.log_sigma_add))
    conc = torch.tensor([[10.0, 3.0]])
    obs = torch.tensor([[12.0, 2.5]])
    blq = torch.tensor([[False, True]])
    nll = tiny_model.observation_nll(conc, obs, blq, torch.ones(1, 2))
    sd = np.sqrt((sp * 10.0) ** 2 + sa ** 2)
    quantified = 0.5 * np.log(2 * np.pi * sd ** 2) + 0.5 * ((12.0 - 10.0) / sd) ** 2
    sd_c = np.sqrt((sp * 3.0) ** 2 + sa ** 2)
    from scipy.stats import norm
    censored = -norm.logcdf((tiny_model.cfg.lloq_mg_l - 3.0) / sd_c)
    assert float(nll[0]) == pytest.approx(quantified + censored, rel=1e-5)


def test_log_warmup_is_a_gaussian_in_log_space_with_the_proportional_error(tiny_model):
    """The warm-up's scale is the assay's (sigma_prop), not the unit variance of a plain squared error."""
    mu, y = torch.tensor([[0.3, -1.2]]), torch.tensor([[0.1, -1.0]])
    sd = float(torch.exp(tiny_model.log_sigma_prop.detach())) / float(tiny_model.normalizer.y_scale)
    from scipy.stats import norm
    expected = -norm.logpdf(y.numpy(), loc=mu.numpy(), scale=sd)
    np.testing.assert_allclose(tiny_model.log_warmup_nll(mu, y).detach().numpy(), expected, rtol=1e-5)


def test_free_bits_floor_each_latent_dimensions_kl(tiny_model, vanco_data):
    batch = _batch(vanco_data, list(range(8)))
    mask = torch.as_tensor(vanco_data.obs_mask[:8])
    plain, parts = tiny_model.loss(batch, mask, sample=False)
    floored, parts_fb = tiny_model.loss(batch, mask, sample=False, free_bits_nats=50.0)
    # every dimension's batch-mean KL is far below 50 nats: the KL term becomes the constant d x 50
    assert parts["kl"] < 50.0 and parts_fb["kl"] == pytest.approx(parts["kl"])
    assert float(floored - plain) == pytest.approx(TINY.latent_dim * 50.0 - parts["kl"], rel=1e-5)


    def encoder_grads(loss):
        tiny_model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in tiny_model.encoder.parameters()]

    # below the floor the KL pulls on nothing: the gradient is the reconstruction's alone
    recon_only = encoder_grads(tiny_model.loss(batch, mask, sample=False, beta=0.0)[0])
    for a, b in zip(encoder_grads(floored), recon_only):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(encoder_grads(plain), recon_only))
    tiny_model.zero_grad()


def test_log_time_feature_follows_log_time_and_is_finite_at_zero():
    phi = TimeFeatures(12.0, (0.25, 120.0), 8, log_time=True)
    s = torch.tensor([0.0, 0.01, 1.0, 100.0])
    feats = phi(s)
    assert feats.shape == (4, 8 + 2) and phi.size == 10 and torch.isfinite(feats).all()
    expected = np.log((s.numpy() + 0.25 / 64) / 0.25) / np.log(120.0 / 0.25)
    np.testing.assert_allclose(feats[:, -1].numpy(), expected, rtol=1e-5)
    without = TimeFeatures(12.0, (0.25, 120.0), 8)
    assert without.size == 9
    torch.testing.assert_close(without(s), feats[:, :-1])


def test_first_shipped_manifests_load_without_the_log_time_feature():
    from vae_simulator.vae.io import ct_shipped_dir

    model, meta = load_model(ct_shipped_dir() / "vancomycin.json", "vancomycin", CT_MANIFEST_FORMAT)
    assert "log_time" not in meta["config"] and not model.cfg.log_time and model.phi.size == model.cfg.n_time_scales + 1


# ----------------------------------------------------------------------------- training, resume, io
def test_training_learns_and_resumes_bit_for_bit(vanco_data, tmp_path):
    torch.manual_seed(0)
    model, summary = train_ct_vae(vanco_data, tmp_path / "a", TINY, progress=False)
    assert summary["epochs_run"] == 2 and np.isfinite(summary["best_validation_loss"])
    assert (tmp_path / "a" / "tb").is_dir()
    one = CTTrainSettings(**{**vars(TINY), "epochs": 1})
    train_ct_vae(vanco_data, tmp_path / "b", one, progress=False)  # "killed" after one epoch
    resumed, _ = train_ct_vae(vanco_data, tmp_path / "b", TINY, resume=True, progress=False)
    for (name, a), (_, b) in zip(model.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    other = CTTrainSettings(**{**vars(TINY), "lr": 1e-4})
    with pytest.raises(ValueError, match="another run"):
        train_ct_vae(vanco_data, tmp_path / "b", other, resume=True, progress=False)


def test_save_load_round_trip_and_format_checks(tiny_model, vanco_data, tmp_path):
    _, manifest = save_model(tiny_model, tmp_path, {"note": "test"})
    loaded, meta = load_model(manifest, "vancomycin", CT_MANIFEST_FORMAT)
    assert meta["format"] == CT_MANIFEST_FORMAT and loaded.cfg == tiny_model.cfg
    batch, z = _batch(vanco_data, [0]), torch.zeros(1, TINY.latent_dim)
    query = torch.tensor([[1.0, 7.5, 50.0]])
    torch.testing.assert_close(loaded.predict(z, batch, query), tiny_model.predict(z, batch, query))
    with pytest.raises(ValueError, match="expected 'pkdose-vae/1'"):
        load_model(manifest, "vancomycin", MANIFEST_FORMAT)
    with pytest.raises(ValueError, match="not of 'phenytoin'"):
        load_model(manifest, "phenytoin", CT_MANIFEST_FORMAT)


@pytest.mark.parametrize("value", ["-0.5", "nan", "inf"])
def test_ct_train_cli_refuses_a_bad_free_bits_value(value):
    from vae_simulator.vae.ct_train import main

    with pytest.raises(SystemExit, match=rf"--free-bits must be a finite number >= 0 \(nats\), got {value}"):
        main(["--drug", "carboplatin", "--free-bits", value, "--no-progress"])


def test_clock_features_are_periodic_bumps_of_one_spacing():
    from vae_simulator.vae.ct_model import ClockFeatures

    clock = ClockFeatures(24.0, 48)
    t = torch.tensor([0.0, 4.0, 28.0, 4.25, 100.5])
    f = clock(t)
    assert f.shape == (5, 48) and torch.all((f >= 0) & (f <= 1))
    torch.testing.assert_close(f[1], f[2])  # 4 h and 28 h are the same time of day
    assert float(f[1, 8]) == pytest.approx(1.0) and float(f[0, 8]) < 1e-10  # the 4-h bump
    # half a spacing (0.25 h) off a centre: exp(-1/8) for a bump SD of one spacing
    assert float(f[3, 8]) == pytest.approx(np.exp(-0.125), rel=1e-3)
    for period, n in ((0.0, 48), (float("nan"), 48), (24.0, 1)):
        with pytest.raises(ValueError, match="clock features need a period > 0 h and at least 2 bumps"):
            ClockFeatures(period, n)


def test_a_decoder_with_clock_features_follows_the_time_of_day(vanco_data, tmp_path):
    """Same doses a day apart, same time since the dose: only the clock bumps tell the two apart;
    the model keeps exactly 0 before the first dose and round-trips through its manifest."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = build_ct_model(vanco_data, replace(TINY, n_clock_features=12)).eval()
    assert model.cfg.n_clock_features == 12 and model.decoder.clock is model.encoder.clock
    batch = _batch(vanco_data, [0])
    z = torch.zeros(1, TINY.latent_dim)
    with torch.no_grad():  # the head's clock weights matter: make them large
        model.decoder.head[0].weight[:, -12:] = 3.0 * torch.randn(model.cfg.hidden, 12)
    one = {**batch, "dose_time_h": torch.tensor([[0.0] + [float("inf")] * (batch["dose_time_h"].shape[1] - 1)])}
    shifted = {**one, "dose_time_h": one["dose_time_h"] + 6.0}
    with torch.no_grad():
        a = model.predict(z, one, torch.tensor([[0.0, 3.0]]))
        b = model.predict(z, shifted, torch.tensor([[6.0, 9.0]]))
    assert float(a[0, 0]) == 0.0 and not torch.allclose(a[0, 1], b[0, 1])
    day_later = {**one, "dose_time_h": one["dose_time_h"] + 24.0}
    torch.testing.assert_close(model.predict(z, day_later, torch.tensor([[27.0]])), a[:, 1:], rtol=1e-5, atol=0)
    _, manifest = save_model(model, tmp_path, {"note": "test"})
    loaded, _ = load_model(manifest, "vancomycin", CT_MANIFEST_FORMAT)
    assert loaded.cfg == model.cfg
    torch.testing.assert_close(loaded.predict(z, one, torch.tensor([[3.0]])), a[:, 1:])


def test_ct_train_cli_refuses_bad_clock_settings():
    from vae_simulator.vae.ct_train import main

    with pytest.raises(SystemExit, match=r"--clock-features must be 0 \(none\) or >= 2, got 1"):
        main(["--drug", "mycophenolate", "--clock-features", "1", "--no-progress"])
    with pytest.raises(SystemExit, match=r"--clock-period must be a finite number > 0 \(h\), got -3.0"):
        main(["--drug", "mycophenolate", "--clock-period", "-3", "--no-progress"])
