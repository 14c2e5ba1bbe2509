"""Soft labels: the human score distribution N(mu, sigma^2) discretised onto the five levels.
Explained step by step in notebook 02 (``02_soft_labels``).

Three modes share the raw level masses p (``cdf`` or ``pdf``); each keeps a row's sum at 1 and its
mean at mu in its own way:

* ``"projection"``: the information projection of the normalised masses onto the labels with mean mu,
  q_k = p_k exp(lambda c_k) / sum_j p_j exp(lambda c_j), with the one lambda that gives mean mu
  (a few vectorised Newton steps). Every level keeps some mass, the shape stays Gaussian-like, and the
  label changes continuously with mu and sigma.
* ``"reference"`` (``reference=True``) reproduces the published DeQA-Score label builder: one affine
  adjustment q_k = max(alpha p_k + beta, 0) with alpha = (mu - 3) / (B - 3A + 1e-9), no renormalisation
  after the clip, and a two-level label whenever sigma < 0.2 or the mean of q misses mu by more than 0.1.
* ``"active_set"``: the affine adjustment alpha p + beta solved on an active set of levels, dropping the
  most negative level and solving again (at most four solves). Exact in sum and mean, but it cuts the
  tails, so its labels are narrower than sigma; kept as the stepping stone notebook 02 compares.

Every mode falls back to the two-level label around mu when sigma < 0.2 (or unknown). All functions
are vectorised over rows; arrays of level probabilities are ordered bad..excellent.

Which label the package builds when a caller does not choose is set once, by ``PUBLISHED_LABEL``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .errors import DeqaError
from .levels import CENTERS, level_index

SIGMA_MIN = 0.2  #: below this spread the label falls back to the two-level label
REF_MEAN_TOL = 0.1  #: reference mode: largest |mean(q) - mu| accepted before falling back
MAX_ACTIVE_SET_ROUNDS = 4
MODES = ("projection", "reference", "active_set")
#: The soft label built when a caller does not choose one: True = the published DeQA-Score builder
#: (mode ``"reference"``), False = this repository's information projection (mode ``"projection"``).
#: The package's one default: ``soft_labels``, ``deqa.data.to_levels``, ``deqa.trainset.load_splits``,
#: ``deqa.evaluate.human_labels``, ``deqa.cotrain.make_targets`` and ``TrainConfig.reference_labels``
#: all read it. Chapter 06's ``label`` arm measured the two (docs/ledger.md).
PUBLISHED_LABEL = False
PROJECTION_TOL = 1e-9  #: projection mode: Newton stops at |log(A/B)| <= this (mean within 4e-9 of mu)
MAX_NEWTON_STEPS = 50  #: projection mode: rows not solved by then fall back (none on any data seen)
LAMBDA_MAX = 300.0  #: projection mode: |lambda| bound, so exp(lambda (c - 3)) stays finite
LAMBDA_START = 15.0  #: projection mode: bound on the first guess (|lambda| < 3 on real labels, < 15 on any row seen)
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_EDGES = np.append(CENTERS - 0.5, CENTERS[-1] + 0.5)
_OFFSETS = CENTERS - 3.0  # centres about the middle level: exp(lambda * offset) never overflows
_ONES = np.ones(5)  # row sums as a matrix product: several times faster than .sum(axis=1) on (N, 5)


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


def _tilt(lam: np.ndarray) -> np.ndarray:
    """exp(lambda (c_k - 3)) for the five levels, (N, 5), from one exp per row."""
    e = np.exp(lam)
    out = np.empty((lam.size, 5))
    out[:, 2] = 1.0
    out[:, 3] = e
    np.multiply(e, e, out=out[:, 4])
    np.divide(1.0, e, out=out[:, 1])
    np.multiply(out[:, 1], out[:, 1], out=out[:, 0])
    return out


def _balance(above: np.ndarray, below: np.ndarray, offset: np.ndarray, lam: np.ndarray):
    """g = log A - log B and its slope dg/dlambda, where A and B are the pulls of the levels above and
    below mu: A = sum_{c_k > mu} p_k (c_k - mu) e^{lambda c_k}, B = sum_{c_k < mu} p_k (mu - c_k) e^{lambda c_k}.
    ``above`` and ``below`` come scaled so that each side's weights sum to 1 (A and B then stay within
    floating point for |lambda| <= LAMBDA_MAX); ``offset`` = log of the scale ratio adds it back."""
    tilt = _tilt(lam)
    up, down = above * tilt, below * tilt
    a, b = up @ _ONES, down @ _ONES
    return np.log(a) - np.log(b) + offset, (up @ _OFFSETS) / a - (down @ _OFFSETS) / b


def _solve_lambda(above: np.ndarray, below: np.ndarray, start: np.ndarray):
    """The lambda with A(lambda) = B(lambda) for every row, and whether it was found.

    The mean of q is mu exactly when A = B. g = log(A/B) rises with slope between 1 and 4 (the gap
    between the mean centre above mu and the one below), so it is close to a straight line: Newton
    converges in a few steps from ``start``. The slope bounds also make each value of g bracket
    the root (within [lambda - g, lambda - g/4] when g > 0; we keep a wider [lambda - 2g, lambda - g/8]
    against rounding); a step that leaves the bracket is replaced by its midpoint. Rows are dropped
    from the work arrays once most are solved.
    """
    n = above.shape[0]
    total_a, total_b = above @ _ONES, below @ _ONES
    above, below = above / total_a[:, None], below / total_b[:, None]
    offset = np.log(total_a) - np.log(total_b)
    lam, found = np.zeros(n), np.zeros(n, dtype=bool)
    live = np.arange(n)
    x, lo, hi = np.clip(start, -LAMBDA_START, LAMBDA_START), np.full(n, -LAMBDA_MAX), np.full(n, LAMBDA_MAX)
    for _ in range(MAX_NEWTON_STEPS):
        g, slope = _balance(above, below, offset, x)
        done = np.abs(g) <= PROJECTION_TOL
        lo = np.maximum(lo, x - np.maximum(2.0 * g, g / 8.0))  # slope in [1, 4], bounds taken wider
        hi = np.minimum(hi, x - np.minimum(2.0 * g, g / 8.0))
        step = x - g / slope
        x = np.where(done, x, np.where((step >= lo) & (step <= hi), step, 0.5 * (lo + hi)))
        lam[live[done]], found[live[done]] = x[done], True
        if done.all():
            break
        if done.mean() > 0.25:  # shrink the work arrays to the rows still unsolved
            keep = ~done
            live, x, lo, hi, offset = live[keep], x[keep], lo[keep], hi[keep], offset[keep]
            above, below = above[keep], below[keep]
    return lam, found


def _projection(p: np.ndarray, mu: np.ndarray, sigma: np.ndarray):
    """Projection mode: q_k = p_k exp(lambda c_k) / sum_j p_j exp(lambda c_j) with mean mu.

    Among all labels with mean mu this is the one closest to the normalised masses in KL (an
    information projection): every level keeps mass, no level goes negative, and q moves continuously
    with mu and sigma. Falls back to the two-level label when sigma < 0.2 or unknown, or when mu has no
    level with mass on one side (mu at an end of the scale: fewer than two levels can carry the mean).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pn = p / (p @ _ONES)[:, None]
        signed = pn * (CENTERS - mu[:, None])  # > 0 above mu, < 0 below, 0 at a centre equal to mu
        above = np.where(signed > 0, signed, 0.0)
        below = above - signed
        usable = ((sigma >= SIGMA_MIN) & np.isfinite(signed @ _ONES)
                  & (above @ _ONES > 0) & (below @ _ONES > 0))
        rows = np.flatnonzero(usable)
        # start from one Newton step on the mean itself: lambda ~ (mu - mean(p)) / var(p)
        mean = pn[rows] @ _OFFSETS
        start = (mu[rows] - 3.0 - mean) / (pn[rows] @ _OFFSETS**2 - mean**2)
        start[~np.isfinite(start)] = 0.0
        lam = np.zeros(mu.size)
        lam[rows], found = _solve_lambda(above[rows], below[rows], start)
        q = pn * _tilt(lam)
        q /= (q @ _ONES)[:, None]
    fallback = ~usable
    fallback[rows[~found]] = True
    q[fallback] = two_level_labels(mu[fallback])
    return q, fallback


def use_reference(reference: bool | None) -> bool:
    """``reference`` as given, or the package default ``PUBLISHED_LABEL`` when it is None."""
    return PUBLISHED_LABEL if reference is None else bool(reference)


def resolve_mode(mode: str | None = None, reference: bool | None = None) -> str:
    """The label mode a call asks for: ``mode`` when given, else ``"reference"`` or ``"projection"``
    as ``reference`` (or, when None, ``PUBLISHED_LABEL``) says."""
    if mode is None:
        return "reference" if use_reference(reference) else "projection"
    if mode not in MODES:
        hint = " (the information projection is mode 'projection')" if mode == "default" else ""
        raise DeqaError(f"unknown soft-label mode {mode!r}: use one of {MODES}{hint}")
    if reference is not None and bool(reference) != (mode == "reference"):
        raise DeqaError(f"reference={reference} contradicts mode={mode!r}")
    return mode


def soft_labels(mu, sigma, method: str = "cdf", reference: bool | None = None,
                return_fallback: bool = False, mode: str | None = None):
    """Soft labels q (N, 5), ordered bad..excellent, for rescaled mu in [1, 5] and sigma >= 0.

    ``method``: ``"cdf"`` (interval integral, the paper) or ``"pdf"`` (density at the centre).
    ``mode``: ``"projection"`` (information projection), ``"reference"`` (the published builder, exactly)
    or ``"active_set"`` (the affine adjustment re-solved on the levels it keeps); see the module
    docstring. ``reference=True`` is short for ``mode="reference"``, ``reference=False`` for
    ``mode="projection"``; with neither, ``PUBLISHED_LABEL`` decides.
    ``return_fallback``: also return the boolean mask of rows given the two-level label.
    sigma may be NaN (no std known): those rows get the two-level label.
    """
    mode = resolve_mode(mode, reference)
    mu, sigma = _rows(mu, sigma)
    p = level_masses(mu, sigma, method)
    build = {"projection": _projection, "reference": _reference, "active_set": _active_set}[mode]
    q, fallback = build(p, mu, sigma)
    return (q, fallback) if return_fallback else q


def one_hot_labels(mu) -> np.ndarray:
    """Q-Align's one-hot label: equal-width bins on [1, 5] (bad <= 1.8 < poor <= 2.6 < ... ), (N, 5)."""
    mu = np.atleast_1d(np.asarray(mu, dtype=float))
    q = np.zeros((mu.size, 5))
    q[np.arange(mu.size), level_index(mu)] = 1.0
    return q
