"""Exact probability distributions over dosing actions, vectorised over rows (patients).

Continuous actions: mixtures of product truncated normals on the action bounds (density per unit
of action, ``scipy.stats.truncnorm``) sampled by inverting uniforms; discrete actions: a
probability table per row, sampled by inverting its CDF. Used by :mod:`agents.offline.policies`.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import truncnorm


def truncnorm_mixture_density(actions: np.ndarray, weights: np.ndarray, loc: np.ndarray, scale: np.ndarray,
                              low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``(N,)`` density of ``actions (N, A)`` under a mixture of product truncated normals.

    ``weights (N, K)`` sum to 1; ``loc (N, K, A)`` and ``scale (N, K, A)`` per component and
    dimension; ``low``, ``high`` ``(A,)`` the bounds. Density 0 outside the bounds.
    """
    a = np.asarray(actions, dtype=float)[:, None, :]
    pdf = truncnorm.pdf(a, (low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)
    return np.sum(weights * np.prod(pdf, axis=2), axis=1)


def truncnorm_mixture_sample(uniforms: np.ndarray, weights: np.ndarray, loc: np.ndarray, scale: np.ndarray,
                             low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Draws of that mixture from ``uniforms (N, 1 + A)``: column 0 picks the component, the rest invert its CDFs."""
    n = len(uniforms)
    component = np.sum(uniforms[:, :1] >= np.cumsum(weights, axis=1)[:, :-1], axis=1)
    rows = np.arange(n)
    m, s = loc[rows, component], scale[rows, component]
    return truncnorm.ppf(uniforms[:, 1:], (low - m) / s, (high - m) / s, loc=m, scale=s)


def sample_discrete(uniforms: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``(N,)`` int64 indices by inversion of ``uniforms[:, 0]`` through each row's CDF."""
    cdf = np.cumsum(probabilities, axis=1)
    index = np.sum(uniforms[:, :1] >= cdf[:, :-1] / cdf[:, -1:], axis=1)
    return index.astype(np.int64)


def discrete_prob(probabilities: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``(N,)`` probability of integer ``actions``; 0 for an index outside the action set."""
    actions = np.asarray(actions).reshape(len(probabilities))
    if actions.dtype.kind not in "iu":
        raise ValueError(f"discrete actions must be integers, got dtype {actions.dtype}")
    inside = (actions >= 0) & (actions < probabilities.shape[1])
    return np.where(inside, probabilities[np.arange(len(actions)), np.clip(actions, 0, probabilities.shape[1] - 1)],
                    0.0)


def continuous_actions(actions: np.ndarray, n: int, dim: int) -> np.ndarray:
    values = np.asarray(actions, dtype=float)
    if values.size != n * dim:
        raise ValueError(f"actions must have shape ({n}, {dim}), got {values.shape}")
    return values.reshape(n, dim)
