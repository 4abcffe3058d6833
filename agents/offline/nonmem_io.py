"""Logged episodes as a NONMEM-style table (one row per dose and observation), the clinic's data format.

Each episode is a patient, ``ID`` = episode index + 1 (its environment seed is
``LoggedEpisodes.seeds[ID - 1]``); ``TIME`` is hours from the first dose (dose ``k`` at
``k * interval``); a dose row has ``EVID 1, MDV 1``, ``AMT`` in mg and ``DUR`` the infusion length
(h; 0 for a held dose; no ``DUR`` column for oral drugs), ``DV`` empty (``.``); an observation row
``EVID 0, MDV 0`` and ``DV``. At equal times observations come first (a trough drawn at the next
dose's time is that dose's pre-dose sample). Covariates on every row in raw units: ``AGE`` y,
``SEX`` (1 male, 0 female), ``WT`` kg, ``HT`` cm, ``SCR`` mg/dL, ``CRCL`` mL/min, and ``BSA`` m2 only
with ``include_bsa=True``: the MIPD reader (:mod:`vae_simulator.nonmem`) refuses unknown columns
and derives BSA from WT and HT by Du Bois, as the virtual population does, so nothing is lost.

Single-drug ids: ``DV`` is the noisy assay (mg/L) at the drug's monitoring times (dose time +
``monitor_h``, e.g. vancomycin 2 h and 12 h); a missing sample has no row. Values are written as
the environment reported them (it applies no LLOQ); :func:`read_nonmem_histories` and the MIPD
reader censor results below the assay's LLOQ. :func:`read_nonmem_histories` reads a table back
through :func:`vae_simulator.nonmem.read_histories`.

Combination (paclitaxel + carboplatin every 504 h), ``CMT`` says what a row is:

| CMT | row | AMT / DV |
|---|---|---|
| 1 | paclitaxel dose (``DUR`` 3 h) | mg (mg/m2 x BSA) |
| 2 | carboplatin dose (``DUR`` 0.5 h) | mg (Calvert) |
| 3 | observed ANC: baseline at TIME 0, then day 21 of each cycle (the next cycle's pre-treatment count) | 1e9/L |
| 4 | observed ANC nadir of the cycle, written at the cycle's end (the environment reports the value, not its day) | 1e9/L |
| 5 | tumour sum of longest diameters at a RECIST assessment, at the cycle's end | mm |
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from agents.offline.env_facts import env_facts
from agents.offline.episodes import LoggedEpisodes
from vae_simulator.covariates import COVARIATE_NAMES
from vae_simulator.groundtruth import get_model
from vae_simulator.nonmem import DosingRules, PatientHistory, read_histories

MISSING = "."
CMT_PACLITAXEL, CMT_CARBOPLATIN, CMT_ANC, CMT_ANC_NADIR, CMT_TUMOUR_MM = 1, 2, 3, 4, 5


def _fmt(value) -> str:
    if isinstance(value, str):
        return value
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, ".10g")


def write_nonmem_table(episodes: LoggedEpisodes, path: str | os.PathLike, include_bsa: bool = False) -> Path:
    """Write ``episodes`` as a NONMEM-style CSV at ``path`` (layout in the module doc); returns the path.

    Raises:
        ValueError: the episodes lack the infos the table needs (e.g. logged without ``dose_mg``).
    """
    facts = env_facts(episodes.env_id)
    needed = ("covariates", "paclitaxel_mg", "carboplatin_mg", "anc_nadir_observed", "tumour_size_mm",
              "tumour_assessed") if facts.combination else ("covariates", "dose_mg", "samples_mg_l", "sample_missing")
    absent = [key for key in needed if key not in episodes.infos]
    if absent:
        raise ValueError(f"episodes of {episodes.env_id} lack infos {absent} needed for the NONMEM table "
                         f"(log them with agents.offline.collect.collect_episodes)")
    covariate_names = [c for c in COVARIATE_NAMES if include_bsa or c != "BSA"]
    infused = any(h > 0 for h in facts.infusion_h)
    header = ["ID", "TIME", "AMT"] + (["DUR"] if infused else []) + ["DV", "EVID", "MDV"] + \
        (["CMT"] if facts.combination else []) + covariate_names
    rows_of = _combination_rows if facts.combination else _single_drug_rows
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i in range(episodes.n_episodes):
            covariates = dict(zip(COVARIATE_NAMES, episodes.infos["covariates"][i, 0]))
            events = sorted(rows_of(episodes, i, facts), key=lambda e: (e["TIME"], e["EVID"], e.get("CMT", 0)))
            for event in events:
                row = {"ID": i + 1, "MDV": event["EVID"], "AMT": MISSING, "DUR": MISSING, "DV": MISSING, **event,
                       **{c: covariates[c] for c in covariate_names}}
                writer.writerow([_fmt(row[c]) for c in header])
    return path


def _dose(time_h: float, amount_mg: float, infusion_h: float, cmt: int | None = None) -> dict:
    event = {"TIME": time_h, "AMT": amount_mg, "DUR": infusion_h if amount_mg > 0 else 0.0, "EVID": 1}
    return event if cmt is None else {**event, "CMT": cmt}


def _observation(time_h: float, value: float, cmt: int | None = None) -> dict:
    event = {"TIME": time_h, "DV": value, "EVID": 0}
    return event if cmt is None else {**event, "CMT": cmt}


def _single_drug_rows(episodes: LoggedEpisodes, i: int, facts) -> list[dict]:
    tau, infusion = facts.interval_h, facts.infusion_h[0]
    events = []
    for k in range(int(episodes.lengths[i])):
        events.append(_dose(k * tau, episodes.infos["dose_mg"][i, k], infusion))
        seen = ~episodes.infos["sample_missing"][i, k].astype(bool)
        for t, value in zip(np.asarray(facts.monitor_h)[seen], episodes.infos["samples_mg_l"][i, k][seen]):
            events.append(_observation(k * tau + t, value))
    return events


def _combination_rows(episodes: LoggedEpisodes, i: int, facts) -> list[dict]:
    tau, index, infos = facts.interval_h, facts.obs_index, episodes.infos
    events = [_observation(0.0, episodes.observations[i, 0, index["anc_baseline"]], CMT_ANC)]
    for k in range(int(episodes.lengths[i])):
        end = (k + 1) * tau
        events += [_dose(k * tau, infos["paclitaxel_mg"][i, k], facts.infusion_h[0], CMT_PACLITAXEL),
                   _dose(k * tau, infos["carboplatin_mg"][i, k], facts.infusion_h[1], CMT_CARBOPLATIN),
                   _observation(end, episodes.observations[i, k + 1, index["anc_day21_last_cycle"]], CMT_ANC),
                   _observation(end, infos["anc_nadir_observed"][i, k], CMT_ANC_NADIR)]
        if infos["tumour_assessed"][i, k]:
            events.append(_observation(end, infos["tumour_size_mm"][i, k], CMT_TUMOUR_MM))
    return events


def table_dosing_rules(env_id: str) -> DosingRules:
    """What :func:`vae_simulator.nonmem.read_histories` needs to read a single-drug table of ``env_id``:
    the drug's schedule, infusion and LLOQ, the environment's dose range and its whole course
    (the MIPD command itself stops one dose short of the decoder's horizon)."""
    facts = env_facts(env_id)
    if facts.combination:
        raise ValueError(f"{env_id} is the two-drug combination; vae_simulator.nonmem reads single-drug tables "
                         f"(read the combination's rows with vae_simulator.nonmem.read_table)")
    return DosingRules(drug=facts.drug, interval_h=facts.interval_h, infusion_h=facts.infusion_h[0],
                       dose_range_mg=(0.0, facts.action_max[0]), lloq_mg_l=float(get_model(facts.drug).lloq_mg_l),
                       max_doses=facts.horizon)


def read_nonmem_histories(path: str | os.PathLike, env_id: str) -> list[PatientHistory]:
    """A single-drug table read back as patient histories, through the MIPD command's reader."""
    return read_histories(path, table_dosing_rules(env_id))
