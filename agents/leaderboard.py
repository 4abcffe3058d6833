"""The leaderboard of a sweep: per env, agents and baselines on one held-out cohort; across envs,
normalised scores aggregated the way the RL community trusts (rliable).

    pkdose leaderboard --results reports/leaderboard
    pkdose leaderboard --results reports/leaderboard --policy "mine=my_pkg.agents:make_policy"
    pkdose leaderboard --results reports/leaderboard --policy "ppo-long=runs/ppo/best_model.zip"

Reads ``<results>/trials/*/evaluation.json`` (written by :mod:`agents.sweep`) and any user
policies' ``<results>/user/<name>/*.json``; writes ``leaderboard.md``, ``leaderboard.json``,
``aggregate_<group>.png`` (IQM, median, mean, optimality gap with 95 % CIs) and
``performance_profile_<group>.png`` for all envs and for the single-drug envs (where MIPD is
defined), and ``learning_curves.png``.

Figures per env family (``main``: higher is better; ``toxicity``: lower is better):

| family | main figure | toxicity figure | score normalised |
|---|---|---|---|
| single drug, regimen | ``in_window_fraction`` (target attainment) | ``toxic_exposure`` | main figure |
| combination ``-v1`` | ``objective_response`` | ``serious_adverse_event`` | response - SAE |
| combination ``-v0`` | ``objective_response`` | ``grade4_neutropenia`` | response - grade 4 |

Normalised score of a run: ``(score - standard) / (oracle - standard)``, 0 = standard dosing,
1 = the oracle (an env where ``oracle - standard < MIN_GAP`` = 0.02 is not normalised and stays out of
the aggregates: standard dosing is already at the ceiling there) (single drug: dosing on the true latent; combination: per patient the best of
25 constant regimens, clairvoyant). Per env, an agent's figure is the mean over its seeds with a
95 % t-interval over seeds (one seed: the bootstrap over patients); a baseline's is its
bootstrap over patients. Across envs: rliable's interquartile mean (IQM) etc. with stratified
bootstrap CIs over runs (a baseline is deterministic on the cohort: one run, so its CI only
reflects the spread over envs when ``task_bootstrap``; here it is a point).

``leaderboard.json`` schema (``"format": "pkdose-leaderboard/1"``)::

    {"format", "envs": {env_id: {"main": key, "toxicity": key, "rows": [
         {"policy", "kind": "agent" | "baseline" | "user", "runs": int,
          "main": [mean, low, high], "toxicity": [mean, low, high],
          "normalised": [mean, low, high] | null, "normalised_runs": [float, ...]}]}},
     "aggregate": {"all envs" | "single-drug envs": {"envs": [env_id, ...], "policies": {policy:
         {"IQM" | "Median" | "Mean" | "Optimality gap": [point, low, high]}}}},
     "goals": [str, ...], "notes": {env_id: str}}
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluate import EvaluationResult, bootstrap_ci

LEADERBOARD_FORMAT = "pkdose-leaderboard/1"
STANDARD, MIPD = "standard dosing", "MIPD (PK-VAE encoder)"
ORACLES = ("oracle (true latent)", "oracle (best constant regimen)")
AGENT_NAMES = {"ppo": "PPO", "sac": "SAC", "recurrent_ppo": "RecurrentPPO"}
#: an env whose oracle beats standard dosing by less than this (score units: a fraction of patients
#: or of treatment time) is not normalised: dividing by the gap would blow noise up into scores
MIN_GAP = 0.02


@contextmanager
def seeded_numpy_global(seed: int = 0) -> Iterator[None]:
    """rliable resamples with ``np.random.choice`` (the global stream; its ``random_state`` is not
    used), so its intervals are seeded here, and the caller's global stream is restored after."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def figures(env_id: str) -> tuple[str, str]:
    """``(main figure, toxicity figure)`` of an id (module table)."""
    if "PaclitaxelCarboplatin" in env_id:
        return "objective_response", ("serious_adverse_event" if env_id.endswith("-v1") else "grade4_neutropenia")
    return "in_window_fraction", "toxic_exposure"


def patient_scores(result: EvaluationResult) -> np.ndarray:
    """The per-patient score that is normalised: the main figure, minus toxicity on combinations."""
    main, toxicity = figures(result.env_id)
    score = result.per_patient[main]
    return score - result.per_patient[toxicity] if main == "objective_response" else score


@dataclass
class Entry:
    """One policy on one env: its runs (seeds) on the held-out cohort."""

    policy: str
    kind: str
    runs: list[EvaluationResult]


def load_entries(results_dir: Path) -> dict[str, dict[str, Entry]]:
    """env id -> policy name -> :class:`Entry`, from the sweep's trials and the user policies."""
    entries: dict[str, dict[str, Entry]] = {}
    files = [(p, None) for p in sorted((results_dir / "trials").glob("*/evaluation.json"))]
    files += [(p, p.parent.name) for p in sorted((results_dir / "user").glob("*/*.json"))]
    for path, user in files:
        try:
            payload = json.loads(path.read_text())
            results = [EvaluationResult.from_json(r) for r in payload["results"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a pkdose evaluation file: {err}") from None
        for result in results:
            agent = result.policy_name in AGENT_NAMES and user is None
            name = user or AGENT_NAMES.get(result.policy_name, result.policy_name)
            kind = "user" if user else "agent" if agent else "baseline"
            entry = entries.setdefault(result.env_id, {}).setdefault(name, Entry(name, kind, []))
            entry.runs.append(result)
    if not entries:
        raise ValueError(f"{results_dir} holds no evaluations (trials/*/evaluation.json): run 'pkdose sweep' first")
    return entries


def _interval(values: np.ndarray, fallback: EvaluationResult, key: str) -> list[float]:
    """Mean over runs with a 95 % t-interval; one run: its bootstrap over patients."""
    from scipy import stats

    if len(values) == 1:
        estimate = fallback.metrics[key]
        return [estimate.mean, estimate.low, estimate.high]
    mean, sem = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
    half = float(stats.t.ppf(0.975, len(values) - 1) * sem)
    return [mean, mean - half, mean + half]


def reference_scores(entries: dict[str, Entry]) -> tuple[float, float] | None:
    """``(standard dosing's score, the oracle's score)`` on an env's cohort (None: either is missing)."""
    standard = entries.get(STANDARD)
    oracle = next((entries[o] for o in ORACLES if o in entries), None)
    if standard is None or oracle is None:
        return None
    return float(patient_scores(standard.runs[0]).mean()), float(patient_scores(oracle.runs[0]).mean())


def env_rows(env_id: str, entries: dict[str, Entry]) -> list[dict[str, Any]]:
    """The rows of one env, best normalised score first (agents and baselines alike)."""
    main, toxicity = figures(env_id)
    ref = reference_scores(entries)
    if ref is not None and ref[1] - ref[0] < MIN_GAP:
        ref = None
    rows = []
    for entry in entries.values():
        mains = np.array([r.per_patient[main].mean() for r in entry.runs])
        toxics = np.array([r.per_patient[toxicity].mean() for r in entry.runs])
        normalised = None if ref is None else np.array([(patient_scores(r).mean() - ref[0]) / (ref[1] - ref[0])
                                                         for r in entry.runs])
        rows.append({"policy": entry.policy, "kind": entry.kind, "runs": len(entry.runs),
                     "main": _interval(mains, entry.runs[0], main),
                     "toxicity": _interval(toxics, entry.runs[0], toxicity),
                     "normalised": None if normalised is None else _normalised_interval(normalised, entry, ref),
                     "normalised_runs": [] if normalised is None else normalised.tolist()})
    rows.sort(key=lambda r: -(r["normalised"] or r["main"])[0])
    return rows


def _normalised_interval(values: np.ndarray, entry: Entry, ref: tuple[float, float]) -> list[float]:
    if len(values) > 1:
        return _interval(values, entry.runs[0], "")
    estimate = bootstrap_ci({"score": patient_scores(entry.runs[0])})["score"]
    low, high = (np.array([estimate.low, estimate.high]) - ref[0]) / (ref[1] - ref[0])
    return [float(values[0]), float(low), float(high)]


def aggregate(tables: dict[str, list[dict[str, Any]]], reps: int = 2000) -> dict[str, dict[str, Any]]:
    """rliable's IQM, median, mean and optimality gap of normalised scores, per group of envs ("all envs",
    and "single-drug envs" where MIPD is defined), for each policy with a normalised score on every env
    of the group (runs truncated to the fewest seeds; the two oracles count as one policy, "oracle").

    Returns group -> ``{"envs": [...], "policies": {policy: {aggregate: [point, low, high]}},
    "scores": {policy: (runs, envs) array}}``.
    """
    from rliable import library as rly
    from rliable import metrics

    scored = [env for env, rows in tables.items() if all(r["normalised"] is not None for r in rows)]
    groups = {"all envs": scored, "single-drug envs": [e for e in scored if "PaclitaxelCarboplatin" not in e]}
    functions = {"IQM": metrics.aggregate_iqm, "Median": metrics.aggregate_median, "Mean": metrics.aggregate_mean,
                 "Optimality gap": metrics.aggregate_optimality_gap}

    def all_four(scores: np.ndarray) -> np.ndarray:
        return np.array([f(scores) for f in functions.values()])

    out: dict[str, dict[str, Any]] = {}
    for group, envs in groups.items():
        if not envs or (group != "all envs" and envs == scored):
            continue  # a group equal to "all envs" adds nothing
        by_policy: dict[str, list[list[float]]] = {}
        for env in envs:
            for row in tables[env]:
                name = "oracle" if row["policy"] in ORACLES else row["policy"]
                by_policy.setdefault(name, []).append(row["normalised_runs"])
        score_dict = {}
        for policy, per_env in by_policy.items():
            if len(per_env) == len(envs):
                runs = min(len(r) for r in per_env)
                score_dict[policy] = np.array([r[:runs] for r in per_env]).T  # (runs, envs)
        with seeded_numpy_global(0):
            points, intervals = rly.get_interval_estimates(score_dict, all_four, reps=reps)
        policies = {p: {name: [float(points[p][i]), float(intervals[p][0, i]), float(intervals[p][1, i])]
                        for i, name in enumerate(functions)} for p in score_dict}
        out[group] = {"envs": envs, "policies": policies, "scores": score_dict}
    return out


def goals(tables: dict[str, list[dict[str, Any]]], entries: dict[str, dict[str, Entry]]) -> list[str]:
    """The issue's goals, met or missed with figures: best agent vs MIPD; the combination's published result."""
    from agents.benchmark import pooled, relative_change
    from agents.combination_study import GOAL_RESPONSE, GOAL_SAE

    lines = []
    for env, rows in tables.items():
        agents = [r for r in rows if r["kind"] == "agent"]
        if not agents:
            continue
        best = max(agents, key=lambda r: r["main"][0])
        mipd = next((r for r in rows if r["policy"].startswith("MIPD")), None)
        if mipd is not None:
            gap = best["main"][0] - mipd["main"][0]
            verdict = "met" if gap >= 0 else f"missed by {-gap * 100:.1f} points"
            lines.append(f"{env}: best agent {best['policy']} target attainment {best['main'][0]:.3f} vs "
                         f"{mipd['policy']} {mipd['main'][0]:.3f}: {verdict}")
        if "PaclitaxelCarboplatin" in env and STANDARD in entries[env]:
            _, toxicity = figures(env)
            standard = entries[env][STANDARD].runs[0]
            for row in agents:
                runs = entries[env][row["policy"]].runs
                agent = pooled(runs, row["policy"])
                reference = pooled([standard] * len(runs), STANDARD)
                response = relative_change(agent, reference, "objective_response")
                tox = relative_change(agent, reference, toxicity)
                met = response[0] >= GOAL_RESPONSE and tox[0] <= GOAL_SAE
                lines.append(f"{env}: {row['policy']} response {response[0] * 100:+.1f} % "
                             f"[{response[1] * 100:+.1f}, {response[2] * 100:+.1f}], {toxicity} {tox[0] * 100:+.1f} % "
                             f"[{tox[1] * 100:+.1f}, {tox[2] * 100:+.1f}] vs standard dosing; published "
                             f"{GOAL_RESPONSE * 100:+.1f} % / {GOAL_SAE * 100:+.1f} %: {'met' if met else 'missed'}")
    return lines


def _cell(values: list[float] | None) -> str:
    return "" if values is None else f"{values[0]:.3f} [{values[1]:.3f}, {values[2]:.3f}]"


def markdown(tables: dict[str, list[dict[str, Any]]], agg: dict[str, dict[str, Any]], goal_lines: list[str],
             notes: dict[str, str] | None = None) -> str:
    notes = notes or {}
    lines = ["# Leaderboard", "", ("Normalised score: 0 = standard dosing, 1 = oracle. Agents: mean over seeds "
             "[95 % t-interval]; baselines: [95 % bootstrap over patients]. Written by `pkdose leaderboard`."), ""]
    for group, result in agg.items():
        lines += [f"## Aggregate over {group} ({len(result['envs'])}; rliable, stratified bootstrap 95 % CIs)", "",
                  "| policy | IQM | median | mean | optimality gap |", "|---|---:|---:|---:|---:|"]
        ranked = sorted(result["policies"].items(), key=lambda kv: -kv[1]["IQM"][0])
        lines += [f"| {policy} | " + " | ".join(_cell(values[k]) for k in ("IQM", "Median", "Mean", "Optimality gap"))
                  + " |" for policy, values in ranked]
        lines.append("")
    for env, rows in tables.items():
        main, toxicity = figures(env)
        lines += [f"## {env}", ""]
        if any(r["normalised"] is None for r in rows):
            lines += [notes.get(env, "Not normalised: no standard-dosing or oracle row."), ""]
        lines += [f"| policy | kind | runs | {main} | {toxicity} | normalised score |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['policy']} | {r['kind']} | {r['runs']} | {_cell(r['main'])} | {_cell(r['toxicity'])} | "
                  f"{_cell(r['normalised'])} |" for r in rows]
        lines.append("")
    if goal_lines:
        lines += ["## Goals", ""] + [f"- {g}" for g in goal_lines] + [""]
    return "\n".join(lines)


def write_leaderboard(results_dir: str | Path, reps: int = 2000) -> list[Path]:
    """Write ``leaderboard.{md,json}`` and the PNGs into ``results_dir``; returns the paths written.

    ``reps``: bootstrap resamples of rliable's intervals and profiles (>= 100)."""
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 100:
        raise ValueError(f"reps must be an integer >= 100, got {reps!r}")
    from agents.leaderboard_plots import plot_aggregate, plot_learning_curves, plot_profiles

    results_dir = Path(results_dir)
    entries = load_entries(results_dir)
    tables = {env: env_rows(env, by_policy) for env, by_policy in entries.items()}
    agg = aggregate(tables, reps)
    goal_lines = goals(tables, entries)
    payload = {"format": LEADERBOARD_FORMAT, "envs": {env: {"main": figures(env)[0], "toxicity": figures(env)[1],
                                                            "rows": rows} for env, rows in tables.items()},
               "aggregate": {group: {"envs": r["envs"], "policies": r["policies"]} for group, r in agg.items()},
               "goals": goal_lines}
    written = [results_dir / "leaderboard.json", results_dir / "leaderboard.md"]
    notes = {}
    for env, by_policy in entries.items():
        ref = reference_scores(by_policy)
        if ref is not None and ref[1] - ref[0] < MIN_GAP:
            notes[env] = (f"Not normalised and not aggregated: the oracle ({ref[1]:.3f}) beats standard dosing "
                          f"({ref[0]:.3f}) by less than {MIN_GAP}; standard dosing is at the ceiling here.")
    payload["notes"] = notes
    written[0].write_text(json.dumps(payload, indent=2))
    written[1].write_text(markdown(tables, agg, goal_lines, notes))
    for group, result in agg.items():
        slug = group.split()[0].replace("-", "_")
        written += [plot_aggregate(result["policies"], results_dir / f"aggregate_{slug}.png"),
                    plot_profiles(result["scores"], results_dir / f"performance_profile_{slug}.png", reps)]
    curves = plot_learning_curves(results_dir, results_dir / "learning_curves.png")
    return written + ([curves] if curves else [])


def load_user_policy(spec: str, env_id: str):
    """``module:factory`` or an SB3 zip written by pkdose.

    ``factory(env_id)`` returns a policy ``(observations (N, D), infos) -> actions (N, ...)`` (with
    an optional ``reset(num_envs)``), or any object with SB3's ``predict`` (wrapped in
    :class:`~agents.baselines.SB3Policy`)."""
    from agents.baselines import SB3Policy

    if spec.endswith(".zip"):
        from agents.checkpoints import load_agent

        model, _ = load_agent(spec, expected_env_id=env_id)
        return SB3Policy(model)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--policy {spec!r} must be module:factory (e.g. my_pkg.agents:make_policy) or an SB3 .zip")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {spec!r}: {err}") from None
    policy = factory(env_id)
    if not callable(policy) and callable(getattr(policy, "predict", None)):
        policy = SB3Policy(policy)  # an SB3 model built or loaded by the factory
    if not callable(policy):
        raise ValueError(f"{spec}({env_id!r}) returned {policy!r}, not a callable (observations, infos) -> actions")  # noqa: TRY004 (project convention)
    return policy


def evaluate_user_policy(results_dir: Path, name: str, spec: str, n_patients: int | None = None) -> list[Path]:
    """Evaluate ``spec`` on every env of the sweep's cohort into ``<results>/user/<name>/``."""
    from agents.callbacks import TEST_SEED
    from agents.evaluate import evaluate_policy

    if not name or not name.replace("-", "").replace("_", "").replace(" ", "").isalnum():
        raise ValueError(f"policy name {name!r} must be letters, digits, spaces, '-' or '_'")
    written = []
    envs = load_entries(results_dir)
    if spec.endswith(".zip"):  # an agent knows its env: evaluate it there only
        from agents.checkpoints import read_sidecar

        trained_on = read_sidecar(spec)["env_id"]
        if trained_on not in envs:
            raise ValueError(f"{spec} was trained on {trained_on!r}, which the sweep in {results_dir} does not hold "
                             f"(its envs: {sorted(envs)})")
        envs = {trained_on: envs[trained_on]}
    for env_id, by_policy in envs.items():
        reference = next(iter(by_policy.values())).runs[0]
        patients = n_patients or reference.n_patients
        result = evaluate_policy(env_id, load_user_policy(spec, env_id), n_patients=patients, seed=TEST_SEED,
                                 num_envs=min(patients, 500), policy_name=name, progress=True)
        path = results_dir / "user" / name / f"{env_id.split('/')[-1]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": "pkdose-evaluation/1", "policy": spec, "results": [result.to_json()]}))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pkdose leaderboard", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Examples:\n" + __doc__.split("\n\n")[1])
    parser.add_argument("--results", type=Path, required=True, help="a sweep's results directory")
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=SPEC",
                        help="add a policy: NAME=module:factory (factory(env_id) -> policy) or NAME=agent.zip")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the aggregate CIs")
    args = parser.parse_args(argv)
    try:
        for item in args.policy:
            name, sep, spec = item.partition("=")
            if not sep:
                raise ValueError(f"--policy {item!r} must be NAME=module:factory or NAME=path.zip")
            evaluate_user_policy(args.results, name.strip(), spec.strip())
        for path in write_leaderboard(args.results, args.reps):
            print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as err:
        print(f"pkdose leaderboard: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
