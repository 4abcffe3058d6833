"""The combination study: agents against conventional dosing, the adaptive clinical rule and an oracle,
on the published result's terms (response rate and serious-adverse-event rate), per tumour type.

    python -m agents.combination_study --policy "PPO w_tox=1=runs/v1/ppo-w1-s0/best_model.zip" \\
        --patients 2847 --out reports/combination_v1

For ``PKDose/PaclitaxelCarboplatin-v1`` on a held-out cohort (seeds from 2,500,000; 2,847 patients,
the size of the published cohort, by default) it evaluates conventional dosing with the label's
reductions, the toxicity-adaptive clinical rule, every ``--policy`` (an SB3 zip), and an oracle
that knows the true patient: for each patient, the best of the 25 constant dose-level regimens
(:data:`pk_envs.combination_core.DOSE_LEVELS` per drug) found by simulating all of them on that
very patient (same seed), for each trade-off ``lambda`` in ``--oracle-lambdas`` (maximising
response - lambda x serious adverse event, ties broken by the scalar reward). A constant regimen is
a lower bound on what a per-cycle oracle could reach, said so in the report. It also fits and
evaluates the informed-regimen policy (:mod:`agents.informed_regimen`: outcome models fitted on
other simulated patients choose a constant regimen after cycle 1 and again after the first tumour
assessment) for each ``--informed-lambdas`` trade-off: what the observation is worth without
clairvoyance.

Writes ``combination_study.md`` (the goal table: relative changes against conventional dosing with
paired bootstrap 95 % CIs, overall and per tumour type; the published goal is +23.4 % response and
-18.7 % serious adverse events at once), ``combination_study.json`` and ``pareto_v1.png``. The
environment is used through the Gymnasium API and its public ``conventional_action`` /
``adaptive_action`` only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from agents.baselines import AdaptiveRulePolicy, SB3Policy, StandardDosingPolicy
from agents.benchmark import pooled, relative_change
from agents.checkpoints import load_agent
from agents.evaluate import OBJECTIVE_RESPONSE_CODES, EvaluationResult, bootstrap_ci, evaluate_policy

ENV_ID = "PKDose/PaclitaxelCarboplatin-v1"
STUDY_SEED = 2_500_000  # disjoint from the training runs' validation cohort (agents.callbacks.VALIDATION_SEED)
PUBLISHED_COHORT = 2847
GOAL_RESPONSE, GOAL_SAE = 0.234, -0.187
TUMOUR_NAMES = ("NSCLC", "ovarian", "endometrial")
#: dose levels of the oracle's constant regimens, fractions of 175 mg/m2 and AUC 6
ORACLE_LEVELS = (0.0, 0.6, 0.8, 1.0, 1.2)
#: the standard doses the levels are fractions of: paclitaxel mg/m2, carboplatin AUC mg*min/mL
STANDARD_DOSES = np.array([175.0, 6.0])


def regimen_levels() -> np.ndarray:
    """The ``(25, 2)`` constant regimens of the oracle and the informed regimen, as dose levels
    (fractions of paclitaxel 175 mg/m2 and carboplatin AUC 6 mg*min/mL)."""
    return np.array([(a, b) for a in ORACLE_LEVELS for b in ORACLE_LEVELS])


def regimen_rollouts(envs: gym.vector.VectorEnv, seeds: list[int], regimen_actions: np.ndarray,
                     prior=None, given_before: int = 0) -> dict[str, np.ndarray]:
    """Patients ``seeds`` (each repeated once per regimen, so ``envs.num_envs = len(seeds) x R``) dosed
    by the batched policy ``prior`` for their first ``given_before`` cycles, then by each of the ``R``
    ``regimen_actions``: ``(P, R)`` arrays of ``objective_response``, ``serious_adverse_event`` (on
    ``-v0``, with no serious-adverse-event tally, grade-4 neutropenia) and ``return`` (scalar reward),
    the observations ``at_decision`` ``(P, D)`` and ``open_at_decision`` ``(P,)`` (course not ended)."""
    n_patients, n_regimens = len(seeds), len(regimen_actions)
    obs, infos = envs.reset(seed=[s for s in seeds for _ in range(n_regimens)])
    if prior is not None:
        prior.reset(envs.num_envs)
    every_regimen = np.tile(regimen_actions, (n_patients, 1))
    done = np.zeros(envs.num_envs, bool)
    ret, response, serious = np.zeros(envs.num_envs), np.zeros(envs.num_envs), np.zeros(envs.num_envs)
    at_decision, open_at_decision = obs[::n_regimens], np.zeros(n_patients, bool)
    step = 0
    while not done.all():
        if step == given_before:
            at_decision, open_at_decision = obs[::n_regimens], ~done[::n_regimens]
        obs, rewards, terminated, truncated, infos = envs.step(prior(obs, infos) if step < given_before
                                                               else every_regimen)
        step += 1
        ret += np.where(done, 0.0, rewards)
        ending = ~done & (terminated | truncated)
        response = np.where(ending, np.isin(infos["best_response"], OBJECTIVE_RESPONSE_CODES), response)
        tally = (infos["any_serious_adverse_event"] if "any_serious_adverse_event" in infos
                 else np.asarray(infos["grade4_events"]) > 0)
        serious = np.where(ending, tally, serious)
        done |= ending
    return {"objective_response": response.reshape(n_patients, n_regimens),
            "serious_adverse_event": serious.reshape(n_patients, n_regimens),
            "return": ret.reshape(n_patients, n_regimens), "at_decision": at_decision,
            "open_at_decision": open_at_decision}


def oracle_outcomes(seeds: list[int], env_kwargs: dict | None = None, batch_patients: int = 40,
                    progress: bool = True, env_id: str = ENV_ID) -> dict[str, np.ndarray]:
    """Every constant regimen on every patient: ``(P, R)`` arrays of ``objective_response``,
    ``serious_adverse_event``, ``return`` (scalar reward) and the regimens ``(R, 2)`` as dose levels.

    ``env_id``: a scalar combination id; on ``-v0`` (no serious-adverse-event tally) the toxicity
    column is its grade-4 neutropenia."""
    levels = regimen_levels()
    envs = gym.make_vec(env_id, num_envs=batch_patients * len(levels), vectorization_mode="vector_entry_point",
                        **(env_kwargs or {}))
    regimen_actions = level_actions(levels, env_kwargs, env_id)
    keys = ("objective_response", "serious_adverse_event", "return")
    out: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    try:
        for start in tqdm(range(0, len(seeds), batch_patients), desc="oracle regimens", disable=not progress):
            chunk = list(seeds[start:start + batch_patients]) + [seeds[-1]] * max(0, start + batch_patients - len(seeds))
            rollouts = regimen_rollouts(envs, chunk, regimen_actions)
            keep = min(batch_patients, len(seeds) - start)
            for key in keys:
                out[key].append(rollouts[key][:keep])
    finally:
        envs.close()
    return {**{k: np.concatenate(v) for k, v in out.items()}, "levels": levels}


def level_actions(levels: np.ndarray, env_kwargs: dict | None, env_id: str = ENV_ID) -> np.ndarray:
    """Actions of ``(R, 2)`` dose levels (fractions of :data:`STANDARD_DOSES`) through the environment's
    public ``doses_to_action``."""
    env = gym.make(env_id, **(env_kwargs or {})).unwrapped
    return np.stack([env.doses_to_action(pac, carbo) for pac, carbo in levels * STANDARD_DOSES]).astype(np.float32)


def best_regimens(outcomes: dict[str, np.ndarray], lam: float) -> np.ndarray:
    """Per patient, the index of the regimen best for response - ``lam`` x serious adverse event
    (ties: higher return), from :func:`oracle_outcomes`."""
    score = outcomes["objective_response"] - lam * outcomes["serious_adverse_event"] + 1e-6 * outcomes["return"]
    return score.argmax(axis=1)


def oracle_result(outcomes: dict[str, np.ndarray], lam: float, tumour_type: np.ndarray,
                  seed: int = STUDY_SEED) -> EvaluationResult:
    """The per-patient best regimen for response - ``lam`` x serious adverse event (ties: higher return)."""
    best = best_regimens(outcomes, lam)
    rows = np.arange(best.size)
    per_patient = {k: outcomes[k][rows, best].astype(float) for k in ("objective_response", "serious_adverse_event",
                                                                         "return")}
    per_patient["tumour_type"] = tumour_type.astype(float)
    return EvaluationResult(ENV_ID, f"oracle (constant regimen, lambda={lam:g})", best.size, seed, per_patient,
                            bootstrap_ci(per_patient))


def subset(result: EvaluationResult, mask: np.ndarray) -> EvaluationResult:
    """The patients of ``mask`` (one cohort's; tiled over pooled seeds)."""
    mask = np.tile(mask, result.n_patients // mask.size)
    per_patient = {k: v[mask] for k, v in result.per_patient.items()}
    return EvaluationResult(result.env_id, result.policy_name, int(mask.sum()), result.seed, per_patient,
                            bootstrap_ci(per_patient))


def goal_rows(results: list[EvaluationResult], conventional: EvaluationResult, adaptive: EvaluationResult) -> list[str]:
    """Markdown rows: rates, relative changes vs conventional (paired 95 % CIs) and vs the adaptive rule."""
    lines = [("| policy | patients | response rate | SAE rate | response vs conventional | SAE vs conventional | "
              "goal met (+23.4 % and -18.7 %, CIs exclude 0) | response vs adaptive | SAE vs adaptive |"),
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in results:
        reference, rule = tiled(conventional, r.n_patients), tiled(adaptive, r.n_patients)
        resp = relative_change(r, reference, "objective_response")
        sae = relative_change(r, reference, "serious_adverse_event")
        met = resp[0] >= GOAL_RESPONSE and sae[0] <= GOAL_SAE and resp[1] > 0 and sae[2] < 0
        vs = [relative_change(r, rule, k) for k in ("objective_response", "serious_adverse_event")]
        lines.append(f"| {r.policy_name} | {r.n_patients} | {r.metrics['objective_response'].mean:.3f} | "
                     f"{r.metrics['serious_adverse_event'].mean:.3f} | {_pct(resp)} | {_pct(sae)} | "
                     f"{'MET' if met else 'missed'} | {_pct(vs[0])} | {_pct(vs[1])} |")
    return lines


def dose_rows(results: list[EvaluationResult]) -> list[str]:
    """Markdown rows: mean doses per cycle given, overall and after the assessment that found the first
    objective response (what a policy does once the response endpoint is reached)."""
    lines = [("| policy | paclitaxel per cycle, mg/m2 | carboplatin per cycle, AUC mg*min/mL | cycles after the first "
              "response, per responder | paclitaxel per cycle after it | carboplatin per cycle after it |"),
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if "cycles_after_response" not in r.per_patient:  # the oracle rows: constant regimens, no per-cycle log
            continue
        totals = {k: float(v.sum()) for k, v in r.per_patient.items()}
        cycles, after = totals["steps"], totals["cycles_after_response"]
        cells = [f"{totals[key] / n:.3g}" if n else "-" for key, n in (
            ("cumulative_paclitaxel_mg_m2", cycles), ("cumulative_carboplatin_auc", cycles),
            ("paclitaxel_after_response_mg_m2", after), ("carboplatin_after_response_auc", after))]
        per_responder = after / max(totals["objective_response"], 1.0)
        lines.append(f"| {r.policy_name} | {cells[0]} | {cells[1]} | {per_responder:.2f} | {cells[2]} | {cells[3]} |")
    return lines


def tiled(reference: EvaluationResult, n_patients: int) -> EvaluationResult:
    """``reference`` repeated to ``n_patients`` (several training seeds pooled on the same cohort)."""
    if n_patients == reference.n_patients:
        return reference
    if n_patients % reference.n_patients:
        raise ValueError(f"{n_patients} patients is not a whole number of {reference.n_patients}-patient cohorts")
    return pooled([reference] * (n_patients // reference.n_patients), reference.policy_name)


def _pct(change: tuple[float, float, float]) -> str:
    point, low, high = (100.0 * c for c in change)
    return f"{point:+.1f} % [{low:+.1f}, {high:+.1f}]"


def plot_pareto(points: list[EvaluationResult], front: list[EvaluationResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    xs = [r.metrics["serious_adverse_event"].mean for r in front]
    ys = [r.metrics["objective_response"].mean for r in front]
    ax.plot(xs, ys, "-o", color="tab:gray", ms=3, label="oracle front (best constant regimen per patient)")
    for r in points:
        sae, resp = r.metrics["serious_adverse_event"], r.metrics["objective_response"]
        ax.errorbar(sae.mean, resp.mean, xerr=[[sae.mean - sae.low], [sae.high - sae.mean]],
                    yerr=[[resp.mean - resp.low], [resp.high - resp.mean]], fmt="o", capsize=3, label=r.policy_name)
    ref = points[0]
    ax.axhline(ref.metrics["objective_response"].mean * (1 + GOAL_RESPONSE), ls=":", color="tab:green",
               label="goal: +23.4 % response")
    ax.axvline(ref.metrics["serious_adverse_event"].mean * (1 + GOAL_SAE), ls=":", color="tab:red",
               label="goal: -18.7 % serious adverse events")
    ax.set_xlabel("patients with a serious adverse event")
    ax.set_ylabel("objective response rate (RECIST CR/PR)")
    ax.set_title(f"{ENV_ID}: response vs serious adverse events ({ref.n_patients} patients)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_policy(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (or a bare PATH, named after it)."""
    name, sep, path = text.rpartition("=")
    return (name, path) if sep else (Path(text).parent.name, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pkdose study", description=__doc__.splitlines()[0],
                                epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", action="append", default=[], metavar="NAME=ZIP",
                   help="a trained SB3 policy of the v1 id (repeatable; the same NAME for several training seeds "
                        "pools them into one row, each seed on the same cohort)")
    p.add_argument("--patients", type=int, default=PUBLISHED_COHORT, help="held-out cohort (default 2847)")
    p.add_argument("--seed", type=int, default=STUDY_SEED,
                   help=f"first patient seed of the cohort (default {STUDY_SEED:,}; another one gives a validation "
                        "cohort, e.g. to choose a trade-off before the study)")
    p.add_argument("--oracle-lambdas", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
                   help="trade-offs of the oracle front (none: skip the oracle)")
    p.add_argument("--informed-lambdas", type=float, nargs="*", default=[0.15, 0.2, 0.25],
                   help="trade-offs of the informed-regimen policy (agents.informed_regimen; none: skip it)")
    p.add_argument("--informed-stages", type=int, default=2,
                   help="its decisions: the first N of those before cycles 2, 3 and 5 (default 2: after cycle 1's "
                        "counts and after the first tumour assessment)")
    p.add_argument("--informed-patients", type=int, default=5000,
                   help="training patients its outcome models are fitted on, per decision (default 5000)")
    p.add_argument("--out", type=Path, default=Path("reports/combination_v1"))
    p.add_argument("--no-progress", action="store_true")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.patients < 10:
        p.error(f"--patients must be >= 10, got {args.patients}")
    if not 0 <= args.seed < 2**31 - args.patients:
        p.error(f"--seed must be in [0, {2**31 - args.patients}), got {args.seed}")
    if any(lam < 0 for lam in args.oracle_lambdas):
        p.error(f"--oracle-lambdas must be >= 0, got {args.oracle_lambdas}")
    if any(not lam >= 0 for lam in args.informed_lambdas):
        p.error(f"--informed-lambdas must be >= 0, got {args.informed_lambdas}")
    from agents.informed_regimen import (  # imports this module's constants
        DECISION_CYCLES,
        fit_informed_regimens,
    )

    if not 1 <= args.informed_stages <= len(DECISION_CYCLES) or args.informed_patients < 50:
        p.error(f"--informed-stages must be in 1..{len(DECISION_CYCLES)} and --informed-patients >= 50, got "
                f"{args.informed_stages} and {args.informed_patients}")
    policies = [parse_policy(t) for t in args.policy]
    for name, path in policies:
        if not Path(path).is_file():
            p.error(f"policy {name!r}: no file {path}")
    args.out.mkdir(parents=True, exist_ok=True)
    kw = {"n_patients": args.patients, "seed": args.seed, "progress": not args.no_progress}
    conventional = evaluate_policy(ENV_ID, StandardDosingPolicy(ENV_ID), policy_name="conventional (label reductions)",
                                   **kw)
    adaptive = evaluate_policy(ENV_ID, AdaptiveRulePolicy(ENV_ID), policy_name="adaptive clinical rule", **kw)
    agents = []
    for name in dict.fromkeys(name for name, _ in policies):  # a name given several times: seeds, pooled
        runs = []
        for path in (path for other, path in policies if other == name):
            model, _ = load_agent(Path(path), expected_env_id=ENV_ID)
            runs.append(evaluate_policy(ENV_ID, SB3Policy(model), policy_name=name, **kw))
        agents.append(runs[0] if len(runs) == 1 else pooled(runs, f"{name} ({len(runs)} seeds pooled)"))
    if args.informed_lambdas:
        informed = fit_informed_regimens(args.informed_lambdas, args.informed_stages, args.informed_patients,
                                         progress=not args.no_progress)
        agents += [evaluate_policy(ENV_ID, policy, policy_name=f"informed regimen ({args.informed_stages} "
                                   f"decisions, lambda={lam:g})", **kw) for lam, policy in informed.items()]
    tumour_type = conventional.per_patient["tumour_type"]
    front = []
    if args.oracle_lambdas:
        outcomes = oracle_outcomes([args.seed + i for i in range(args.patients)], progress=not args.no_progress)
        front = [oracle_result(outcomes, lam, tumour_type, args.seed) for lam in args.oracle_lambdas]
    everyone = [conventional, adaptive, *agents, *front]
    sections = [f"# {ENV_ID}: the combination study\n",
                (f"Command: `pkdose study {' '.join(argv)}`. Held-out cohort: "
                f"{args.patients} virtual patients (seeds {args.seed}..{args.seed + args.patients - 1}). "
                "SAE = any of grade 4 neutropenia, febrile neutropenia, grade 4 thrombocytopenia, severe neuropathy. "
                "Relative changes are paired (same patients) with percentile-bootstrap 95 % CIs. The oracle picks, "
                "per patient, the best of 25 constant dose-level regimens simulated on that very patient: a lower "
                 "bound on a per-cycle oracle.\n"), "## All tumour types\n",
                *goal_rows(everyone, conventional, adaptive),
                "\n### Doses given\n", *dose_rows([conventional, adaptive, *agents])]
    for code, name in enumerate(TUMOUR_NAMES):
        mask = tumour_type == code
        if mask.sum() >= 10:
            sections += [f"\n## {name} ({int(mask.sum())} patients)\n",
                         *goal_rows([subset(r, mask) for r in everyone], subset(conventional, mask),
                                    subset(adaptive, mask))]
    sections.append("\n![Pareto front](pareto_v1.png)\n")
    (args.out / "combination_study.md").write_text("\n".join(sections) + "\n")
    (args.out / "combination_study.json").write_text(json.dumps(
        {r.policy_name: {k: [e.mean, e.low, e.high] for k, e in r.metrics.items()} for r in everyone}, indent=2))
    plot_pareto([conventional, adaptive, *agents], front, args.out / "pareto_v1.png")
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
