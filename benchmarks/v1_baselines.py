"""Standard dosing, VAE-MIPD and the oracle on the -v1 ids (patients from the continuous-time PK-VAE).

    PYTHONPATH=. python3 benchmarks/v1_baselines.py                    # the README's table, ~2 min
    PYTHONPATH=. python3 benchmarks/v1_baselines.py --regimen-map 30   # + regimen MIPD with MAP
    PYTHONPATH=. python3 benchmarks/v1_baselines.py --ids PKDose/Mycophenolate-v2   # other ids

Every policy doses the same held-out patients (seeds from ``agents.callbacks.TEST_SEED``); the
table gives the fraction of intervals (regimen ids: hours) in the target window with its 95 %
bootstrap CI.
"""

from __future__ import annotations

import argparse

from agents.baselines import StandardDosingPolicy
from agents.callbacks import TEST_SEED
from agents.evaluate import evaluate_policy
from agents.model_based import MIPDPolicy, OraclePolicy
from agents.regimen_policies import MIPDRegimenPolicy

DRUGS = ("Vancomycin", "Phenytoin", "Mycophenolate", "Theophylline", "Pembrolizumab")


def _cell(result) -> str:
    e = result.metrics["in_window_fraction"]
    return f"{e.mean:.3f} [{e.low:.3f}, {e.high:.3f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=1000, help="held-out patients per drug (default 1000)")
    p.add_argument("--ids", default=",".join(f"PKDose/{d}-v1" for d in DRUGS),
                   help="comma-separated single-drug ids (default: the five -v1 ids)")
    p.add_argument("--regimen-map", type=int, default=0, metavar="STEPS",
                   help="also evaluate MIPDRegimenPolicy(map_steps=STEPS) on PKDose/Vancomycin-Regimen-v0")
    args = p.parse_args(argv)
    kw = {"n_patients": args.patients, "seed": TEST_SEED, "progress": True}
    print("| id | standard | VAE-MIPD | oracle |\n|---|---:|---:|---:|")
    for env_id in (i.strip() for i in args.ids.split(",") if i.strip()):
        cells = [_cell(evaluate_policy(env_id, policy(env_id), **kw))
                 for policy in (StandardDosingPolicy, MIPDPolicy, OraclePolicy)]
        print(f"| {env_id} | " + " | ".join(cells) + " |", flush=True)
    if args.regimen_map:
        env_id = "PKDose/Vancomycin-Regimen-v0"
        standard = _cell(evaluate_policy(env_id, StandardDosingPolicy(env_id), **kw))
        mipd = _cell(evaluate_policy(env_id, MIPDRegimenPolicy(env_id, map_steps=args.regimen_map), **kw))
        print(f"\n{env_id}: standard {standard}, MIPD 2 levels + MAP {args.regimen_map}: {mipd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
