"""Clinic drug-monitoring tables in the NONMEM data layout: reading, checking, and examples.

A table is a CSV file with a header line and one event per row (the layout NONMEM, nlmixr2 and
Pumas read). Columns (names case-insensitive; a ``#`` before the first header name is
allowed; later lines starting with ``#`` are comments):

=========  ==================================================================================
ID         patient identifier (any text); a patient's rows must be contiguous
TIME       h on any clock (e.g. since admission), >= 0, non-decreasing within a patient
AMT        dose in mg (dose rows)
DV         measured concentration in mg/L (observation rows)
EVID       1 = dose, 0 = observation (nothing else is supported)
MDV        optional; an observation row with MDV = 1 carries no measurement and is skipped
BLQ        optional; 1 = the assay reported the sample below its lower limit of quantification
AGE        y;  SEX: 1 / M = male, 0 / F = female;  WT: kg;  HT: cm
SCR, CRCL  serum creatinine (mg/dL) and/or creatinine clearance (mL/min), at least one of them
CMT        optional, ignored (one observed compartment)
RATE, DUR  optional; when given (> 0) the infusion length AMT/RATE or DUR must be the drug's
SS/ADDL/II optional; must be 0 or empty here (:mod:`vae_simulator.nonmem_events` expands them)
=========  ==================================================================================

Missing values are empty, ``.`` or ``NA``. Other columns are refused (a misspelt covariate must
not be silently ignored).

How a patient's rows become a dosing history for the PK-VAE, whose decoder only knows doses on
the drug's regular schedule (dose ``k`` at ``k * interval_h`` after the first):

* the first dose sets time 0; every dose must lie within ``tolerance_h`` of a scheduled time
  (first dose + k * interval), and a scheduled dose with no row before the patient's last dose is
  a held dose (0 mg); doses outside the range the PK-VAE was trained on are refused;
* a sample's time is taken from the *actual* time of the dose before it (so a dose given 0.2 h
  late moves its samples with it); a sample drawn at the same TIME as a dose is that dose's
  pre-dose trough; a trough drawn up to ``tolerance_h`` late is put at the end of its interval;
* a sample below the drug model's assay LLOQ, or flagged BLQ = 1, is censored: it is passed on as
  LLOQ/2 with a below-LLOQ flag, the convention the PK-VAE was trained with;
* covariates: the patient's most recent (last non-missing) value of each column; BSA is derived
  by Du Bois from WT and HT; CRCL by Cockcroft-Gault from SCR when the table has no CRCL; when it
  has only CRCL, SCR is derived by inverting Cockcroft-Gault (the pair the model was trained on).

Every refused row raises ``ValueError`` naming its data row (1-based, counting data rows only,
not the header or comments), its file line and the patient's ID.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_simulator.covariates import Covariates, cockcroft_gault_crcl

REQUIRED_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID")
COVARIATE_COLUMNS = {"AGE": "y", "SEX": "1/M male, 0/F female", "WT": "kg", "HT": "cm", "SCR": "mg/dL",
                     "CRCL": "mL/min"}
OPTIONAL_COLUMNS = ("MDV", "BLQ", "CMT", "RATE", "DUR", "SS", "ADDL", "II")
KNOWN_COLUMNS = REQUIRED_COLUMNS + tuple(COVARIATE_COLUMNS) + OPTIONAL_COLUMNS
MISSING = {"", ".", "NA"}
_SEX_CODES = {"1": 1.0, "M": 1.0, "MALE": 1.0, "0": 0.0, "F": 0.0, "FEMALE": 0.0}


@dataclass(frozen=True)
class DosingRules:
    """What a PK-VAE can be given: its drug's schedule and the doses and intervals it was trained on."""

    drug: str
    interval_h: float
    infusion_h: float
    dose_range_mg: tuple[float, float]
    lloq_mg_l: float
    max_doses: int
    tolerance_h: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance_h) and 0 <= self.tolerance_h < self.interval_h / 2):
            raise ValueError(f"schedule tolerance must be in [0, {self.interval_h / 2:g}) h, "
                             f"got {self.tolerance_h!r}")


@dataclass(frozen=True)
class PatientHistory:
    """One patient's dosing history and samples, time 0 = first dose (see module doc).

    ``covariates`` is ``(C,)`` in :data:`COVARIATE_NAMES` order; ``doses_mg`` ``(K,)`` per scheduled
    interval (0 = held); samples ``(M,)``: h from the first dose, mg/L (LLOQ/2 where ``sample_blq``).
    """

    id: str
    covariates: np.ndarray
    first_dose_time_h: float
    doses_mg: np.ndarray
    sample_times_h: np.ndarray
    sample_conc_mg_l: np.ndarray
    sample_blq: np.ndarray
    sample_rows: tuple[int, ...]

    @property
    def n_doses(self) -> int:
        return int(self.doses_mg.size)


@dataclass(frozen=True)
class _Row:
    index: int  # 1-based data row
    line: int  # 1-based file line
    values: dict[str, str]

    def error(self, message: str) -> ValueError:
        return ValueError(f"data row {self.index} (file line {self.line}), ID {self.values.get('ID', '?')}: "
                          f"{message}")

    def text(self, column: str) -> str:
        return self.values.get(column, "").strip()

    def number_or_none(self, column: str) -> float | None:
        """The column's value as a finite float, ``None`` when missing."""
        text = self.text(column)
        if text in MISSING:
            return None
        try:
            value = float(text)
        except ValueError:
            raise self.error(f"{column} value {text!r} is not a number") from None
        if not math.isfinite(value):
            raise self.error(f"{column} value {text!r} is not finite")
        return value

    def number(self, column: str) -> float:
        value = self.number_or_none(column)
        if value is None:
            raise self.error(f"{column} is missing")
        return value

    def flag(self, column: str) -> bool | None:
        value = self.number_or_none(column)
        if value not in (None, 0.0, 1.0):
            raise self.error(f"{column} must be 0 or 1, got {self.text(column)!r}")
        return None if value is None else value == 1.0


def read_table(path: str | Path, *, require_covariates: bool = True, columns: Sequence[str] | None = None,
               ignore_columns: Sequence[str] = (),
               unknown_hint: str = "remove other columns so that none is misread",
               ) -> tuple[tuple[str, ...], list[_Row]]:
    """Header and data rows of a CSV table; checks the columns (see module doc).

    ``require_covariates=False`` (the event reader, :mod:`vae_simulator.nonmem_events`) needs only
    ``ID, TIME, AMT, DV, EVID``; unknown columns are refused either way. ``columns`` replaces the
    allowed set (:data:`KNOWN_COLUMNS`; upper-case names), ``unknown_hint`` what the refusal of an
    unknown column advises; columns named in ``ignore_columns`` (any case) are dropped from the
    header and the rows, whether or not the table has them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"monitoring table {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as f:
        lines = [(i + 1, fields) for i, fields in enumerate(csv.reader(f))]
    lines = [(i, fields) for i, fields in lines if any(x.strip() for x in fields)]
    if not lines:
        raise ValueError(f"{path} is empty: expected a header line and data rows")
    full_header = [h.strip().upper() for h in lines[0][1]]
    full_header[0] = full_header[0].lstrip("#").strip()
    ignored = {c.strip().upper() for c in ignore_columns}
    covariates = ("AGE", "SEX", "WT", "HT") if require_covariates else ()
    not_ignorable = sorted(ignored & set(REQUIRED_COLUMNS + covariates))
    if not_ignorable:
        raise ValueError(f"{path}: required column(s) {not_ignorable} cannot be ignored")
    header = [h for h in full_header if h not in ignored]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise ValueError(f"{path}: column(s) {duplicated} appear more than once in the header")
    known = KNOWN_COLUMNS if columns is None else tuple(columns)
    unknown = [h for h in header if h not in known]
    if unknown:
        raise ValueError(f"{path}: unknown column(s) {unknown}; known columns: {', '.join(known)} "
                         f"({unknown_hint})")
    missing = [h for h in REQUIRED_COLUMNS + covariates if h not in header]
    if require_covariates and "SCR" not in header and "CRCL" not in header:
        missing.append("SCR or CRCL")
    if missing:
        needs = ", ".join(f"{c} ({COVARIATE_COLUMNS[c]})" if c in COVARIATE_COLUMNS else c for c in missing)
        also = " and the covariates AGE, SEX, WT, HT and SCR or CRCL" if require_covariates else ""
        raise ValueError(f"{path}: missing required column(s): {needs}. The PK-VAE needs every dose and "
                         f"sample{also}")
    rows = []
    for line, fields in lines[1:]:
        if fields[0].lstrip().startswith("#"):
            continue
        row = _Row(len(rows) + 1, line, {h: x for h, x in zip(full_header, fields) if h not in ignored})
        if len(fields) != len(full_header):
            raise row.error(f"has {len(fields)} fields but the header has {len(full_header)}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    return tuple(header), rows


def read_histories(path: str | Path, rules: DosingRules) -> list[PatientHistory]:
    """Every patient of a NONMEM-style table, in table order, checked against ``rules``."""
    header, rows = read_table(path)
    return [_history(pid, group, header, rules) for pid, group in group_rows(rows).items()]


def read_covariates(path: str | Path) -> dict[str, np.ndarray]:
    """Each patient's most recent covariates ``(C,)`` in :data:`COVARIATE_NAMES` order, by ID, in table
    order (the rules of the module docstring); for readers that take doses and samples elsewhere."""
    header, rows = read_table(path)
    return {pid: _covariates(pid, group, header) for pid, group in group_rows(rows).items()}


def group_rows(rows: list[_Row]) -> dict[str, list[_Row]]:
    """Each patient's rows, in table order; refuses a missing ID and interleaved patients."""
    groups: dict[str, list[_Row]] = {}
    previous = None
    for row in rows:
        pid = row.text("ID")
        if pid in MISSING:
            raise row.error("ID is missing")
        if pid != previous and pid in groups:
            raise row.error(f"rows of ID {pid} are interleaved with other patients' rows (its earlier rows "
                            f"end at data row {groups[pid][-1].index}); sort the table by ID, then TIME")
        groups.setdefault(pid, []).append(row)
        previous = pid
    return groups


def _history(pid: str, rows: list[_Row], header: Sequence[str], rules: DosingRules) -> PatientHistory:
    doses: list[tuple[float, float, _Row]] = []
    samples: list[tuple[float, float, bool, _Row]] = []
    last_time = -math.inf
    for row in rows:
        time = row.number("TIME")
        if time < 0:
            raise row.error(f"TIME {time:g} h is negative; doses and samples need TIME >= 0")
        if time < last_time:
            raise row.error(f"TIME {time:g} h is before the previous row's {last_time:g} h; "
                            f"sort each patient's rows by TIME")
        last_time = time
        evid = row.number("EVID")
        if evid not in (0.0, 1.0):
            raise row.error(f"EVID {row.text('EVID')} is not supported (1 = dose, 0 = observation)")
        if evid == 1.0:
            doses.append((time, _dose(row, rules), row))
            continue
        if "MDV" in header and row.flag("MDV"):
            continue  # an observation row without a measurement (e.g. a covariate update)
        flagged = bool(row.flag("BLQ")) if "BLQ" in header else False
        dv = row.number_or_none("DV") if flagged else row.number("DV")
        if dv is not None and dv < 0:
            raise row.error(f"DV {dv:g} mg/L is negative")
        samples.append((time, dv if dv is not None else 0.0, flagged, row))
    if not doses:
        raise rows[0].error(f"patient {pid} has no dose rows (EVID 1); the PK-VAE needs the dosing history")
    slots, offsets = _schedule(doses, rules)
    n_doses = int(slots[-1]) + 1
    doses_mg = np.zeros(n_doses)
    doses_mg[slots] = [amt for _, amt, _ in doses]
    times, conc, blq = _sample_times(samples, doses, slots, offsets, rules), [], []
    for _, dv, flagged, _ in samples:
        censored = flagged or dv < rules.lloq_mg_l
        conc.append(0.5 * rules.lloq_mg_l if censored else dv)
        blq.append(censored)
    return PatientHistory(id=pid, covariates=_covariates(pid, rows, header), first_dose_time_h=doses[0][0],
                          doses_mg=doses_mg, sample_times_h=np.asarray(times, dtype=float),
                          sample_conc_mg_l=np.asarray(conc, dtype=float),
                          sample_blq=np.asarray(blq, dtype=bool),
                          sample_rows=tuple(r.index for *_, r in samples))


def _dose(row: _Row, rules: DosingRules) -> float:
    amt = row.number("AMT")
    lo, hi = rules.dose_range_mg
    if not lo <= amt <= hi:
        raise row.error(f"AMT {amt:g} mg is outside the range the PK-VAE of {rules.drug} was trained on, "
                        f"[{lo:g}, {hi:g}] mg; it does not extrapolate")
    for column in ("SS", "ADDL", "II"):
        if row.number_or_none(column) not in (None, 0.0):
            raise row.error(f"{column} = {row.text(column)}: steady-state and additional-dose records are "
                            f"not supported; write every dose as its own row")
    rate, duration = row.number_or_none("RATE"), row.number_or_none("DUR")
    if (rate is not None and rate < 0) or (duration is not None and duration < 0):
        raise row.error("RATE and DUR must be >= 0 (modelled rates, RATE -1/-2, are not supported)")
    length = duration if duration else (amt / rate if rate else None)
    if length is not None and amt > 0 and abs(length - rules.infusion_h) > rules.tolerance_h:
        raise row.error(f"an infusion of {length:g} h differs from the {rules.infusion_h:g}-h infusion the "
                        f"PK-VAE of {rules.drug} models")
    return amt


def _schedule(doses: list[tuple[float, float, _Row]], rules: DosingRules) -> tuple[np.ndarray, np.ndarray]:
    """Scheduled slot of each dose and its offset from the schedule (h)."""
    tau, start = rules.interval_h, doses[0][0]
    slots, offsets, filled = [], [], {}
    for time, _, row in doses:
        slot = round((time - start) / tau)
        offset = time - start - slot * tau
        if abs(offset) > rules.tolerance_h:
            raise row.error(f"dose at TIME {time:g} h is {abs(offset):.2f} h off the every-{tau:g}-h "
                            f"schedule that starts with the first dose at TIME {start:g} h (tolerance "
                            f"{rules.tolerance_h:g} h); the PK-VAE only knows doses on that schedule")
        if slot in filled:
            raise row.error(f"a second dose for scheduled dose {slot + 1} (TIME {start + slot * tau:g} h); "
                            f"data row {filled[slot]} already gives it")
        if slot + 1 > rules.max_doses:
            raise row.error(f"dose {slot + 1} of the course: the PK-VAE of {rules.drug} was trained on "
                            f"{rules.max_doses + 1} intervals, so it can advise the next dose after at most "
                            f"{rules.max_doses} doses; give only the most recent course")
        filled[slot] = row.index
        slots.append(slot)
        offsets.append(offset)
    return np.asarray(slots), np.asarray(offsets)


def _sample_times(samples, doses, slots: np.ndarray, offsets: np.ndarray, rules: DosingRules) -> list[float]:
    """Each sample's time from the first dose on the regular schedule (see module doc)."""
    tau, start = rules.interval_h, doses[0][0]
    dose_times = np.array([t for t, _, _ in doses])
    out = []
    for time, _, _, row in samples:
        before = int(np.searchsorted(dose_times, time, side="left")) - 1  # last dose strictly before it
        if before < 0:
            raise row.error(f"observation at TIME {time:g} h is not after the patient's first dose "
                            f"(TIME {start:g} h); pre-dose samples carry no information for the model: "
                            f"remove the row")
        relative = time - start - offsets[before]
        if before + 1 < len(doses):
            end = slots[before + 1] * tau  # a trough drawn just before a late next dose
        else:
            end = (slots[-1] + 1) * tau
            if relative > end + rules.tolerance_h:
                gap = time - dose_times[-1]
                raise row.error(f"observation at TIME {time:g} h is {gap:g} h after the last "
                                f"dose (TIME {dose_times[-1]:g} h), beyond its {tau:g}-h interval; add the "
                                f"later dose rows (AMT 0 for a held dose) or remove the sample")
        out.append(min(relative, end))
    return out


def _covariates(pid: str, rows: list[_Row], header: Sequence[str]) -> np.ndarray:
    """The patient's most recent covariates in :data:`COVARIATE_NAMES` order (see module doc)."""
    latest: dict[str, float] = {}
    columns = [c for c in COVARIATE_COLUMNS if c in header]
    for row in rows:  # every value is checked; the last one given wins
        for column in columns:
            text = row.text(column)
            if text in MISSING:
                continue
            if column == "SEX":
                if text.upper() not in _SEX_CODES:
                    raise row.error(f"SEX {text!r} is not 1/M (male) or 0/F (female)")
                latest[column] = _SEX_CODES[text.upper()]
            else:
                latest[column] = row.number(column)
    span = f"data rows {rows[0].index}-{rows[-1].index}"
    missing = [c for c in ("AGE", "SEX", "WT", "HT") if c not in latest]
    if "SCR" not in latest and "CRCL" not in latest:
        missing.append("SCR or CRCL")
    if missing:
        raise ValueError(f"ID {pid} ({span}): covariate(s) {', '.join(missing)} missing on all of the "
                         f"patient's rows; the PK-VAE needs them")
    age, sex, wt = latest["AGE"], latest["SEX"], latest["WT"]
    scr = latest.get("SCR")
    derived = ""
    if scr is None:
        if latest["CRCL"] <= 0:
            raise ValueError(f"ID {pid} ({span}): CRCL {latest['CRCL']:g} mL/min must be > 0")
        scr = float(cockcroft_gault_crcl(age, wt, 1.0, sex) / latest["CRCL"])  # CG inverted: CrCL is 1/SCr
        derived = " (SCR derived from CRCL by inverting Cockcroft-Gault)"
    try:
        cov = Covariates.from_measurements(age_y=age, sex=sex, wt_kg=wt, ht_cm=latest["HT"], scr_mg_dl=scr,
                                           crcl_ml_min=latest.get("CRCL"))
    except ValueError as exc:
        raise ValueError(f"ID {pid} ({span}): {str(exc).replace(' at patient 0', '')}{derived}") from None
    return cov.as_array()[0]
