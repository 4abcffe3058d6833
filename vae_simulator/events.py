"""Dosing histories as lists of events: any times, any amounts, any infusion lengths.

A patient's history is a list of dosing events ``(time h, amount mg, infusion duration h)``,
time counted from an arbitrary origin (usually the first dose). A batch of patients with
different numbers of events is stored padded (:class:`DosingEvents`): ``times_h``,
``amounts_mg`` and ``infusion_h`` of shape ``(n, E)`` and a boolean ``mask`` saying which
entries are real. Padding entries hold time ``+inf`` and amount 0, so "the last event
before t" never picks one.

This is the input of the continuous-time PK-VAE (:mod:`vae_simulator.vae.ct_model`) and of
the ground-truth models' :meth:`~vae_simulator.groundtruth.base.DrugModel.simulate_regimen`.
Everything here refuses bad input with a ValueError naming the value and the allowed range:
nothing is silently sorted, clipped or reshaped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EventLimits:
    """What a model was trained on, and so what it accepts (all inclusive).

    ``dose_max_mg``: largest amount per event (mg); ``infusion_range_h``: allowed infusion
    durations (h; ``(0, 0)`` for oral drugs); ``horizon_h``: latest time (h after the first
    event) at which a concentration may be asked for; ``max_gap_h``: longest time between two
    consecutive events seen in training (h).
    """

    dose_max_mg: float
    infusion_range_h: tuple[float, float]
    horizon_h: float
    max_gap_h: float


@dataclass(frozen=True)
class DosingEvents:
    """Padded per-patient dosing events (see module docstring). Arrays ``(n, E)``."""

    times_h: np.ndarray
    amounts_mg: np.ndarray
    infusion_h: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.times_h.shape[0])

    @property
    def max_events(self) -> int:
        return int(self.times_h.shape[1])

    @classmethod
    def from_lists(cls, times_h, amounts_mg, infusion_h=None, limits: EventLimits | None = None) -> DosingEvents:
        """One list of events per patient (lists may differ in length; empty means never dosed)."""
        times_h = [np.asarray(t, dtype=float).reshape(-1) for t in times_h]
        amounts_mg = [np.asarray(a, dtype=float).reshape(-1) for a in amounts_mg]
        if infusion_h is None:
            infusion_h = [np.zeros_like(t) for t in times_h]
        infusion_h = [np.asarray(d, dtype=float).reshape(-1) for d in infusion_h]
        if not (len(times_h) == len(amounts_mg) == len(infusion_h)):
            raise ValueError(f"{len(times_h)} patients' times but {len(amounts_mg)} amounts and "
                             f"{len(infusion_h)} infusion lists")
        n, e = len(times_h), max([t.size for t in times_h] + [1])
        out = {"times_h": np.full((n, e), np.inf), "amounts_mg": np.zeros((n, e)), "infusion_h": np.zeros((n, e)),
               "mask": np.zeros((n, e), dtype=bool)}
        for i, (t, a, d) in enumerate(zip(times_h, amounts_mg, infusion_h)):
            if not (t.size == a.size == d.size):
                raise ValueError(f"patient {i}: {t.size} event times but {a.size} amounts and {d.size} infusions")
            out["times_h"][i, :t.size], out["amounts_mg"][i, :t.size] = t, a
            out["infusion_h"][i, :t.size], out["mask"][i, :t.size] = d, True
        events = cls(**out)
        events.check(limits)
        return events

    @classmethod
    def regular(cls, doses_mg: np.ndarray, interval_h: float, infusion_h: float = 0.0,
                limits: EventLimits | None = None) -> DosingEvents:
        """Dose ``k`` of ``doses_mg (n, K)`` at ``k * interval_h``; held doses (0 mg) stay as events."""
        doses = np.asarray(doses_mg, dtype=float)
        if doses.ndim != 2:
            raise ValueError(f"doses_mg must have shape (n_patients, n_doses), got {doses.shape}")
        n, k = doses.shape
        times = np.broadcast_to(interval_h * np.arange(k, dtype=float), (n, k)).copy()
        events = cls(times, doses.copy(), np.full((n, k), float(infusion_h)), np.ones((n, k), dtype=bool))
        events.check(limits)
        return events

    def check(self, limits: EventLimits | None = None) -> None:
        """Raise ValueError on shapes, order, non-finite or negative values, or values outside ``limits``."""
        shapes = {a.shape for a in (self.times_h, self.amounts_mg, self.infusion_h, self.mask)}
        if len(shapes) != 1 or self.times_h.ndim != 2:
            raise ValueError(f"event arrays must share one (n_patients, n_events) shape, got {sorted(shapes)}")
        m = self.mask
        if np.any(m[:, 1:] & ~m[:, :-1]):
            raise ValueError("event mask must mark a prefix of each row (real events first, then padding)")
        for name, values in (("time", self.times_h), ("amount", self.amounts_mg), ("infusion duration", self.infusion_h)):
            bad = m & ~(np.isfinite(values) & (values >= 0))
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(f"patient {i}, event {j}: {name} {float(values[i, j])!r} must be finite and >= 0")
        t = np.where(m, self.times_h, 0.0)
        gaps = np.diff(t, axis=1)
        back = m[:, 1:] & (gaps < 0)
        if back.any():
            i, j = np.argwhere(back)[0]
            raise ValueError(f"patient {i}: event {j + 1} at {t[i, j + 1]:g} h comes before event {j} at "
                             f"{t[i, j]:g} h; events must be in time order")
        if limits is None:
            return
        lo, hi = limits.infusion_range_h
        checks = (("amount", self.amounts_mg, 0.0, limits.dose_max_mg, "mg"),
                  ("infusion duration", self.infusion_h, lo, hi, "h"))
        for name, values, low, high, unit in checks:
            bad = m & ((values < low) | (values > high))
            if name == "infusion duration":
                bad &= self.amounts_mg > 0  # a held dose has no infusion
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(f"patient {i}, event {j}: {name} {values[i, j]:g} {unit} is outside the range the "
                                 f"model was trained on, [{low:g}, {high:g}] {unit}")
        long_gap = m[:, 1:] & (gaps > limits.max_gap_h + 1e-9)
        if long_gap.any():
            i, j = np.argwhere(long_gap)[0]
            raise ValueError(f"patient {i}: {gaps[i, j]:g} h between events {j} and {j + 1} exceeds the longest gap "
                             f"the model was trained on, {limits.max_gap_h:g} h")

    def first_time_h(self) -> np.ndarray:
        """Time of each patient's first event (``+inf`` if none), ``(n,)``."""
        return self.times_h[:, 0] if self.max_events else np.full(len(self), np.inf)

    def last_before(self, query_h: np.ndarray) -> np.ndarray:
        """Index of the last event strictly before each query time, ``-1`` if none; ``query_h (n, T)``.

        Strictly: a sample at a dose time is taken just before that dose (the trough convention).
        """
        t = np.where(self.mask, self.times_h, np.inf)
        return (t[:, None, :] < np.asarray(query_h)[:, :, None]).sum(axis=2) - 1

    def take(self, index) -> DosingEvents:
        """The patients at ``index``."""
        return DosingEvents(self.times_h[index], self.amounts_mg[index], self.infusion_h[index], self.mask[index])


def check_query_times(events: DosingEvents, query_h: np.ndarray, limits: EventLimits) -> np.ndarray:
    """Validate concentration query times ``(n, T)`` against the events and the trained horizon.

    A query before a patient's first dose is refused (the model would return 0, but asking is
    almost always a mistake in the time origin); one beyond ``limits.horizon_h`` after the first
    dose, or more than ``limits.max_gap_h`` after the last dose before it, is refused: the model
    does not extrapolate.
    """
    q = np.asarray(query_h, dtype=float)
    if q.ndim != 2 or q.shape[0] != len(events):
        raise ValueError(f"query times must have shape ({len(events)}, T), got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"query times must be finite, got {q[~np.isfinite(q)][0]!r}")
    first = events.first_time_h()[:, None]
    before = q <= first
    if before.any():
        i, j = np.argwhere(before)[0]
        raise ValueError(f"patient {i}: prediction time {q[i, j]:g} h is not after the first dose "
                         f"({first[i, 0]:g} h); ask for times after it")
    late = q - first > limits.horizon_h + 1e-9
    if late.any():
        i, j = np.argwhere(late)[0]
        raise ValueError(f"patient {i}: prediction time {q[i, j]:g} h is {q[i, j] - first[i, 0]:g} h after the first "
                         f"dose, beyond the model's trained horizon of {limits.horizon_h:g} h")
    last = events.last_before(q)
    since = q - np.take_along_axis(np.where(events.mask, events.times_h, 0.0), np.maximum(last, 0), axis=1)
    stale = since > limits.max_gap_h + 1e-9
    if stale.any():
        i, j = np.argwhere(stale)[0]
        raise ValueError(f"patient {i}: prediction time {q[i, j]:g} h is {since[i, j]:g} h after the last dose, "
                         f"beyond the longest gap the model was trained on ({limits.max_gap_h:g} h)")
    return q
