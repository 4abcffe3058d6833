"""What :class:`~pk_envs.task_env.TaskEnv` and :class:`~pk_envs.task_vector.TaskVectorEnv` ask of a task.

A task holds the batched dynamics of one environment family (``SingleDrugTask``, ``RegimenTask``,
``CombinationTask`` and its v1 subclass); the single and the vector environment run the same task
code on a cohort of ``N`` rows (the single one with ``N = 1``). :class:`Task` writes that contract
down; :class:`StepResult` is what one step of some rows returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces


class StepResult(NamedTuple):
    """One step of ``n`` rows: ``objectives (n, d)`` (``[efficacy or response, -toxicity, ...]``),
    ``terminated (n,)`` and ``truncated (n,)`` flags, and ``info``: ``{key: (n, ...)}`` arrays."""

    objectives: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, np.ndarray]


@runtime_checkable
class Actions(Protocol):
    """An action space and its mapping to doses, the same for every family (``DoseActions`` mg,
    ``CombinationActions`` mg/m2 and AUC, ``RegimenActions`` mg, h and a level)."""

    space: spaces.Space

    def to_doses(self, actions, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` actions -> (doses ``(n, ...)``, clipped flags ``(n,)``); ValueError naming a bad action."""

    def from_doses(self, *doses) -> Any:
        """The action nearest the given doses (the inverse of :meth:`to_doses`; envs call it ``doses_to_action``)."""


@runtime_checkable
class Task(Protocol):
    """The batched dynamics an environment runs (all arrays have one row per patient)."""

    actions: Actions
    observation_space: spaces.Box
    #: the ``-MO`` ids' vector reward space
    reward_space: spaces.Box
    vector_reward: bool
    reward_weights: np.ndarray
    #: info keys that describe the patient (reported at reset and every step)
    PATIENT_KEYS: tuple[str, ...]

    def draw_episode(self, rng: np.random.Generator, options: dict | None = None) -> dict[str, np.ndarray]:
        """Every random number of one patient's episode (randomness is drawn at reset only)."""

    def new_cohort(self, n: int) -> Any:
        """Storage for ``n`` running episodes."""

    def start(self, cohort: Any, rows: np.ndarray, draws: list[dict[str, np.ndarray]]) -> None:
        """Begin new episodes in ``rows`` from their draws."""

    def advance(self, cohort: Any, rows: np.ndarray, doses: np.ndarray, clipped: np.ndarray) -> StepResult:
        """Give ``rows`` their next dose(s); a pure function of the cohort and the doses."""

    def rewards(self, objectives: np.ndarray) -> np.ndarray:
        """The reward: ``(n, d)`` float32 vectors (``vector_reward``) or ``(n,)`` weighted sums."""

    def observations(self, cohort: Any) -> np.ndarray:
        """``(N, D)`` float32 observations of every row."""

    def patient_info(self, cohort: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The ground truth of ``rows`` reported in ``info``."""

    def render(self, cohort: Any, row: int) -> np.ndarray:
        """Row ``row``'s course so far as a ``uint8 (H, W, 3)`` image (the single and the vector env's render)."""
