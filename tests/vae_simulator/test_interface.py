"""The simulator interface (vae_simulator.interface): both simulators implement the Protocol with
its documented shapes, the environments use nothing else, and pinned latents are checked."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import pk_envs
from pk_envs.combination_registration import register_combination_envs
from pk_envs.single_drug_core import has_shipped_weights, load_simulator
from vae_simulator.covariates import COVARIATE_NAMES, Covariates
from vae_simulator.groundtruth_simulator import GroundTruthCycleSimulator
from vae_simulator.interface import LATENT_RANGE_SD, Patients, PatientSimulator, PatientStepper
from vae_simulator.simulator import PKSimulator

register_combination_envs()
needs_weights = pytest.mark.skipif(not all(has_shipped_weights(d) for d in ("vancomycin", "paclitaxel",
                                                                             "carboplatin")),
                                   reason="shipped PK-VAE weights not found")
VANCOMYCIN_ID, COMBINATION_ID = "PKDose/Vancomycin-v0", "PKDose/PaclitaxelCarboplatin-v0"


def protocol_members(protocol: type) -> set[str]:
    """The attributes and methods a Protocol lists (its annotations and public functions/properties)."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {k for k, v in vars(protocol).items() if not k.startswith("_") and (callable(v) or isinstance(v, property))}
    return names


@pytest.fixture(scope="module")
def simulators() -> dict[str, PatientSimulator]:
    sims: dict[str, PatientSimulator] = {"groundtruth-paclitaxel": GroundTruthCycleSimulator("paclitaxel"),
                                         "groundtruth-carboplatin": GroundTruthCycleSimulator("carboplatin")}
    if has_shipped_weights("vancomycin"):
        sims["pkvae-vancomycin"] = load_simulator("vancomycin")
        sims["ct-pkvae-vancomycin"] = load_simulator("vancomycin", "continuous")
    return sims


def test_protocol_lists_what_an_environment_may_call():
    assert protocol_members(PatientSimulator) == {
        "drug", "drug_model", "target", "covariate_names", "covariate_ranges", "interval_h", "grid_h", "dose_range_mg", "latent_dim",
        "latent_chol", "max_held_intervals", "max_intervals", "state_size", "typical_latent", "latent_bounds", "sample_patients",
        "make_patients", "initial_state", "standard_dose_mg", "step", "concentration_at", "observe", "stepper"}
    assert protocol_members(PatientStepper) == {"dtype", "constants_size", "start", "step"}
    assert not isinstance(object(), PatientSimulator) and not isinstance("vancomycin", PatientSimulator)


@needs_weights
def test_both_simulators_satisfy_the_protocol(simulators):
    assert isinstance(load_simulator("vancomycin"), PKSimulator)
    for name, sim in simulators.items():
        assert isinstance(sim, PatientSimulator), name
        assert isinstance(sim.stepper(), PatientStepper), name
    assert not issubclass(GroundTruthCycleSimulator, PKSimulator)  # a class of its own, no skipped __init__


def test_protocol_methods_have_the_documented_shapes_and_units(simulators):
    rng = np.random.default_rng(0)
    n = 5
    for name, sim in simulators.items():
        d, g, c = sim.latent_dim, sim.grid_h.size, len(COVARIATE_NAMES)
        assert sim.covariate_names == COVARIATE_NAMES and d >= 1 and int(sim.max_intervals) >= 1
        assert np.all(np.diff(sim.grid_h) > 0) and sim.grid_h[0] > 0 and sim.grid_h[-1] == pytest.approx(sim.interval_h)
        low_mg, high_mg = sim.dose_range_mg
        assert 0 <= low_mg < high_mg and sim.latent_chol.shape == (d, d)
        low, high = sim.latent_bounds()
        assert low.shape == high.shape == (d,) and np.all(low < high) and np.all(np.isfinite(low + high))
        patients = sim.sample_patients(n, rng)
        assert isinstance(patients, Patients) and len(patients) == n
        assert patients.covariates.shape == (n, c) and patients.z.shape == (n, d)
        assert sim.typical_latent(patients.covariates).shape == (n, d)
        assert tuple(sim.covariate_ranges) == sim.covariate_names
        label = sim.standard_dose_mg(patients.covariates)
        assert label.shape == (n,) and np.all((label > low_mg) & (label <= high_mg)), name
        pinned = sim.make_patients(patients.covariates, sim.typical_latent(patients.covariates))
        assert pinned.z.shape == (n, d)
        one = sim.make_patients(patients.covariates[0], pinned.z[0])
        assert one.covariates.shape == (1, c) and one.z.shape == (1, d)

        state = sim.initial_state(pinned)
        assert state.shape == (n, sim.state_size)
        doses = np.linspace(0.0, high_mg, n)
        conc, log_sigma, new_state = sim.step(state, pinned, doses)
        assert conc.shape == log_sigma.shape == (n, g) and new_state.shape == (n, sim.state_size)
        assert np.all(conc >= 0) and np.all(conc[0] == 0) and np.all(conc[1:].max(axis=1) > 0), name  # 0 mg: none
        times = np.array([0.0, 0.5 * sim.interval_h, sim.interval_h])
        at = sim.concentration_at(conc, np.zeros(n), times)
        assert at.shape == (n, times.size)
        np.testing.assert_allclose(at[:, -1], conc[:, -1], atol=1e-12)
        observed = sim.observe(conc, log_sigma, rng)
        assert observed.shape == conc.shape and np.all(observed >= 0) and np.all(np.isfinite(observed))
        np.testing.assert_allclose(sim.observe(conc, log_sigma, rng, noise_scale=0.0), conc, rtol=1e-9, atol=1e-12)
        with pytest.raises(ValueError, match=r"dose .* mg is outside .*\[.*\] mg"):
            sim.step(state, pinned, np.full(n, 2 * high_mg))

        stepper = sim.stepper(sigma_index=[0, g - 1])
        fast_state, constants = stepper.start(pinned.covariates, pinned.z)
        assert fast_state.shape == (n, sim.state_size) and constants.shape == (n, stepper.constants_size)
        assert constants.dtype == stepper.dtype
        fast_conc, fast_sigma, _ = stepper.step(fast_state, constants, doses)
        assert fast_conc.shape == (n, g) and fast_sigma.shape == (n, 2)
        np.testing.assert_allclose(fast_conc, conc, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fast_sigma, log_sigma[:, [0, g - 1]], rtol=1e-10)


class ProtocolOnly:
    """A simulator seen only through the Protocol: anything else an environment asks for fails."""

    def __init__(self, sim):
        self._sim = sim

    def __getattr__(self, name: str):
        if name not in protocol_members(PatientSimulator):
            raise AttributeError(f"the environment used {name!r}, which is not in PatientSimulator")
        return getattr(self._sim, name)


def rollout(env, options=None, steps: int = 3) -> list[np.ndarray]:
    obs, _ = env.reset(seed=4, options=options)
    out = [obs]
    for k in range(steps):
        obs, reward, *_ = env.step(np.full(env.action_space.shape, 0.3 if k % 2 else -0.2, np.float32))
        out += [obs, np.atleast_1d(reward)]
    return out


@needs_weights
def test_environments_use_only_the_protocol():
    for drug, factory in [("vancomycin", lambda s: pk_envs.SingleDrugEnv(simulator=s)),
                          ("groundtruth", lambda s: pk_envs.PaclitaxelCarboplatinEnv(s)),
                          ("pkvae", lambda s: pk_envs.PaclitaxelCarboplatinEnv(s))]:
        if drug == "vancomycin":
            sim = load_simulator("vancomycin")
            plain, strict = factory(sim), factory(ProtocolOnly(sim))
        else:
            pair = ((GroundTruthCycleSimulator("paclitaxel"), GroundTruthCycleSimulator("carboplatin"))
                    if drug == "groundtruth" else (PKSimulator.from_pretrained("paclitaxel"),
                                                   PKSimulator.from_pretrained("carboplatin")))
            plain, strict = factory(pair), factory(tuple(ProtocolOnly(s) for s in pair))
        for a, b in zip(rollout(plain), rollout(strict)):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- pinned latents
def refusal(message: str) -> str:
    """The regex of a z refusal that names the allowed range."""
    return r"(?=.*allowed)" + message + r".*\[-?[0-9.]+, -?[0-9.]+\]"


@needs_weights
def test_single_env_refuses_pinned_latents_outside_the_population():
    env = gym.make(VANCOMYCIN_ID)
    sim = env.unwrapped.task.sim
    low, high = sim.latent_bounds()
    with pytest.raises(ValueError, match=refusal(r"vancomycin: latent z\[0\] = 1e\+06 is outside the fitted latent "
                                                 r"population; allowed z\[0\] in \[")):
        env.reset(seed=0, options={"z": [1e6] * 6})
    with pytest.raises(ValueError, match=refusal(r"latent z must have shape \(6,\) \(one patient\), got \(2, 3\)")):
        env.reset(seed=0, options={"z": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=refusal(r"latent z must have shape \(6,\) \(one patient\), got \(1, 6\)")):
        env.reset(seed=0, options={"z": np.zeros((1, 6))})
    with pytest.raises(ValueError, match=refusal(r"latent z\[2\] = nan is not finite")):
        env.reset(seed=0, options={"z": [0, 0, np.nan, 0, 0, 0]})
    with pytest.raises(ValueError, match=refusal(r"latent z\[3\] = -inf is not finite")):
        env.reset(seed=0, options={"z": [0, 0, 0, -np.inf, 0, 0]})
    just_out = 0.5 * (low + high)
    just_out[4] = high[4] + 1e-6
    with pytest.raises(ValueError, match=rf"latent z\[4\] = {just_out[4]:g} is outside"):
        env.reset(seed=0, options={"z": just_out})


@needs_weights
def test_a_pinned_latent_inside_the_population_works_to_its_edges():
    env = gym.make("PKDose/Vancomycin-FullObs-v0")
    sim = env.unwrapped.task.sim
    low, high = sim.latent_bounds()
    for z in (0.5 * (low + high), low, high, np.where(np.arange(6) % 2, low, high)):
        obs, info = env.reset(seed=1, options={"z": z})
        np.testing.assert_array_equal(info["z"], z)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.array([1.0], np.float32))
            assert np.all(np.isfinite(obs)) and np.isfinite(reward) and np.isfinite(info["exposure"])
            if terminated or truncated:  # maximal doses may end it by kidney injury
                break


@needs_weights
def test_vector_env_checks_each_pinned_latent():
    envs = gym.make_vec(VANCOMYCIN_ID, num_envs=2)
    low, high = envs.unwrapped.task.sim.latent_bounds()
    good = np.stack([0.5 * (low + high), low])
    _, info = envs.reset(seed=0, options={"z": good})  # (num_envs, d): one row per sub-environment
    np.testing.assert_array_equal(info["z"], good)
    bad = good.copy()
    bad[1, 5] = 1e6
    with pytest.raises(ValueError, match=refusal(r"latent z\[5\] = 1e\+06 is outside")):
        envs.reset(seed=0, options={"z": bad})
    with pytest.raises(ValueError, match=refusal(r"must have shape \(6,\) \(one patient\), got \(3, 6\)")):
        envs.reset(seed=0, options={"z": np.zeros((3, 6))})  # neither one z for all nor one per sub-environment


@needs_weights
def test_combination_env_checks_pinned_latents_of_both_simulators():
    env = gym.make(COMBINATION_ID)
    with pytest.raises(ValueError, match=refusal(r"paclitaxel: latent z\[0\] = 1e\+06 is outside")):
        env.reset(seed=0, options={"z_paclitaxel": [1e6] * 6})
    with pytest.raises(ValueError, match=refusal(r"carboplatin: latent z must have shape \(6,\)")):
        env.reset(seed=0, options={"z_carboplatin": np.zeros((2, 3))})
    truth = gym.make(COMBINATION_ID, simulators="groundtruth")
    d = truth.unwrapped.task.sims[1].latent_dim
    with pytest.raises(ValueError, match=r"carboplatin: latent z\[1\] = 6.5 is outside the fitted latent "
                                         r"population; allowed z\[1\] in \[-6, 6\]"):
        truth.reset(seed=0, options={"z_carboplatin": [0.0, 6.5] + [0.0] * (d - 2)})
    _, info = truth.reset(seed=0, options={"z_carboplatin": np.full(d, -LATENT_RANGE_SD)})
    np.testing.assert_array_equal(info["z_carboplatin"], np.full(d, -LATENT_RANGE_SD))


def test_pinned_covariates_alone_do_not_range_check_the_drawn_latents():
    """Drawn latents follow iiv_scale (which may be wide on purpose); only a pinned z is checked."""
    covariates = [60.0, 1.0, 80.0, 175.0, 1.96, 1.0, 80.0]
    env = gym.make(COMBINATION_ID, simulators="groundtruth", iiv_scale=10.0)
    beyond = 0
    for seed in range(20):
        _, info = env.reset(seed=seed, options={"covariates": covariates})
        beyond += np.any(np.abs(info["z_paclitaxel"]) > LATENT_RANGE_SD)
    assert beyond > 0


def test_make_patients_refuses_bad_latents_directly(simulators):
    cov = Covariates.sample(2, np.random.default_rng(3)).as_array()
    for sim in simulators.values():
        d = sim.latent_dim
        low, high = sim.latent_bounds()
        inside = 0.5 * (low + high)
        assert sim.make_patients(cov[0], inside).z.shape == (1, d)
        for z, message in [(np.full(d, 1e6), r"latent z\[0\] = 1e\+06 is outside the fitted latent population"),
                           (np.full(d, np.nan), r"latent z\[0\] = nan is not finite"),
                           (np.zeros((2, 3)), rf"latent z must have shape \({d},\) \(one patient\), got \(2, 3\)")]:
            with pytest.raises(ValueError, match=refusal(message)):
                sim.make_patients(cov[0], z)
        batch = np.stack([inside, inside])
        batch[1, d - 1] = low[d - 1] - 1.0
        with pytest.raises(ValueError, match=refusal(rf"latent z\[1, {d - 1}\] = .* is outside")):
            sim.make_patients(cov, batch)
        with pytest.raises(ValueError, match=refusal(rf"latent z must have shape \(2, {d}\) \(2 patients\)")):
            sim.make_patients(cov, inside)
        assert sim.make_patients(cov, batch, check_range=False).z.shape == (2, d)  # drawn latents: shape only
        with pytest.raises(ValueError, match="not finite"):
            sim.make_patients(cov[0], np.full(d, np.inf), check_range=False)


@needs_weights
def test_latent_bounds_are_fixed_numbers_of_the_shipped_decoder():
    first, again = PKSimulator.from_pretrained("vancomycin"), PKSimulator.from_pretrained("vancomycin")
    for a, b in zip(first.latent_bounds(), again.latent_bounds()):
        np.testing.assert_array_equal(a, b)
    low, high = first.latent_bounds()
    # the population's patients lie well inside: 10,000 drawn latents
    z = first.sample_patients(10_000, np.random.default_rng(0)).z
    assert np.all(z > low) and np.all(z < high)
