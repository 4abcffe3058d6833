"""Importance-sampling and doubly robust off-policy evaluation (OPE) on :class:`LoggedEpisodes`.

Every estimator takes the logged episodes and ``target_prob (n, T)``: the target policy's
probability (discrete ids) or density (continuous ids, per unit of action, like
``behaviour_prob``) of each *logged* action. Entries past an episode's length are ignored. The
estimand is the target policy's mean episode return ``V = E_pi[sum_t gamma^t r_t]`` (reward units).

Notation for episode ``i`` of length ``L_i``: per-step ratio ``rho_it = pi(a_it|s_it) / mu(a_it|s_it)``,
cumulative weight ``w_it = prod_{k<=t} rho_ik`` (computed as a sum of logs, so long courses do not
overflow), trajectory weight ``W_i = w_i,L_i-1`` and return ``G_i = sum_t gamma^t r_it``.

- IS, ordinary trajectory-wise importance sampling (Precup, Sutton & Singh 2000):
  ``V = 1/n sum_i W_i G_i``; unbiased.
- WIS, weighted (self-normalised) IS: ``V = sum_i W_i G_i / sum_i W_i``; biased, consistent.
- PDIS, per-decision IS (Precup et al. 2000): ``V = 1/n sum_i sum_t gamma^t w_it r_it``; unbiased.
- WPDIS, weighted per-decision IS: ``V = sum_t gamma^t sum_i w_it r_it / sum_i w_it``; consistent.
- DR, per-decision doubly robust (Jiang & Li 2016; Thomas & Brunskill 2016) with a model
  ``Q(s, a)`` and ``V(s) = E_{a~pi} Q(s, a)``:
  ``V = 1/n sum_i sum_t gamma^t [w_it (r_it - Q_it) + w_i,t-1 V_it]``, ``w_i,-1 = 1``; unbiased
  for any ``Q`` (low variance when ``Q`` is right). ``weighted=True`` gives WDR (Thomas & Brunskill
  2016): ``w_it / n`` replaced by ``w_it / sum_j w_jt`` (and ``w_i,t-1`` likewise).

Episodes of different lengths (a serious event ends a course early): after its last step an
episode sits in an absorbing state with reward 0, value 0, and ratio 1 for every later step, so its
cumulative weight continues as ``W_i`` in the per-step sums (and in WPDIS's per-step normaliser).
This is exact for termination and for truncation at the common time limit ``T``, so none of these
estimators needs equal lengths: the estimand is the return over the course as the environment ends
it. (Episodes cut short by the logging itself would be read as courses that ended there.)

Uncertainty: a 95 % percentile bootstrap over episodes (the resampling of
:func:`agents.evaluate.bootstrap_ci`: same seed, same resampled episodes), applied to the whole
estimator, so WIS/WPDIS/WDR renormalise within each resample. ESS: Kish (1965)
``(sum w)^2 / sum w^2`` of the trajectory weights for IS/WIS; for the per-decision estimators the
smallest per-step Kish ESS of ``w_.t`` over steps (``ess_per_step`` has them all). Degenerate
weights are reported in ``OPEEstimate.warnings`` (never hidden); weighted estimators whose weights
all vanish raise ``ValueError`` (no logged episode has target support) instead of returning NaN.

References: Precup, Sutton & Singh (2000) ICML; Jiang & Li (2016) ICML; Thomas & Brunskill
(2016) ICML; Kish (1965) Survey Sampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agents.evaluate import Estimate
from agents.offline.episodes import LoggedEpisodes

#: Warn when the ESS falls below this share of the episodes.
LOW_ESS_FRACTION = 0.1
#: Warn when one episode carries more than this share of the total trajectory weight.
HIGH_WEIGHT_SHARE = 0.5
#: exp(709.78) is the largest float64; an unnormalised IS weight above it cannot be represented.
MAX_LOG_WEIGHT = 709.0
#: Episodes x resamples per bootstrap block (bounds memory at ~16 MB of counts).
_BOOTSTRAP_BLOCK = 2_000_000


@dataclass(frozen=True)
class OPEEstimate:
    """One OPE estimate of the target policy's mean episode return (reward units).

    Attributes:
        name: estimator, e.g. ``"WPDIS"``.
        estimate: point estimate of ``E_pi[sum_t gamma^t r_t]``.
        low, high: percentile-bootstrap interval over episodes at ``level``.
        ess: effective sample size (Kish; see the module docstring for each estimator), in episodes.
        n_episodes: logged episodes used.
        n_zero_weight: episodes whose trajectory weight is 0 (target gives 0 to a logged action).
        max_weight_share: largest single trajectory weight / sum of weights (1/n when uniform).
        warnings: degenerate weights or resamples, in words (empty when none).
        ess_per_step: per-decision estimators: Kish ESS of ``w_.t`` at each step ``t``.
        level: confidence level of ``[low, high]``.
    """

    name: str
    estimate: float
    low: float
    high: float
    ess: float
    n_episodes: int
    n_zero_weight: int = 0
    max_weight_share: float = 0.0
    warnings: tuple[str, ...] = ()
    ess_per_step: tuple[float, ...] | None = None
    level: float = 0.95

    @property
    def ci(self) -> Estimate:
        """As :class:`agents.evaluate.Estimate` (mean and interval) for the evaluation tables."""
        return Estimate(self.estimate, self.low, self.high)

    def __str__(self) -> str:
        text = f"{self.name}: {self.ci} (ESS {self.ess:.1f} of {self.n_episodes})"
        return text + "".join(f"; WARNING {w}" for w in self.warnings)


def check_gamma(gamma: float) -> float:
    """Return ``gamma`` as float after checking it lies in (0, 1]."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)) or not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma!r}")
    return float(gamma)


def check_episodes(episodes: LoggedEpisodes) -> LoggedEpisodes:
    """Check what the estimators rely on: a non-empty batch with finite, positive ``behaviour_prob``."""
    if not isinstance(episodes, LoggedEpisodes):
        raise ValueError(f"episodes must be LoggedEpisodes, got {type(episodes).__name__}")  # noqa: TRY004 (project convention)
    if episodes.n_episodes == 0:
        raise ValueError("episodes is empty: OPE needs at least one logged episode")
    prob = np.asarray(episodes.behaviour_prob, dtype=np.float64)[episodes.step_mask]
    bad = ~np.isfinite(prob) | (prob <= 0)
    if bad.any():
        raise ValueError(f"behaviour_prob must be finite and > 0 on every logged step, got {prob[bad][0]!r}")
    return episodes


def check_step_array(episodes: LoggedEpisodes, values: np.ndarray, name: str, *,
                     nonnegative: bool = False) -> np.ndarray:
    """``values`` as float64 ``(n, T)``, checked finite (and >= 0) on real steps, 0 on padding."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != episodes.rewards.shape:
        raise ValueError(f"{name} must have shape (n_episodes, T) = {episodes.rewards.shape}, got {values.shape}")
    real = values[episodes.step_mask]
    if not np.all(np.isfinite(real)):
        raise ValueError(f"{name} must be finite on every logged step, got {real[~np.isfinite(real)][0]!r}")
    if nonnegative and np.any(real < 0):
        raise ValueError(f"{name} must be >= 0 (a probability or density), got {real[real < 0].min()!r}")
    return np.where(episodes.step_mask, values, 0.0)


def cumulative_log_weights(episodes: LoggedEpisodes, target_prob: np.ndarray) -> np.ndarray:
    """``(n, T)`` ``log w_it`` (``-inf`` where the target gives 0); constant after an episode's end.

    Raises:
        ValueError: ``target_prob`` of the wrong shape, negative, NaN or infinite on a logged step.
    """
    check_episodes(episodes)
    target = check_step_array(episodes, target_prob, "target_prob", nonnegative=True)
    mask = episodes.step_mask
    with np.errstate(divide="ignore"):  # log(0) = -inf is the intended zero weight
        log_ratio = np.log(target) - np.log(np.where(mask, episodes.behaviour_prob, 1.0))
    return np.cumsum(np.where(mask, log_ratio, 0.0), axis=1)


def kish_ess(weights: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Kish (1965) effective sample size ``(sum w)^2 / sum w^2`` (0 when all weights are 0)."""
    weights = np.asarray(weights, dtype=np.float64)
    total, square = weights.sum(axis=axis), (weights ** 2).sum(axis=axis)
    ess = np.divide(total ** 2, square, out=np.zeros_like(np.asarray(square)), where=square > 0)
    return float(ess) if np.ndim(ess) == 0 else ess


def _shifted(log_w: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``exp(log_w - m)`` with ``m`` the max along ``axis`` (0 where all are -inf), and ``m``."""
    top = np.max(log_w, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.exp(log_w - top), np.squeeze(top, axis=axis) if axis is not None else float(top.squeeze())


def _unshift(top: float, name: str) -> float:
    if top > MAX_LOG_WEIGHT:
        raise ValueError(f"{name}: the largest importance weight is exp({top:.0f}), beyond float64 "
                         f"(limit exp({MAX_LOG_WEIGHT:.0f})); the target policy is too far from the behaviour "
                         f"policy for unnormalised importance sampling (use WIS/WPDIS or FQE)")
    return float(np.exp(top))


def bootstrap_statistic(features: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray],
                        n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95
                        ) -> tuple[float, float, float, int]:
    """Percentile bootstrap of ``statistic(mean of per-episode features)`` over episodes.

    Args:
        features: ``(n, F)`` per-episode features; the estimator is ``statistic(mean over episodes)``.
        statistic: maps ``(B, F)`` feature means to ``(B,)`` estimates (NaN marks a degenerate resample).
        n_bootstrap: resamples (>= 100); seed: their seed; level: interval level in (0, 1).

    Returns:
        ``(estimate, low, high, n_degenerate)``. A resample draws ``n`` episodes with replacement as
        ``agents.evaluate.bootstrap_ci`` does (same ``seed``, same episodes); degenerate (NaN)
        resamples are left out of the percentiles and counted.
    """
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 100:
        raise ValueError(f"n_bootstrap must be an integer >= 100, got {n_bootstrap!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    n = features.shape[0]
    point = float(statistic(features.mean(axis=0, keepdims=True))[0])
    rng = np.random.default_rng(seed)
    block = max(1, _BOOTSTRAP_BLOCK // n)
    stats = []
    for start in range(0, n_bootstrap, block):
        b = min(block, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        stats.append(statistic(counts @ features / n))
    stats = np.concatenate(stats)
    finite = np.isfinite(stats)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(stats[finite], [tail, 100.0 - tail]) if finite.any() else (point, point)
    return point, float(low), float(high), int((~finite).sum())


def _weight_report(name: str, trajectory_w: np.ndarray, ess: float, n_degenerate: int,
                   n_bootstrap: int) -> tuple[int, float, tuple[str, ...]]:
    """``(n_zero_weight, max_weight_share, warnings)`` from shifted trajectory weights."""
    n = trajectory_w.size
    n_zero = int(np.sum(trajectory_w == 0))
    total = trajectory_w.sum()
    share = float(trajectory_w.max() / total) if total > 0 else 0.0
    notes = []
    if n_zero == n:
        notes.append(f"all {n} trajectory weights are 0: no logged episode has target support")
    elif n_zero:
        notes.append(f"{n_zero} of {n} episodes have trajectory weight 0 (a logged action outside target support)")
    if 0 < ess < LOW_ESS_FRACTION * n:
        notes.append(f"ESS {ess:.1f} of {n} episodes (< {LOW_ESS_FRACTION:.0%}): few episodes carry the estimate")
    if share > HIGH_WEIGHT_SHARE and n > 1:
        notes.append(f"one episode carries {share:.0%} of the total trajectory weight")
    if n_degenerate:
        notes.append(f"{n_degenerate} of {n_bootstrap} bootstrap resamples had no weight; CI from the rest")
    return n_zero, share, tuple(f"{name}: {note}" for note in notes)


def _result(name: str, episodes: LoggedEpisodes, log_w: np.ndarray, features: np.ndarray,
            statistic: Callable[[np.ndarray], np.ndarray], n_bootstrap: int, seed: int, level: float,
            per_step_ess: bool) -> OPEEstimate:
    trajectory_w, _ = _shifted(log_w[:, -1])
    if per_step_ess:
        step_w, _ = _shifted(log_w, axis=0)
        steps = np.asarray(kish_ess(step_w, axis=0))
        ess, ess_steps = float(steps.min()), tuple(float(e) for e in steps)
    else:
        ess, ess_steps = float(kish_ess(trajectory_w)), None
    point, low, high, n_degenerate = bootstrap_statistic(features, statistic, n_bootstrap, seed, level)
    n_zero, share, notes = _weight_report(name, trajectory_w, ess, n_degenerate, n_bootstrap)
    return OPEEstimate(name, point, low, high, ess, episodes.n_episodes, n_zero, share, notes, ess_steps, level)


def _require_support(name: str, weight_sums: np.ndarray) -> None:
    """Weighted estimators divide by ``sum_i w``: refuse (rather than NaN) when it is 0."""
    empty = np.flatnonzero(np.atleast_1d(weight_sums) <= 0)
    if empty.size:
        where = f" from step {empty[0]} on" if np.ndim(weight_sums) else ""
        raise ValueError(f"{name} is undefined: every importance weight is 0{where}, i.e. no logged episode "
                         f"has target support (target_prob is 0 on a logged action of every episode)")


def importance_sampling(episodes: LoggedEpisodes, target_prob: np.ndarray, gamma: float = 1.0, *,
                        n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95) -> OPEEstimate:
    """Ordinary trajectory-wise IS, ``1/n sum_i W_i G_i`` (Precup et al. 2000). Unbiased.

    Args:
        episodes: logged episodes (any length mix; see the module docstring).
        target_prob: ``(n, T)`` target probability/density of each logged action (>= 0).
        gamma: discount in (0, 1]. n_bootstrap, seed, level: the bootstrap interval.

    Raises:
        ValueError: bad shapes/values, or weights beyond float64 (see :data:`MAX_LOG_WEIGHT`).
    """
    gamma = check_gamma(gamma)
    log_w = cumulative_log_weights(episodes, target_prob)
    w, top = _shifted(log_w[:, -1])
    scale = _unshift(top, "IS")
    features = (w * episodes.returns(gamma))[:, None]
    return _result("IS", episodes, log_w, features, lambda m: scale * m[:, 0], n_bootstrap, seed, level, False)


def weighted_importance_sampling(episodes: LoggedEpisodes, target_prob: np.ndarray, gamma: float = 1.0, *,
                                 n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95) -> OPEEstimate:
    """Weighted (self-normalised) IS, ``sum_i W_i G_i / sum_i W_i``. Arguments as :func:`importance_sampling`.

    Raises:
        ValueError: as IS, and when all trajectory weights are 0 (no episode has target support).
    """
    gamma = check_gamma(gamma)
    log_w = cumulative_log_weights(episodes, target_prob)
    w, _ = _shifted(log_w[:, -1])
    _require_support("WIS", w.sum())
    features = np.stack([w * episodes.returns(gamma), w], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample may have no weight -> NaN, counted
        return _result("WIS", episodes, log_w, features, lambda m: m[:, 0] / m[:, 1], n_bootstrap, seed, level,
                       False)


def per_decision_is(episodes: LoggedEpisodes, target_prob: np.ndarray, gamma: float = 1.0, *,
                    n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95) -> OPEEstimate:
    """Per-decision IS, ``1/n sum_i sum_t gamma^t w_it r_it`` (Precup et al. 2000). Unbiased.

    Arguments and errors as :func:`importance_sampling`.
    """
    gamma = check_gamma(gamma)
    log_w = cumulative_log_weights(episodes, target_prob)
    w, top = _shifted(log_w)
    scale = _unshift(top, "PDIS")
    discount = gamma ** np.arange(episodes.horizon)
    features = (w * episodes.rewards * episodes.step_mask * discount).sum(axis=1)[:, None]
    return _result("PDIS", episodes, log_w, features, lambda m: scale * m[:, 0], n_bootstrap, seed, level, True)


def weighted_per_decision_is(episodes: LoggedEpisodes, target_prob: np.ndarray, gamma: float = 1.0, *,
                             n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95) -> OPEEstimate:
    """Weighted per-decision IS, ``sum_t gamma^t sum_i w_it r_it / sum_i w_it`` (ended episodes keep
    ``w_it = W_i`` and reward 0, see the module docstring). Arguments as :func:`importance_sampling`.

    Raises:
        ValueError: as IS, and when every weight of some step is 0 (no episode has target support).
    """
    gamma = check_gamma(gamma)
    log_w = cumulative_log_weights(episodes, target_prob)
    w, _ = _shifted(log_w, axis=0)  # per-step shift: the ratio at each step is scale-free
    _require_support("WPDIS", w.sum(axis=0))
    t = episodes.horizon
    discount = gamma ** np.arange(t)
    features = np.concatenate([w * episodes.rewards * episodes.step_mask, w], axis=1)

    def statistic(m: np.ndarray) -> np.ndarray:
        return (discount * m[:, :t] / m[:, t:]).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        return _result("WPDIS", episodes, log_w, features, statistic, n_bootstrap, seed, level, True)


def doubly_robust(episodes: LoggedEpisodes, target_prob: np.ndarray, q_logged: np.ndarray,
                  v_states: np.ndarray, gamma: float = 1.0, *, weighted: bool = False, n_bootstrap: int = 2000,
                  seed: int = 0, level: float = 0.95) -> OPEEstimate:
    """Per-decision doubly robust estimate (Jiang & Li 2016), or WDR (Thomas & Brunskill 2016).

    ``V = 1/n sum_i sum_t gamma^t [w_it (r_it - Q(s_it, a_it)) + w_i,t-1 V(s_it)]`` with ``w_i,-1 = 1``
    (``weighted``: ``w_it / n`` -> ``w_it / sum_j w_jt``). Unbiased for any fixed ``Q``; with an
    in-sample fitted ``Q`` (e.g. :class:`agents.offline.fqe.FQEResult`) the bias is small, and
    cross-fitting (fit on one half, evaluate on the other) removes it. The bootstrap keeps ``Q`` fixed.

    Args:
        episodes, target_prob, gamma, n_bootstrap, seed, level: as :func:`importance_sampling`.
        q_logged: ``(n, T)`` model ``Q(s_t, a_t)`` of the logged actions (return units).
        v_states: ``(n, T)`` model ``V(s_t) = E_{a~pi} Q(s_t, a)`` (padding ignored: ended episodes have value 0).
        weighted: WDR instead of DR.

    Raises:
        ValueError: as IS; ``q_logged``/``v_states`` of the wrong shape or not finite; WDR without support.
    """
    gamma = check_gamma(gamma)
    log_w = cumulative_log_weights(episodes, target_prob)
    q = check_step_array(episodes, q_logged, "q_logged")
    v = check_step_array(episodes, v_states, "v_states")
    r = episodes.rewards * episodes.step_mask
    log_w_prev = np.concatenate([np.zeros((episodes.n_episodes, 1)), log_w[:, :-1]], axis=1)
    t = episodes.horizon
    discount = gamma ** np.arange(t)
    if not weighted:
        w, top = _shifted(log_w)
        if top < 0:  # w_i,-1 = 1 must stay representable too
            w, top = w * np.exp(top), 0.0
        w_prev = np.exp(log_w_prev - top)
        scale = _unshift(top, "DR")
        features = (discount * (w * (r - q) + w_prev * v)).sum(axis=1)[:, None]
        return _result("DR", episodes, log_w, features, lambda m: scale * m[:, 0], n_bootstrap, seed, level, True)
    w, _ = _shifted(log_w, axis=0)
    w_prev, _ = _shifted(log_w_prev, axis=0)
    _require_support("WDR", w.sum(axis=0))
    features = np.concatenate([w * (r - q), w, w_prev * v, w_prev], axis=1)

    def statistic(m: np.ndarray) -> np.ndarray:
        return (discount * (m[:, :t] / m[:, t:2 * t] + m[:, 2 * t:3 * t] / m[:, 3 * t:])).sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        return _result("WDR", episodes, log_w, features, statistic, n_bootstrap, seed, level, True)
