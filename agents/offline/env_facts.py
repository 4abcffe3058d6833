"""What the offline tools need to know about a PKDose id: action grid, observation layout, schedule.

The behaviour policies and the NONMEM export need a few fixed facts about an environment that
the Gymnasium spaces do not carry: the dose range and discrete levels behind the actions, where
the assays sit in the observation, the drug's therapeutic window, its monitoring times and
interval. :func:`env_facts` gathers them once per (id, constructor arguments) from one scalar
environment, through its public properties only (``target``, ``interval_h``, ``monitoring_times_h``,
``dose_levels_mg``, ``observation_names``, ``concentration_scale_mg_l``, ``reward_weights``; the
combination's ``cycle_h``, ``dose_maximum``, ``standard_doses``, ``dose_levels``).

Action coordinates: a dose is written as a *fraction of the action's maximum*, ``u`` in [0, 1]
per action dimension (single drug: mg / ``dose_max_mg``; combination: paclitaxel mg/m2 / 225
and carboplatin AUC / 7.5). Continuous ids map ``u`` linearly to ``a = 2 u - 1`` in [-1, 1];
discrete ids have a grid of levels per dimension (``levels_u``) and the flat action index is
the row-major (C order) index over the dimensions (combination: ``5 * i + j``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from agents.baselines import check_env_id
from vae_simulator.groundtruth import get_model


@dataclass(frozen=True)
class EnvFacts:
    """Fixed facts of one PKDose environment configuration (units in the field comments).

    Attributes:
        env_id: the registered id.
        combination: paclitaxel + carboplatin (True) or a single drug (False).
        drug: single drug name (e.g. ``"vancomycin"``), ``"paclitaxel+carboplatin"`` for the combination.
        discrete: discrete action ids.
        vector_reward: ``-MO`` ids (the reward is ``[objective 1, objective 2]``).
        reward_weights: ``(2,)`` weights of the scalar reward, ``w . objectives``.
        action_max: ``(A,)`` dose at ``u = 1`` per dimension (mg; combination mg/m2 and mg*min/mL).
        levels_u: discrete ids: per dimension the dose levels as fractions of ``action_max``; else None.
        interval_h: dosing interval (h; 504 for the combination's 21-day cycle).
        monitor_h: single drug: monitoring sample times within an interval (h after the dose).
        infusion_h: infusion length of each drug (h; 0 = oral), one entry per action dimension.
        target_metric, target_low, target_high: single drug: the exposure target window.
        conc_scale_mg_l: single drug: the divisor of observed concentrations (mg/L).
        obs_index: name -> observation index (or slice start) of the entries the policies read.
        horizon: the course length in steps (``max_episode_steps``).
        standard_u: combination: the standard doses (175 mg/m2, AUC 6) as fractions of ``action_max``.
        env_kwargs: constructor arguments beyond the registered ones.
    """

    env_id: str
    combination: bool
    drug: str
    discrete: bool
    vector_reward: bool
    reward_weights: tuple[float, float]
    action_max: tuple[float, ...]
    levels_u: tuple[tuple[float, ...], ...] | None
    interval_h: float
    monitor_h: tuple[float, ...]
    infusion_h: tuple[float, ...]
    target_metric: str
    target_low: float
    target_high: float
    conc_scale_mg_l: float
    obs_index: dict[str, int]
    horizon: int
    standard_u: tuple[float, ...] = ()
    env_kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def action_dim(self) -> int:
        return len(self.action_max)

    @property
    def n_actions(self) -> int:
        """Number of discrete actions (product of the per-dimension levels); 0 for continuous ids."""
        return int(np.prod([len(levels) for levels in self.levels_u])) if self.levels_u else 0


def check_json_kwargs(env_kwargs: dict | None) -> dict:
    """``env_kwargs`` as a dict, refused unless JSON-serialisable (datasets record them in their spec)."""
    env_kwargs = dict(env_kwargs or {})
    try:
        json.dumps(env_kwargs)
    except TypeError as exc:
        raise ValueError(f"env_kwargs must be JSON-serialisable (numbers, strings, lists), got {env_kwargs!r}: "
                         f"{exc}") from None
    return env_kwargs


def env_facts(env_id: str, env_kwargs: dict | None = None) -> EnvFacts:
    """The :class:`EnvFacts` of ``env_id`` made with ``env_kwargs`` (cached per configuration)."""
    check_env_id(env_id)
    env_kwargs = check_json_kwargs(env_kwargs)
    return _env_facts(env_id, json.dumps(env_kwargs, sort_keys=True))


@cache
def _env_facts(env_id: str, kwargs_json: str) -> EnvFacts:
    env_kwargs = json.loads(kwargs_json)
    env = gym.make(env_id, **env_kwargs)
    try:
        base = env.unwrapped
        spec_steps = env.spec.max_episode_steps if env.spec is not None else None
        common = {"env_id": env_id, "discrete": isinstance(env.action_space, gym.spaces.Discrete),
                  "vector_reward": getattr(base, "reward_dim", 1) == 2,
                  "reward_weights": tuple(float(w) for w in base.reward_weights),
                  "env_kwargs": tuple(sorted(env_kwargs.items()))}
        names = tuple(base.observation_names)
        if hasattr(base, "conventional_action"):
            maximum, standard = base.dose_maximum, base.standard_doses
            levels = tuple(tuple(float(x) for x in base.dose_levels * s / m) for s, m in zip(standard, maximum))
            horizon = min(base.n_cycles, spec_steps or base.n_cycles)
            return EnvFacts(combination=True, drug="paclitaxel+carboplatin", action_max=tuple(float(m) for m in maximum),
                            levels_u=levels if common["discrete"] else None, interval_h=base.cycle_h, monitor_h=(),
                            infusion_h=(float(get_model("paclitaxel").infusion_h),
                                        float(get_model("carboplatin").infusion_h)),
                            target_metric="", target_low=0.0, target_high=0.0, conc_scale_mg_l=0.0,
                            obs_index={name: i for i, name in enumerate(names)}, horizon=horizon,
                            standard_u=tuple(float(x) for x in standard / maximum), **common)
        target, levels_mg = base.target, np.asarray(base.dose_levels_mg, dtype=float)
        dose_max = float(levels_mg[-1])
        monitor_h = tuple(float(t) for t in base.monitoring_times_h)
        levels = (tuple(float(x) for x in levels_mg / dose_max),) if common["discrete"] else None
        first_sample = next(i for i, name in enumerate(names) if name.startswith("sample_"))
        obs_index = {"last_dose": names.index("dose_1_back_rel"), "samples": first_sample,
                     "missing": first_sample + len(monitor_h), "time_fraction": names.index("course_fraction")}
        horizon = min(base.course_intervals, spec_steps or base.course_intervals)
        return EnvFacts(combination=False, drug=str(base.drug), action_max=(dose_max,), levels_u=levels,
                        interval_h=float(base.interval_h), monitor_h=monitor_h,
                        infusion_h=(float(get_model(base.drug).infusion_h),), target_metric=str(target.metric),
                        target_low=float(target.low), target_high=float(target.high),
                        conc_scale_mg_l=base.concentration_scale_mg_l, obs_index=obs_index, horizon=horizon,
                        **common)
    finally:
        env.close()
