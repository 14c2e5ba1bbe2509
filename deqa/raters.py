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


def repeated_study_agreement(fractions, n_ratings, n_splits: int = 10, seed: int = 0) -> float:
    """How closely a repeated study of the same images, with as many raters, would reproduce each
    image's rating spread: the correlation of the two halves' standard deviations when every image's
    ratings are split at random in two (``n_splits`` times, averaged), stepped up to the full number
    of raters by the Spearman-Brown formula r = 2 r_half / (1 + r_half).

    ``fractions``: the rating histograms (N, 5), fractions of each rating (KonIQ-10k's ``c1..c5``);
    ``n_ratings``: the raters per image. A model that sees only the image is not expected to
    correlate with this study's spread above it (chapter 05 measures the same on simulated repeated
    studies); ``deqa.plots.spread_calibration`` draws it. NaN with fewer than 3 usable images."""
    hist = np.asarray(fractions, dtype=float)
    n = np.asarray(n_ratings, dtype=float).reshape(-1)
    if hist.ndim != 2 or hist.shape[1] != 5 or len(n) != len(hist):
        raise DeqaError(f"repeated_study_agreement: need (N, 5) fractions and N counts, got {hist.shape} "
                        f"and {n.shape}")
    usable = np.all(np.isfinite(hist), axis=1) & np.isfinite(n) & (n >= 4)
    counts = np.rint(hist[usable] * n[usable, None]).astype(np.int64)
    if len(counts) < 3:
        return float("nan")
    rng = _rng(seed)
    values = []
    for _ in range(n_splits):
        # the first half: total // 2 ratings drawn without replacement, one rating value at a time
        first = np.zeros_like(counts)
        left, wanted = counts.sum(axis=1), counts.sum(axis=1) // 2
        for k in range(4):
            first[:, k] = rng.hypergeometric(counts[:, k], left - counts[:, k], wanted)
            left, wanted = left - counts[:, k], wanted - first[:, k]
        first[:, 4] = wanted
        sd_a, sd_b = (summarise(half)["std"].to_numpy() for half in (first, counts - first))
        if np.ptp(sd_a) > 0 and np.ptp(sd_b) > 0:
            values.append(np.corrcoef(sd_a, sd_b)[0, 1])
    if not values:
        return float("nan")
    r_half = float(np.mean(values))
    return 2 * r_half / (1 + r_half)
