"""Offline data: behaviour policies with exact probabilities, logging, Minari and NONMEM round trips.

Small seeded cohorts (a dozen vancomycin patients, four combination patients) keep the file fast;
every statistical check uses a fixed seed, so its outcome is fixed too.
"""

from __future__ import annotations

import json

import gymnasium as gym
import minari
import numpy as np
import pytest
from scipy import stats

import pk_envs  # noqa: F401
from agents.baselines import StandardDosingPolicy
from agents.offline.collect import collect_episodes, logged_action_prob, main, policy_infos
from agents.offline.minari_io import load_logged_episodes, write_minari_dataset
from agents.offline.nonmem_io import read_nonmem_histories, table_dosing_rules, write_nonmem_table
from agents.offline.policies import (
    ClinicianPolicy,
    GaussianPerturbedPolicy,
    SoftDiscretePolicy,
    UniformRandomPolicy,
    make_policy,
)
from vae_simulator.nonmem import read_table

VANCO, VANCO_D, VANCO_MO, VANCO_HARD = ("PKDose/Vancomycin-v0", "PKDose/Vancomycin-Discrete-v0",
                                        "PKDose/Vancomycin-MO-v0", "PKDose/Vancomycin-Hard-v0")
COMBO, COMBO_D = "PKDose/PaclitaxelCarboplatin-v0", "PKDose/PaclitaxelCarboplatin-Discrete-v0"
FIELDS = ("observations", "actions", "rewards", "objectives", "behaviour_prob", "lengths", "terminated", "seeds")


def assert_same_episodes(a, b) -> None:
    assert a.env_id == b.env_id and a.discrete == b.discrete
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert a.infos.keys() == b.infos.keys()
    for key in a.infos:
        np.testing.assert_array_equal(a.infos[key], b.infos[key], err_msg=key)
        assert a.infos[key].dtype == b.infos[key].dtype, key


@pytest.fixture(scope="module")
def vanco_logged():
    return collect_episodes(VANCO, ClinicianPolicy(VANCO), 12, seed=0, num_envs=5)


@pytest.fixture(scope="module")
def combo_logged():
    return collect_episodes(COMBO_D, ClinicianPolicy(COMBO_D), 4, seed=0, num_envs=4)


def states(env_id: str, n: int = 6, steps: int = 3):
    """Observations and infos after 0..steps clinician steps, for probability checks."""
    policy = ClinicianPolicy(env_id, seed=1)
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    obs, infos = envs.reset(seed=100)
    out = [(obs, infos)]
    for _ in range(steps):
        obs, _, _, _, infos = envs.step(policy(obs, infos))
        out.append((obs, infos))
    envs.close()
    return policy, out


# ---------------------------------------------------------------------------- probabilities


@pytest.mark.parametrize("env_id", [VANCO_D, COMBO_D])
def test_discrete_clinician_probabilities_sum_to_one_and_are_all_positive(env_id):
    policy, visited = states(env_id)
    for obs, infos in visited:
        p = policy.probabilities(obs, infos)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
        assert np.all(p >= policy.epsilon / p.shape[1] - 1e-15)
        actions = policy(obs, infos)
        np.testing.assert_array_equal(policy.action_prob(obs, infos, actions), p[np.arange(len(obs)), actions])


def test_continuous_densities_integrate_to_one_on_the_action_bounds():
    policy, visited = states(VANCO, n=4)
    grid = np.linspace(-1.0, 1.0, 4001)  # spacing 5e-4 against SDs >= 0.02 (action units)
    mixtures = 0
    for obs, infos in visited:
        _, means, _ = policy.components(obs, infos)
        mixtures += int(np.sum(np.abs(means[:, 0, 0] - means[:, 1, 0]) > 1e-9))
        for row in range(len(obs)):
            rows = {k: np.repeat(np.asarray(v)[row:row + 1], grid.size, axis=0) for k, v in infos.items()}
            density = policy.action_prob(np.repeat(obs[row:row + 1], grid.size, axis=0), rows, grid[:, None])
            assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-5)
    assert mixtures > 0  # some states were out of the window: the act / keep mixture was integrated too
    assert np.all(policy.action_prob(obs, infos, np.full((len(obs), 1), 1.5)) == 0.0)  # outside the bounds

    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    perturbed = GaussianPerturbedPolicy(StandardDosingPolicy(VANCO), 0.3, space)
    obs, infos = visited[0]
    one = {k: np.repeat(np.asarray(v)[:1], grid.size, axis=0) for k, v in infos.items()}
    obs_rows = np.repeat(obs[:1], grid.size, axis=0)
    assert np.trapezoid(perturbed.action_prob(obs_rows, one, grid[:, None]), grid) == pytest.approx(1.0, abs=1e-6)
    uniform = UniformRandomPolicy(space)
    np.testing.assert_allclose(uniform.action_prob(obs_rows, one, grid[:, None]), 0.5)


def test_combination_density_integrates_to_one_in_two_dimensions():
    policy, visited = states(COMBO, n=2, steps=2)
    grid = np.linspace(-1.0, 1.0, 401)  # spacing 0.005 against SDs of about 0.16 (action units)
    a0, a1 = np.meshgrid(grid, grid, indexing="ij")
    actions = np.stack([a0.ravel(), a1.ravel()], axis=1)
    obs, _ = visited[-1]
    for row in range(len(obs)):
        density = policy.action_prob(np.repeat(obs[row:row + 1], len(actions), axis=0), {}, actions)
        total = np.trapezoid(np.trapezoid(density.reshape(a0.shape), grid, axis=1), grid)
        assert total == pytest.approx(1.0, abs=1e-4)  # trapezoid error ~ h^2 at the truncation edges


def test_sampled_actions_follow_the_stated_distribution():
    """Seeded KS (continuous) and chi-square (discrete) tests against the policies' own probabilities."""
    policy, visited = states(VANCO)
    obs, infos = visited[2]
    _, means, _ = policy.components(obs, infos)
    row = int(np.argmax(np.abs(means[:, 0, 0] - means[:, 1, 0])))  # a mixture state
    n = 4000
    obs_rows = np.repeat(obs[row:row + 1], n, axis=0)
    info_rows = {k: np.repeat(np.asarray(v)[row:row + 1], n, axis=0) for k, v in infos.items()}
    samples = policy.sample(obs_rows, info_rows, np.random.default_rng(7))[:, 0]
    grid = np.linspace(-1.0, 1.0, 20001)
    density = policy.action_prob(obs_rows[:1].repeat(grid.size, 0),
                                 {k: v[:1].repeat(grid.size, 0) for k, v in info_rows.items()}, grid[:, None])
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    assert stats.kstest(samples, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    assert stats.kstest(samples, lambda x: np.interp(x - 0.05, grid, cdf)).pvalue < 1e-6  # the test has power against a 0.05 shift

    policy_d, visited_d = states(COMBO_D, n=3, steps=2)
    obs, _ = visited_d[-1]
    p = policy_d.probabilities(obs[:1], {})[0]
    draws = policy_d.sample(np.repeat(obs[:1], 20000, axis=0), {}, np.random.default_rng(3))
    counts = np.bincount(draws, minlength=p.size)
    big = p * 20000 >= 5  # every expected count is 5 or more here; smaller ones would be pooled
    observed, expected = counts[big], p[big] * 20000
    if not big.all():
        observed, expected = np.append(observed, counts[~big].sum()), np.append(expected, p[~big].sum() * 20000)
    assert stats.chisquare(observed, expected).pvalue > 0.01


def test_soft_discrete_wrapper_and_seeded_call():
    space = gym.spaces.Discrete(13)
    soft = SoftDiscretePolicy(StandardDosingPolicy(VANCO_D), 0.1, space, seed=4)
    _, visited = states(VANCO_D, steps=0)
    obs, infos = visited[0]
    p = soft.probabilities(obs, infos)
    greedy = StandardDosingPolicy(VANCO_D)(obs, infos)
    np.testing.assert_allclose(p[np.arange(len(obs)), greedy], 0.9 + 0.1 / 13)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    again = SoftDiscretePolicy(StandardDosingPolicy(VANCO_D), 0.1, space, seed=4)
    np.testing.assert_array_equal(soft(obs, infos), again(obs, infos))  # __call__: own seeded generator


# ---------------------------------------------------------------------------- logging


def test_logging_is_deterministic_batch_independent_and_consistent(vanco_logged):
    e = vanco_logged
    assert_same_episodes(e, collect_episodes(VANCO, ClinicianPolicy(VANCO), 12, seed=0, num_envs=5))
    assert_same_episodes(e, collect_episodes(VANCO, ClinicianPolicy(VANCO), 12, seed=0, num_envs=12))
    other = collect_episodes(VANCO, ClinicianPolicy(VANCO), 12, seed=50, num_envs=12)
    assert not np.array_equal(other.rewards, e.rewards)
    np.testing.assert_array_equal(e.seeds, np.arange(12))
    mask = e.step_mask
    np.testing.assert_allclose(e.rewards, e.objectives.sum(axis=2), atol=1e-12)  # w = (1, 1)
    # alignment: the step's dose is the logged action's, the policy inputs reproduce the probabilities
    np.testing.assert_allclose(e.infos["dose_mg"][mask], ((e.actions[..., 0] + 1.0) / 2.0 * 3000.0)[mask], rtol=1e-6)
    np.testing.assert_allclose(logged_action_prob(e, ClinicianPolicy(VANCO)), e.behaviour_prob, rtol=1e-12)
    standard = logged_action_prob(e, GaussianPerturbedPolicy(StandardDosingPolicy(VANCO), 0.2, gym.spaces.Box(-1, 1)))
    assert np.all(standard[mask] > 0) and not np.allclose(standard[mask], e.behaviour_prob[mask])
    assert policy_infos(e, 3)["standard_dose_mg"].shape == (12,)
    assert np.all(e.behaviour_prob[~mask] == 1.0) and np.all(e.rewards[~mask] == 0.0)
    # episode i is the single environment seeded i, replayed with the logged actions
    for i in (0, int(np.argmin(e.lengths))):
        env = gym.make(VANCO)
        obs, _ = env.reset(seed=int(e.seeds[i]))
        np.testing.assert_array_equal(obs, e.observations[i, 0])
        for t in range(e.lengths[i]):
            obs, reward, terminated, truncated, _ = env.step(e.actions[i, t])
            assert reward == pytest.approx(e.rewards[i, t], rel=1e-12)
        np.testing.assert_array_equal(obs, e.observations[i, e.lengths[i]])
        assert terminated == e.terminated[i] and (terminated or truncated)


def test_vector_reward_ids_log_the_scalarised_reward():
    scalar = collect_episodes(VANCO, ClinicianPolicy(VANCO), 4, seed=3)
    vector = collect_episodes(VANCO_MO, ClinicianPolicy(VANCO_MO), 4, seed=3)
    np.testing.assert_array_equal(vector.actions, scalar.actions)
    np.testing.assert_allclose(vector.rewards, scalar.rewards, atol=1e-12)
    np.testing.assert_allclose(vector.objectives, scalar.objectives, atol=1e-12)


def test_combination_logging(combo_logged):
    e = combo_logged
    assert e.discrete and e.actions.dtype == np.int64 and e.horizon <= 6
    assert {"paclitaxel_mg", "carboplatin_mg", "anc_nadir_observed", "covariates"} <= set(e.infos)
    again = collect_episodes(COMBO_D, ClinicianPolicy(COMBO_D), 4, seed=0, num_envs=3)
    assert_same_episodes(e, again)
    assert np.all((e.behaviour_prob > 0) & (e.behaviour_prob <= 1))


# ---------------------------------------------------------------------------- Minari


@pytest.mark.parametrize("which", ["vanco", "combo"])
def test_minari_round_trip(which, vanco_logged, combo_logged, tmp_path, monkeypatch):
    e, env_id = (vanco_logged, VANCO) if which == "vanco" else (combo_logged, COMBO_D)
    dataset_id = f"pkdose/test-{which}/clinician-v0"
    path = write_minari_dataset(e, dataset_id, tmp_path, policy_name="clinician", seed=0)
    assert path == tmp_path / dataset_id
    assert_same_episodes(e, load_logged_episodes(dataset_id, expected_env_id=env_id, data_dir=tmp_path))
    assert_same_episodes(e, load_logged_episodes(path))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    dataset = minari.load_dataset(dataset_id)
    assert dataset.total_episodes == e.n_episodes and dataset.total_steps == int(e.lengths.sum())
    assert dataset.recover_environment().spec.id == env_id
    episode = dataset[1]
    n = int(e.lengths[1])
    np.testing.assert_array_equal(episode.actions, e.actions[1, :n])
    np.testing.assert_array_equal(episode.rewards, e.rewards[1, :n])
    np.testing.assert_array_equal(episode.infos["behaviour_prob"][1:], e.behaviour_prob[1, :n])  # row t + 1: step t
    np.testing.assert_array_equal(episode.infos["objectives"][1:], e.objectives[1, :n])
    assert dataset.storage.metadata["pkdose"]["env_id"] == env_id
    assert [m["seed"] for m in dataset.storage.get_episode_metadata([0, 1])] == [0, 1]


def test_minari_errors(vanco_logged, tmp_path):
    path = write_minari_dataset(vanco_logged, "pkdose/V/c-v0", tmp_path)
    with pytest.raises(ValueError, match="already exists"):
        write_minari_dataset(vanco_logged, "pkdose/V/c-v0", tmp_path)
    write_minari_dataset(vanco_logged, "pkdose/V/c-v0", tmp_path, overwrite=True)
    with pytest.raises(ValueError, match=r"'PKDose/Vancomycin-v0', not of the expected 'PKDose/Phenytoin-v0'"):
        load_logged_episodes("pkdose/V/c-v0", expected_env_id="PKDose/Phenytoin-v0", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no Minari dataset 'pkdose/V/other-v0'"):
        load_logged_episodes("pkdose/V/other-v0", data_dir=tmp_path)
    episode_file = next((path / "data" / "3").glob("*.arrow"))
    episode_file.write_bytes(episode_file.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match=r"Minari dataset 'pkdose/V/c-v0' at .* is corrupted or unreadable: Arrow"):
        load_logged_episodes("pkdose/V/c-v0", data_dir=tmp_path)
    write_minari_dataset(vanco_logged, "pkdose/V/c-v0", tmp_path, overwrite=True)
    (path / "data" / "metadata.json").write_text('{"total_episodes": 12, "data_form')
    with pytest.raises(ValueError, match=r"corrupted or unreadable: JSONDecodeError"):
        load_logged_episodes(path)


# ---------------------------------------------------------------------------- NONMEM


def test_nonmem_round_trip_through_the_mipd_reader(tmp_path):
    e = collect_episodes(VANCO_HARD, ClinicianPolicy(VANCO_HARD), 6, seed=0)  # 25 % of samples missing
    table = write_nonmem_table(e, tmp_path / "vanco.csv")
    histories = read_nonmem_histories(table, VANCO_HARD)
    lloq = table_dosing_rules(VANCO_HARD).lloq_mg_l
    assert len(histories) == e.n_episodes
    for i, h in enumerate(histories):
        n = int(e.lengths[i])
        assert h.id == str(i + 1)
        np.testing.assert_allclose(h.doses_mg, e.infos["dose_mg"][i, :n], rtol=1e-9)
        seen = ~e.infos["sample_missing"][i, :n]
        times = (12.0 * np.arange(n)[:, None] + np.array([2.0, 12.0])[None, :])[seen]
        values = e.infos["samples_mg_l"][i, :n][seen]
        np.testing.assert_allclose(h.sample_times_h, times)
        np.testing.assert_array_equal(h.sample_blq, values < lloq)
        np.testing.assert_allclose(h.sample_conc_mg_l, np.where(values < lloq, lloq / 2, values), rtol=1e-9)
        np.testing.assert_allclose(h.covariates, e.infos["covariates"][i, 0], rtol=1e-9)  # BSA re-derived
    assert e.infos["sample_missing"][e.step_mask].mean() > 0.1  # missing samples were really left out


def test_nonmem_combination_table(combo_logged, tmp_path):
    e = combo_logged
    header, rows = read_table(write_nonmem_table(e, tmp_path / "combo.csv"))
    assert header == ("ID", "TIME", "AMT", "DUR", "DV", "EVID", "MDV", "CMT", "AGE", "SEX", "WT", "HT", "SCR", "CRCL")
    for i in range(e.n_episodes):
        mine = [r for r in rows if r.text("ID") == str(i + 1)]
        n = int(e.lengths[i])
        for cmt, key in ((1, "paclitaxel_mg"), (2, "carboplatin_mg")):
            doses = [r for r in mine if r.text("CMT") == str(cmt)]
            np.testing.assert_allclose([r.number("AMT") for r in doses], e.infos[key][i, :n], rtol=1e-9)
            np.testing.assert_allclose([r.number("TIME") for r in doses], 504.0 * np.arange(n))
        anc = [r.number("DV") for r in mine if r.text("CMT") == "3"]
        assert len(anc) == n + 1 and anc[0] == pytest.approx(float(e.observations[i, 0, 7]), rel=1e-6)
        tumour = [r for r in mine if r.text("CMT") == "5"]
        assert len(tumour) == int(e.infos["tumour_assessed"][i, :n].sum()) >= 1
        assert [r.number("TIME") for r in mine] == sorted(r.number("TIME") for r in mine)


# ---------------------------------------------------------------------------- bad input and the command


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_episodes must be an int >= 1, got 0"):
        collect_episodes(VANCO, ClinicianPolicy(VANCO), 0)
    with pytest.raises(ValueError, match="unknown environment id 'PKDose/Nope-v0'"):
        collect_episodes("PKDose/Nope-v0", ClinicianPolicy(VANCO), 2)
    with pytest.raises(ValueError, match="unknown policy 'greedy'; known policies: clinician"):
        make_policy("greedy", VANCO)
    with pytest.raises(ValueError, match="StochasticPolicy"):
        collect_episodes(VANCO, StandardDosingPolicy(VANCO), 2)
    with pytest.raises(ValueError, match="was made for PKDose/Vancomycin-v0 with {}, not for PKDose/Phenytoin-v0"):
        collect_episodes("PKDose/Phenytoin-v0", ClinicianPolicy(VANCO), 2)
    with pytest.raises(ValueError, match="act_prob"):
        ClinicianPolicy(VANCO, act_prob=0.0)


def test_command_line(tmp_path, capsys):
    args = ["--env", VANCO, "--episodes", "3", "--out", str(tmp_path), "--no-progress", "--num-envs", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pkdose/Vancomycin/clinician-v0" in out and "nonmem.csv" in out
    assert (tmp_path / "pkdose/Vancomycin/clinician-v0/nonmem.csv").is_file()
    assert load_logged_episodes("pkdose/Vancomycin/clinician-v0", VANCO, tmp_path).n_episodes == 3
    for bad, message in ((args, "already exists"), (["--env", "PKDose/Nope-v0"] + args[2:], "unknown environment id"),
                         (args[:3] + ["0"] + args[4:], "--episodes must be an int >= 1, got 0"),
                         (args + ["--policy", "greedy", "--overwrite"], "unknown policy 'greedy'"),
                         (args + ["--env-kwargs", "[1]", "--overwrite"], "must be a JSON object")):
        with pytest.raises(SystemExit):
            main(bad)
        assert message in capsys.readouterr().err
    assert main(args + ["--overwrite", "--env-kwargs", json.dumps({"missing_prob": 0.5})]) == 0
