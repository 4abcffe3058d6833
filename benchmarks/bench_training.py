"""Policy evaluation time and the share of PPO training time spent in the environment.

Parts 3 and 4 of ``benchmarks/bench_performance.py`` (run that; this module holds the
measurements).
"""

from __future__ import annotations

import time

import _timing  # noqa: F401 (first: sets one BLAS thread before numpy and torch are imported)
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from agents.baselines import SB3Policy, StandardDosingPolicy
from agents.evaluate import evaluate_policy
from agents.sb3_vec_env import NativeVecEnv


def policy_evaluation(env_id: str, policy_name: str, n_patients: int, num_envs: int) -> dict:
    """Seconds to evaluate a policy on ``n_patients`` seeded patients with ``agents.evaluate.evaluate_policy``
    (``num_envs`` patients per native vector env batch; bootstrap CIs included).

    ``policy_name``: ``"standard"`` (label dose / conventional regimen, numpy) or ``"ppo-mlp"`` (an
    untrained SB3 PPO ``MlpPolicy``, to include a network's inference cost).
    """
    if policy_name == "standard":
        policy = StandardDosingPolicy(env_id)
    elif policy_name == "ppo-mlp":
        policy = SB3Policy(PPO("MlpPolicy", make_vec_env(env_id, n_envs=1), seed=0, device="cpu"))
    else:
        raise ValueError(f"policy_name must be 'standard' or 'ppo-mlp', got {policy_name!r}")
    start = time.perf_counter()
    result = evaluate_policy(env_id, policy, n_patients=n_patients, num_envs=num_envs, n_bootstrap=200)
    seconds = time.perf_counter() - start
    return {"env_id": env_id, "policy": policy_name, "n_patients": n_patients, "num_envs": num_envs,
            "seconds": seconds, "patients_per_s": n_patients / seconds,
            "mean_return": result.metrics["return"].mean if "return" in result.metrics else float("nan")}


class TimedVecEnv(VecEnvWrapper):
    """Adds up the wall time spent inside the wrapped VecEnv (reset, step_async, step_wait)."""

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self):
        start = time.perf_counter()
        out = self.venv.reset()
        self.seconds += time.perf_counter() - start
        return out

    def step_async(self, actions) -> None:
        start = time.perf_counter()
        self.venv.step_async(actions)
        self.seconds += time.perf_counter() - start

    def step_wait(self):
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        return out


def ppo_env_share(env_id: str, adapter: str, n_envs: int, n_steps: int, rollouts: int) -> dict:
    """Wall time of ``PPO.learn`` for ``rollouts`` rollouts of ``n_envs x n_steps`` steps and the part spent
    inside the environment.

    ``adapter``: ``"dummy"`` (SB3's ``make_vec_env``: a DummyVecEnv of ``gym.make``'d single environments
    with Monitor) or ``"native"`` (``agents.sb3_vec_env.NativeVecEnv`` over the native vector env).
    Learner: SB3 defaults (MlpPolicy 64x64, 10 epochs, minibatch 64) on the CPU, one torch thread.
    """
    torch.set_num_threads(1)
    venv = make_vec_env(env_id, n_envs=n_envs, seed=0) if adapter == "dummy" else NativeVecEnv(env_id, n_envs)
    timed = TimedVecEnv(venv)
    model = PPO("MlpPolicy", timed, n_steps=n_steps, batch_size=64, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(total_timesteps=rollouts * n_envs * n_steps)
    total = time.perf_counter() - start
    timed.close()
    return {"env_id": env_id, "adapter": adapter, "n_envs": n_envs, "timesteps": rollouts * n_envs * n_steps,
            "total_s": total, "env_s": timed.seconds, "env_share": timed.seconds / total}

