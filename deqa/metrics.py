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

``evaluate_table`` joins a predictions CSV (``python -m deqa score``) to data-set metadata and gives
one row of all of these per data set; ``python -m deqa evaluate`` prints it.
"""
from __future__ import annotations

import json
import warnings
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import expit

from .errors import DeqaError
from .levels import LEVELS

#: Spreads (on the 1-5 level scale) below this are raised to it before the Gaussian KL, which is
#: infinite for a point mass; 1e-3 is far below any real rating spread (typically 0.3-1.0).
SIGMA_FLOOR = 1e-3
#: Prediction columns holding the five level probabilities, bad..excellent.
PROB_COLUMNS = tuple(f"p_{name}" for name in LEVELS)
#: Columns of the human five-level label (the soft label q) after ``human_distribution``.
HUMAN_PROB_COLUMNS = tuple(f"q_{name}" for name in LEVELS)
#: Columns of ``distribution_gaps``, in order (the last two only when level probabilities are given).
GAP_COLUMNS = ("kl", "w2", "js_gaussian", "js_levels", "w1_levels")
#: eps of the published Gaussian KL and "JS" (added to the first spread and to 2 sigma_2^2).
PUBLISHED_EPS = 1e-8
#: Columns of ``evaluate_table``, in order (the index is the data set name).
TABLE_COLUMNS = ("n", "plcc", "plcc_logistic", "srcc", "krcc", "kl", "js", "w1", "w2")
MIN_POINTS_FOR_FIT = 5  #: the logistic has 4 parameters; fewer points cannot constrain it


# --------------------------------------------------------------------------------------- input checks
def _vector(x, name: str) -> np.ndarray:
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


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} has {v}" for k, v in lengths.items())
        raise DeqaError(f"length mismatch: {detail}")
    return next(iter(lengths.values()))


def _pair(pred, mos, min_n: int = 2):
    pred, mos = _vector(pred, "pred"), _vector(mos, "mos")
    n = _same_length(pred=pred, mos=mos)
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
    return _pearson(*_pair(pred, mos))


def srcc(pred, mos) -> float:
    """Spearman rank correlation: the Pearson correlation of the ranks (ties get their average rank)."""
    pred, mos = _pair(pred, mos)
    return _pearson(stats.rankdata(pred), stats.rankdata(mos))


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b (corrected for ties): (concordant - discordant) pairs, normalised."""
    pred, mos = _pair(pred, mos)
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
    pred, mos = _pair(pred, mos)
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
    value, ok = _plcc_logistic_checked(*_pair(pred, mos), maxfev=maxfev)
    if not ok:
        warnings.warn("the logistic fit did not converge; plcc_logistic falls back to the raw PLCC",
                      RuntimeWarning, stacklevel=2)
    return value


def _plcc_logistic_checked(pred: np.ndarray, mos: np.ndarray, maxfev: int = 10000):
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
    _same_length(p=p, q=q)
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
    _same_length(p=p, q=q)
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
    arrays = {"pred_mu": _vector(pred_mu, "pred_mu"), "pred_sigma": _vector(pred_sigma, "pred_sigma"),
              "human_mu": _vector(human_mu, "human_mu"), "human_sigma": _vector(human_sigma, "human_sigma")}
    n = _same_length(**arrays)
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
        _same_length(pred_mu=arrays["pred_mu"], pred_probs=p, human_probs=q)
        gaps["js_levels"] = js_levels(q, p)
        gaps["w1_levels"] = w1_levels(q, p)
    gaps.attrs["mean"] = {col: float(gaps[col].mean()) if n else float("nan") for col in gaps.columns}
    return gaps


# ------------------------------------------------------------------------ joining and the table
def _path_key(path) -> str:
    """A path as '/'-joined components, without a root or '.' parts (so suffixes compare)."""
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    return "/".join(p for p in parts if p not in ("/", "."))


def _lower_is_better(attrs: dict, dataset: str) -> bool:
    """Whether a data set's MOS is a DMOS: ``attrs["scales"][dataset]["lower_is_better"]`` (as
    ``deqa.data`` writes it), else ``attrs["lower_is_better"]`` (one value, or a dict per data set)."""
    scales = attrs.get("scales") or {}
    if dataset in scales:
        return bool(scales[dataset].get("lower_is_better", False))
    value = attrs.get("lower_is_better", False)
    if isinstance(value, dict):
        return bool(value.get(dataset, False))
    return bool(value)


def match_images(pred_images, meta_images, meta_datasets=None) -> np.ndarray:
    """Index into the metadata for each prediction's image, -1 where there is none.

    A prediction's ``image`` may be the metadata's relative path or any path that ends with it (an
    absolute path, a path under the data root); failing that, the file name alone is used when it
    names exactly one metadata image. When several metadata rows end the same path (the same relative
    path in two data sets), the one whose data set name appears in the prediction's path wins.
    """
    meta_keys = [_path_key(m) for m in meta_images]
    datasets = list(meta_datasets) if meta_datasets is not None else [None] * len(meta_keys)
    by_key: dict[str, list[int]] = {}
    by_name: dict[str, list[int]] = {}
    for i, key in enumerate(meta_keys):
        by_key.setdefault(key, []).append(i)
        by_name.setdefault(PurePosixPath(key).name, []).append(i)
    out = np.full(len(pred_images), -1, dtype=int)
    for j, raw in enumerate(pred_images):
        parts = PurePosixPath(_path_key(raw)).parts
        hits: list[int] = []
        for start in range(len(parts)):  # the longest suffix of the path that is a metadata image
            hits = by_key.get("/".join(parts[start:]), [])
            if hits:
                break
        if not hits and parts:
            hits = by_name.get(parts[-1], [])
        if len(hits) > 1:
            hits = [i for i in hits if datasets[i] is not None and str(datasets[i]) in parts[:-1]] or hits
        if len(hits) == 1:
            out[j] = hits[0]
    return out


def human_distribution(meta: pd.DataFrame) -> pd.DataFrame:
    """Human ``human_mu``, ``human_sigma`` on [1, 5] and five-level label ``q_bad .. q_excellent``.

    mu and sigma are ``levels.rescale`` of each data set's MOS and std between its observed min and max
    MOS (over all its rows given), with a DMOS flipped as ``meta.attrs`` says (``scales`` per data set
    as ``deqa.data`` writes it, or ``lower_is_better``). The label is ``soft_labels(mu, sigma, "cdf")``
    (the two-level label where the std is unknown). Same index as ``meta``.
    """
    from .levels import rescale
    from .soft_label import soft_labels

    mu = np.full(len(meta), np.nan)
    sigma = np.full(len(meta), np.nan)
    for name, rows in meta.groupby("dataset", sort=False).indices.items():
        part = meta.iloc[rows]
        try:
            mu[rows], sigma[rows] = rescale(part["mos"].to_numpy(float), part["std"].to_numpy(float),
                                            lower_is_better=_lower_is_better(meta.attrs, name))
        except ValueError as exc:
            raise DeqaError(f"data set {name!r}: {exc}") from None
    q = soft_labels(np.clip(mu, 1.0, 5.0), sigma, method="cdf") if len(meta) else np.zeros((0, 5))
    out = pd.DataFrame(q, columns=list(HUMAN_PROB_COLUMNS), index=meta.index)
    out.insert(0, "human_sigma", sigma)
    out.insert(0, "human_mu", mu)
    return out


def _check_predictions(preds: pd.DataFrame, source: str) -> None:
    missing = [c for c in ("image", "score") if c not in preds.columns]
    if missing:
        raise DeqaError(f"{source}: missing column(s) {missing}; expected image, score, std, "
                        f"{', '.join(PROB_COLUMNS)}")
    numeric = ["score"] + [c for c in ("std", *PROB_COLUMNS) if c in preds.columns]
    values = preds[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.all(np.isfinite(values), axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DeqaError(f"{source}: row {i + 1} (image {preds['image'].iloc[i]!r}) has a missing or "
                        f"non-numeric value in {numeric}")


def join_predictions(preds_df: pd.DataFrame, meta_df: pd.DataFrame, split: str | None = None,
                     source: str = "predictions") -> pd.DataFrame:
    """Predictions joined to their metadata rows, one row per matched image.

    Columns: the metadata's (``image, mos, std, dataset, split, ...``), ``human_distribution``'s
    (``human_mu, human_sigma, q_bad .. q_excellent``), then the prediction's ``pred_image, score,
    pred_std, p_bad .. p_excellent`` (those present). ``split`` keeps only that split of the metadata
    (the rescaling still uses every row of a data set). Images are matched as ``match_images`` says;
    nothing is dropped silently: ``.attrs["missing_predictions"]`` maps each data set to its images
    without a prediction and ``.attrs["unmatched_predictions"]`` lists the predictions matching no
    image (or several equally). Two predictions for one image raise DeqaError.
    """
    _check_predictions(preds_df, source)
    need = [c for c in ("image", "mos", "std", "dataset") if c not in meta_df.columns]
    if need:
        raise DeqaError(f"metadata: missing column(s) {need}; expected image, mos, std, dataset, split")
    derived = [c for c in ("human_mu", "human_sigma", *HUMAN_PROB_COLUMNS) if c in meta_df.columns]
    meta = meta_df.drop(columns=derived).reset_index(drop=True)
    meta.attrs = dict(meta_df.attrs)
    meta = pd.concat([meta, human_distribution(meta)], axis=1)
    if split is not None:
        if "split" not in meta.columns:
            raise DeqaError("metadata has no 'split' column to select from")
        meta = meta[meta["split"].astype(str) == split].reset_index(drop=True)
        if meta.empty:
            raise DeqaError(f"metadata has no rows in split {split!r}")

    preds = preds_df.reset_index(drop=True)
    index = match_images(preds["image"].astype(str).tolist(), meta["image"].astype(str).tolist(),
                         meta["dataset"].astype(str).tolist())
    matched = index >= 0
    dup = pd.Series(index[matched]).duplicated(keep=False).to_numpy()
    if dup.any():
        j = int(np.flatnonzero(matched)[int(np.flatnonzero(dup)[0])])
        raise DeqaError(f"{source}: row {j + 1} (image {preds['image'].iloc[j]!r}) is one of several "
                        f"predictions for metadata image {meta['image'].iloc[index[j]]!r}")
    has_pred = np.zeros(len(meta), dtype=bool)
    has_pred[index[matched]] = True
    missing = {str(name): meta["image"][(meta["dataset"] == name).to_numpy() & ~has_pred].astype(str).tolist()
               for name in meta["dataset"].unique()}

    pred_cols = ["image", "score"] + [c for c in ("std", *PROB_COLUMNS) if c in preds.columns]
    pred_part = preds.loc[matched, pred_cols].reset_index(drop=True)
    pred_part = pred_part.rename(columns={"image": "pred_image", "std": "pred_std"})
    for col in pred_part.columns[1:]:
        pred_part[col] = pd.to_numeric(pred_part[col])
    joined = pd.concat([meta.iloc[index[matched]].reset_index(drop=True), pred_part], axis=1)
    joined.attrs["missing_predictions"] = missing
    joined.attrs["unmatched_predictions"] = preds["image"][~matched].astype(str).tolist()
    return joined


def _dataset_row(part: pd.DataFrame) -> tuple[dict, bool]:
    """The metrics of one data set's joined rows, and whether the logistic fit converged."""
    score, mu = part["score"].to_numpy(float), part["human_mu"].to_numpy(float)
    row, ok = {"n": len(part)}, True
    if len(part) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a NaN in the table says it already
            row.update(plcc=plcc(score, mu), srcc=srcc(score, mu), krcc=krcc(score, mu))
            row["plcc_logistic"], ok = _plcc_logistic_checked(score, mu)
    known = np.isfinite(part["human_sigma"].to_numpy(float))
    if "pred_std" in part.columns and known.any():
        rows = part[known]
        has_probs = all(c in rows.columns for c in PROB_COLUMNS)
        gaps = distribution_gaps(rows["score"], rows["pred_std"], rows["human_mu"], rows["human_sigma"],
                                 rows[list(PROB_COLUMNS)] if has_probs else None,
                                 rows[list(HUMAN_PROB_COLUMNS)] if has_probs else None)
        row.update({{"js_levels": "js", "w1_levels": "w1"}.get(k, k): v for k, v in gaps.attrs["mean"].items()})
    return row, ok


def evaluate_table(preds_df: pd.DataFrame, meta_df: pd.DataFrame, split: str | None = None,
                   source: str = "predictions") -> pd.DataFrame:
    """One row per data set (the index): n, plcc, plcc_logistic, srcc, krcc, kl, js, w1, w2.

    ``preds_df``: columns ``image, score`` and optionally ``std, p_bad .. p_excellent`` (the output of
    ``python -m deqa score``). ``meta_df``: our metadata schema (``image, mos, std, dataset, split``).
    Predictions are compared with the human mu, sigma and five-level label of ``human_distribution``
    (rescaled per data set, so the numbers are on the 1-5 level scale). KL and W2 use the Gaussians,
    JS and W1 the five-level distributions; they average over the images with a known human std and
    are NaN when none has one or the predictions lack ``std`` / the probabilities. A data set whose
    logistic fit does not converge gets the raw PLCC in ``plcc_logistic``, a RuntimeWarning, and its
    name in ``.attrs["logistic_fallback"]``. ``.attrs`` also carries ``missing_predictions`` and
    ``unmatched_predictions`` from ``join_predictions``: nothing is dropped silently.
    """
    joined = join_predictions(preds_df, meta_df, split=split, source=source)
    rows, fallback = {}, []
    for name, idx in joined.groupby("dataset", sort=False).indices.items():
        rows[str(name)], ok = _dataset_row(joined.iloc[idx])
        if not ok:
            fallback.append(str(name))
            warnings.warn(f"data set {name!r}: the logistic fit did not converge; plcc_logistic is the "
                          "raw PLCC", RuntimeWarning, stacklevel=2)
    missing = joined.attrs["missing_predictions"]
    for name in missing:  # a data set with no prediction at all still gets its (empty) row
        rows.setdefault(name, {"n": 0})
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(TABLE_COLUMNS))
    table["n"] = table["n"].astype(int)
    table.index.name = "dataset"
    table.attrs["missing_predictions"] = {k: v for k, v in missing.items() if v}
    table.attrs["unmatched_predictions"] = joined.attrs["unmatched_predictions"]
    table.attrs["logistic_fallback"] = fallback
    return table


# ---------------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    parser.add_argument("preds", metavar="PREDS_CSV", help="predictions from `python -m deqa score`")
    parser.add_argument("meta", metavar="META", nargs="+", help="metadata file(s) of the data set(s)")
    parser.add_argument("--format", default="auto", help="metadata format for deqa.data.read_metadata "
                        "(default: auto)")
    parser.add_argument("--split", default=None, help="evaluate only this split of the metadata "
                        "(e.g. test); default: every row")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def _read_predictions(path) -> pd.DataFrame:
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DeqaError(f"{path}: predictions file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: cannot read the predictions CSV ({str(exc).splitlines()[0]})") from None


def _read_all_metadata(paths_, fmt: str) -> pd.DataFrame:
    """Read and stack the metadata files, each data set keeping its scale facts (``data.combine``)."""
    from . import data

    tables = [data.read_metadata(p, format=fmt) for p in paths_]
    return data.combine(tables, check_overlap=False) if len(tables) > 1 else tables[0]


def format_table(table: pd.DataFrame) -> str:
    shown = table.copy()
    shown.columns = ["n", "PLCC", "PLCC-logistic", "SRCC", "KRCC", "KL", "JS", "W1", "W2"]
    return shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")


def run(args) -> int:
    preds = _read_predictions(args.preds)
    meta = _read_all_metadata(args.meta, args.format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallbacks are reported below
        table = evaluate_table(preds, meta, split=args.split, source=str(args.preds))
    missing = table.attrs["missing_predictions"]
    unmatched = table.attrs["unmatched_predictions"]
    fallback = table.attrs["logistic_fallback"]
    if args.json:
        records = [{"dataset": name, **{k: (None if pd.isna(v) else (int(v) if k == "n" else float(v)))
                                        for k, v in row.items()}}
                   for name, row in table.iterrows()]
        print(json.dumps({"datasets": records,
                          "missing_predictions": {k: len(v) for k, v in missing.items()},
                          "missing_examples": {k: v[:5] for k, v in missing.items()},
                          "unmatched_predictions": unmatched,
                          "logistic_fallback": fallback}, indent=2))
        return 0
    print(format_table(table))
    print("KL = Gaussian KL(human || predicted); JS in nats; W1 and W2 in level units (1-5 scale)")
    for name, images in missing.items():
        print(f"note: {len(images)} image(s) of {name!r} have no prediction "
              f"(e.g. {', '.join(images[:3])})")
    if unmatched:
        print(f"note: {len(unmatched)} prediction(s) match no metadata image "
              f"(e.g. {', '.join(unmatched[:3])})")
    if fallback:
        print(f"note: the logistic fit did not converge for {', '.join(fallback)}: PLCC-logistic is the raw PLCC")
    return 0
