"""Soft labels: the human score distribution N(mu, sigma^2) discretised onto the five levels.
Explained step by step in notebook 02 (``02_soft_labels``).

Two modes share the raw level masses (``cdf`` or ``pdf``):

* ``reference=True`` reproduces the published DeQA-Score label builder: one affine adjustment
  q_k = max(alpha p_k + beta, 0) with alpha = (mu - 3) / (B - 3A + 1e-9), no renormalisation after the
  clip, and a two-level label whenever sigma < 0.2 or the mean of q misses mu by more than 0.1.
* ``reference=False`` (default) solves the same two constraints (sum 1, mean mu) on an active set of
  levels, dropping the most negative level and solving again (at most four solves), so every row
  sums to 1 and has mean mu.

All functions are vectorised over rows; arrays of level probabilities are ordered bad..excellent.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .errors import DeqaError
from .levels import CENTERS, level_index

SIGMA_MIN = 0.2  #: below this spread the label falls back to the two-level label
REF_MEAN_TOL = 0.1  #: reference mode: largest |mean(q) - mu| accepted before falling back
MAX_ACTIVE_SET_ROUNDS = 4
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_EDGES = np.append(CENTERS - 0.5, CENTERS[-1] + 0.5)


def _rows(mu, sigma):
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    sigma = np.atleast_1d(np.asarray(sigma, dtype=float))
    if sigma.shape != mu.shape:
        sigma = np.broadcast_to(sigma, mu.shape).astype(float)
    if mu.ndim != 1:
        raise DeqaError(f"expected 1-D mu, got shape {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise DeqaError(f"mu is not finite at row {int(np.flatnonzero(~np.isfinite(mu))[0])}")
    out = (mu < 1.0 - 1e-9) | (mu > 5.0 + 1e-9)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise DeqaError(f"mu must lie in [1, 5] (rescale first); row {i} has mu={mu[i]:.6g}")
    if np.any(sigma < 0):
        raise DeqaError(f"negative sigma at row {int(np.flatnonzero(sigma < 0)[0])}")
    return mu, sigma


def level_masses(mu, sigma, method: str = "cdf") -> np.ndarray:
    """Raw (unadjusted) masses p_k of N(mu, sigma^2) on the five levels, shape (N, 5).

    ``cdf``: p_k = Phi((c_k + 0.5 - mu)/sigma) - Phi((c_k - 0.5 - mu)/sigma) (interval integral).
    ``pdf``: p_k = phi((c_k - mu)/sigma) / sigma (density at the level centre).
    Rows with sigma = 0 or NaN give non-finite masses; the label functions handle them.
    """
    mu, sigma = _rows(mu, sigma)
    m, s = mu[:, None], sigma[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if method == "cdf":
            edges = ndtr((_EDGES - m) / s)  # Phi at the six level boundaries 0.5 .. 5.5
            return edges[:, 1:] - edges[:, :-1]
        if method == "pdf":
            z = (CENTERS - m) / s
            return np.exp(-0.5 * z * z) / _SQRT_2PI / s
    raise DeqaError(f"unknown method {method!r}: use 'cdf' or 'pdf'")


def two_level_labels(mu) -> np.ndarray:
    """The fallback label: all mass on the two centres around mu, mean exactly mu.

    With k = floor(mu) (k = 4 when mu = 5): q(centre k) = k + 1 - mu, q(centre k + 1) = mu - k.
    """
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    k = np.clip(np.floor(mu), 1, 4).astype(int)
    q = np.zeros((mu.size, 5))
    rows = np.arange(mu.size)
    q[rows, k - 1] = k + 1 - mu
    q[rows, k] = mu - k
    return q


def _reference_two_level(mu: np.ndarray) -> np.ndarray:
    """The published fallback, with its +-1e-8 widened intervals (first interval that holds mu)."""
    eps = 1e-8
    q = np.zeros((mu.size, 5))
    todo = np.ones(mu.size, dtype=bool)
    for idx in range(1, 5):
        left, right = idx - eps, idx + 1 + eps
        hit = todo & (mu > left) & (mu <= right)
        q[hit, idx - 1] = (right - mu[hit]) / (right - left)
        q[hit, idx] = (mu[hit] - left) / (right - left)
        todo &= ~hit
    return q


def _reference(p: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = p.sum(axis=1)
        b = p @ CENTERS
        alpha = (mu - 3.0) / (b - 3.0 * a + 1e-9)
        beta = (1.0 - alpha * a) / 5.0
        q = np.maximum(alpha[:, None] * p + beta[:, None], 0.0)
        # the published code takes max(x, 0) in Python, which keeps NaN; np.maximum does too
        diff = np.abs(q @ CENTERS - mu)
    fallback = (sigma < SIGMA_MIN) | (diff > REF_MEAN_TOL) | np.isnan(sigma) | ~np.isfinite(diff)
    q[fallback] = _reference_two_level(mu[fallback])
    return q, fallback


def _solve_on_support(p, active, mu):
    """alpha, beta with sum_S (alpha p + beta) = 1 and sum_S (alpha p + beta) c = mu over support S."""
    pa = np.where(active, p, 0.0)
    a = pa.sum(axis=1)
    b = pa @ CENTERS
    cnt = active.sum(axis=1)
    csum = active @ CENTERS
    # alpha = (C/n - mu) / (A (C/n - B/A)); when the support's centre C/n and the masses' mean B/A
    # coincide the two constraints are one, and the continuous choice is plain normalisation.
    gap = csum / cnt - b / a
    degenerate = np.abs(gap) < 1e-8
    alpha = np.where(degenerate, 1.0 / a, (csum / cnt - mu) / (a * np.where(degenerate, 1.0, gap)))
    beta = (1.0 - alpha * a) / cnt
    return alpha, beta


def _active_set(p: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # first round on all five levels, written out for speed (most rows end here)
        a = p.sum(axis=1)
        gap = 3.0 - (p @ CENTERS) / a
        degenerate = np.abs(gap) < 1e-8
        alpha = np.where(degenerate, 1.0 / a, (3.0 - mu) / (a * np.where(degenerate, 1.0, gap)))
        beta = (1.0 - alpha * a) / 5.0
        q = alpha[:, None] * p
        q += beta[:, None]
        active = np.isfinite(q)
        todo = np.flatnonzero((q < 0).any(axis=1))
        # drop the most negative level of each row still infeasible, then solve again on the rest
        for _ in range(MAX_ACTIVE_SET_ROUNDS - 1):
            if todo.size == 0:
                break
            worst = np.argmin(np.where(active[todo], q[todo], np.inf), axis=1)
            act = active[todo]
            act[np.arange(todo.size), worst] = False
            active[todo] = act
            a_t, b_t = _solve_on_support(p[todo], act, mu[todo])
            alpha[todo] = a_t
            q[todo] = np.where(act, a_t[:, None] * p[todo] + b_t[:, None], 0.0)
            todo = todo[(q[todo] < 0).any(axis=1)]
        mean_err = np.abs(q @ CENTERS - mu)
    bad_row = (
        np.isnan(sigma)
        | (sigma < SIGMA_MIN)
        | (active.sum(axis=1) < 2)
        | ~(alpha > 0)
        | ~np.all(np.isfinite(q), axis=1)
        | np.any(q < 0, axis=1)
        | ~(mean_err < 1e-7)
    )
    q[bad_row] = two_level_labels(mu[bad_row])
    return q, bad_row


def soft_labels(mu, sigma, method: str = "cdf", reference: bool = False,
                return_fallback: bool = False):
    """Soft labels q (N, 5), ordered bad..excellent, for rescaled mu in [1, 5] and sigma >= 0.

    ``method``: ``"cdf"`` (interval integral, the paper) or ``"pdf"`` (density at the centre).
    ``reference``: reproduce the published builder exactly (see the module docstring).
    ``return_fallback``: also return the boolean mask of rows given the two-level label.
    sigma may be NaN (no std known): those rows get the two-level label.
    """
    mu, sigma = _rows(mu, sigma)
    p = level_masses(mu, sigma, method)
    q, fallback = (_reference if reference else _active_set)(p, mu, sigma)
    return (q, fallback) if return_fallback else q


def one_hot_labels(mu) -> np.ndarray:
    """Q-Align's one-hot label: equal-width bins on [1, 5] (bad <= 1.8 < poor <= 2.6 < ... ), (N, 5)."""
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    q = np.zeros((mu.size, 5))
    q[np.arange(mu.size), level_index(mu)] = 1.0
    return q
