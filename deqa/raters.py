"""Simulated human raters on an absolute category rating (ACR) scale. Explained in notebook 01.

A subjective study asks many people to rate each image on 1 (bad) .. 5 (excellent). People differ:
one rater is harsh (a negative bias), another lenient; some are consistent, some erratic (their own
noise). We model rater r with a bias b_r ~ N(0, bias_sd) and a noise level s_r around noise_sd.
Rater r's opinion of an image with latent quality q is

    rating = clip(round(q + b_r + e), lo, hi),   e ~ N(0, s_r^2)

Each image is rated by a random subset of the rater pool. The result is a histogram of ratings per
image, from which the mean opinion score (MOS) and its standard deviation follow (``summarise``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DeqaError


@dataclass(frozen=True)
class RaterPool:
    """A panel of raters: each one's bias (added to the latent quality) and noise standard deviation."""

    bias: np.ndarray
    noise_sd: np.ndarray

    def __len__(self) -> int:
        return len(self.bias)


def _rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def rater_pool(n_pool: int, bias_sd: float, noise_sd: float, rng=0, noise_spread: float = 0.25) -> RaterPool:
    """Draw ``n_pool`` raters: bias ~ N(0, bias_sd); noise sd = noise_sd * exp(N(0, noise_spread))
    (so some raters are steadier than others, all positive). ``rng``: a seed or a numpy Generator."""
    if n_pool < 1:
        raise DeqaError(f"rater_pool: n_pool must be at least 1, got {n_pool}")
    if bias_sd < 0 or noise_sd < 0:
        raise DeqaError(f"rater_pool: bias_sd and noise_sd must be >= 0, got {bias_sd}, {noise_sd}")
    rng = _rng(rng)
    bias = rng.normal(0.0, bias_sd, n_pool)
    noise = noise_sd * np.exp(rng.normal(0.0, noise_spread, n_pool))
    return RaterPool(bias=bias, noise_sd=noise)


def simulate_ratings(
    quality,
    n_raters: int = 25,
    rater_bias_sd: float = 0.3,
    rater_noise_sd: float = 0.6,
    seed_or_rng=0,
    scale: tuple[int, int] = (1, 5),
    n_pool: int | None = None,
    pool: RaterPool | None = None,
) -> np.ndarray:
    """Rating histograms for images of latent ``quality`` (N,) on the integer ``scale`` (lo, hi).

    Each image is rated by ``n_raters`` distinct raters drawn at random from a pool (``pool``, or a
    new pool of ``n_pool`` raters, default 4 * n_raters, drawn from the same generator). Returns
    integer counts of shape (N, hi - lo + 1): column k counts the ratings equal to lo + k.
    Deterministic under a seed.
    """
    q = np.asarray(quality, dtype=float).reshape(-1)
    if not np.all(np.isfinite(q)):
        raise DeqaError(f"simulate_ratings: quality is not finite at row {int(np.flatnonzero(~np.isfinite(q))[0])}")
    lo, hi = int(scale[0]), int(scale[1])
    if hi <= lo:
        raise DeqaError(f"simulate_ratings: scale must have hi > lo, got {scale}")
    rng = _rng(seed_or_rng)
    if pool is None:
        pool = rater_pool(n_pool or 4 * n_raters, rater_bias_sd, rater_noise_sd, rng)
    if not 1 <= n_raters <= len(pool):
        raise DeqaError(f"simulate_ratings: n_raters must be in 1..{len(pool)} (the pool size), got {n_raters}")
    # A random subset per image: the first n_raters of a random permutation of the pool.
    who = np.argsort(rng.random((len(q), len(pool))), axis=1)[:, :n_raters]
    opinion = q[:, None] + pool.bias[who] + pool.noise_sd[who] * rng.standard_normal(who.shape)
    ratings = np.clip(np.rint(opinion), lo, hi).astype(np.int64)
    categories = np.arange(lo, hi + 1)
    return (ratings[:, :, None] == categories).sum(axis=1)


def summarise(counts, scale: tuple[int, int] = (1, 5)) -> pd.DataFrame:
    """MOS, sample std (ddof=1, as KonIQ-10k reports its SD), fractions c1..cK and n_ratings from
    rating histograms (N, K) on the integer scale ``scale`` (K = hi - lo + 1)."""
    c = np.asarray(counts)
    lo, hi = int(scale[0]), int(scale[1])
    if c.ndim != 2 or c.shape[1] != hi - lo + 1:
        raise DeqaError(f"summarise: counts must have shape (N, {hi - lo + 1}), got {c.shape}")
    if np.any(c < 0):
        raise DeqaError(f"summarise: negative count at row {int(np.flatnonzero((c < 0).any(1))[0])}")
    n = c.sum(axis=1)
    if np.any(n == 0):
        raise DeqaError(f"summarise: no ratings at row {int(np.flatnonzero(n == 0)[0])}")
    values = np.arange(lo, hi + 1, dtype=float)
    mos = c @ values / n
    squares = (c * (values[None, :] - mos[:, None]) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.where(n > 1, np.sqrt(squares / np.maximum(n - 1, 1)), np.nan)
    table = {"mos": mos, "std": std}
    for k in range(c.shape[1]):
        table[f"c{k + 1}"] = c[:, k] / n
    table["n_ratings"] = n.astype(int)
    return pd.DataFrame(table)
