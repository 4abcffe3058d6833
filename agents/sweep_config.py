"""A sweep's configuration file (TOML), checked in full before any trial starts.

A sweep is algorithms x environment ids x training seeds, one trial each, plus one baseline
trial per id (every clinical baseline on the same held-out cohort). The file::

    name = "leaderboard"                 # the results directory records it
    algorithms = ["ppo", "sac", "recurrent_ppo"]
    envs = ["PKDose/Vancomycin-v0", "PKDose/PaclitaxelCarboplatin-v1"]
    seeds = [0, 1, 2, 3, 4]
    eval_patients = 1000                 # the held-out cohort, seeds 1,000,000 + i (optional)
    baselines = true                     # a baseline trial per id (optional, default true)

    [timesteps]                          # training budget per algorithm (environment steps)
    ppo = 600_000
    sac = 100_000
    recurrent_ppo = 300_000

    [timesteps."PKDose/PaclitaxelCarboplatin-v1"]   # optional: per-id budgets override
    ppo = 2_000_000

    [reward_weights]                     # optional: (efficacy, toxicity) per id, default the env's
    "PKDose/PaclitaxelCarboplatin-v1" = [1.0, 1.0]

    [hyperparameters.ppo]                # optional: SB3 arguments over agents.config's
    n_epochs = 5

SAC is refused on ``-Discrete`` ids (it needs continuous actions), ``-MO`` ids are refused (train
on the scalar id with reward weights). Every problem is reported at once, before Ray starts.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.callbacks import TEST_SEED
from agents.config import ALGORITHMS, check_env_id

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

KNOWN_KEYS = {"name", "algorithms", "envs", "seeds", "eval_patients", "baselines", "timesteps", "reward_weights",
              "hyperparameters", "n_envs"}
MAX_SEED = 1_000_000  # seeds from here on are the held-out cohorts


@dataclass(frozen=True)
class Trial:
    """One unit of work of a sweep: train and evaluate an agent, or evaluate the baselines of an id.

    Attributes:
        kind: ``"agent"`` or ``"baselines"``.
        env_id: the PKDose id.
        algo: the algorithm (agents only; ``""`` for baselines).
        seed: the training seed (agents only).
        timesteps: the training budget, environment steps (agents only).
        reward_weights: ``(efficacy, toxicity)`` or None (the env's default).
        hyperparameters: SB3 arguments over the defaults of :mod:`agents.config`.
        n_envs: parallel patients in training (None: the algorithm's default).
        eval_patients: held-out cohort size; patient ``i`` is seeded ``TEST_SEED + i``.
    """

    kind: str
    env_id: str
    algo: str = ""
    seed: int = 0
    timesteps: int = 0
    reward_weights: tuple[float, float] | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    n_envs: int | None = None
    eval_patients: int = 1000

    @property
    def name(self) -> str:
        """A file-system-safe, unique name: ``ppo-Vancomycin-v0-seed3`` or ``baselines-Vancomycin-v0``."""
        short = self.env_id.split("/")[-1]
        return f"baselines-{short}" if self.kind == "baselines" else f"{self.algo}-{short}-seed{self.seed}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        weights = data.get("reward_weights")
        return cls(**{**data, "reward_weights": None if weights is None else tuple(weights)})


@dataclass(frozen=True)
class SweepConfig:
    """A checked sweep file (see the module docstring); :meth:`trials` lists its work."""

    name: str
    algorithms: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: tuple[int, ...]
    timesteps: dict[str, Any]
    eval_patients: int = 1000
    baselines: bool = True
    reward_weights: dict[str, tuple[float, float]] = field(default_factory=dict)
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_envs: dict[str, int] = field(default_factory=dict)
    eval_seed: int = TEST_SEED

    def budget(self, algo: str, env_id: str) -> int:
        per_env = self.timesteps.get(env_id, {})
        return int(per_env.get(algo, self.timesteps[algo]))

    def trials(self) -> list[Trial]:
        """Baseline trials first (cheap, and every agent row is normalised against them), then agents."""
        out = [Trial("baselines", env, eval_patients=self.eval_patients) for env in self.envs if self.baselines]
        out += [Trial("agent", env, algo, seed, self.budget(algo, env), self.reward_weights.get(env),
                      dict(self.hyperparameters.get(algo, {})), self.n_envs.get(algo), self.eval_patients)
                for env in self.envs for algo in self.algorithms for seed in self.seeds
                if not (algo == "sac" and _discrete(env))]
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the work the config defines (its trials), to recognise its results directory."""
        text = json.dumps([t.to_json() for t in self.trials()], sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()


def _discrete(env_id: str) -> bool:
    return "-Discrete" in env_id


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Read and check a TOML sweep file; ValueError listing every problem (file named)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep config at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    return parse_sweep_config(raw, source=str(path))


def parse_sweep_config(raw: dict[str, Any], source: str = "sweep config") -> SweepConfig:
    """Check a parsed sweep file (a dict); ValueError listing every problem found."""
    problems: list[str] = []
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {unknown}; allowed: {sorted(KNOWN_KEYS)}")
    name = raw.get("name", "sweep")
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, got {name!r}")
    algorithms = _list(raw, "algorithms", problems)
    bad = [a for a in algorithms if a not in ALGORITHMS]
    if bad:
        problems.append(f"unknown algorithm(s) {bad}; choose from {list(ALGORITHMS)}")
    envs = _list(raw, "envs", problems)
    for env in envs:
        try:
            check_env_id(env)
        except ValueError as err:
            problems.append(str(err))
        if isinstance(env, str) and "-MO-" in env:
            problems.append(f"{env!r} has a vector reward; sweep the scalar id {env.replace('-MO', '')!r} "
                            "with [reward_weights]")
    if "sac" in algorithms and any(isinstance(e, str) and _discrete(e) for e in envs):
        problems.append("SAC needs continuous actions; drop the -Discrete ids or run them with PPO only "
                        f"({[e for e in envs if _discrete(e)]})")
    seeds = _list(raw, "seeds", problems)
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < MAX_SEED for s in seeds):
        problems.append(f"seeds must be integers in [0, {MAX_SEED:,}) (larger seeds are the held-out cohorts), "
                        f"got {seeds}")
    if len(set(map(str, seeds))) != len(seeds):
        problems.append(f"seeds repeat: {seeds}")
    timesteps = raw.get("timesteps", {})
    if not isinstance(timesteps, dict):
        problems.append(f"[timesteps] must be a table, got {timesteps!r}")
        timesteps = {}
    for algo in algorithms:
        if algo in ALGORITHMS and algo not in timesteps:
            problems.append(f"[timesteps] has no budget for {algo!r}")
    for key, value in timesteps.items():
        if key in ALGORITHMS:
            _budget(f"timesteps.{key}", value, problems)
        elif isinstance(value, dict) and key in envs:
            for algo, steps in value.items():
                if algo not in algorithms:
                    problems.append(f"timesteps.{key!r} names algorithm {algo!r}, not in algorithms {algorithms}")
                _budget(f"timesteps.{key!r}.{algo}", steps, problems)
        else:
            problems.append(f"[timesteps] key {key!r} is neither an algorithm of {list(ALGORITHMS)} nor a table "
                            f"for one of the sweep's envs")
    weights = _weights(raw.get("reward_weights", {}), envs, problems)
    hyper = raw.get("hyperparameters", {})
    if not isinstance(hyper, dict) or any(k not in algorithms or not isinstance(v, dict) for k, v in hyper.items()):
        problems.append(f"[hyperparameters] must hold one table per swept algorithm {algorithms}, got {hyper!r}")
        hyper = {}
    n_envs = raw.get("n_envs", {})
    if not isinstance(n_envs, dict) or any(k not in algorithms or isinstance(v, bool) or not isinstance(v, int)
                                           or v < 1 for k, v in n_envs.items()):
        problems.append(f"[n_envs] must map swept algorithms to integers >= 1, got {n_envs!r}")
        n_envs = {}
    eval_patients = raw.get("eval_patients", 1000)
    if isinstance(eval_patients, bool) or not isinstance(eval_patients, int) or eval_patients < 1:
        problems.append(f"eval_patients must be an integer >= 1, got {eval_patients!r}")
    baselines = raw.get("baselines", True)
    if not isinstance(baselines, bool):
        problems.append(f"baselines must be true or false, got {baselines!r}")
    if problems:
        raise ValueError(f"{source}: " + "; ".join(problems))
    return SweepConfig(name, tuple(algorithms), tuple(envs), tuple(seeds), timesteps, eval_patients, baselines,
                       weights, hyper, n_envs)


def _list(raw: dict[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        problems.append(f"{key} must be a non-empty list, got {value!r}")
        return []
    return value


def _budget(label: str, value: Any, problems: list[str]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(f"{label} must be an integer >= 1 (environment steps), got {value!r}")


def _weights(raw: Any, envs: list[str], problems: list[str]) -> dict[str, tuple[float, float]]:
    from agents.training import parse_reward_weights

    if not isinstance(raw, dict):
        problems.append(f"[reward_weights] must map env ids to [efficacy, toxicity], got {raw!r}")
        return {}
    out = {}
    for env, value in raw.items():
        if env not in envs:
            problems.append(f"reward_weights names {env!r}, not one of the sweep's envs")
            continue
        try:
            out[env] = parse_reward_weights(value)
        except ValueError as err:
            problems.append(f"reward_weights.{env!r}: {err}")
    return out
