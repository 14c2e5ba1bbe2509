"""The five quality levels, the rescaling of a native score to [1, 5], and the score and spread
of five-level probabilities. Explained in notebook 01 (``01_score_distributions``).

Every array of level probabilities in this package is ordered bad..excellent: index k holds the
level whose centre is k + 1.
"""
from __future__ import annotations

import numpy as np

from .errors import DeqaError

LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")
CENTERS: np.ndarray = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
CENTERS.setflags(write=False)

#: Upper edges of the equal-width one-hot bins on [1, 5] used by Q-Align (bad <= 1.8 < poor ...).
ONE_HOT_EDGES: np.ndarray = np.array([1.8, 2.6, 3.4, 4.2])
ONE_HOT_EDGES.setflags(write=False)

# Column names, the same in every table, CSV and notebook. The model's side: the score, its spread
# and the five level probabilities; the human side: mu and sigma on [1, 5] and the five-level label.
PROB_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in LEVELS)
LABEL_COLUMNS: tuple[str, ...] = tuple(f"q_{name}" for name in LEVELS)
PREDICTION_COLUMNS: tuple[str, ...] = ("score", "std") + PROB_COLUMNS
HUMAN_COLUMNS: tuple[str, ...] = ("mu", "sigma") + LABEL_COLUMNS
#: a metadata table's own ``std`` (the MOS's spread on its native scale) takes this name in a table
#: that also holds predictions, where ``std`` is the predicted spread
NATIVE_STD = "mos_std"


def _as_float(x) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr


def rescale(mos, std=None, lo=None, hi=None, lower_is_better: bool = False):
    """Map native MOS and std onto the level scale [1, 5].

    mu = 4 (MOS - lo) / (hi - lo) + 1 and sigma = 4 std / (hi - lo). By default ``lo`` and ``hi`` are
    the minimum and maximum MOS of the data given (as the published implementation does); pass a
    data set's nominal scale instead when you know it. ``lower_is_better`` flips a DMOS first
    (mu -> 6 - mu), which leaves sigma unchanged.

    Returns ``(mu, sigma)`` as float arrays; sigma is NaN where std is NaN or not given.
    """
    mos = _as_float(mos)
    if not np.all(np.isfinite(mos)):
        bad = int(np.flatnonzero(~np.isfinite(mos))[0])
        raise DeqaError(f"rescale: MOS is not finite at row {bad}")
    std = np.full_like(mos, np.nan) if std is None else _as_float(std)
    if std.shape != mos.shape:
        raise DeqaError(f"rescale: mos has shape {mos.shape} but std has {std.shape}")
    if np.any(std < 0):
        bad = int(np.flatnonzero(std < 0)[0])
        raise DeqaError(f"rescale: negative std at row {bad}")
    lo = float(np.min(mos)) if lo is None else float(lo)
    hi = float(np.max(mos)) if hi is None else float(hi)
    if not hi > lo:
        raise DeqaError(f"rescale: the scale must have hi > lo, got lo={lo}, hi={hi}")
    mu = 4.0 * (mos - lo) / (hi - lo) + 1.0
    sigma = 4.0 * std / (hi - lo)
    if lower_is_better:
        mu = 6.0 - mu
    return mu, sigma


def score(probs) -> np.ndarray:
    """Expected level centre: sum_k q_k c_k, over the last axis of (..., 5) probabilities.
    Explained in notebook 02 (section 1)."""
    p = np.asarray(probs, dtype=float)
    _check_last_axis(p)
    return p @ CENTERS


def spread(probs) -> np.ndarray:
    """Standard deviation of the level centre: sqrt(sum_k q_k (c_k - score)^2). Explained in notebook 02."""
    p = np.asarray(probs, dtype=float)
    _check_last_axis(p)
    m = p @ CENTERS
    return np.sqrt(np.sum(p * (CENTERS - m[..., None]) ** 2, axis=-1))


def level_index(mu) -> np.ndarray:
    """Index (0 = bad .. 4 = excellent) of the equal-width Q-Align bin that holds each mu."""
    return np.searchsorted(ONE_HOT_EDGES, np.asarray(mu, dtype=float), side="left")


def _check_last_axis(p: np.ndarray) -> None:
    if p.shape[-1:] != (5,):
        raise DeqaError(f"expected level probabilities with a last axis of 5, got shape {p.shape}")
