"""How fast the simulator and the environments are, side by side in one run (one command).

    python benchmarks/bench_performance.py                 # everything, ~4 min on 2 cores
    python benchmarks/bench_performance.py --parts envs    # one part
    python benchmarks/bench_performance.py --json perf.json

Parts (each runs in its own child process, whose peak resident memory is reported):

1. simulator   the PK-VAE decoder (torch, numpy reference, the environments' fast path) vs the
               mechanistic ground truth on the same 1,000 patients and 10-interval regimens, per drug
               (``benchmarks/bench_simulator.py``);
2. envs        steps/s of a single environment per id (raw and ``gym.make``'d), patient-steps/s of
               the native vector env at N = 1, 64, 1,024, 4,096 and of Gymnasium's SyncVectorEnv
               over N single envs (N = 1, 64, 1,024; fewer steps or envs where it would take
               minutes, as the table says), traced memory;
3. evaluation  time to evaluate a policy on 10,000 virtual patients (``agents.evaluate``);
4. ppo         share of SB3 PPO training time spent in the environment (SB3's DummyVecEnv of
               gym.make'd envs vs ``agents.sb3_vec_env.NativeVecEnv``);
5. scaling     cost vs patients, steps per episode and number of drugs (three sizes each).

Absolute times vary with the load of a shared machine; compare the ratios, which are measured
within one run. Goals (issue 7) are printed with each table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _timing  # first: sets one BLAS thread before numpy is imported

PARTS = ("simulator", "envs", "evaluation", "ppo", "scaling")
SINGLE_DRUG_GOAL_STEPS_S = 20_000
NATIVE_GOALS = {"single": 1_000_000, "combination": 200_000}  # patient-steps/s at N = 4096
SYNC_RATIO_GOAL = 50.0
SIMULATOR_RATIO_GOAL = 100.0
NATIVE_SIZES, SYNC_SIZES = (1, 64, 1024, 4096), (1, 64, 1024)
SYNC_LARGE_STEPS = 3  # SyncVectorEnv at N = 1024: steps after reset (a whole episode would take minutes)
COMBINATION_SYNC_MAX = 64  # the combination's SyncVectorEnv steps 1,024 patients one by one at ~20 ms each
MEMORY_IDS = ("PKDose/Vancomycin-v0", "PKDose/PaclitaxelCarboplatin-v0")  # traced memory (tracing is slow)
EVALUATION_JOBS = (("PKDose/Vancomycin-v0", "standard"), ("PKDose/Vancomycin-v0", "ppo-mlp"),
                   ("PKDose/PaclitaxelCarboplatin-v0", "standard"))


def is_combination(env_id: str) -> bool:
    return "PaclitaxelCarboplatin" in env_id


# ---------------------------------------------------------------------------- parts (run in children)
def run_simulator(quick: bool) -> dict:
    from bench_simulator import bench_drug, shipped_drugs
    from tqdm import tqdm

    patients = 200 if quick else 1000
    return {"patients": patients, "intervals": 10, "rows": [
        bench_drug(drug, patients, 10, repeats=3, trace_memory=True) for drug in tqdm(shipped_drugs(), "simulator")]}


def run_envs(quick: bool) -> dict:
    import gymnasium as gym
    from bench_envs import BASE_IDS, single_env_rate, vector_peak_mib, vector_rate
    from tqdm import tqdm

    import pk_envs

    ids = BASE_IDS if quick else pk_envs.ALL_IDS
    single = [{"env_id": i, "raw": single_env_rate(i, True, 0.2), "gym": single_env_rate(i, False, 0.2)}
              for i in tqdm(ids, "single envs")]
    vector, memory = [], []
    sizes, sync_sizes = (NATIVE_SIZES[:3], SYNC_SIZES[:2]) if quick else (NATIVE_SIZES, SYNC_SIZES)
    for env_id in tqdm(BASE_IDS, "vector envs"):
        vector_rate(env_id, 300, "native", 2)  # load the compiled kernels (serial and parallel) outside the timing
        for n in sizes:
            vector.append(vector_rate(env_id, n, "native"))
        for n in sync_sizes:
            m = min(n, COMBINATION_SYNC_MAX) if is_combination(env_id) else n
            short = n >= 1024 or (is_combination(env_id) and n > 1)
            vector.append({**vector_rate(env_id, m, "sync", SYNC_LARGE_STEPS if short else None), "for_n": n})
        if env_id in MEMORY_IDS:
            memory.append({"env_id": env_id, "native_1024_mib": vector_peak_mib(env_id, 1024, "native"),
                           "sync_64_mib": vector_peak_mib(env_id, 64, "sync")})
    return {"single": single, "vector": vector, "memory": memory, "horizons": {
        i: int(gym.spec(i).max_episode_steps) for i in BASE_IDS}}


def run_evaluation(quick: bool) -> dict:
    from bench_training import policy_evaluation
    from tqdm import tqdm

    n = 1000 if quick else 10_000
    return {"rows": [policy_evaluation(i, p, n, num_envs=1000) for i, p in tqdm(EVALUATION_JOBS, "policy evaluation")]}


def run_ppo(quick: bool) -> dict:
    from bench_training import ppo_env_share
    from tqdm import tqdm

    steps = 64 if quick else 256
    jobs = [("PKDose/Vancomycin-v0", a, 8, steps, 1) for a in ("dummy", "native")] + \
        [("PKDose/Vancomycin-v0", "native", 64, 32, 1)] + \
        [("PKDose/PaclitaxelCarboplatin-v0", a, 8, 32, 1) for a in ("dummy", "native")] + \
        [("PKDose/PaclitaxelCarboplatin-v0", "native", 64, 8, 1)]
    return {"rows": [ppo_env_share(*job) for job in tqdm(jobs, "PPO")]}


def run_scaling(quick: bool) -> dict:
    from bench_envs import decoder_drug_scaling, episode_length_scaling, vector_rate
    from tqdm import tqdm

    n = 256 if quick else 1024
    vector_rate("PKDose/Vancomycin-v0", 300, "native", 2)  # load the compiled kernels outside the timing
    with tqdm(total=3, desc="scaling") as bar:
        patients = [vector_rate("PKDose/Vancomycin-v0", size, "native") for size in (64, n, 4 * n)]
        bar.update()
        lengths = episode_length_scaling("PKDose/Vancomycin-v0", n, (5, 10, 20))
        bar.update()
        drugs = decoder_drug_scaling(4 * n, ("vancomycin", "phenytoin", "theophylline"), repeats=5)
        combination = [vector_rate(i, n, "native") for i in ("PKDose/Vancomycin-v0", "PKDose/PaclitaxelCarboplatin-v0")]
        bar.update()
    return {"patients": patients, "lengths": lengths, "drugs": drugs, "env_drugs": combination}


# ---------------------------------------------------------------------------- tables
def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def goal(value: float, target: float) -> str:
    return "met" if value >= target else f"missed ({value / target:.2g} of it)"


def print_simulator(r: dict) -> None:
    from bench_simulator import markdown_rows

    print(f"\n## 1. Simulator: {r['patients']} patients x {r['intervals']} intervals, per drug\n")
    print("\n".join(markdown_rows(r["rows"])))
    print("\n| drug | traced peak MiB: ground truth | numpy reference | env fast path | goal: fast path >= 100x truth |")
    print("|---|---:|---:|---:|---|")
    for row in r["rows"]:
        truth = "-" if row["truth_mib"] != row["truth_mib"] else f"{row['truth_mib']:.1f}"  # NaN: not traced
        print(f"| {row['drug']} | {truth} | {row['numpy_mib']:.1f} | {row['fast_mib']:.1f} | "
              f"{goal(row['truth_s'] / row['fast_s'], SIMULATOR_RATIO_GOAL)} |")


def print_envs(r: dict) -> None:
    print("\n## 2. Environment steps per second\n\n| id | raw env steps/s | gym.make steps/s | goal (single drug) |")
    print("|---|---:|---:|---|")
    for row in r["single"]:
        target = "-" if is_combination(row["env_id"]) else goal(row["gym"], SINGLE_DRUG_GOAL_STEPS_S)
        print(f"| {row['env_id']} | {fmt(row['raw'])} | {fmt(row['gym'])} | {target} |")
    by = {(v["env_id"], v["mode"], v.get("for_n", v["n"])): v for v in r["vector"]}
    sizes = sorted({k[2] for k in by if k[1] == "native"})
    sync_sizes = sorted({k[2] for k in by if k[1] == "sync"})
    print("\nPatient-steps/s over a whole episode and its autoreset step (every patient redrawn once). "
          f"SyncVectorEnv at N = 1024, and the combination's at N > 1: {SYNC_LARGE_STEPS} steps after reset "
          f"(no redraws: this favours SyncVectorEnv); the combination's at N = {COMBINATION_SYNC_MAX} for the "
          "N = 1024 column (SyncVectorEnv steps its envs one by one: its cost is linear in N).\n")
    print("| id | " + " | ".join(f"native N={n}" for n in sizes) + " | " +
          " | ".join(f"Sync N={n}" for n in sync_sizes) + " | native/Sync at N=1024: whole episode; steps only "
          "(like for like) | goal at N=4096 |")
    print("|---|" + "---:|" * (len(sizes) + len(sync_sizes) + 1) + "---|")
    for env_id in dict.fromkeys(k[0] for k in by):
        native = [by[(env_id, "native", n)]["patient_steps_per_s"] for n in sizes]
        sync = [by[(env_id, "sync", n)] for n in sync_sizes]
        cells = [fmt(x) for x in native] + [fmt(s["patient_steps_per_s"]) + ("" if s["n"] == s["for_n"] else
                                                                               f" (N={s['n']})") for s in sync]
        ratios = "-"
        if 1024 in sync_sizes:
            whole = native[sizes.index(1024)] / sync[-1]["patient_steps_per_s"]
            like = by[(env_id, "native", 1024)]["course_steps_per_s"] / sync[-1]["patient_steps_per_s"]
            ratios = f"{whole:.1f}x; {like:.1f}x ({goal(like, SYNC_RATIO_GOAL)})"
        target = NATIVE_GOALS["combination" if is_combination(env_id) else "single"]
        top = goal(native[-1], target) if sizes[-1] == 4096 else "-"
        print(f"| {env_id} | " + " | ".join(cells) + f" | {ratios} | {top} |")
    print("\nNative vector env without the course-end redraw (the episode's steps only) vs with it:\n")
    print("| id | " + " | ".join(f"N={n}: steps only / with redraw" for n in sizes[1:]) + " |\n|---|" +
          "---:|" * (len(sizes) - 1))
    for env_id in dict.fromkeys(k[0] for k in by):
        cells = [by[(env_id, "native", n)] for n in sizes[1:]]
        print(f"| {env_id} | " + " | ".join(f"{fmt(c['course_steps_per_s'])} / {fmt(c['patient_steps_per_s'])}"
                                           for c in cells) + " |")
    print("\n| id | traced peak MiB: native N=1024 (make, reset, 2 steps) | SyncVectorEnv N=64 |\n|---|---:|---:|")
    for row in r["memory"]:
        print(f"| {row['env_id']} | {row['native_1024_mib']:.1f} | {row['sync_64_mib']:.1f} |")


def print_evaluation(r: dict) -> None:
    print("\n## 3. Policy evaluation (agents.evaluate.evaluate_policy, bootstrap CIs included)\n")
    print("| id | policy | patients | num_envs | seconds | patients/s |\n|---|---|---:|---:|---:|---:|")
    for row in r["rows"]:
        print(f"| {row['env_id']} | {row['policy']} | {row['n_patients']:,} | {row['num_envs']} | "
              f"{row['seconds']:.1f} | {fmt(row['patients_per_s'])} |")


def print_ppo(r: dict) -> None:
    print("\n## 4. PPO training: time inside the environment\n")
    print("| id | VecEnv | envs | timesteps | PPO.learn s | in env s | env share |\n|---|---|---:|---:|---:|---:|---:|")
    for row in r["rows"]:
        print(f"| {row['env_id']} | {row['adapter']} | {row['n_envs']} | {row['timesteps']:,} | {row['total_s']:.1f} | "
              f"{row['env_s']:.1f} | {100 * row['env_share']:.0f} % |")


def print_scaling(r: dict) -> None:
    print("\n## Scaling (PKDose/Vancomycin-v0 native vector env unless named)\n")
    print("| patients N | patient-steps/s | us per patient-step |\n|---:|---:|---:|")
    for row in r["patients"]:
        print(f"| {row['n']:,} | {fmt(row['patient_steps_per_s'])} | {1e6 / row['patient_steps_per_s']:.1f} |")
    print("\n| steps per episode | seconds per episode (reset + steps) | ms per step |\n|---:|---:|---:|")
    for row in r["lengths"]:
        print(f"| {row['length']} | {row['episode_s']:.2f} | {1e3 * row['episode_s'] / row['length']:.1f} |")
    print("\n| drugs (decoders stepped) | ms per step of all patients |\n|---|---:|")
    for row in r["drugs"]:
        print(f"| {row['drugs']} ({row['names']}) | {1e3 * row['step_s']:.1f} |")
    print("\n| environment | patient-steps/s |\n|---|---:|")
    for row in r["env_drugs"]:
        print(f"| {row['env_id']} (N={row['n']:,}) | {fmt(row['patient_steps_per_s'])} |")


PRINTERS = {"simulator": print_simulator, "envs": print_envs, "evaluation": print_evaluation, "ppo": print_ppo,
            "scaling": print_scaling}
RUNNERS = {"simulator": run_simulator, "envs": run_envs, "evaluation": run_evaluation, "ppo": run_ppo,
           "scaling": run_scaling}


def run_child(part: str, quick: bool) -> tuple[dict, float, float]:
    """Run one part in a child process: (results, seconds, the child's peak RSS in MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{part}.json"
        command = [sys.executable, __file__, "--child", part, "--json", str(out)] + (["--quick"] if quick else [])
        start = time.perf_counter()
        child = subprocess.Popen(command)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"part {part!r} failed (exit code {child.returncode})")
        return json.loads(out.read_text()), time.perf_counter() - start, _timing.maxrss_mib(usage)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test, not for the README)")
    p.add_argument("--json", type=Path, help="also write all results to this JSON file")
    p.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.json.write_text(json.dumps(RUNNERS[args.child](args.quick)))
        return 0
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    import torch

    start = time.perf_counter()
    results, footer = {}, []
    for part in parts:
        results[part], seconds, rss = run_child(part, args.quick)
        footer.append(f"| {part} | {seconds:.0f} | {rss:,.0f} |")
    print(f"# pkdose performance ({os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, "
          f"{'quick' if args.quick else 'full'} sizes)")
    for part in parts:
        PRINTERS[part](results[part])
    print("\n## 5. Peak memory and time of each part (child process)\n")
    print("| part | seconds | peak RSS MiB |\n|---|---:|---:|\n" + "\n".join(footer))
    print(f"\nTotal {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
