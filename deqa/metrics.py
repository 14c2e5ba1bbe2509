"""How well predicted quality matches human opinion. Explained in notebook 05 (``05_distribution_plots``).

Two kinds of numbers:

* **Agreement of scores** (one number per image): PLCC (linear), SRCC (Spearman, rank), KRCC
  (Kendall tau-b, rank), and PLCC after the 4-parameter logistic fit that IQA papers apply before
  PLCC, f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2.
* **Gaps between distributions** (per image, then averaged): closed-form Gaussian KL(human || predicted),
  the Gaussian Wasserstein-2 distance, the published Gaussian "JS" (``gaussian_js``: KL to a
  moment-matched midpoint, what DeQA-Score's evaluation reports as JS), and - on the five-level
  probabilities - the Jensen-Shannon divergence and the Wasserstein-1 distance (``js_levels``,
  ``w1_levels``). The two JS are different quantities: compare each only with itself.
* **Uncertainty over images**: ``bootstrap``, the percentile bootstrap interval of a correlation, and
  ``paired_bootstrap``, of the difference between two models on the same images (notebook 05 and
  ``python -m deqa report``).
* **Uncertainty over seeds**: ``t_interval``, the Student-t interval of a mean (notebooks 03 and 06).

Only the statistics live here; ``deqa.evaluate`` joins predictions to metadata and tabulates these
numbers per data set (``python -m deqa evaluate``).
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import expit

from .errors import DeqaError

#: Spreads (on the 1-5 level scale) below this are raised to it before the Gaussian KL, which is
#: infinite for a point mass; 1e-3 is far below any real rating spread (typically 0.3-1.0).
SIGMA_FLOOR = 1e-3
#: Columns of ``distribution_gaps``, in order (the last two only when level probabilities are given).
GAP_COLUMNS = ("kl", "w2", "js_gaussian", "js_levels", "w1_levels")
#: eps of the published Gaussian KL and "JS" (added to the first spread and to 2 sigma_2^2).
PUBLISHED_EPS = 1e-8
MIN_POINTS_FOR_FIT = 5  #: the logistic has 4 parameters; fewer points cannot constrain it


# --------------------------------------------------------------------------------------- input checks
def as_vector(x, name: str) -> np.ndarray:
    """A finite 1-D float array from a list, numpy array or pandas column (DeqaError otherwise)."""
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DeqaError(f"{name}: expected numbers ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise DeqaError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeqaError(f"{name}: value {arr[i]} at index {i} is not finite "
                        f"({int(bad.sum())} such values); drop or fill them first")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the named arrays (a DeqaError names them when they differ)."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise DeqaError(f"length mismatch: {detail}")
    return next(iter(lengths.values()))


def as_vectors(**named) -> list[np.ndarray]:
    """``as_vector`` of each named input, all of one length (a DeqaError names the culprit)."""
    arrays = {name: as_vector(x, name) for name, x in named.items()}
    same_length(**arrays)
    return list(arrays.values())


def as_pair(pred, mos, min_n: int = 2):
    """``as_vector`` of both, of one length, at least ``min_n`` long."""
    pred, mos = as_vectors(pred=pred, mos=mos)
    n = len(pred)
    if n < min_n:
        raise DeqaError(f"need at least {min_n} images to correlate, got {n}")
    return pred, mos


def _probabilities(p, name: str) -> np.ndarray:
    """(N, 5) rows normalised to sum 1; refuses NaN, negative entries and all-zero rows."""
    try:
        arr = np.asarray(p, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DeqaError(f"{name}: expected numbers ({exc})") from None
    if arr.ndim == 1 and arr.shape[0] == 5:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise DeqaError(f"{name}: expected (N, 5) level probabilities bad..excellent, got shape {arr.shape}")
    bad = ~np.all(np.isfinite(arr), axis=1) | np.any(arr < 0, axis=1) | ~(arr.sum(axis=1) > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeqaError(f"{name}: row at index {i} is not a probability vector: {arr[i].tolist()}")
    return arr / arr.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------------- score agreement
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc @ xc) * (yc @ yc))
    if not denom > 0:
        warnings.warn("correlation of a constant input is undefined; returning NaN", RuntimeWarning,
                      stacklevel=3)
        return float("nan")
    return float(np.clip((xc @ yc) / denom, -1.0, 1.0))


def plcc(pred, mos) -> float:
    """Pearson linear correlation between predicted scores and human MOS."""
    return _pearson(*as_pair(pred, mos))


def srcc(pred, mos) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks (ties get their average rank)."""
    pred, mos = as_pair(pred, mos)
    return _pearson(stats.rankdata(pred), stats.rankdata(mos))


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b (corrected for ties): (concordant - discordant) pairs, normalised."""
    pred, mos = as_pair(pred, mos)
    if np.ptp(pred) == 0 or np.ptp(mos) == 0:
        warnings.warn("correlation of a constant input is undefined; returning NaN", RuntimeWarning,
                      stacklevel=2)
        return float("nan")
    return float(stats.kendalltau(pred, mos, variant="b").statistic)


def logistic4(x, b1, b2, b3, b4):
    """The 4-parameter logistic of IQA evaluation: (b1 - b2) / (1 + exp(-(x - b3)/|b4|)) + b2.

    b1 and b2 are the upper and lower asymptotes, b3 the midpoint, |b4| the width. |b4| is floored at
    1e-12 so that the curve stays defined while an optimiser explores b4 = 0.
    """
    x = np.asarray(x, dtype=float)
    return (b1 - b2) * expit((x - b3) / max(abs(b4), 1e-12)) + b2


def logistic_start(pred, mos) -> np.ndarray:
    """Starting point of the fit: [max y, min y, mean x, std x / 4]."""
    pred, mos = np.asarray(pred, dtype=float), np.asarray(mos, dtype=float)
    return np.array([mos.max(), mos.min(), pred.mean(), pred.std() / 4.0])


def fit_logistic(pred, mos, maxfev: int = 10000):
    """Least-squares fit of ``logistic4`` mapping predictions onto MOS.

    Returns ``(params, ok)``: ``params`` = [b1, b2, b3, b4] and ``ok`` True when the fit converged to
    finite parameters. When it did not (too few points, constant predictions, the optimiser gave up
    after ``maxfev`` evaluations), ``params`` is all NaN and ``ok`` False; no warning is raised here.
    """
    pred, mos = as_pair(pred, mos)
    failed = np.full(4, np.nan)
    start = logistic_start(pred, mos)
    if len(pred) < MIN_POINTS_FOR_FIT or not start[3] > 0 or np.ptp(mos) == 0:
        return failed, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # covariance not estimable: harmless
        try:
            params, _ = optimize.curve_fit(logistic4, pred, mos, p0=start, maxfev=maxfev)
        except (RuntimeError, ValueError, FloatingPointError):
            return failed, False
    if not np.all(np.isfinite(params)):
        return failed, False
    return params, True


def plcc_logistic(pred, mos, maxfev: int = 10000) -> float:
    """PLCC between f(pred) and MOS, f the fitted 4-parameter logistic (see ``fit_logistic``).

    If the fit does not converge this warns (RuntimeWarning, saying so) and returns the raw PLCC.
    """
    value, ok = plcc_logistic_checked(*as_pair(pred, mos), maxfev=maxfev)
    if not ok:
        warnings.warn("the logistic fit did not converge; plcc_logistic falls back to the raw PLCC",
                      RuntimeWarning, stacklevel=2)
    return value


def plcc_logistic_checked(pred: np.ndarray, mos: np.ndarray, maxfev: int = 10000):
    """(PLCC after the logistic, True) or (raw PLCC, False) when the fit failed or came out flat."""
    params, ok = fit_logistic(pred, mos, maxfev=maxfev)
    if ok:
        fitted = logistic4(pred, *params)
        if np.ptp(fitted) > 0:
            return _pearson(fitted, mos), True
    return _pearson(pred, mos), False


# ------------------------------------------------------------------------------ distribution gaps
def gaussian_kl(human_mu, human_sigma, pred_mu, pred_sigma) -> np.ndarray:
    """KL(N(m_h, s_h^2) || N(m_p, s_p^2)) = log(s_p/s_h) + (s_h^2 + (m_h - m_p)^2) / (2 s_p^2) - 1/2.

    Both spreads are floored at ``SIGMA_FLOOR`` (a zero spread has no density).
    """
    s_h = np.maximum(np.asarray(human_sigma, dtype=float), SIGMA_FLOOR)
    s_p = np.maximum(np.asarray(pred_sigma, dtype=float), SIGMA_FLOOR)
    diff = np.asarray(human_mu, dtype=float) - np.asarray(pred_mu, dtype=float)
    return np.log(s_p / s_h) + (s_h**2 + diff**2) / (2.0 * s_p**2) - 0.5


def _published_gaussian_kl(mu_1, sigma_1, mu_2, sigma_2) -> np.ndarray:
    """KL(N1 || N2) as DeQA-Score's evaluation writes it, eps in two places:
    log(s_2 / (s_1 + eps)) + (s_1^2 + (m_1 - m_2)^2) / (2 s_2^2 + eps) - 1/2."""
    eps = PUBLISHED_EPS
    return np.log(sigma_2 / (sigma_1 + eps)) + (sigma_1**2 + (mu_1 - mu_2) ** 2) / (2 * sigma_2**2 + eps) - 0.5


def gaussian_js(mu_a, sigma_a, mu_b, sigma_b) -> np.ndarray:
    """The published Gaussian "JS" per image: 0.5 KL(N_a || M) + 0.5 KL(N_b || M) with the moment-matched
    midpoint M = N((m_a + m_b) / 2, sqrt((s_a^2 + s_b^2) / 2)) and the published eps terms.

    Not the Jensen-Shannon divergence of the two Gaussians (whose midpoint is their mixture, not a
    Gaussian): it is what DeQA-Score reports as JS, so compare it with the paper's numbers and
    ``js_levels`` with itself. Symmetric in a and b; no spread floor (two zero spreads give -inf, as
    published). Explained in notebook 05.
    """
    mu_a, mu_b = np.asarray(mu_a, dtype=float), np.asarray(mu_b, dtype=float)
    sigma_a, sigma_b = np.asarray(sigma_a, dtype=float), np.asarray(sigma_b, dtype=float)
    mu_m = 0.5 * (mu_a + mu_b)
    sigma_m = np.sqrt(0.5 * (sigma_a**2 + sigma_b**2))
    return 0.5 * _published_gaussian_kl(mu_a, sigma_a, mu_m, sigma_m) + 0.5 * _published_gaussian_kl(
        mu_b, sigma_b, mu_m, sigma_m)


def gaussian_w2(mu_a, sigma_a, mu_b, sigma_b) -> np.ndarray:
    """Wasserstein-2 distance between two 1-D Gaussians: sqrt((m_a - m_b)^2 + (s_a - s_b)^2)."""
    mu_a, mu_b = np.asarray(mu_a, dtype=float), np.asarray(mu_b, dtype=float)
    sigma_a, sigma_b = np.asarray(sigma_a, dtype=float), np.asarray(sigma_b, dtype=float)
    return np.sqrt((mu_a - mu_b) ** 2 + (sigma_a - sigma_b) ** 2)


def _xlogy_ratio(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Elementwise p log(p/m) with 0 log 0 = 0 (m > 0 wherever p > 0)."""
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return p * np.log(ratio)


def js_levels(p, q) -> np.ndarray:
    """Jensen-Shannon divergence per row between five-level distributions (N, 5), in nats (natural
    log, at most log 2). JS = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, the mixture.
    Rows are normalised to sum 1 first. Not the published Gaussian "JS" (``gaussian_js``).
    """
    p, q = _probabilities(p, "p"), _probabilities(q, "q")
    same_length(p=p, q=q)
    m = 0.5 * (p + q)
    return 0.5 * (_xlogy_ratio(p, m).sum(axis=1) + _xlogy_ratio(q, m).sum(axis=1))


#: Former name of ``js_levels``, kept while notebooks 01, 02 and 05 call it.
jensen_shannon = js_levels


def w1_levels(p, q) -> np.ndarray:
    """Wasserstein-1 (earth mover's) distance per row between five-level distributions.

    With unit spacing between the level centres it is the sum over levels of |CDF_p - CDF_q|.
    Rows are normalised to sum 1 first. In level units (0 .. 4).
    """
    p, q = _probabilities(p, "p"), _probabilities(q, "q")
    same_length(p=p, q=q)
    return np.abs(np.cumsum(p - q, axis=1)[:, :-1]).sum(axis=1)


def distribution_gaps(pred_mu, pred_sigma, human_mu, human_sigma, pred_probs=None, human_probs=None):
    """Per-image gaps between the predicted and the human score distribution, on the 1-5 scale.

    Columns (``GAP_COLUMNS``): ``kl`` = KL(human || predicted) of the two Gaussians (spreads floored
    at ``SIGMA_FLOOR``), ``w2`` = their Wasserstein-2 distance, ``js_gaussian`` = the published
    Gaussian "JS" (``gaussian_js``, the number DeQA-Score reports) and, when both (N, 5) level
    probabilities are given, ``js_levels`` = the Jensen-Shannon divergence (natural log) and
    ``w1_levels`` = the Wasserstein-1 distance between the five-level distributions. Returns a
    DataFrame with one row per image; ``.attrs["mean"]`` holds the averages (also ``gaps.mean()``).
    Inputs may be numpy arrays or pandas columns; NaN and length mismatches raise DeqaError.
    """
    arrays = {"pred_mu": pred_mu, "pred_sigma": pred_sigma, "human_mu": human_mu, "human_sigma": human_sigma}
    arrays = dict(zip(arrays, as_vectors(**arrays)))
    n = len(arrays["pred_mu"])
    for name in ("pred_sigma", "human_sigma"):
        if np.any(arrays[name] < 0):
            i = int(np.flatnonzero(arrays[name] < 0)[0])
            raise DeqaError(f"{name}: negative spread {arrays[name][i]} at index {i}")
    gaps = pd.DataFrame({
        "kl": gaussian_kl(arrays["human_mu"], arrays["human_sigma"], arrays["pred_mu"], arrays["pred_sigma"]),
        "w2": gaussian_w2(arrays["human_mu"], arrays["human_sigma"], arrays["pred_mu"], arrays["pred_sigma"]),
        "js_gaussian": gaussian_js(arrays["human_mu"], arrays["human_sigma"], arrays["pred_mu"],
                                   arrays["pred_sigma"]),
    })
    if (pred_probs is None) != (human_probs is None):
        raise DeqaError("give both pred_probs and human_probs (or neither) for the five-level gaps")
    if pred_probs is not None:
        p = _probabilities(pred_probs, "pred_probs")
        q = _probabilities(human_probs, "human_probs")
        same_length(pred_mu=arrays["pred_mu"], pred_probs=p, human_probs=q)
        gaps["js_levels"] = js_levels(q, p)
        gaps["w1_levels"] = w1_levels(q, p)
    gaps.attrs["mean"] = {col: float(gaps[col].mean()) if n else float("nan") for col in gaps.columns}
    return gaps


def t_interval(values, level: float = 0.95) -> tuple[float, float, int]:
    """Mean, half-width of its ``level`` t-interval (NaN with one value) and the number of values
    (non-finite values left out). Explained in notebooks 03 and 06."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), 0
    if n == 1:
        return float(x[0]), float("nan"), 1
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)
    return float(x.mean()), float(half), n


# ------------------------------------------------------------------------------------------ bootstrap
#: the correlations ``bootstrap`` knows by name (a callable ``f(pred, human) -> float`` works too)
BOOTSTRAP_STATISTICS = ("plcc", "plcc_logistic", "srcc", "krcc")
#: resamples drawn at a time (bounds the memory of the (chunk, n) count arrays)
_BOOT_CHUNK = 100
#: up to this many images the logistic is refitted in every resample; beyond, the whole sample's fit
#: is reused (refitting 4 parameters on 2,000 or 10,000 images changed no interval bound by 1e-4 in
#: our measurements, and it is most of the time a bootstrap takes)
LOGISTIC_REFIT_MAX_N = 2000


class Bootstrap(NamedTuple):
    """A bootstrap interval: the statistic on the whole sample (``estimate``), the middle ``level`` of
    its resampled values (``low``, ``high``) and those values (``replicates``, NaN where a resample
    left the statistic undefined)."""

    estimate: float
    low: float
    high: float
    level: float
    replicates: np.ndarray


def bootstrap_counts(n: int, n_boot: int = 1000, seed: int = 0, groups=None):
    """The resamples of a bootstrap as counts: yields (chunk, n) integer arrays, row b saying how many
    times each of the ``n`` items is drawn in resample b (``n_boot`` rows in all, ``_BOOT_CHUNK`` at a
    time). Items are drawn with replacement, ``n`` per resample; with ``groups`` (one label per item),
    whole groups are drawn instead, as many as there are groups (a cluster bootstrap: images of one
    scene stay together). The same ``seed`` gives the same resamples."""
    rng = np.random.default_rng(seed)
    if groups is None:
        codes, n_units = np.arange(n), n
    else:
        codes = pd.factorize(pd.Series(np.asarray(groups)).astype(str))[0]
        if len(codes) != n:
            raise DeqaError(f"bootstrap: {len(codes)} group labels for {n} items")
        n_units = int(codes.max()) + 1 if n else 0
    for start in range(0, n_boot, _BOOT_CHUNK):
        rows = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.integers(0, n_units, size=(rows, n_units))
        flat = (np.arange(rows)[:, None] * n_units + draws).ravel()
        unit_counts = np.bincount(flat, minlength=rows * n_units).reshape(rows, n_units)
        yield unit_counts[:, codes]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of ``w`` (counts), of x and y repeated that many times; x and y
    are (n,) or (rows, n). NaN where one side is constant."""
    total = w.sum(axis=1, keepdims=True)
    mx = (w * x).sum(axis=1, keepdims=True) / total
    my = (w * y).sum(axis=1, keepdims=True) / total
    dx, dy = x - mx, y - my
    sxy, sxx, syy = (w * dx * dy).sum(axis=1), (w * dx * dx).sum(axis=1), (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    return np.clip(np.where((sxx > 0) & (syy > 0), r, np.nan), -1.0, 1.0)


def _weighted_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The rank each item takes (average rank among ties, duplicates included) in each resample given
    by a row of ``counts``: what ``scipy.stats.rankdata`` gives the repeated values, per item."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    group_of_sorted = np.cumsum(np.r_[True, sorted_values[1:] != sorted_values[:-1]]) - 1
    totals = np.add.reduceat(counts[:, order], starts, axis=1)  # (rows, groups)
    below = np.cumsum(totals, axis=1) - totals
    group_rank = below + (totals + 1) / 2.0
    ranks = np.empty(counts.shape, dtype=float)
    ranks[:, order] = group_rank[:, group_of_sorted]
    return ranks


def _expanded(counts_row: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(counts_row)), counts_row)


def _replicates(statistic, pred, human, counts: np.ndarray, start) -> np.ndarray:
    """The statistic on each resample of a chunk of counts (rows); ``start``: the whole sample's
    logistic parameters (None when that fit failed: the resamples then take the raw PLCC too)."""
    if statistic == "plcc" or (statistic == "plcc_logistic" and start is None):
        return _weighted_pearson(pred, human, counts)
    if statistic == "plcc_logistic" and len(pred) > LOGISTIC_REFIT_MAX_N:
        return _weighted_pearson(logistic4(pred, *start), human, counts)
    if statistic == "srcc":
        return _weighted_pearson(_weighted_ranks(pred, counts), _weighted_ranks(human, counts), counts)
    out = np.full(len(counts), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined resample is a NaN replicate
        for b, row in enumerate(counts):
            idx = _expanded(row)
            p, h = pred[idx], human[idx]
            if np.ptp(p) == 0 or np.ptp(h) == 0:
                continue
            if statistic == "krcc":
                out[b] = stats.kendalltau(p, h, variant="b").statistic
            elif statistic == "plcc_logistic":
                out[b] = _plcc_logistic_from(p, h, start)
            else:
                out[b] = statistic(p, h)
    return out


#: function evaluations a resample's logistic refit may take (from the whole sample's optimum a fit
#: that converges takes a few dozen; one that does not would otherwise spend 10,000)
_REFIT_MAXFEV = 600


def _plcc_logistic_from(pred: np.ndarray, mos: np.ndarray, start) -> float:
    """PLCC after the logistic refitted from ``start`` (the full sample's parameters: a resample's
    optimum is near them, so the fit takes a few steps); the raw PLCC where that fit fails, as in
    ``plcc_logistic_checked``."""
    params = None
    if len(np.unique(pred)) >= MIN_POINTS_FOR_FIT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            try:
                params, _ = optimize.curve_fit(logistic4, pred, mos, p0=start, maxfev=_REFIT_MAXFEV)
            except (RuntimeError, ValueError, FloatingPointError):
                params = None
    if params is not None and np.all(np.isfinite(params)):
        fitted = logistic4(pred, *params)
        if np.ptp(fitted) > 0:
            return _pearson(fitted, mos)
    return _pearson(pred, mos)


def _statistic(statistic):
    if callable(statistic):
        return statistic
    if statistic not in BOOTSTRAP_STATISTICS:
        raise DeqaError(f"bootstrap: unknown statistic {statistic!r}; use one of "
                        f"{', '.join(BOOTSTRAP_STATISTICS)} or a function f(pred, human)")
    return statistic


def _estimate(statistic, pred, human) -> tuple[float, object]:
    """The statistic on the whole sample, and the logistic's parameters (the resamples' start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if statistic == "plcc_logistic":
            value, ok = plcc_logistic_checked(pred, human)
            return value, (fit_logistic(pred, human)[0] if ok else None)
        named = {"plcc": plcc, "srcc": srcc, "krcc": krcc}
        return float(named.get(statistic, statistic)(pred, human)), None


def _interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    kept = replicates[np.isfinite(replicates)]
    if len(kept) == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(kept, [0.5 - level / 2, 0.5 + level / 2])
    return float(low), float(high)


def bootstrap(statistic, pred, human, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
              groups=None) -> Bootstrap:
    """Percentile bootstrap interval of a correlation between predictions and human scores.

    ``statistic``: ``"plcc"``, ``"plcc_logistic"`` (the logistic refitted in every resample, up to
    ``LOGISTIC_REFIT_MAX_N`` images), ``"srcc"``, ``"krcc"`` or a function ``f(pred, human) -> float``.
    Draws ``n_boot`` resamples (``bootstrap_counts``: images with replacement, or whole ``groups``),
    computes the statistic on each and returns ``Bootstrap(estimate, low, high, level, replicates)``:
    the statistic on the whole sample and the middle ``level`` of the resampled values (resamples
    where it is undefined, e.g. constant, are left out). The same seed gives the same interval.
    ``plcc`` and ``srcc`` are computed for all resamples at once (from the counts); the others one
    resample at a time. Explained in notebook 05."""
    return bootstrap_all((statistic,), pred, human, n_boot, level, seed, groups)[0]


def bootstrap_all(statistics, pred, human, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                  groups=None) -> list[Bootstrap]:
    """``bootstrap`` of several statistics on the same resamples (drawn once): one ``Bootstrap`` per
    statistic, in order."""
    statistics = [_statistic(stat) for stat in statistics]
    pred, human = as_pair(pred, human)
    first = [_estimate(stat, pred, human) for stat in statistics]
    parts = [[] for _ in statistics]
    for counts in bootstrap_counts(len(pred), n_boot, seed, groups):
        for k, stat in enumerate(statistics):
            parts[k].append(_replicates(stat, pred, human, counts, first[k][1]))
    out = []
    for (estimate, _), part in zip(first, parts):
        replicates = np.concatenate(part) if part else np.array([])
        out.append(Bootstrap(float(estimate), *_interval(replicates, level), level, replicates))
    return out


def paired_bootstrap(statistic, pred_a, pred_b, human, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0, groups=None) -> Bootstrap:
    """Bootstrap interval of the difference statistic(a) - statistic(b) of two models' predictions of
    the same images: both are computed on the same resample each time, so what the images have in
    common cancels (the question "is A better than B on this set?"). Arguments as ``bootstrap``;
    an interval that excludes 0 says the difference is more than resampling noise."""
    statistic = _statistic(statistic)
    pred_a, pred_b, human = as_vectors(pred_a=pred_a, pred_b=pred_b, human=human)
    if len(human) < 2:
        raise DeqaError(f"need at least 2 images to correlate, got {len(human)}")
    est_a, start_a = _estimate(statistic, pred_a, human)
    est_b, start_b = _estimate(statistic, pred_b, human)
    parts = [_replicates(statistic, pred_a, human, counts, start_a)
             - _replicates(statistic, pred_b, human, counts, start_b)
             for counts in bootstrap_counts(len(human), n_boot, seed, groups)]
    replicates = np.concatenate(parts)
    return Bootstrap(float(est_a - est_b), *_interval(replicates, level), level, replicates)
