"""A clinic's own NONMEM-style table, with the covariates it declares, read for training a PK-VAE.

The table follows the NONMEM data conventions (NONMEM Users Guide, Part V, and the PREDPP data
items of Part VI: one event record per row, an individual's records contiguous and in time
order, the EVID event types below). Header, comment, missing-value (empty, ``.``, ``NA``) and
row-naming conventions are those of :mod:`vae_simulator.nonmem`; dose, infusion, SS/II/ADDL and
sample rules those of :mod:`vae_simulator.nonmem_events`, whose per-patient machinery reads each
occasion here. Columns (names case-insensitive):

==============  ===============================================================================
ID              subject identifier (any text); a subject's rows must be contiguous
TIME            h on any clock, >= 0, non-decreasing within an occasion (it may restart at a
                reset row, as NONMEM allows)
AMT             dose in mg (dose rows; AMT 0 is a held dose)
DV              measured concentration in mg/L (observation rows)
EVID            0 observation, 1 dose, 2 other, 3 reset, 4 reset and dose (see below)
MDV             optional; an observation row with MDV = 1 carries no measurement and is skipped
RATE, DUR       optional; infusion rate mg/h (RATE -2: duration from DUR) or duration h
SS, II, ADDL    optional; steady state (SS 1 on an occasion's first dose row, expanded into
                ``ss_doses`` prior doses) and additional doses every II h
BLQ             optional; 1 = the assay reported the sample below its LLOQ
LLOQ            optional; the assay's lower limit of quantification in mg/L, one per table
CMT             optional, ignored (one observed compartment)
declared        the covariate columns named in ``covariates`` (:class:`CovariateSpec`):
covariates      numeric (a number) or categorical (any text, e.g. ``F``/``M``, a ward code)
==============  ===============================================================================

Any other column is refused (a misspelt or forgotten covariate must not be silently dropped):
declare it as a covariate or name it in ``ignore_columns`` (CLI ``--ignore-columns``). The fixed
reader's covariates (AGE, SEX, WT, HT, SCR, CRCL) are ordinary columns here: declare or ignore them.

EVID (the PREDPP event types): 0 observation; 1 dose; 2 other-type event, e.g. a covariate change:
neither dose nor sample, but its covariate values count; 3 reset: the system is emptied, the
subject starts a new occasion, a new *record* ``ID#k`` (k = 2, 3, ...) whose clock starts at its
first dose (dose items must be empty or 0 on the reset row); 4 reset and dose: a new occasion
starting with this dose. A subject whose first row is a reset has no earlier occasion: its first
record is ``ID``. Each occasion needs a dose (else refused, naming its rows), and samples after a
reset but before the occasion's first dose are refused as pre-dose samples.

Censoring: the LLOQ is the ``lloq_mg_l`` argument, else the LLOQ column (> 0 and the same on every
row that gives it), else none. A sample with DV < LLOQ, or BLQ = 1, is censored: carried as LLOQ/2
with ``blq`` True; BLQ = 1 without any LLOQ is refused.

Covariates: numeric values are parsed as numbers, categorical values kept as their stripped text
(case-sensitive). Each record takes the value in effect at its first dose row: the subject's last
non-missing value on or before that row (last observation carried forward, across EVID 0/1/2/3
rows and earlier occasions), else one back-filled from the subject's first recorded value, else
None (imputed by :class:`CovariateEncoder`, with a warning). The PK-VAE takes one covariate vector
per record, so a covariate that changes within a record (time-varying covariates) is NOT modelled:
only the value at the record's first dose is used. :class:`CovariateEncoder`, fitted on training
records, turns the raw values into a float matrix (numeric as they are; categorical one-hot).

Not supported: more than one observed compartment or analyte (CMT is ignored), an LLOQ that varies
within the table, the modelled rates RATE -1, SS 2/3 and SS after earlier doses of an occasion,
time-varying covariates within a record. Everything refused raises ``ValueError``; where a row is
at fault the message names its data row, file line and ID.
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

from vae_simulator.events import DosingEvents, EventLimits
from vae_simulator.nonmem import MISSING, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, _Row, group_rows, read_table
from vae_simulator.nonmem_events import (
    SS_PRIOR_DOSES,
    Observations,
    _check_arguments,
    _patient,
    _table_events,
)

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


def parse_covariate_specs(text: str | Sequence[str], categorical: Sequence[str] = ()) -> tuple[CovariateSpec, ...]:
    """``"WT,APGAR"`` -> numeric specs; names in ``categorical``, or written ``"SEX:cat"``, are categorical.

    Names are upper-cased; ``":num"`` marks a numeric one explicitly; empty entries are skipped
    (``""`` -> ``()``). Duplicates, unknown ``:kind`` suffixes and names in ``categorical`` that are
    not declared are refused.
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
        raise ValueError(f"categorical covariate(s) {undeclared} are not among the declared covariates {names}")
    return tuple(specs)


@dataclass(frozen=True)
class ClinicTable:
    """A clinic table's records (one per subject occasion) with their events, samples and covariates.

    ``ids`` names each record (``ID``, or ``ID#k`` for the k-th occasion after resets),
    ``subject_ids`` its table ID; ``events`` ``(n, E)`` and ``observations`` on each record's clock (h
    from its first dose event), ``time_origin_h (n,)`` the table TIME of that ``t = 0``;
    ``covariate_values[name]`` per record the raw value in effect at its first dose (see module doc).
    Also ``event_rows[i][j]``, the data row event ``j`` of record ``i`` comes from, and ``ss_shift_h
    (n,)``, how far SS-prepended doses moved the origin before the first dose row (as in
    :class:`~vae_simulator.nonmem_events.TableEvents`).
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
    _check_arguments(lloq_mg_l, ss_doses)
    specs = _checked_specs(covariates)
    names = tuple(s.name for s in specs)
    ignored = tuple(str(c).strip().upper() for c in ignore_columns)
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
    ids: list[str] = []
    subjects: list[str] = []
    patients = []
    values: dict[str, list] = {n: [] for n in names}
    for pid, group in group_rows(rows).items():
        recorded = {s.name: _recorded(group, s) for s in specs}
        for k, occasion in enumerate(_occasions(group), start=1):
            rid = pid if k == 1 else f"{pid}#{k}"
            who = f"occasion {k} of ID {pid} (record {rid}, data rows {occasion[0].index}-{occasion[-1].index})"
            patient = _patient(rid, occasion, header, lloq, int(ss_doses), limits, resets=True, who=who)
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
    batch = _table_events(tuple(ids), patients, lloq)
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
            raise TypeError(f"covariates must be CovariateSpec objects (see parse_covariate_specs), got {spec!r}")
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
        if spec.kind == "numeric":
            value = row.number_or_none(spec.name)
        else:
            value = row.text(spec.name)
            value = None if value in MISSING else value
        if value is not None:
            out.append((row.index, value))
    return out


def _in_effect(recorded: list[tuple[int, float | str]], row_index: int) -> float | str | None:
    """The last value on or before data row ``row_index``, else the first later one, else None."""
    before = [value for index, value in recorded if index <= row_index]
    if before:
        return before[-1]
    return recorded[0][1] if recorded else None


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
            raw = table.covariate_values[spec.name]
            if len(raw) != len(table):
                raise ValueError(f"{table.path}: {len(raw)} values of covariate {spec.name} for "
                                 f"{len(table)} records")
            for i, value in enumerate(raw):
                if value is None:
                    value = self._imputed(spec, table.ids[i], table.subject_ids[i], warn)
                if spec.kind == "numeric":
                    out[i, column] = float(value)
                    continue
                known = self.levels[spec.name]
                if value not in known:
                    raise ValueError(f"record {table.ids[i]}: unknown covariate coding {spec.name} = {value!r}; "
                                     f"the levels seen in training are {list(known)}")
                out[i, column + known.index(value)] = 1.0
            column += 1 if spec.kind == "numeric" else len(self.levels[spec.name])
        return out

    def _imputed(self, spec: CovariateSpec, record: str, subject: str, warn: bool) -> float | str:
        if spec.kind == "numeric":
            value, what = self.medians[spec.name], f"the training median {self.medians[spec.name]:g}"
        else:
            value, what = self.modes[spec.name], f"the training mode {self.modes[spec.name]!r}"
        if warn:
            warnings.warn(f"record {record}: covariate {spec.name} is missing on every row of subject "
                          f"{subject}; imputed with {what}", CovariateImputationWarning, stacklevel=3)
        return value

    def to_dict(self) -> dict:
        """JSON-serialisable: the specs with their imputation values and levels, and ``log_names``."""
        covariates = []
        for spec in self.specs:
            entry: dict = {"name": spec.name, "kind": spec.kind}
            if spec.kind == "numeric":
                entry["median"] = self.medians[spec.name]
            else:
                entry["levels"] = list(self.levels[spec.name])
                entry["mode"] = self.modes[spec.name]
            covariates.append(entry)
        return {"format": ENCODER_FORMAT, "version": ENCODER_VERSION, "covariates": covariates,
                "log_names": list(self.log_names)}

    @classmethod
    def from_dict(cls, d: dict) -> CovariateEncoder:
        """The encoder :meth:`to_dict` wrote; ValueError naming what is wrong in a malformed dict."""
        if not isinstance(d, dict):
            raise ValueError(f"covariate encoder: expected a dict, got {type(d).__name__}")  # noqa: TRY004
        _check_keys("covariate encoder", d, {"format", "version", "covariates", "log_names"})
        if d["format"] != ENCODER_FORMAT or d["version"] != ENCODER_VERSION:
            raise ValueError(f"covariate encoder: format {d['format']!r} version {d['version']!r} is not "
                             f"{ENCODER_FORMAT!r} version {ENCODER_VERSION}")
        if not isinstance(d["covariates"], list):
            raise ValueError(f"covariate encoder: 'covariates' must be a list, got {d['covariates']!r}")  # noqa: TRY004
        specs, medians, levels, modes = [], {}, {}, {}
        for i, entry in enumerate(d["covariates"]):
            where = f"covariate encoder: covariates[{i}]"
            if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
                raise ValueError(f"{where} must be a dict with 'kind' one of {KINDS}, got {entry!r}")
            numeric = entry["kind"] == "numeric"
            _check_keys(where, entry, {"name", "kind", "median"} if numeric else {"name", "kind", "levels", "mode"})
            try:
                spec = CovariateSpec(entry["name"], entry["kind"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if spec.name in [s.name for s in specs]:
                raise ValueError(f"{where}: covariate {spec.name} appears more than once")
            if numeric:
                median = entry["median"]
                if isinstance(median, bool) or not isinstance(median, (int, float)) or not math.isfinite(median):
                    raise ValueError(f"{where} ({spec.name}): median must be a finite number, got {median!r}")
                medians[spec.name] = float(median)
            else:
                known = entry["levels"]
                if (not isinstance(known, list) or not known or not all(isinstance(x, str) and x for x in known)
                        or len(set(known)) != len(known)):
                    raise ValueError(f"{where} ({spec.name}): levels must be a non-empty list of distinct "
                                     f"non-empty strings, got {known!r}")
                if entry["mode"] not in known:
                    raise ValueError(f"{where} ({spec.name}): mode {entry['mode']!r} is not one of the levels "
                                     f"{known}")
                levels[spec.name], modes[spec.name] = tuple(known), entry["mode"]
            specs.append(spec)
        log_names = d["log_names"]
        if not isinstance(log_names, list) or len(set(map(str, log_names))) != len(log_names) or any(
                name not in medians for name in log_names):
            raise ValueError(f"covariate encoder: log_names must list distinct numeric covariates of "
                             f"{sorted(medians)}, got {log_names!r}")
        return cls(specs, medians, levels, modes, log_names)


def _check_keys(where: str, d: dict, expected: set[str]) -> None:
    missing, extra = sorted(expected - set(d)), sorted(map(str, set(d) - expected))
    if missing or extra:
        raise ValueError(f"{where}: missing key(s) {missing}, unexpected key(s) {extra}; expected "
                         f"{sorted(expected)}")
