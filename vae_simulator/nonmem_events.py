"""NONMEM-style tables as dosing events and samples: any times, any intervals, II/ADDL/SS expanded.

The fixed-schedule reader (:func:`vae_simulator.nonmem.read_histories`) puts every dose on the
drug's regular schedule and refuses II/ADDL/SS rows. This reader keeps each patient's doses where
the table puts them, as lists of :class:`~vae_simulator.events.DosingEvents` (time h, amount mg,
infusion duration h), for the continuous-time PK-VAE. It reads the same files (same columns,
header, comment and missing-value conventions, same refusal of unknown columns: see
:mod:`vae_simulator.nonmem`); covariate columns are allowed but not required, and not read here.

Rows, per patient (rows contiguous, TIME >= 0 and non-decreasing, as in the other reader):

* ``EVID 1`` dose: ``AMT`` mg, >= 0 (``AMT 0`` is a held dose, kept as a 0-mg event as
  :meth:`DosingEvents.regular` does). Infusion duration: ``AMT / RATE`` when ``RATE > 0`` (mg/h);
  ``DUR`` (h) when ``RATE = -2``, or when ``DUR > 0`` is given without a rate (the other reader's
  convention); otherwise 0 (bolus or oral). ``RATE > 0`` with a ``DUR`` that disagrees, ``RATE = -1``
  (rate modelled by NONMEM) and other negative rates are refused. ``CMT`` is ignored (one route).
* ``ADDL = n`` with ``II = tau > 0``: ``n`` additional doses, the same amount and duration, at
  ``TIME + tau, ..., TIME + n * tau`` (NONMEM convention). They may interleave with later dose rows;
  the expanded events are sorted by time (stable: at equal times, table order). ``II`` without ADDL
  or SS is ignored. At most :data:`MAX_ADDL` additional doses per row.
* ``SS = 1`` with ``II = tau > 0``: the patient is at steady state on ``AMT`` every ``tau`` when this
  dose is given. An event list has no steady state, so it is written out: ``ss_doses`` prior doses
  (default :data:`SS_PRIOR_DOSES` = 10) of the same amount and duration at ``TIME - ss_doses * tau,
  ..., TIME - tau``, then the dose itself (and its ADDL doses). For a linear drug, the trough before
  the SS dose is then ``1 - 2 ** (-ss_doses * tau / t_half)`` of the true steady state: with 10 prior
  doses, within 3.2 % (``2 ** -5``) whenever the half-life is at most ``2 * tau`` (>= 5 half-lives).
  Drugs with a longer half-life relative to the interval (or a concentration-dependent one, e.g.
  phenytoin) need a larger ``ss_doses`` (at least ``5 * t_half / tau``); ``ss_doses = 0`` refuses SS
  rows instead. The prepended doses move the patient's time origin earlier: ``ss_shift_h =
  ss_doses * tau`` is recorded. NONMEM's SS = 1 also *resets* the system, which an event list cannot
  express, so it is accepted only on a patient's first dose row (no earlier doses), and samples
  before it are refused as pre-dose samples; a sample at its TIME is the steady-state trough.
  ``SS = 1`` with ``AMT 0`` (constant-rate infusion to steady state), ``SS = 2`` (steady state
  superimposed on earlier doses) and ``SS = 3`` are refused.
* ``EVID 0`` observation: ``DV`` mg/L; skipped when ``MDV = 1``. A sample must be after the
  patient's first dose row (a sample at the time of a dose is that dose's pre-dose trough, the
  convention of :meth:`DosingEvents.last_before`), except at the time of a first SS dose.
  Censoring follows the fixed-schedule reader: a sample flagged ``BLQ = 1`` (DV may be missing), or
  one below ``lloq_mg_l`` when it is given, is censored and carried as LLOQ/2 with ``blq`` True; a
  flagged sample with no ``lloq_mg_l`` is refused (the censoring limit is needed for M3).
* ``EVID 2`` (other event, e.g. a covariate change) rows are skipped; ``EVID 3/4`` (reset) are
  refused: an event list has no reset, so give each occasion its own ID (the bring-your-own-data
  reader, :func:`vae_simulator.byod.table.read_clinic_table`, does that itself). ``SS`` or ``ADDL`` on a
  row that is not a dose is refused.

Times are on each patient's own clock: h from its first dose event (an SS-prepended dose when there
is one); a table TIME is ``t + time_origin_h``. With ``limits``, each patient's events are checked
against :class:`~vae_simulator.events.EventLimits`, and its samples against the trained horizon
(:func:`~vae_simulator.events.check_query_times`); SS-prepended doses count toward that horizon
(it runs from the first event), so a long ``ss_doses * tau`` can put samples beyond it: refused, not
extrapolated. Every refused row raises ``ValueError`` naming its data row, file line and ID, as the
other reader does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_simulator.events import DosingEvents, EventLimits, check_query_times
from vae_simulator.nonmem import MISSING, _Row, group_rows, read_table

SS_PRIOR_DOSES = 10
MAX_ADDL = 10_000


@dataclass(frozen=True)
class Observations:
    """One patient's samples ``(M,)``: h on its event clock, mg/L (LLOQ/2 where ``blq``), flags, data rows."""

    times_h: np.ndarray
    dv_mg_l: np.ndarray
    blq: np.ndarray
    rows: tuple[int, ...]


@dataclass(frozen=True)
class TableEvents:
    """Every patient of a table, in table order (see module doc).

    ``events`` is ``(n, E)``; ``event_rows[i][j]`` the data row event ``j`` of patient ``i`` comes from
    (ADDL and SS copies name their row); ``time_origin_h (n,)`` the table TIME of each patient's
    ``t = 0``; ``ss_shift_h (n,)`` how far SS-prepended doses moved it before the first dose row
    (0 without SS).
    """

    ids: tuple[str, ...]
    events: DosingEvents
    event_rows: tuple[tuple[int, ...], ...]
    observations: tuple[Observations, ...]
    time_origin_h: np.ndarray
    ss_shift_h: np.ndarray
    lloq_mg_l: float | None

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, pid: str) -> int:
        """Position of patient ``pid``."""
        try:
            return self.ids.index(pid)
        except ValueError:
            raise KeyError(f"no patient with ID {pid!r} in the table") from None


@dataclass(frozen=True)
class _Patient:
    events: list[tuple[float, float, float, _Row]]  # (t h, amount mg, duration h, row), sorted
    samples: Observations
    origin_h: float
    shift_h: float


def read_dosing_events(path: str | Path, *, lloq_mg_l: float | None = None, ss_doses: int = SS_PRIOR_DOSES,
                       limits: EventLimits | None = None) -> TableEvents:
    """Every patient of a NONMEM-style table as dosing events and samples (see module doc)."""
    _check_arguments(lloq_mg_l, ss_doses)
    header, rows = read_table(path, require_covariates=False)
    groups = group_rows(rows)
    patients = [_patient(pid, group, header, lloq_mg_l, int(ss_doses), limits)
                for pid, group in groups.items()]
    return _table_events(tuple(groups), patients, lloq_mg_l)


def _check_arguments(lloq_mg_l: float | None, ss_doses: int) -> None:
    """Refuse an LLOQ that is not a finite number > 0 and an ``ss_doses`` that is not a whole number >= 0."""
    if lloq_mg_l is not None and not (math.isfinite(lloq_mg_l) and lloq_mg_l > 0):
        raise ValueError(f"lloq_mg_l must be a finite LLOQ > 0 mg/L, got {lloq_mg_l!r}")
    if isinstance(ss_doses, bool) or not isinstance(ss_doses, (int, np.integer)) or ss_doses < 0:
        raise ValueError(f"ss_doses must be a whole number >= 0 (0 refuses SS rows), got {ss_doses!r}")


def _table_events(ids: tuple[str, ...], patients: list[_Patient], lloq_mg_l: float | None) -> TableEvents:
    """The patients' events padded into one batch, with their rows, samples and clocks."""
    events = DosingEvents.from_lists([[e[0] for e in p.events] for p in patients],
                                     [[e[1] for e in p.events] for p in patients],
                                     [[e[2] for e in p.events] for p in patients])
    return TableEvents(ids=ids, events=events,
                       event_rows=tuple(tuple(e[3].index for e in p.events) for p in patients),
                       observations=tuple(p.samples for p in patients),
                       time_origin_h=np.array([p.origin_h for p in patients], dtype=float),
                       ss_shift_h=np.array([p.shift_h for p in patients], dtype=float), lloq_mg_l=lloq_mg_l)


def _patient(pid: str, rows: list[_Row], header: Sequence[str], lloq: float | None, ss_doses: int,
             limits: EventLimits | None, *, resets: bool = False, who: str | None = None) -> _Patient:
    """One patient's rows as events and samples, times from its first dose (see module doc).

    ``resets=True`` (an occasion after a reset, :mod:`vae_simulator.byod.table`): ``rows`` may
    start with an EVID 3 (reset: skipped like EVID 2) or EVID 4 (reset and dose: a dose) row;
    ``who`` names the rows in the no-dose refusal (default ``patient <pid>``).
    """
    doses: list[tuple[float, float, float, _Row]] = []  # (h from the first dose row, mg, duration h, row)
    samples: list[tuple[float, float, bool, _Row]] = []
    first: float | None = None  # table TIME of the first dose row
    shift, last_time = 0.0, -math.inf
    for row in rows:
        time = row.number("TIME")
        if time < 0:
            raise row.error(f"TIME {time:g} h is negative; doses and samples need TIME >= 0")
        if time < last_time:
            raise row.error(f"TIME {time:g} h is before the previous row's {last_time:g} h; "
                            f"sort each patient's rows by TIME")
        last_time = time
        evid = row.number("EVID")
        if evid in (3.0, 4.0):
            if not (resets and row is rows[0]):
                raise row.error(f"EVID {row.text('EVID')} (reset) is not supported: a list of dosing events "
                                f"has no reset; give each occasion its own ID")
            if evid == 3.0 and row.number_or_none("AMT") not in (None, 0.0):
                raise row.error(f"AMT {row.text('AMT')} on a reset row (EVID 3), which carries no dose; "
                                f"use EVID 4 (reset and dose)")
            evid = 1.0 if evid == 4.0 else 2.0  # the reset itself is where these rows start
        if evid not in (0.0, 1.0, 2.0):
            also = ", 3 = reset, 4 = reset and dose" if resets else ""
            raise row.error(f"EVID {row.text('EVID')} is not supported (1 = dose, 0 = observation, "
                            f"2 = other{also})")
        if evid != 1.0:
            for column in ("SS", "ADDL"):
                if column in header and row.number_or_none(column) not in (None, 0.0):
                    raise row.error(f"{column} = {row.text(column)} on a row that is not a dose (EVID "
                                    f"{row.text('EVID')}); SS and ADDL belong on dose rows (EVID 1)")
        if evid == 2.0:
            continue  # another event (e.g. a covariate change): neither a dose nor a sample
        if evid == 1.0:
            if first is None:
                first = time
            times, amount, duration, ss_shift = _dose_events(row, time - first, bool(doses), ss_doses)
            shift = ss_shift or shift
            doses += [(t, amount, duration, row) for t in times]
            continue
        if "MDV" in header and row.flag("MDV"):
            continue  # an observation record without a measurement
        samples.append(_sample(row, time, header, lloq))
    if first is None:
        doses_are = "EVID 1 or 4" if resets else "EVID 1"
        raise rows[0].error(f"{who or f'patient {pid}'} has no dose rows ({doses_are}); a concentration "
                            f"needs the dosing history")
    doses.sort(key=lambda d: d[0])  # stable: ADDL doses interleave with later rows in time order
    events = [(t + shift, amount, duration, row) for t, amount, duration, row in doses]
    for time, _, _, row in samples:
        if time < first or (time == first and not shift):
            ss = " (a steady-state dose resets the system in NONMEM)" if shift else ""
            raise row.error(f"observation at TIME {time:g} h is not after the patient's first dose (TIME "
                            f"{first:g} h){ss}; pre-dose samples carry no information for the model: remove "
                            f"the row")
    obs = Observations(times_h=np.array([time - first + shift for time, *_ in samples], dtype=float),
                       dv_mg_l=np.array([s[1] for s in samples], dtype=float),
                       blq=np.array([s[2] for s in samples], dtype=bool),
                       rows=tuple(s[3].index for s in samples))
    if limits is not None:
        _check_limits(pid, rows, events, obs, [s[3] for s in samples], limits)
    return _Patient(events=events, samples=obs, origin_h=first - shift, shift_h=shift)


def _dose_events(row: _Row, offset: float, earlier_doses: bool, ss_doses: int):
    """A dose row's times (h from the first dose row), amount, duration and SS shift (h prepended)."""
    amount = row.number("AMT")
    if amount < 0:
        raise row.error(f"AMT {amount:g} mg is negative; a dose needs AMT > 0 mg (AMT 0 is a held dose)")
    duration = _infusion_h(row, amount)
    interval = row.number_or_none("II")
    if interval is not None and interval < 0:
        raise row.error(f"II {interval:g} h is negative; the interval between doses must be > 0 h")
    addl_value = row.number_or_none("ADDL")
    if addl_value is not None and (addl_value < 0 or addl_value != int(addl_value)):
        raise row.error(f"ADDL {row.text('ADDL')} must be a whole number of additional doses >= 0")
    addl = int(addl_value or 0)
    if addl > MAX_ADDL:
        raise row.error(f"ADDL {addl} exceeds {MAX_ADDL} additional doses per row")
    if addl and not interval:
        raise row.error(f"ADDL {addl} needs the interval II > 0 h between the doses, got II "
                        f"{_shown(row, 'II')}")
    times = [offset + k * interval for k in range(addl + 1)] if addl else [offset]
    ss = row.number_or_none("SS") or 0.0
    if ss == 0.0:
        return times, amount, duration, 0.0
    if ss != 1.0:
        raise row.error(f"SS {row.text('SS')} is not supported: only SS 1 (steady state before this dose, "
                        f"expanded into prior doses); SS 2 superimposes on earlier doses, which is not "
                        f"expanded")
    if ss_doses == 0:
        raise row.error("SS 1 (steady state) is refused: the reader was called with ss_doses=0; write out "
                        "the prior doses as rows or pass ss_doses > 0")
    if not interval:
        raise row.error(f"SS 1 needs the dosing interval II > 0 h, got II {_shown(row, 'II')} "
                        f"(a constant-rate infusion to steady state, II 0, is not supported)")
    if amount == 0:
        raise row.error("SS 1 with AMT 0 (a constant-rate infusion to steady state) is not supported")
    if earlier_doses:
        raise row.error("SS 1 after earlier dose rows: NONMEM resets the system at a steady-state dose, "
                        "which a list of dosing events cannot express; give SS only on the patient's first "
                        "dose row, or start a new ID")
    prior = [k * interval for k in range(ss_doses)]  # on the shifted clock; the SS dose is at ss_doses * II
    shift = ss_doses * interval
    return [t - shift for t in prior] + times, amount, duration, shift


def _shown(row: _Row, column: str) -> str:
    text = row.text(column)
    return "missing" if text in MISSING else text


def _infusion_h(row: _Row, amount: float) -> float:
    """Infusion duration of a dose row (h, 0 = bolus or oral; see module doc)."""
    rate, duration = row.number_or_none("RATE"), row.number_or_none("DUR")
    if duration is not None and duration < 0:
        raise row.error(f"DUR {duration:g} h is negative; an infusion lasts DUR > 0 h")
    if rate is None or rate == 0:
        length = duration or 0.0
    elif rate == -2:
        if not duration:
            raise row.error(f"RATE -2 takes the infusion duration from DUR, but DUR is "
                            f"{_shown(row, 'DUR')}; give DUR > 0 h")
        length = duration
    elif rate < 0:
        raise row.error(f"RATE {rate:g} is not supported (RATE -1 is a rate modelled by NONMEM); give "
                        f"RATE > 0 mg/h, or RATE -2 with DUR h")
    else:
        length = amount / rate
        if duration and abs(duration - length) > 1e-6 * max(1.0, length):
            raise row.error(f"RATE {rate:g} mg/h gives a {length:g}-h infusion of AMT {amount:g} mg, but DUR "
                            f"is {duration:g} h; give one of them (or RATE -2 with DUR)")
    return length if amount > 0 else 0.0  # a held dose has no infusion


def _sample(row: _Row, time: float, header: Sequence[str],
            lloq: float | None) -> tuple[float, float, bool, _Row]:
    """An observation row as (table TIME, mg/L carried, censored, row); censoring as the module doc says."""
    flagged = bool(row.flag("BLQ")) if "BLQ" in header else False
    dv = row.number_or_none("DV") if flagged else row.number("DV")
    if dv is not None and dv < 0:
        raise row.error(f"DV {dv:g} mg/L is negative")
    if flagged and lloq is None:
        raise row.error("BLQ = 1 but the reader was given no LLOQ (lloq_mg_l); a censored sample needs its "
                        "limit of quantification")
    censored = flagged or (lloq is not None and dv < lloq)
    return time, 0.5 * lloq if censored else dv, censored, row


def _check_limits(pid: str, rows: list[_Row], events: list, obs: Observations, sample_rows: list[_Row],
                  limits: EventLimits) -> None:
    """Refuse events or samples outside what the model was trained on, naming the rows."""
    batch_rows = [e[3] for e in events]
    try:
        batch = DosingEvents.from_lists([[e[0] for e in events]], [[e[1] for e in events]],
                                        [[e[2] for e in events]], limits)
    except ValueError as exc:
        message = re.sub(r"^patient 0[,:] ", "", str(exc))
        named = sorted({int(j) for j in re.findall(r"events? (\d+)", message)})
        where = "; ".join(f"event {j} from data row {batch_rows[j].index} (file line {batch_rows[j].line})"
                          for j in named if j < len(batch_rows))
        span = f"data rows {rows[0].index}-{rows[-1].index}"
        raise ValueError(f"ID {pid} ({span}): {message}" + (f" [{where}]" if where else "")) from None
    for time, row in zip(obs.times_h, sample_rows):
        try:
            check_query_times(batch, np.array([[time]]), limits)
        except ValueError as exc:
            message = re.sub(r"^patient 0: ", "", str(exc)).replace("prediction time", "sample time")
            raise row.error(message) from None
