"""Log episodes of a PKDose environment under a stochastic behaviour policy, and the command that writes them.

:func:`collect_episodes` runs ``n_episodes`` virtual patients once each, episode ``i`` as the
sub-environment seeded ``seed + i`` of ``gym.make_vec(env_id, vectorization_mode=
"vector_entry_point")`` (the seeding of :mod:`agents.evaluate`: batches of ``num_envs`` are reset
with explicit seeds and stepped until each sub-environment's first episode ends; later steps,
the ``NEXT_STEP`` autoreset, are ignored). The policy draws each episode's actions from that
episode's own stream, ``np.random.default_rng([policy.seed, seed + i])`` (inversion of
uniforms, :meth:`StochasticPolicy.sample_from_uniforms`), so the arrays depend on the seeds only,
not on ``num_envs``.

Logged per step (:class:`~agents.offline.episodes.LoggedEpisodes`): observation, action, the
scalar reward, ``info["objectives"]``, the behaviour probability of the action
(``policy.action_prob``) and the infos below. ``-MO`` ids (vector reward) are accepted: the
logged reward is then the scalarised ``w . objectives`` with the environment's
``reward_weights`` (default ``(1, 1)``, the scalar ids' reward); the objective vector is kept.

| infos key | ids | alignment | meaning |
|---|---|---|---|
| ``standard_dose_mg`` | single drug | policy input | label dose, mg per interval |
| ``covariates`` | all | policy input | AGE y, SEX, WT kg, HT cm, BSA m2, SCR mg/dL, CRCL mL/min |
| ``z`` / ``z_paclitaxel``, ``z_carboplatin`` | single / combination | policy input | true patient latent(s) |
| ``dose_mg`` | single drug | step outcome | dose given, mg |
| ``samples_mg_l``, ``sample_missing`` | single drug | step outcome | ``(M,)`` noisy assays at the monitoring times (mg/L; 0 where missing), missing flags |
| ``exposure``, ``efficacy``, ``toxicity``, ``event`` | single drug | step outcome | true exposure (target unit), objectives' parts, serious event |
| ``paclitaxel_mg_m2``, ``carboplatin_auc``, ``paclitaxel_mg``, ``carboplatin_mg``, ``dose_limited`` | combination | step outcome | doses (mg/m2, mg*min/mL, mg) |
| ``anc_nadir_observed``, ``neutropenia_grade``, ``grade4_days`` | combination | step outcome | observed ANC nadir (1e9/L), worst grade, days < 0.5 |
| ``tumour_size_mm``, ``tumour_assessed``, ``recist`` | combination | step outcome | SLD at the cycle's end (mm), RECIST assessment and code |

"Policy input" keys at step ``t`` are what the environment reported with observation ``t`` (what a
policy saw when choosing action ``t``; they are patient constants); "step outcome" keys are from
the info returned by step ``t``. :func:`policy_infos` gives a target policy its inputs and
:func:`logged_action_prob` a policy's probabilities of the logged actions (OPE's ``target_prob``).

Command (writes a Minari dataset and a NONMEM-style table)::

    python -m agents.offline.collect --env PKDose/Vancomycin-v0 --episodes 1000 --seed 0 --out data/offline
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from agents.baselines import check_env_id
from agents.offline.env_facts import check_json_kwargs, env_facts
from agents.offline.episodes import POLICY_INPUT_KEYS, LoggedEpisodes, info_keys
from agents.offline.minari_io import dataset_dir, write_minari_dataset
from agents.offline.nonmem_io import write_nonmem_table
from agents.offline.policies import POLICY_NAMES, StochasticPolicy, make_policy


def policy_infos(episodes: LoggedEpisodes, t: int) -> dict[str, np.ndarray]:
    """The infos a policy saw before action ``t`` of every episode: ``{key: (n, ...)}`` (policy-input keys)."""
    if not 0 <= t < episodes.horizon:
        raise ValueError(f"step t must lie in [0, {episodes.horizon - 1}], got {t!r}")
    return {key: episodes.infos[key][:, t] for key in POLICY_INPUT_KEYS[True] + POLICY_INPUT_KEYS[False]
            if key in episodes.infos}


def logged_action_prob(episodes: LoggedEpisodes, policy: StochasticPolicy) -> np.ndarray:
    """``(n, T)`` probability (discrete) or density (continuous) of every logged action under ``policy``.

    The ``target_prob`` an OPE estimator needs for a target policy (and, for the behaviour policy,
    ``episodes.behaviour_prob`` again); padded steps get 1, as ``behaviour_prob``.
    """
    out = np.ones(episodes.rewards.shape)
    mask = episodes.step_mask
    for t in range(episodes.horizon):
        live = mask[:, t]
        prob = policy.action_prob(episodes.observations[live, t],
                                  {key: value[live] for key, value in policy_infos(episodes, t).items()},
                                  episodes.actions[live, t])
        out[live, t] = prob
    return out


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def collect_episodes(env_id: str, policy: StochasticPolicy, n_episodes: int, seed: int = 0, num_envs: int = 250,
                     env_kwargs: dict | None = None, progress: bool = False) -> LoggedEpisodes:
    """Log ``n_episodes`` seeded episodes of ``env_id`` under ``policy`` (see the module doc).

    Args:
        env_id: a PKDose id (``pk_envs.ALL_IDS``).
        policy: a :class:`~agents.offline.policies.StochasticPolicy` (it must give exact action
            probabilities and sample from uniforms), e.g. ``ClinicianPolicy(env_id)``.
        n_episodes: number of episodes (patients), >= 1; episode ``i`` is seeded ``seed + i``.
        seed: first environment seed, >= 0.
        num_envs: vector-env batch size (>= 1; capped at ``n_episodes``); results do not depend on it.
        env_kwargs: constructor arguments of the environment (JSON-serialisable, e.g. ``{"missing_prob": 0.25}``).
        progress: show a tqdm progress bar over episodes.

    Raises:
        ValueError: unknown id, bad sizes or seeds, a policy without exact probabilities, actions
            of the wrong shape or a behaviour probability that is not > 0.
    """
    check_env_id(env_id)
    n_episodes, seed, num_envs = (_check_int("n_episodes", n_episodes, 1), _check_int("seed", seed, 0),
                                  _check_int("num_envs", num_envs, 1))
    if not isinstance(policy, StochasticPolicy):
        raise ValueError(f"policy must be a StochasticPolicy with exact action probabilities (agents.offline."  # noqa: TRY004 (project convention)
                         f"policies, e.g. ClinicianPolicy), got {policy!r}")
    env_kwargs = check_json_kwargs(env_kwargs)
    facts = env_facts(env_id, env_kwargs)
    made_for = getattr(policy, "facts", None)  # policies built for one configuration (ClinicianPolicy)
    if made_for is not None and (made_for.env_id, made_for.env_kwargs) != (env_id, facts.env_kwargs):
        raise ValueError(f"{policy!r} was made for {made_for.env_id} with {dict(made_for.env_kwargs)}, not for "
                         f"{env_id} with {env_kwargs}")
    n_envs = min(num_envs, n_episodes)
    envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                        autoreset_mode=AutoresetMode.NEXT_STEP, **env_kwargs)
    batches = []
    try:
        with tqdm(total=n_episodes, unit="episode", desc=f"logging {env_id}", disable=not progress) as bar:
            for start in range(0, n_episodes, n_envs):
                batches.append(_run_batch(envs, policy, [seed + start + i for i in range(n_envs)], facts))
                bar.update(min(n_envs, n_episodes - start))
    finally:
        envs.close()
    return _assemble(env_id, batches, n_episodes, facts.discrete)


def _run_batch(envs: gym.vector.VectorEnv, policy: StochasticPolicy, seeds: list[int], facts) -> dict[str, Any]:
    """First episode of each sub-environment (seeded ``seeds``) -> per-step arrays ``(n, T_batch, ...)``."""
    n = envs.num_envs
    rngs = [np.random.default_rng([policy.seed, s]) for s in seeds]
    observations, infos = envs.reset(seed=list(seeds))
    input_keys, outcome_keys = info_keys(facts.combination)
    weights = np.asarray(facts.reward_weights)
    done, lengths, terminated = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, bool)
    steps: dict[str, list[np.ndarray]] = {"observations": [observations]}

    def record(key: str, value: np.ndarray) -> None:
        steps.setdefault(key, []).append(np.asarray(value).copy())

    while not done.all():
        uniforms = np.full((n, policy.n_uniforms), 0.5)  # finished rows: any valid action (it is ignored)
        for i in np.flatnonzero(~done):
            uniforms[i] = rngs[i].random(policy.n_uniforms)
        actions = np.asarray(policy.sample_from_uniforms(observations, infos, uniforms))
        if actions.shape != envs.action_space.shape:
            raise ValueError(f"policy returned actions of shape {actions.shape}; {n} environments need "
                             f"{envs.action_space.shape} (single action space {envs.single_action_space})")
        prob = np.asarray(policy.action_prob(observations, infos, actions), dtype=float)
        live = ~done
        bad = live & ~(np.isfinite(prob) & (prob > 0))
        if bad.any():
            raise ValueError(f"{policy!r} gave its own action {actions[bad][0]!r} the probability "
                             f"{prob[bad][0]!r}; a behaviour policy needs probabilities > 0")
        record("actions", actions)
        record("behaviour_prob", prob)
        for key in input_keys:
            record(key, infos[key])
        observations, rewards, term, trunc, infos = envs.step(actions)
        objectives = np.asarray(infos["objectives"], dtype=float)
        rewards = np.asarray(rewards, dtype=float)
        record("rewards", objectives @ weights if rewards.ndim == 2 else rewards)
        record("objectives", objectives)
        for key in outcome_keys:
            record(key, infos[key])
        record("observations", observations)
        ending = live & (np.asarray(term) | np.asarray(trunc))
        lengths[ending] = len(steps["actions"])
        terminated[ending] = np.asarray(term)[ending]
        done |= ending
    out = {key: np.stack(values, axis=1) for key, values in steps.items()}
    out.update(lengths=lengths, terminated=terminated, seeds=np.asarray(seeds, dtype=np.int64))
    return out


def _assemble(env_id: str, batches: list[dict[str, Any]], n_episodes: int, discrete: bool) -> LoggedEpisodes:
    """Batches -> one LoggedEpisodes: the first ``n_episodes`` rows, padded to the longest episode."""
    horizon = max(b["rewards"].shape[1] for b in batches)

    def padded(key: str, fill: float = 0.0, extra: int = 0) -> np.ndarray:
        parts = []
        for b in batches:
            value = b[key]
            widths = [(0, 0), (0, horizon + extra - value.shape[1])] + [(0, 0)] * (value.ndim - 2)
            parts.append(np.pad(value, widths, constant_values=fill))
        return np.concatenate(parts)[:n_episodes]

    lengths = np.concatenate([b["lengths"] for b in batches])[:n_episodes]
    step_mask = np.arange(horizon)[None, :] < lengths[:, None]
    obs_mask = np.arange(horizon + 1)[None, :] <= lengths[:, None]

    def masked(value: np.ndarray, mask: np.ndarray, fill: float = 0.0) -> np.ndarray:
        shape = mask.shape + (1,) * (value.ndim - 2)
        return np.where(mask.reshape(shape), value, np.asarray(fill, dtype=value.dtype))

    fixed = {"observations", "actions", "behaviour_prob", "rewards", "objectives", "lengths", "terminated", "seeds"}
    infos = {key: masked(padded(key), step_mask) for key in batches[0] if key not in fixed}
    actions = masked(padded("actions"), step_mask)
    return LoggedEpisodes(
        env_id=env_id,
        observations=masked(padded("observations", extra=1), obs_mask).astype(np.float32),
        actions=actions.astype(np.int64) if discrete else actions.astype(np.float32),
        rewards=masked(padded("rewards"), step_mask).astype(np.float64),
        objectives=masked(padded("objectives"), step_mask).astype(np.float64),
        behaviour_prob=masked(padded("behaviour_prob", fill=1.0), step_mask, fill=1.0).astype(np.float64),
        lengths=lengths.astype(np.int64),
        terminated=np.concatenate([b["terminated"] for b in batches])[:n_episodes],
        seeds=np.concatenate([b["seeds"] for b in batches])[:n_episodes],
        infos=infos, discrete=discrete)


# ---------------------------------------------------------------------------- command line


def default_dataset_id(env_id: str, policy_name: str) -> str:
    """``pkdose/<env name>/<policy>-v<env version>``, e.g. ``pkdose/Vancomycin-Discrete/clinician-v0``."""
    spec = gym.spec(env_id)
    return f"pkdose/{spec.name}/{policy_name}-v{spec.version or 0}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pkdose collect", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Log N episodes of a PKDose environment under a stochastic behaviour policy with exact\n"
                    "action probabilities, and write them as a Minari dataset (arrow) and a NONMEM-style table.",
        epilog="Writes <out>/<dataset-id>/data/ (Minari; load with minari.load_dataset after setting\n"
               "MINARI_DATASETS_PATH=<out>, or agents.offline.minari_io.load_logged_episodes) and\n"
               "<out>/<dataset-id>/nonmem.csv (one row per dose and observed sample).\n\n"
               "Example:\n  python -m agents.offline.collect --env PKDose/Vancomycin-v0 --episodes 1000 --seed 0 "
               "--out data/offline")
    parser.add_argument("--env", required=True, help="PKDose environment id, e.g. PKDose/Vancomycin-v0")
    parser.add_argument("--episodes", type=int, required=True, help="number of episodes (patients), >= 1")
    parser.add_argument("--seed", type=int, default=0, help="first environment seed; episode i is seed + i (default 0)")
    parser.add_argument("--out", required=True, help="data directory (the Minari datasets root)")
    parser.add_argument("--policy", default="clinician", help=f"behaviour policy: {', '.join(POLICY_NAMES)} "
                                                               "(default clinician)")
    parser.add_argument("--policy-seed", type=int, default=0, help="seed of the policy's random streams (default 0)")
    parser.add_argument("--dataset-id", default=None,
                        help="Minari dataset id (default pkdose/<env name>/<policy>-v<env version>)")
    parser.add_argument("--env-kwargs", default=None, help='environment arguments as JSON, e.g. \'{"missing_prob": 0.25}\'')
    parser.add_argument("--num-envs", type=int, default=250, help="vector-env batch size (default 250)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset of the same id")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
        if not isinstance(env_kwargs, dict):
            raise ValueError(f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}")  # noqa: TRY004 (project convention)
        check_env_id(args.env)
        _check_int("--episodes", args.episodes, 1)
        policy = make_policy(args.policy, args.env, seed=args.policy_seed, env_kwargs=env_kwargs)
        dataset_id = args.dataset_id or default_dataset_id(args.env, args.policy)
        target = dataset_dir(dataset_id, args.out)
        if target.exists() and not args.overwrite:
            raise ValueError(f"dataset {dataset_id!r} already exists at {target}; pass --overwrite to replace it "
                             f"or choose another --dataset-id")
        episodes = collect_episodes(args.env, policy, args.episodes, seed=args.seed, num_envs=args.num_envs,
                                    env_kwargs=env_kwargs, progress=not args.no_progress)
        path = write_minari_dataset(episodes, dataset_id, args.out, policy_name=repr(policy), seed=args.seed,
                                    env_kwargs=env_kwargs, overwrite=args.overwrite,
                                    progress=not args.no_progress)
        table = write_nonmem_table(episodes, path / "nonmem.csv")
    except (ValueError, json.JSONDecodeError) as exc:
        parser.error(str(exc))
    steps = int(episodes.lengths.sum())
    print(f"{episodes.n_episodes} episodes ({steps} steps) of {args.env} under {policy!r}\n"
          f"  Minari dataset {dataset_id!r}: {path / 'data'}\n  NONMEM table: {table}\n"
          f"  mean return {episodes.returns().mean():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
