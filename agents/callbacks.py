"""Training callbacks: clinical metrics in TensorBoard, periodic cohort evaluation, safe checkpoints.

TensorBoard scalars written (beside SB3's ``rollout/`` and ``train/``):

| tag | meaning (training episodes, last 100) |
|---|---|
| ``dosing/target_attainment`` | single drug: fraction of intervals whose true exposure is in the window |
| ``dosing/toxic_exposure_rate`` | single drug: fraction of courses with any interval above the toxic threshold (``target.toxic_above``) or a serious event |
| ``dosing/serious_event_rate`` | single drug: fraction of courses ended by a serious toxicity event |
| ``dosing/response_rate`` | combination: fraction of courses with a RECIST CR/PR |
| ``dosing/grade4_rate`` | combination: fraction of courses with grade-4 neutropenia |
| ``eval/<metric>`` | the same figures on the fixed validation cohort (``CohortEvalCallback``) |
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.baselines import SB3Policy
from agents.evaluate import OBJECTIVE_RESPONSE_CODES, evaluate_policy

#: Seeds of the validation cohort (checked during training); the held-out test cohort starts
#: at TEST_SEED. Training environments use seeds below 1,000,000, so the cohorts are unseen.
VALIDATION_SEED = 2_000_000
TEST_SEED = 1_000_000


class DosingMetricsCallback(BaseCallback):
    """Clinical figures of finished training episodes, logged at every rollout end (see module table)."""

    def __init__(self, window: int = 100):
        super().__init__()
        self.window = window
        self._episodes: dict[str, deque] = {}

    def _init_callback(self) -> None:
        n = self.training_env.num_envs
        self._in_window, self._steps, self._toxic = np.zeros(n), np.zeros(n), np.zeros(n, bool)
        target = self.training_env.get_attr("target")[0] if self.training_env.has_attr("target") else None
        self._toxic_above = None if target is None else float(target.toxic_above)
        # in the window = efficacy >= 0.5 (see SingleDrugEnv); read off the exposure, as evaluate does
        self._low, self._high = (None, None) if target is None else (float(target.low), float(target.high))

    def _push(self, key: str, value: float) -> None:
        self._episodes.setdefault(key, deque(maxlen=self.window)).append(float(value))

    def _on_step(self) -> bool:
        for i, (info, done) in enumerate(zip(self.locals["infos"], self.locals["dones"])):
            if "efficacy" in info:  # single drug; regimen ids weight each interval by its hours
                hours = float(info.get("interval_h", 1.0))
                self._steps[i] += hours
                self._in_window[i] += hours * (self._low <= info["exposure"] <= self._high)
                self._toxic[i] |= bool(info["event"]) or bool(info["exposure"] > self._toxic_above)
            if not done:
                continue
            if "efficacy" in info:
                self._push("target_attainment", self._in_window[i] / max(self._steps[i], 1))
                self._push("toxic_exposure_rate", self._toxic[i])
                self._push("serious_event_rate", bool(info["event"]))
            if "best_response" in info:
                self._push("response_rate", np.isin(info["best_response"], OBJECTIVE_RESPONSE_CODES))
                self._push("grade4_rate", info["grade4_events"] > 0)
            self._in_window[i], self._steps[i], self._toxic[i] = 0, 0, False
        return True

    def _on_rollout_end(self) -> None:
        for key, values in self._episodes.items():
            self.logger.record(f"dosing/{key}", float(np.mean(values)))


class CohortEvalCallback(BaseCallback):
    """Every ``eval_freq`` steps: evaluate the deterministic policy on a fixed validation cohort.

    Logs ``eval/<metric>`` means, keeps the best policy (by mean return) through ``save_best``
    and writes ``evaluations.npz`` (timesteps, mean return) in ``log_dir``.
    """

    def __init__(self, env_id: str, eval_freq: int, n_patients: int, log_dir: Path,
                 save_best: Callable[[], None] | None = None, env_kwargs: dict | None = None):
        super().__init__()
        self.env_id, self.eval_freq, self.n_patients = env_id, int(eval_freq), int(n_patients)
        self.log_dir, self.save_best, self.env_kwargs = Path(log_dir), save_best, env_kwargs or {}
        self.best_return = -np.inf
        self.history: list[tuple[int, float]] = []
        saved = self.log_dir / "evaluations.npz"
        if saved.is_file():  # a resumed run keeps its history and its best so far
            with np.load(saved, allow_pickle=False) as data:
                self.history = [(int(t), float(r)) for t, r in zip(data["timesteps"], data["mean_return"])]
            self.best_return = max((r for _, r in self.history), default=-np.inf)
        self._last_eval = 0

    def _on_training_start(self) -> None:
        self._last_eval = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_eval >= self.eval_freq:
            self._last_eval = self.num_timesteps
            self.evaluate()
        return True

    def evaluate(self) -> float:
        result = evaluate_policy(self.env_id, SB3Policy(self.model), n_patients=self.n_patients,
                                 seed=VALIDATION_SEED, num_envs=min(self.n_patients, 500),
                                 n_bootstrap=100, env_kwargs=self.env_kwargs)
        for key, estimate in result.metrics.items():
            self.logger.record(f"eval/{key}", estimate.mean)
        mean_return = result.metrics["return"].mean
        self.history.append((self.num_timesteps, mean_return))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        np.savez(self.log_dir / "evaluations.npz", timesteps=np.array([t for t, _ in self.history]),
                 mean_return=np.array([r for _, r in self.history]))
        if mean_return > self.best_return:
            self.best_return = mean_return
            if self.save_best is not None:
                self.save_best()
        return mean_return


class CheckpointEvery(BaseCallback):
    """Call ``save(num_timesteps)`` every ``every`` environment steps (for ``--resume``).

    Saves at the start of a rollout, the one moment when the model, its step count and (SAC) the
    replay buffer agree: within a step SB3 counts a transition before storing it, and PPO's
    collected rollout is not saved, so a checkpoint there would drop steps it counts as done.
    """

    def __init__(self, every: int, save: Callable[[int], None]):
        super().__init__()
        self.every, self.save = int(every), save
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every:
            self._last = self.num_timesteps
            self.save(self.num_timesteps)

    def _on_step(self) -> bool:
        return True
