"""Warm-start PPO from a teacher policy: behaviour cloning of its actions, its discounted returns for the value head.

Reinforcement learning from scratch on the combination's sparse endpoints (a response or a serious
adverse event, each once per patient) settles in poor corners (docs/combination_v1.md); started from
a good policy it has something to improve. ``RunConfig.warm_start = "informed:LAMBDA"`` (``pkdose
train --warm-start informed:0.2``) does, before the first PPO update:

1. fit the informed-regimen teacher (:func:`agents.informed_regimen.fit_informed_regimens`, two
   decisions, trade-off ``LAMBDA``) on its own training patients;
2. run it on :data:`DEMONSTRATION_PATIENTS` patients (seeds from :data:`DEMONSTRATION_SEED`, disjoint
   from every evaluation cohort), recording observations, actions and the discounted return-to-go of
   the scalar training reward (the run's ``reward_weights`` and env options);
3. fit the policy's action mean to the teacher's actions and its value head to those returns (mean
   squared errors, Adam, ``epochs`` passes), then set the action noise to ``action_std``.

The teacher is seen through the Gymnasium API only, like every policy of :mod:`agents.baselines`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.baselines import Policy, reset_policy

DEMONSTRATION_SEED = 5_000_000
DEMONSTRATION_PATIENTS = 12_000
WARM_START_KINDS = ("informed",)
WARM_START_ENV_ID = "PKDose/PaclitaxelCarboplatin-v1"
#: PPO fine-tuning a cloned policy: a tenth of the learning rate and half the epochs of agents.config's
#: combination settings (at those, the clone's validation return fell from 0.36 to 0.32 in 250k steps)
WARM_START_HYPERPARAMETERS = {"learning_rate": 3e-5, "n_epochs": 5}


def parse_warm_start(text: str | None) -> tuple[str, float] | None:
    """``"informed:0.2"`` -> ``("informed", 0.2)``; ValueError naming the problem."""
    if text is None:
        return None
    kind, _, value = str(text).partition(":")
    try:
        lam = float(value)
    except ValueError:
        lam = float("nan")
    if kind not in WARM_START_KINDS or not np.isfinite(lam) or lam < 0:
        raise ValueError(f"warm_start must be 'informed:LAMBDA' with LAMBDA >= 0 (the informed-regimen policy's "
                         f"trade-off), got {text!r}")
    return kind, lam


def collect_demonstrations(env_id: str, teacher: Policy, n_patients: int, env_kwargs: dict | None = None,
                           gamma: float = 0.99, seed: int = DEMONSTRATION_SEED,
                           batch: int = 1000) -> dict[str, np.ndarray]:
    """``obs`` ``(T, D)``, ``actions`` ``(T, A)`` and discounted ``returns`` ``(T,)`` of the teacher's first
    episode on patients ``seed + i``: every step taken, by batch of ``batch`` patients, within a batch
    cycle by cycle (all patients' first cycles, then their second ones, ...)."""
    if n_patients < 1 or not 0 < gamma <= 1:
        raise ValueError(f"n_patients must be >= 1 and gamma in (0, 1], got {n_patients} and {gamma}")
    envs = gym.make_vec(env_id, num_envs=min(batch, n_patients), vectorization_mode="vector_entry_point",
                        **(env_kwargs or {}))
    out: dict[str, list[np.ndarray]] = {"obs": [], "actions": [], "returns": []}
    try:
        for first in range(0, n_patients, envs.num_envs):
            n = envs.num_envs
            obs, infos = envs.reset(seed=[seed + min(first + i, n_patients - 1) for i in range(n)])
            reset_policy(teacher, n)
            keep = np.arange(n) < n_patients - first
            done = np.zeros(n, bool)
            steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
            while not done.all():
                actions = np.asarray(teacher(obs, infos), dtype=np.float32)
                live = ~done & keep
                next_obs, rewards, terminated, truncated, infos = envs.step(actions)
                steps.append((obs, actions, np.where(done, 0.0, np.asarray(rewards, dtype=float)), live))
                done |= terminated | truncated
                obs = next_obs
            to_go = np.zeros(n)
            returns = []
            for _, _, rewards, _ in reversed(steps):
                to_go = rewards + gamma * to_go
                returns.append(to_go.copy())
            for (o, a, _, live), g in zip(steps, reversed(returns)):
                out["obs"].append(o[live])
                out["actions"].append(a[live])
                out["returns"].append(g[live])
    finally:
        envs.close()
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def behaviour_clone(model: Any, demonstrations: dict[str, np.ndarray], epochs: int = 30, batch_size: int = 512,
                    learning_rate: float = 1e-3, action_std: float = 0.1, seed: int = 0) -> list[float]:
    """Fit an SB3 PPO ``model``'s action mean and value to ``demonstrations`` in place; returns the mean loss
    per epoch. The actions are the env's (in [-1, 1]); ``action_std`` is the Gaussian's SD afterwards."""
    policy = model.policy
    if not hasattr(policy, "log_std"):
        raise ValueError(f"behaviour_clone needs a Gaussian (continuous-action) PPO policy, got {type(policy).__name__}")
    if epochs < 1 or batch_size < 1 or not learning_rate > 0 or not action_std > 0:
        raise ValueError(f"epochs and batch_size must be >= 1, learning_rate and action_std > 0, got {epochs}, "
                         f"{batch_size}, {learning_rate}, {action_std}")
    generator = torch.Generator().manual_seed(seed)
    obs, actions, returns = (torch.as_tensor(demonstrations[k]) for k in ("obs", "actions", "returns"))
    optimiser = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    losses = []
    policy.set_training_mode(True)
    for _ in range(epochs):
        order, total = torch.randperm(len(obs), generator=generator), 0.0
        for start in range(0, len(obs), batch_size):
            rows = order[start:start + batch_size]
            mean = policy.get_distribution(obs[rows]).distribution.mean
            value = policy.predict_values(obs[rows]).squeeze(-1)
            loss = ((mean - actions[rows]) ** 2).sum(-1).mean() + ((value - returns[rows]) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        losses.append(total / len(obs))
    with torch.no_grad():
        policy.log_std.fill_(float(np.log(action_std)))
    policy.set_training_mode(False)
    return losses


def warm_start(model: Any, env_id: str, spec: str, env_kwargs: dict | None, gamma: float, seed: int,
               progress: bool = False) -> list[float]:
    """Apply ``RunConfig.warm_start`` ``spec`` to a fresh PPO ``model`` (see the module docstring)."""
    from agents.informed_regimen import fit_informed_regimens

    _, lam = parse_warm_start(spec)
    teacher_kwargs = {k: v for k, v in (env_kwargs or {}).items() if k not in ("reward_weights", "reward_objectives")}
    teacher = fit_informed_regimens([lam], env_kwargs=teacher_kwargs, progress=progress, env_id=env_id)[lam]
    demonstrations = collect_demonstrations(env_id, teacher, DEMONSTRATION_PATIENTS, env_kwargs, gamma)
    return behaviour_clone(model, demonstrations, seed=seed)
