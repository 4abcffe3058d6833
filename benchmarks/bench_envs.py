"""Environment throughput: single environments, the native vector environment and SyncVectorEnv.

Part 2 and the scaling note of ``benchmarks/bench_performance.py`` (run that; this module holds
the measurements). A *patient-step* is one sub-environment's ``step``: a vector environment of
``N`` patients does ``N`` per call. Steps that end an episode are followed by Gymnasium's
``NEXT_STEP`` autoreset step, counted like any other, so the rates include the cost of drawing
new patients, as an RL training loop sees it.
"""

from __future__ import annotations

import time
import warnings

import _timing  # first: sets one BLAS thread before numpy is imported
import gymnasium as gym
import numpy as np

import pk_envs
from pk_envs._common import batch_invariant
from pk_envs.single_drug_core import load_simulator

#: The base id of each drug family; the vector measurements run these.
BASE_IDS = ("PKDose/Vancomycin-v0", "PKDose/Phenytoin-v0", "PKDose/Mycophenolate-v0", "PKDose/Theophylline-v0",
            "PKDose/Pembrolizumab-v0", "PKDose/PaclitaxelCarboplatin-v0")
ACTION_BATCHES = 4  # distinct random action batches, cycled

gym.register_envs(pk_envs)


def episode_steps(env_id: str) -> int:
    """``max_episode_steps`` of a registered id."""
    return int(gym.spec(env_id).max_episode_steps)


def _actions(space: gym.Space, count: int, seed: int = 0) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(count)]


def single_env_rate(env_id: str, raw: bool, min_seconds: float) -> float:
    """Steps per second of one environment (``raw``: ``env.unwrapped``, else the ``gym.make`` wrapper chain:
    PassiveEnvChecker, OrderEnforcing, TimeLimit); resets after an episode's end are timed too."""
    env = gym.make(env_id)
    target = env.unwrapped if raw else env
    actions = _actions(env.action_space, 64)
    target.reset(seed=0)
    state = {"i": 0}

    def step() -> int:
        _, _, terminated, truncated, _ = target.step(actions[state["i"] % len(actions)])
        state["i"] += 1
        if terminated or truncated:  # the raw env truncates at its course length itself
            target.reset()
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the passive checker's one-off notes
        step()
        return _timing.rate(step, min_calls=episode_steps(env_id) + 1, min_seconds=min_seconds)


def make_vector(env_id: str, n: int, mode: str) -> gym.vector.VectorEnv:
    """``mode`` "native" (``vector_entry_point``) or "sync" (SyncVectorEnv over ``gym.make``'d envs)."""
    vectorization = "vector_entry_point" if mode == "native" else "sync"
    return gym.make_vec(env_id, num_envs=n, vectorization_mode=vectorization)


def vector_rate(env_id: str, n: int, mode: str, steps: int | None = None) -> dict:
    """Patient-steps per second of a vector environment of ``n`` patients over ``steps`` calls after a reset
    (default: one whole episode plus its autoreset step, so every patient is redrawn once).

    ``patient_steps_per_s`` counts all calls; ``course_steps_per_s`` leaves out the last call when it is the
    course-end autoreset (every patient redrawn at once), showing what the redraws cost.
    """
    horizon = episode_steps(env_id)
    steps = horizon + 1 if steps is None else steps
    start = time.perf_counter()
    envs = make_vector(env_id, n, mode)
    envs.reset(seed=0)
    setup_s = time.perf_counter() - start
    batches = [np.stack(a) if n > 1 or envs.single_action_space.shape else np.asarray(a)
               for a in (_actions(envs.single_action_space, n, seed) for seed in range(ACTION_BATCHES))]
    seconds = []
    for i in range(steps):
        start = time.perf_counter()
        envs.step(batches[i % ACTION_BATCHES])
        seconds.append(time.perf_counter() - start)
    envs.close()
    course = seconds[:horizon] if steps > horizon else seconds
    return {"env_id": env_id, "mode": mode, "n": n, "steps": steps, "setup_s": setup_s,
            "patient_steps_per_s": n * steps / sum(seconds), "course_steps_per_s": n * len(course) / sum(course)}


def vector_peak_mib(env_id: str, n: int, mode: str, steps: int = 2) -> float:
    """Traced peak memory (MiB) of making a vector environment, resetting it and taking ``steps`` steps."""

    def run():
        envs = make_vector(env_id, n, mode)
        envs.reset(seed=0)
        actions = np.stack(_actions(envs.single_action_space, n))
        for _ in range(steps):
            envs.step(actions)
        envs.close()

    return _timing.traced_peak_mib(run)


def decoder_drug_scaling(n: int, drugs: tuple[str, ...], repeats: int) -> list[dict]:
    """Seconds per decoder step of ``n`` patients with the first 1, 2, ... of ``drugs`` stepped together
    (the environments' fast path; what a k-drug environment pays for its PK before any PD)."""
    rng = np.random.default_rng(0)
    steppers = [batch_invariant(load_simulator(d)) for d in drugs]
    sims = [load_simulator(d) for d in drugs]
    patients = [sim.sample_patients(n, rng) for sim in sims]
    started = [s.start(p.covariates, p.z) for s, p in zip(steppers, patients)]
    doses = [rng.uniform(*sim.dose_range_mg, n) for sim in sims]
    out = []
    for k in range(1, len(drugs) + 1):
        def step(k=k):
            for stepper, (state, constants), dose in zip(steppers[:k], started[:k], doses[:k]):
                stepper.step(state, constants, dose)
        out.append({"drugs": k, "names": ", ".join(drugs[:k]), "step_s": _timing.best_time(step, repeats)})
    return out


def episode_length_scaling(env_id: str, n: int, lengths: tuple[int, ...]) -> list[dict]:
    """Seconds per whole episode (reset + ``length`` steps) of ``n`` patients in the native vector env."""
    out = []
    for length in lengths:
        envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", n_intervals=length)
        actions = np.stack(_actions(envs.single_action_space, n))
        start = time.perf_counter()
        envs.reset(seed=0)
        for _ in range(length):
            envs.step(actions)
        out.append({"length": length, "episode_s": time.perf_counter() - start})
        envs.close()
    return out

