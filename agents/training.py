"""Train a PPO, SAC or RecurrentPPO dosing policy on a PKDose id, with TensorBoard logs, evaluation and checkpoints.

A run directory holds everything of one run, so a killed run resumes from it::

    <run_dir>/run.json                 the RunConfig (algo, env id, budget, seed, weights, hyperparameters)
    <run_dir>/tensorboard/<ALGO>_1/    TensorBoard events (SB3 curves + dosing/ and eval/ metrics)
    <run_dir>/checkpoints/step_<n>.*   periodic checkpoints (agent .zip + .json sidecar [+ .replay.npz])
    <run_dir>/best_model.*             the best policy on the validation cohort
    <run_dir>/final_model.*            the policy at the end of training
    <run_dir>/evaluations.npz          validation return over training

``resume_training(run_dir)`` loads the newest checkpoint (model, optimiser state, SAC replay
buffer, step count) and trains on to the configured budget in the same TensorBoard run. The steps
taken after the last checkpoint are re-run, so nothing recorded is lost or counted twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecMonitor

import pk_envs
from agents.baselines import check_env_id
from agents.callbacks import CheckpointEvery, CohortEvalCallback, DosingMetricsCallback
from agents.checkpoints import ALGORITHM_CLASSES, load_agent, save_agent
from agents.config import DEFAULT_N_ENVS, POLICY_NAMES, check_algorithm, env_family, hyperparameters
from agents.sb3_vec_env import NativeVecEnv
from agents.warm_start import WARM_START_ENV_ID, WARM_START_HYPERPARAMETERS, parse_warm_start, warm_start

CHECKPOINTS_KEPT = 2


def parse_reward_weights(text: str | list | tuple | None) -> tuple[float, float] | None:
    """``"1,0.5"`` or a pair -> ``(efficacy weight, toxicity weight)``; ValueError naming the problem."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        weights = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"reward weights must be numbers, got {text!r}") from None
    if len(weights) != 2:
        raise ValueError(f"reward weights must be 2 numbers (efficacy, toxicity), got {len(weights)}: {text!r}")
    if not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
        raise ValueError(f"reward weights must be finite, >= 0 and not both 0, got {text!r}")
    return weights  # type: ignore[return-value]


@dataclass
class RunConfig:
    """Everything that defines a training run (written to ``run.json``).

    Attributes:
        algo: ``"ppo"``, ``"sac"`` or ``"recurrent_ppo"`` (sb3-contrib's RecurrentPPO, an LSTM policy).
        env_id: a scalar-reward PKDose id (not ``-MO``).
        total_timesteps: environment steps (dosing intervals over all patients) to train for.
        seed: seed of the training patients (sub-environment ``i`` gets ``seed + i``) and the networks.
        n_envs: patients simulated in parallel (default per algorithm).
        reward_weights: ``(efficacy, toxicity)`` weights of the scalar reward (None: the env's default 1, 1).
        eval_freq: steps between validation-cohort evaluations (0: none).
        eval_patients: validation cohort size.
        checkpoint_freq: steps between checkpoints (0: none).
        hyperparameters: SB3 constructor arguments (default: :mod:`agents.config`).
        env_options: further environment constructor arguments (JSON values); ``PKDose/Custom-v0``
            needs ``weights`` (a table model's manifest) and ``target``.
        warm_start: ``"informed:LAMBDA"``: PPO on ``PKDose/PaclitaxelCarboplatin-v1`` starts from a
            behaviour clone of the informed-regimen policy (:mod:`agents.warm_start`) and fine-tunes with
            its gentler defaults (``WARM_START_HYPERPARAMETERS``); None: from scratch.
    """

    algo: str = "ppo"
    env_id: str = "PKDose/Vancomycin-v0"
    total_timesteps: int = 200_000
    seed: int = 0
    n_envs: int | None = None
    reward_weights: tuple[float, float] | None = None
    eval_freq: int = 50_000
    eval_patients: int = 200
    checkpoint_freq: int = 50_000
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    env_options: dict[str, Any] = field(default_factory=dict)
    warm_start: str | None = None

    def __post_init__(self) -> None:
        self.algo = check_algorithm(self.algo)
        check_env_id(self.env_id)
        if not isinstance(self.env_options, dict) or "reward_weights" in self.env_options:
            raise ValueError(f"env_options must be a dict of constructor arguments other than reward_weights "
                             f"(use reward_weights), got {self.env_options!r}")
        if self.env_id in pk_envs.CUSTOM_IDS and not {"weights", "target"} <= set(self.env_options):
            raise ValueError(f"{self.env_id} needs env_options weights (a table model's manifest) and target "
                             f"(e.g. 'auc24:400-600'), got {sorted(self.env_options)}")
        if "-MO-" in self.env_id:
            raise ValueError(f"{self.env_id!r} has a vector reward; train on the scalar id "
                             f"{self.env_id.replace('-MO', '')!r} with reward_weights")
        if self.algo == "sac" and "Discrete" in self.env_id:
            raise ValueError(f"SAC needs continuous actions; {self.env_id!r} is discrete: use PPO, or the id "
                             f"without '-Discrete'")
        for name in ("total_timesteps", "n_envs", "eval_patients"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("seed", "eval_freq", "checkpoint_freq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.seed >= 1_000_000:
            raise ValueError(f"seed must be < 1,000,000 (larger seeds are the held-out cohorts), got {self.seed}")
        self.reward_weights = parse_reward_weights(self.reward_weights)
        self.n_envs = self.n_envs or DEFAULT_N_ENVS[self.algo]
        if self.warm_start is not None:
            parse_warm_start(self.warm_start)
            if self.algo != "ppo" or self.env_id != WARM_START_ENV_ID:
                raise ValueError(f"warm_start {self.warm_start!r} is for PPO on {WARM_START_ENV_ID!r}, got "
                                 f"{self.algo.upper()} on {self.env_id!r}")
        tuned = WARM_START_HYPERPARAMETERS if self.warm_start else {}
        self.hyperparameters = {**hyperparameters(self.algo, self.env_id), **tuned, **self.hyperparameters}
        env_family(self.env_id)

    @property
    def env_kwargs(self) -> dict[str, Any]:
        weights = {} if self.reward_weights is None else {"reward_weights": list(self.reward_weights)}
        return {**self.env_options, **weights}

    def save(self, run_dir: Path) -> None:
        (run_dir / "run.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, run_dir: Path) -> RunConfig:
        path = Path(run_dir) / "run.json"
        if not Path(run_dir).is_dir():
            raise FileNotFoundError(f"resume directory {run_dir} does not exist")
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a training run directory (no run.json)")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"{path} is not a valid run configuration: {err}") from None


def make_training_env(config: RunConfig) -> VecMonitor:
    """The native vector env as an SB3 VecEnv, with episode statistics (``rollout/ep_rew_mean``)."""
    return VecMonitor(NativeVecEnv(config.env_id, config.n_envs, config.env_kwargs))


def _save(model: BaseAlgorithm, config: RunConfig, path: Path, replay: bool = False) -> Path:
    return save_agent(model, path, algo=config.algo, env_id=config.env_id, env_kwargs=config.env_kwargs,
                      hyperparameters=config.hyperparameters, replay_buffer=replay)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The saved agent of a run with the most steps: the newest checkpoint or the final model (None: none)."""
    found = [*(run_dir / "checkpoints").glob("step_*.zip"), *run_dir.glob("final_model.zip")]
    found = [p for p in found if p.with_suffix(".json").is_file()]
    steps = [json.loads(p.with_suffix(".json").read_text()).get("num_timesteps", -1) for p in found]
    return found[int(np.argmax(steps))] if found else None


def _save_checkpoint(model: BaseAlgorithm, config: RunConfig, run_dir: Path, step: int) -> None:
    _save(model, config, run_dir / "checkpoints" / f"step_{step}", replay=config.algo == "sac")
    found = sorted((run_dir / "checkpoints").glob("step_*.zip"), key=lambda p: int(p.stem.split("_")[1]))
    for old in found[:-CHECKPOINTS_KEPT]:
        for suffix in (".zip", ".json", ".replay.npz"):
            old.with_suffix(suffix).unlink(missing_ok=True)


def train(config: RunConfig, run_dir: str | Path, *, resume: bool = False, progress_bar: bool = True,
          verbose: int = 0) -> BaseAlgorithm:
    """Train (or, with ``resume``, continue) a run in ``run_dir``; returns the final model.

    Raises:
        FileExistsError: ``run_dir`` already holds a run and ``resume`` is False.
        ValueError: bad configuration, or a checkpoint of another env or algorithm.
    """
    run_dir = Path(run_dir)
    if resume:
        saved = RunConfig.load(run_dir)
        if (saved.algo, saved.env_id) != (config.algo, config.env_id):
            raise ValueError(f"{run_dir} is a {saved.algo.upper()} run on {saved.env_id!r}; cannot resume it as "
                             f"{config.algo.upper()} on {config.env_id!r}")
    elif (run_dir / "run.json").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir)
    env = make_training_env(config)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        model, _ = load_agent(checkpoint, env=env, expected_env_id=config.env_id, expected_algo=config.algo)
        model.tensorboard_log = str(run_dir / "tensorboard")
    else:
        model = ALGORITHM_CLASSES[config.algo](POLICY_NAMES[config.algo], env, seed=config.seed, verbose=verbose, device="cpu",
                                               tensorboard_log=str(run_dir / "tensorboard"), **config.hyperparameters)
        env.seed(config.seed)
        if config.warm_start:
            warm_start(model, config.env_id, config.warm_start, config.env_kwargs,
                       config.hyperparameters.get("gamma", 0.99), config.seed, progress=progress_bar)
            _save(model, config, run_dir / "warm_start_model")
    callbacks = [DosingMetricsCallback()]
    if config.eval_freq:
        callbacks.append(CohortEvalCallback(config.env_id, config.eval_freq, config.eval_patients, run_dir,
                                            save_best=lambda: _save(model, config, run_dir / "best_model"),
                                            env_kwargs=config.env_kwargs))
    if config.checkpoint_freq:
        callbacks.append(CheckpointEvery(config.checkpoint_freq,
                                         lambda step: _save_checkpoint(model, config, run_dir, step)))
    remaining = config.total_timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), tb_log_name=config.algo.upper(),
                    reset_num_timesteps=checkpoint is None, progress_bar=progress_bar)
    _save(model, config, run_dir / "final_model")
    env.close()
    return model
