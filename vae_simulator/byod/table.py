"""A clinic's own NONMEM-style table, with the covariates it declares, read for training a PK-VAE.

The table follows the NONMEM data conventions (NONMEM Users Guide, Part V, and the PREDPP data
items and EVID definitions of Part VI): one event record per row, a subject's records contiguous
and in time order. Header, comment, missing-value (empty, ``.``, ``NA``) and row-naming
conventions are those of :mod:`vae_simulator.nonmem`; dose, infusion, SS/II/ADDL and sample rules
those of :mod:`vae_simulator.nonmem_events`, whose per-patient machinery reads each occasion here.

============  ================================================================================
ID            subject identifier (any text); a subject's rows must be contiguous
TIME          h, >= 0, non-decreasing within an occasion (it may restart at a reset, as in NONMEM)
AMT, DV       dose in mg (AMT 0: a held dose); measured concentration in mg/L
EVID          0 observation, 1 dose, 2 other, 3 reset, 4 reset and dose (see below)
MDV           optional; an observation row with MDV = 1 carries no measurement and is skipped
RATE, DUR     optional; infusion rate mg/h (RATE -2: the duration is DUR) or duration h
SS, II, ADDL  optional; SS 1 on an occasion's first dose row (expanded into ``ss_doses`` prior
              doses), ADDL additional doses every II h
BLQ, LLOQ     optional; 1 = below the assay's LLOQ; the LLOQ in mg/L (one per table)
CMT           optional, ignored (one observed compartment)
covariates    the declared columns (:class:`CovariateSpec`): numeric, or categorical (any text)
============  ================================================================================

Any other column is refused (a misspelt or forgotten covariate must not be silently dropped):
declare it as a covariate or name it in ``ignore_columns`` (CLI ``--ignore-columns``). The fixed
reader's covariates (AGE, SEX, WT, HT, SCR, CRCL) are ordinary columns here: declare or ignore them.

EVID: 0 observation; 1 dose; 2 other-type event (e.g. a covariate change): neither dose nor
sample, but its covariate values count; 3 reset: the system is emptied and a new occasion, a new
*record* ``ID#k`` (k = 2, 3, ...), starts, its clock at its first dose (no AMT on the reset row);
4 reset and dose: a new occasion starting with this dose. A subject whose first row is a reset has
no earlier occasion (its first record is ``ID``). An occasion without a dose is refused naming its
rows; samples after a reset but before the occasion's first dose are refused as pre-dose samples.

Censoring: the LLOQ is the ``lloq_mg_l`` argument, else the LLOQ column (> 0, the same on every row
giving it), else none. A sample with DV < LLOQ, or BLQ = 1, is carried as LLOQ/2 with ``blq`` True.

Covariates: numeric values are parsed as numbers, categorical ones kept as stripped text (case
matters). A record takes the value in effect at its first dose row: the subject's last non-missing
value on or before that row (carried forward over EVID 0-3 rows and earlier occasions), else one
back-filled from the subject's first recorded value, else None (imputed by
:class:`CovariateEncoder`, with a warning). The PK-VAE takes one covariate vector per record, so
time-varying covariates are NOT modelled: a change within a record is not used.

Not supported: several observed compartments or analytes, an LLOQ varying within the table, RATE
-1, SS 2/3, SS after earlier doses of an occasion, time-varying covariates within a record. All
refusals raise ``ValueError``, naming data row, file line and ID where a row is at fault.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vae_simulator import nonmem_events as ne
from vae_simulator.events import DosingEvents, EventLimits
from vae_simulator.nonmem import MISSING, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, _Row, group_rows, read_table
from vae_simulator.nonmem_events import SS_PRIOR_DOSES, Observations

KINDS = ("numeric", "categorical")
#: Columns the reader itself interprets; a covariate may not take one of these names.
STRUCTURAL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + ("LLOQ",)
ENCODER_FORMAT = "pkdose.byod.covariate_encoder"
ENCODER_VERSION = 1
_KIND_SUFFIXES = {"cat": "categorical", "categorical": "categorical", "num": "numeric", "numeric": "numeric"}
_UNKNOWN_HINT = ("declare them as covariates (numeric, or categorical) or pass them in ignore_columns "
                 "(CLI --ignore-columns)")


class CovariateImputationWarning(UserWarning):
    """A record's covariate was missing on every row of its subject and was imputed."""


@dataclass(frozen=True)
class CovariateSpec:
    """A declared covariate column: its upper-case name and ``kind`` ``"numeric"`` or ``"categorical"``."""

    name: str
    kind: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip().upper():
            raise ValueError(f"covariate name must be a non-empty upper-case column name, got {self.name!r}")
        if any(c in self.name for c in "=,:"):
            raise ValueError(f"covariate name {self.name!r} may not contain '=', ',' or ':'")
        if self.kind not in KINDS:
            raise ValueError(f"covariate {self.name}: kind must be one of {KINDS}, got {self.kind!r}")


def parse_covariate_specs(text: str | Sequence[str],
                          categorical: Sequence[str] = ()) -> tuple[CovariateSpec, ...]:
    """``"WT,APGAR"`` -> numeric specs; names in ``categorical``, or written ``"SEX:cat"``, are categorical.

    Names are upper-cased; ``:num`` marks a numeric one; empty entries are skipped (``""`` -> ``()``).
    Duplicates, unknown ``:kind`` suffixes and undeclared names in ``categorical`` are refused.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted_categorical = [str(c).strip().upper() for c in categorical]
    specs: list[CovariateSpec] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"covariate declarations must be text, got {item!r}")
        name, sep, suffix = item.strip().partition(":")
        name = name.strip().upper()
        if not name:
            if sep:
                raise ValueError(f"covariate declaration {item!r} has no column name")
            continue
        if sep:
            kind = _KIND_SUFFIXES.get(suffix.strip().lower())
            if kind is None:
                raise ValueError(f"covariate {name}: unknown kind {suffix!r}; write {name}:cat (categorical) "
                                 f"or {name}:num (numeric)")
            if kind == "numeric" and name in wanted_categorical:
                raise ValueError(f"covariate {name} is declared numeric ({item.strip()!r}) and categorical")
        else:
            kind = "categorical" if name in wanted_categorical else "numeric"
        specs.append(CovariateSpec(name, kind))
    names = _unique_names(specs)
    undeclared = [c for c in wanted_categorical if c not in names]
    if undeclared:
        raise ValueError(f"categorical covariate(s) {undeclared} are not among the declared covariates "
                         f"{names}")
    return tuple(specs)


@dataclass(frozen=True)
class ClinicTable:
    """A table's records (one per subject occasion: ``ID``, ``ID#2``, ...), events, samples, covariates.

    Times are h from each record's first dose event; ``covariate_values[name]`` holds per record the
    raw value in effect at its first dose (see module doc); ``event_rows`` and ``ss_shift_h`` are as
    in :class:`~vae_simulator.nonmem_events.TableEvents`.
    """

    path: Path
    sha256: str
    ids: tuple[str, ...]
    subject_ids: tuple[str, ...]
    events: DosingEvents
    observations: tuple[Observations, ...]
    time_origin_h: np.ndarray
    lloq_mg_l: float | None
    covariate_specs: tuple[CovariateSpec, ...]
    covariate_values: dict[str, tuple]
    event_rows: tuple[tuple[int, ...], ...] = ()
    ss_shift_h: np.ndarray | None = field(default=None)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, record_id: str) -> int:
        """Position of record ``record_id``."""
        try:
            return self.ids.index(record_id)
        except ValueError:
            raise KeyError(f"no record with ID {record_id!r} in {self.path}") from None


def read_clinic_table(path: str | Path, covariates: Sequence[CovariateSpec] = (), *,
                      lloq_mg_l: float | None = None, ignore_columns: Sequence[str] = (),
                      ss_doses: int = SS_PRIOR_DOSES, limits: EventLimits | None = None) -> ClinicTable:
    """Every record of a clinic's NONMEM-style table, with its declared covariates (see module doc).

    ``lloq_mg_l`` overrides an LLOQ column; ``ss_doses`` and ``limits`` as in
    :func:`~vae_simulator.nonmem_events.read_dosing_events`.
    """
    ne._check_arguments(lloq_mg_l, ss_doses)
    specs = _checked_specs(covariates)
    names = tuple(s.name for s in specs)
    if isinstance(ignore_columns, str):  # the CLI's "A,B"
        ignore_columns = ignore_columns.split(",")
    ignored = tuple(c.strip().upper() for c in ignore_columns if c.strip())
    both = [n for n in names if n in ignored]
    if both:
        raise ValueError(f"column(s) {both} are declared as covariates and also in ignore_columns")
    path = Path(path)
    header, rows = read_table(path, require_covariates=False, columns=STRUCTURAL_COLUMNS + names,
                              ignore_columns=ignored, unknown_hint=_UNKNOWN_HINT)
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(f"{path}: declared covariate column(s) {missing} are not in the header "
                         f"{list(header)}")
    lloq = lloq_mg_l if lloq_mg_l is not None else _lloq_column(rows, header)
    ids, subjects, patients = [], [], []
    values: dict[str, list] = {n: [] for n in names}
    for pid, group in group_rows(rows).items():
        recorded = {s.name: _recorded(group, s) for s in specs}
        for k, occasion in enumerate(_occasions(group), start=1):
            rid = pid if k == 1 else f"{pid}#{k}"
            span = f"{occasion[0].index}-{occasion[-1].index}"
            who = f"occasion {k} of ID {pid} (record {rid}, data rows {span})"
            patient = ne._patient(rid, occasion, header, lloq, int(ss_doses), limits, resets=True, who=who)
            first_dose_row = min(e[3].index for e in patient.events)
            for name in names:
                values[name].append(_in_effect(recorded[name], first_dose_row))
            ids.append(rid)
            subjects.append(pid)
            patients.append(patient)
    clash = sorted({r for r, s in zip(ids, subjects) if r != s and r in subjects})
    if clash:
        raise ValueError(f"{path}: record ID(s) {clash} of later occasions clash with table IDs of the same "
                         f"name; rename those IDs")
    batch = ne._table_events(tuple(ids), patients, lloq)
    return ClinicTable(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), ids=batch.ids,
                       subject_ids=tuple(subjects), events=batch.events, observations=batch.observations,
                       time_origin_h=batch.time_origin_h, lloq_mg_l=lloq, covariate_specs=specs,
                       covariate_values={n: tuple(v) for n, v in values.items()},
                       event_rows=batch.event_rows, ss_shift_h=batch.ss_shift_h)


def _checked_specs(covariates: Sequence[CovariateSpec]) -> tuple[CovariateSpec, ...]:
    if isinstance(covariates, str):
        raise TypeError("covariates must be CovariateSpec objects; parse text with parse_covariate_specs")
    specs = tuple(covariates)
    for spec in specs:
        if not isinstance(spec, CovariateSpec):
            raise TypeError(f"covariates must be CovariateSpec objects (see parse_covariate_specs), "
                            f"got {spec!r}")
    names = _unique_names(specs)
    reserved = [n for n in names if n in STRUCTURAL_COLUMNS]
    if reserved:
        raise ValueError(f"covariate(s) {reserved} are columns the reader interprets itself "
                         f"({', '.join(STRUCTURAL_COLUMNS)}); they cannot be covariates")
    return specs


def _unique_names(specs: Sequence[CovariateSpec]) -> list[str]:
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"covariate(s) {duplicated} declared more than once")
    return names


def _lloq_column(rows: list[_Row], header: Sequence[str]) -> float | None:
    """The table's one LLOQ (mg/L) from its LLOQ column, ``None`` without one (see module doc)."""
    if "LLOQ" not in header:
        return None
    lloq, first = None, None
    for row in rows:
        value = row.number_or_none("LLOQ")
        if value is None:
            continue
        if value <= 0:
            raise row.error(f"LLOQ {value:g} mg/L must be > 0")
        if first is None:
            lloq, first = value, row
        elif value != lloq:
            raise row.error(f"LLOQ {value:g} mg/L differs from the {lloq:g} mg/L of data row {first.index} "
                            f"(file line {first.line}); one LLOQ per table is supported")
    return lloq


def _occasions(rows: list[_Row]) -> list[list[_Row]]:
    """A subject's rows split at resets: each EVID 3 or 4 row starts a new occasion."""
    out: list[list[_Row]] = [[]]
    for row in rows:
        if row.number("EVID") in (3.0, 4.0) and out[-1]:
            out.append([])
        out[-1].append(row)
    return [occasion for occasion in out if occasion]


def _recorded(rows: list[_Row], spec: CovariateSpec) -> list[tuple[int, float | str]]:
    """Every non-missing value of a covariate on a subject's rows, as (data row, value), parsed."""
    out: list[tuple[int, float | str]] = []
    for row in rows:
        value = row.number_or_none(spec.name) if spec.kind == "numeric" else row.text(spec.name)
        if value is not None and value not in MISSING:
            out.append((row.index, value))
    return out


def _in_effect(recorded: list[tuple[int, float | str]], row_index: int) -> float | str | None:
    """The last value on or before data row ``row_index``, else the first later one, else None."""
    before = [value for index, value in recorded if index <= row_index]
    return before[-1] if before else (recorded[0][1] if recorded else None)


class CovariateEncoder:
    """Fitted on training records; turns raw covariates into a float matrix the model takes.

    ``names``: the encoded columns, in declaration order: a numeric covariate as itself (``WT``), a
    categorical one as one-hot columns ``SEX=F``, ``SEX=M`` (one per level seen in training, sorted).
    ``log_names``: numeric covariates strictly positive in training, candidates for log scaling.
    Missing values are imputed with the training median (numeric) or mode (categorical; ties: the
    first level in sort order).
    """

    def __init__(self, specs: Sequence[CovariateSpec], medians: dict[str, float],
                 levels: dict[str, tuple[str, ...]], modes: dict[str, str], log_names: Sequence[str]) -> None:
        self.specs = tuple(specs)
        self.medians = {k: float(v) for k, v in medians.items()}
        self.levels = {k: tuple(v) for k, v in levels.items()}
        self.modes = dict(modes)
        self.log_names = tuple(log_names)
        self.names = tuple(name for s in self.specs
                           for name in ([s.name] if s.kind == "numeric" else
                                        [f"{s.name}={level}" for level in self.levels[s.name]]))

    @classmethod
    def fit(cls, table: ClinicTable) -> CovariateEncoder:
        """Medians, levels and modes of the table's records (the training records)."""
        if not len(table):
            raise ValueError(f"{table.path}: no records to fit the covariate encoder on")
        medians, levels, modes, log_names = {}, {}, {}, []
        for spec in table.covariate_specs:
            seen = [v for v in table.covariate_values[spec.name] if v is not None]
            if not seen:
                raise ValueError(f"covariate {spec.name} is missing for every record of {table.path}: a "
                                 f"{spec.kind} covariate needs training values; drop it from the declared "
                                 f"covariates (or ignore the column)")
            if spec.kind == "numeric":
                medians[spec.name] = float(np.median(np.asarray(seen, dtype=float)))
                if min(seen) > 0:
                    log_names.append(spec.name)
            else:
                counts = Counter(seen)
                levels[spec.name] = tuple(sorted(counts))
                modes[spec.name] = max(levels[spec.name], key=lambda level: counts[level])
        return cls(table.covariate_specs, medians, levels, modes, log_names)

    def transform(self, table: ClinicTable, warn: bool = True) -> np.ndarray:
        """``(n, len(names))`` float64 of the table's records; imputes missing values (see class doc)."""
        kinds = {s.name: s.kind for s in table.covariate_specs}
        lacking = [s.name for s in self.specs if s.name not in table.covariate_values]
        if lacking:
            raise ValueError(f"{table.path}: covariate column(s) {lacking} the encoder was fitted on are not "
                             f"in the table's declared covariates {list(table.covariate_values)}")
        out = np.zeros((len(table), len(self.names)))
        column = 0
        for spec in self.specs:
            if kinds.get(spec.name, spec.kind) != spec.kind:
                raise ValueError(f"{table.path}: covariate {spec.name} is read as {kinds[spec.name]} but the "
                                 f"encoder was fitted on it as {spec.kind}")
            for i, value in enumerate(table.covariate_values[spec.name]):
                if value is None:
                    value = self._imputed(spec, table.ids[i], table.subject_ids[i], warn)
                if spec.kind == "numeric":
                    out[i, column] = float(value)
                    continue
                known = self.levels[spec.name]
                if value not in known:
                    raise ValueError(f"record {table.ids[i]}: unknown covariate coding {spec.name} = "
                                     f"{value!r}; the levels seen in training are {list(known)}")
                out[i, column + known.index(value)] = 1.0
            column += 1 if spec.kind == "numeric" else len(self.levels[spec.name])
        return out

    def _imputed(self, spec: CovariateSpec, record: str, subject: str, warn: bool) -> float | str:
        value = self.medians[spec.name] if spec.kind == "numeric" else self.modes[spec.name]
        if warn:
            what = f"median {value:g}" if spec.kind == "numeric" else f"mode {value!r}"
            warnings.warn(f"record {record}: covariate {spec.name} is missing on every row of subject "
                          f"{subject}; imputed with the training {what}", CovariateImputationWarning,
                          stacklevel=3)
        return value

    def to_dict(self) -> dict:
        """JSON-serialisable: the specs with their imputation values and levels, and ``log_names``."""
        covariates = [{"name": s.name, "kind": s.kind, "median": self.medians[s.name]} if s.kind == "numeric"
                      else {"name": s.name, "kind": s.kind, "levels": list(self.levels[s.name]),
                            "mode": self.modes[s.name]} for s in self.specs]
        return {"format": ENCODER_FORMAT, "version": ENCODER_VERSION, "covariates": covariates,
                "log_names": list(self.log_names)}

    @classmethod
    def from_dict(cls, d: dict) -> CovariateEncoder:
        """The encoder :meth:`to_dict` wrote; ValueError naming what is wrong in a malformed dict."""
        _check_keys("covariate encoder", d, {"format", "version", "covariates", "log_names"})
        if d["format"] != ENCODER_FORMAT or d["version"] != ENCODER_VERSION:
            raise ValueError(f"covariate encoder: format {d['format']!r} version {d['version']!r} is not "
                             f"{ENCODER_FORMAT!r} version {ENCODER_VERSION}")
        if not isinstance(d["covariates"], list):
            raise ValueError(  # noqa: TRY004 (the API promises ValueError for any malformed dict)
                f"covariate encoder: 'covariates' must be a list, got {d['covariates']!r}")
        specs, medians, levels, modes = [], {}, {}, {}
        for i, entry in enumerate(d["covariates"]):
            where = f"covariate encoder: covariates[{i}]"
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind not in KINDS:
                raise ValueError(f"{where} must be a dict with a kind in {KINDS}, got {entry!r}")
            numeric = kind == "numeric"
            _check_keys(where, entry, {"name", "kind"} | ({"median"} if numeric else {"levels", "mode"}))
            try:
                spec = CovariateSpec(entry["name"], entry["kind"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if spec.name in [s.name for s in specs]:
                raise ValueError(f"{where}: covariate {spec.name} appears more than once")
            if numeric:
                median = entry["median"]
                if isinstance(median, bool) or not isinstance(median, (int, float)) or not math.isfinite(
                        median):
                    raise ValueError(f"{where} ({spec.name}): median must be a finite number, got {median!r}")
                medians[spec.name] = float(median)
            else:
                known = entry["levels"]
                if (not isinstance(known, list) or not known or len(set(map(str, known))) != len(known)
                        or not all(isinstance(x, str) and x for x in known)):
                    raise ValueError(f"{where} ({spec.name}): levels must be a non-empty list of distinct "
                                     f"non-empty strings, got {known!r}")
                if entry["mode"] not in known:
                    raise ValueError(f"{where} ({spec.name}): mode {entry['mode']!r} is not one of the "
                                     f"levels {known}")
                levels[spec.name], modes[spec.name] = tuple(known), entry["mode"]
            specs.append(spec)
        log_names = d["log_names"]
        if not isinstance(log_names, list) or len(set(map(str, log_names))) != len(log_names) or any(
                not isinstance(name, str) or name not in medians for name in log_names):
            raise ValueError(f"covariate encoder: log_names must list distinct numeric covariates of "
                             f"{sorted(medians)}, got {log_names!r}")
        return cls(specs, medians, levels, modes, log_names)


def _check_keys(where: str, d: dict, expected: set[str]) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a dict with keys {sorted(expected)}, got {d!r}")  # noqa: TRY004
    missing, extra = sorted(expected - set(d)), sorted(map(str, set(d) - expected))
    if missing or extra:
        raise ValueError(f"{where}: missing key(s) {missing}, unexpected key(s) {extra}; expected "
                         f"{sorted(expected)}")
