"""Figures in one consistent style, saved deterministically. Used by every notebook; the
evaluation plots are explained in notebook 05 (``05_distribution_plots``).

``use_style()`` sets the house style; ``savefig(fig, name)`` writes ``<figures>/<name>.png`` (and an
SVG when asked) with fixed metadata, so re-running a notebook rewrites identical bytes.

Evaluation figures: ``level_bars``, ``image_distribution`` / ``distribution_panels`` (predicted levels
vs the human soft label and rating histogram), ``score_scatter``, ``spread_calibration`` and
``spread_by_score``, ``prediction_grid`` and ``training_curves`` (from a run's ``metrics.jsonl``); one
panel per data set and pooled: ``scatter_panels``, ``calibration_panels``, ``score_density``, and
``distortion_srcc`` (SRCC per distortion family and strength with bootstrap intervals). Chapter 05 and
``python -m deqa report`` draw through the same functions.

One colour per concept, in the table below: ``LEVEL_COLORS`` for the five levels only, ``HUMAN_COLOR`` /
``MODEL_COLOR`` for human vs predicted (``OTHER_MODEL_COLOR`` for a second model beside it),
``LABEL_COLORS`` for the published label and the projection, ``DATASET_COLORS`` (``dataset_color``) and
``FAMILY_COLORS`` for data sets and distortion families, ``OBJECTIVE_COLORS`` / ``LOSS_COLORS`` for the
objectives and the parts of the loss, ``REFERENCE_COLOR`` for fits, bounds and reference lines.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np

from . import paths, runlog
from .errors import DeqaError
from .formats import HISTOGRAM
from .levels import CENTERS, LABEL_COLUMNS, LEVELS, PROB_COLUMNS

DPI = 120
# ------------------------------------------------------------------ one colour, one meaning
# The key (chapter 01 and README): blue = a model's prediction; slate = human data; purple = the
# published soft label; teal = the information projection; red -> green = the five levels; grey = fits,
# bounds and reference lines; every data set and every distortion family has its own fixed colour.
#: the five levels, bad..excellent (a red -> green scale used for levels and nothing else)
LEVEL_COLORS = ("#c0392b", "#e67e22", "#f1c40f", "#7dbb42", "#1e8449")
#: human data: ratings, MOS, std, the crowd, a human-rated image
HUMAN_COLOR = "#34495e"
#: a model's prediction, reserved for it: nothing else is drawn in this blue
MODEL_COLOR = "#2e86c1"
#: a second model compared with the first (``python -m deqa report --compare``): a lighter blue
OTHER_MODEL_COLOR = "#7fb3d5"
#: fitted curves (the logistic, a calibration line), bounds and reference lines
REFERENCE_COLOR = "#7f8c8d"
#: the two soft labels of chapter 02
LABEL_COLORS = {"published": "#8e44ad", "projection": "#16a085"}
#: the soft-label modes of notebooks 02 and 02b: the two labels, and the active set in a tint of the
#: published adjustment it re-solves
MODE_COLORS = {"reference": LABEL_COLORS["published"], "projection": LABEL_COLORS["projection"],
               "active_set": "#c39bd3"}
#: every data set by name: the synthetic sets of chapters 04-06, the co-training toy's sets of chapter 03
#: (each coloured as the synthetic set that plays its part) and the real sets of chapters 01-02
DATASET_COLORS = {
    "synth-koniq": "#424242", "full_1to5": "#424242", "koniq10k": "#424242",
    "synth-spaq": "#b9770e", "heldout_0to10": "#b9770e", "spaq": "#b9770e",
    "synth-high": "#ad1457", "high_0to100": "#ad1457",
    "synth-low": "#4e342e", "low_dmos": "#4e342e",
    "kadid10k": "#1b5e20", "live_challenge": "#ff6f00", "livec": "#ff6f00",
    "KonIQ-10k": "#424242", "KADID-10k": "#1b5e20", "LIVE-Challenge": "#ff6f00",
}
#: data sets not named above take one of these, by a hash of the name (the same name, the same colour)
_MORE_DATASET_COLORS = ("#5d6d7e", "#7d6608", "#641e16", "#0e6251", "#6c3483", "#1a5276")
#: distortion families, in hues no data set uses (the pristine images in near-black)
FAMILY_COLORS = {"pristine": "#17202a", "blur": "#00acc1", "noise": "#e53935", "jpeg": "#9575cd",
                 "contrast": "#f48fb1"}
#: training objectives (the chapter-03 toy and the chapter-06 ablation): greys without a distribution
#: (one-hot CE, rescaled MSE), gold for the soft-label KL, crimson for the fidelity loss, orange for both
OBJECTIVE_COLORS = {"onehot_ce": "#95a5a6", "mse_rescaled": "#bdc3c7", "soft_kl": "#d4ac0d", "absolute": "#d4ac0d",
                    "fidelity": "#a93226", "soft_kl_fid": "#d35400"}
#: the parts of the DeQA loss in a training log, coloured as the objectives they come from
LOSS_COLORS = {"kl": OBJECTIVE_COLORS["soft_kl"], "ce": OBJECTIVE_COLORS["onehot_ce"],
               "fid": OBJECTIVE_COLORS["fidelity"], "loss": "k"}


def dataset_color(name) -> str:
    """The colour of data set ``name``: ``DATASET_COLORS`` when it is there, else one of a few more
    colours chosen by a hash of the name, so that a data set keeps its colour in every figure."""
    import hashlib

    name = str(name)
    if name in DATASET_COLORS:
        return DATASET_COLORS[name]
    digest = int(hashlib.sha1(name.encode()).hexdigest(), 16)
    return _MORE_DATASET_COLORS[digest % len(_MORE_DATASET_COLORS)]


def plain(text, limit: int = 60) -> str:
    """``text`` (a file, data-set or family name from the inputs) safe for a matplotlib title: ``$``
    escaped so that it is not read as mathematics, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("$", r"\$")

_STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "figure.figsize": (6.4, 4.0),
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "svg.hashsalt": "deqa",
    "svg.fonttype": "none",
}


def use_style() -> None:
    """Apply the house style to matplotlib (idempotent)."""
    matplotlib.rcParams.update(_STYLE)


def savefig(fig, name: str, svg: bool = False, directory: Path | None = None) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` (+ ``.svg``) with fixed metadata; returns the PNG path."""
    out = Path(directory) if directory is not None else paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    if svg:
        fig.savefig(out / f"{name}.svg", metadata={"Date": None, "Creator": None})
    return png


# ---------------------------------------------------------------------------------------------------
# Evaluation figures (notebook 05). Every function returns the matplotlib Figure it drew on, so that
# ``savefig(fig, name)`` can follow; those taking ``ax=None`` create a figure when no axes is given.
# Predicted quantities are drawn in MODEL_COLOR, human ones in HUMAN_COLOR. All scores are on the
# 1-5 level scale (human MOS rescaled with ``levels.rescale``, e.g. by ``evaluate.join_predictions``).
# ---------------------------------------------------------------------------------------------------
THUMBNAIL_PX = 256  #: longest side of the thumbnails drawn in panels and grids


def _figure(ax=None, figsize=None):
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    use_style()
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def thumbnail(image, size: int = THUMBNAIL_PX) -> np.ndarray:
    """An RGB uint8 array at most ``size`` pixels on its longest side, from a PIL image, a path or an array."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)
        image = Image.fromarray(arr)
    elif not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        except (FileNotFoundError, OSError) as exc:
            raise DeqaError(f"{image}: cannot open the image ({exc})") from None
    image = image.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image)


def _gaussian_curve(ax, mu: float, sigma: float, color: str, label: str) -> None:
    """Density of N(mu, sigma^2) on the level axis; with unit-width bars it shares their y scale."""
    x = np.linspace(0.5, 5.5, 301)
    s = max(float(sigma), 1e-3)
    y = np.exp(-0.5 * ((x - mu) / s) ** 2) / (s * np.sqrt(2.0 * np.pi))
    ax.plot(x, y, color=color, lw=1.4, label=label)


def level_bars(ax, pred_probs, human_probs=None, pred_mu=None, pred_sigma=None, human_mu=None,
               human_sigma=None, title=None, legend: bool = True, human_hist=None, gaussians: bool = True):
    """The predicted five-level probabilities beside the human soft label (paired bars, bad..excellent
    on the x axis), the human rating histogram as markers on the soft-label bars when ``human_hist``
    is given, and - with ``gaussians`` - each side's N(mu, sigma^2) (mu and sigma default to the
    score and spread of the bars; unit-width levels let density and probability share the y axis).
    The title gives mu +- sigma of each side unless ``title`` is given. Returns the Figure."""
    from .levels import score, spread

    series = [("predicted", "predicted levels", np.asarray(pred_probs, dtype=float), pred_mu, pred_sigma,
               MODEL_COLOR)]
    if human_probs is not None:
        series.append(("human", "human soft label", np.asarray(human_probs, dtype=float), human_mu,
                       human_sigma, HUMAN_COLOR))
    width = 0.8 / len(series)
    top, summary = 0.0, []
    for i, (side, label, probs, mu, sigma, color) in enumerate(series):
        if probs.shape != (5,):
            raise DeqaError(f"{side} level probabilities must have 5 entries (bad..excellent), got {probs.shape}")
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(CENTERS + offset, probs, width=width, color=color, alpha=0.45, label=label)
        mu = float(score(probs)) if mu is None else float(mu)
        sigma = float(spread(probs)) if sigma is None else float(sigma)
        if gaussians:
            _gaussian_curve(ax, mu, sigma, color, f"{side} Gaussian")
            top = max(top, 1.0 / (max(sigma, 1e-3) * np.sqrt(2.0 * np.pi)))
        top = max(top, float(probs.max()))
        summary.append(f"{side} {mu:.2f} ± {sigma:.2f}")
    if human_hist is not None:
        hist = np.asarray(human_hist, dtype=float)
        if hist.shape != (5,):
            raise DeqaError(f"the rating histogram must have 5 entries (ratings 1..5), got {hist.shape}")
        hist = hist / hist.sum()
        ax.plot(CENTERS + (len(series) - 1) / 2 * width, hist, "D", color=HUMAN_COLOR, mfc="white", ms=5,
                mew=1.3, ls="none", label="human ratings (histogram)")
        top = max(top, float(hist.max()))
    ax.set_xticks(CENTERS, LEVELS, fontsize=8)
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0, min(top, 1.5) * 1.08)
    ax.set_xlabel("level (rating 1..5)", fontsize=8)
    ax.set_ylabel("probability")
    ax.set_title(title if title is not None else " · ".join(summary), fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax.figure


def image_distribution(ax_img, ax_bars, image, pred_probs, human_probs=None, pred_mu=None,
                       pred_sigma=None, human_mu=None, human_sigma=None, title=None, legend: bool = True,
                       human_hist=None, gaussians: bool = True):
    """One image: its thumbnail in ``ax_img`` (titled ``title``) beside ``level_bars`` (predicted vs
    human) in ``ax_bars``. Returns the Figure."""
    ax_img.imshow(thumbnail(image), interpolation="nearest")  # the real pixels, no smoothing
    ax_img.set_axis_off()
    if title:
        ax_img.set_title(title, fontsize=9)
    level_bars(ax_bars, pred_probs, human_probs, pred_mu, pred_sigma, human_mu, human_sigma, legend=legend,
               human_hist=human_hist, gaussians=gaussians)
    return ax_img.figure


def _row_values(row, columns) -> np.ndarray | None:
    if all(c in row.index for c in columns):
        values = row[list(columns)].to_numpy(dtype=float)
        return values if np.all(np.isfinite(values)) else None
    return None


_PANEL_LEGEND = ("predicted levels", "human soft label", "human ratings (histogram)", "predicted Gaussian",
                 "human Gaussian")


def distribution_panels(images, preds, humans=None, titles=None, ncols: int = 2, histograms: bool = True,
                        gaussians: bool = True):
    """A figure of ``image_distribution`` panels, one per image, with one legend above them.

    ``preds``: DataFrame rows aligned with ``images`` holding ``p_bad .. p_excellent`` and optionally
    ``score``, ``std``. ``humans`` (default: ``preds``, e.g. the output of
    ``evaluate.join_predictions``): ``mu``, ``sigma``, optionally the soft label ``q_bad ..
    q_excellent`` (else the ``cdf`` label of mu, sigma is drawn) and the rating histogram ``c1..c5``
    (drawn as markers when ``histograms``). ``images=None`` draws the level bars alone (no image
    files); an image that is None in the list gets a tile saying it was not found.
    """
    import matplotlib.pyplot as plt

    humans = preds if humans is None else humans
    with_images = images is not None
    images = list(images) if with_images else [None] * len(preds)
    if len(preds) != len(images) or len(humans) != len(images):
        raise DeqaError(f"distribution_panels: {len(images)} images, {len(preds)} prediction rows, "
                        f"{len(humans)} human rows; give one of each per image")
    use_style()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    per = 2 if with_images else 1
    fig, axes = plt.subplots(nrows, per * ncols, figsize=((5.6 if with_images else 4.2) * ncols,
                                                          2.7 * nrows + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.9] * ncols} if with_images else None)
    for k in range(nrows * ncols):
        ax_bars = axes[k // ncols, per * (k % ncols) + per - 1]
        ax_img = axes[k // ncols, per * (k % ncols)] if with_images else None
        if k >= n:
            for ax in (ax_img, ax_bars):
                if ax is not None:
                    ax.set_axis_off()
            continue
        p, h = preds.iloc[k], humans.iloc[k]
        probs = _row_values(p, PROB_COLUMNS)
        if probs is None:
            raise DeqaError(f"distribution_panels: prediction rows need {', '.join(PROB_COLUMNS)}")
        human_q = _row_values(h, LABEL_COLUMNS)
        human_mu, human_sigma = h.get("mu"), h.get("sigma")
        if human_sigma is not None and np.isnan(human_sigma):
            human_sigma = None
        if human_q is None and human_mu is not None:
            from .soft_label import soft_labels

            human_q = soft_labels([min(max(human_mu, 1.0), 5.0)], [human_sigma], method="cdf")[0]
        hist = _row_values(h, HISTOGRAM) if histograms else None
        title = titles[k] if titles is not None else None
        if ax_img is not None and images[k] is not None:
            image_distribution(ax_img, ax_bars, images[k], probs, human_q, p.get("score"), p.get("std"),
                               human_mu, human_sigma, title, legend=False, human_hist=hist, gaussians=gaussians)
            continue
        level_bars(ax_bars, probs, human_q, p.get("score"), p.get("std"), human_mu, human_sigma, legend=False,
                   human_hist=hist, gaussians=gaussians)
        if ax_img is not None:
            ax_img.set_axis_off()
            ax_img.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8, color="0.4",
                        transform=ax_img.transAxes)
            if title:
                ax_img.set_title(title, fontsize=9)
        elif title:
            ax_bars.set_title(f"{title}\n{ax_bars.get_title()}", fontsize=9)
    handles, labels = axes[0, per - 1].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (_PANEL_LEGEND.index(labels[i])
                                                      if labels[i] in _PANEL_LEGEND else len(_PANEL_LEGEND)))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
               ncol=min(len(labels), 3 if ncols * per < 3 else len(labels)), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    top_space = (0.4 if ncols * per >= 3 else 0.75) / fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - top_space))
    return fig


def _legend_below(ax, ncol: int = 2) -> None:
    """The legend under the axes, outside the data."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol)


def _point_style(n: int) -> dict:
    """Marker size and transparency for a scatter of ``n`` points (thousands of points: small and
    light, so that dense regions stay readable); rasterised, so that an SVG stays small."""
    size = 12 if n <= 2000 else (5 if n <= 10000 else 3)
    alpha = 0.6 if n <= 2000 else (0.3 if n <= 10000 else 0.2)
    return {"s": size, "alpha": alpha, "edgecolors": "none", "rasterized": True}


def score_scatter(pred, mos, ax=None, label: str | None = None, color: str = MODEL_COLOR,
                  fit_color: str = REFERENCE_COLOR, title: bool = True):
    """Predicted score against human score with the fitted 4-parameter logistic; the title gives the
    PLCC after the logistic (the published protocol) and the SRCC. ``color`` / ``fit_color``: the
    points' and the curve's (a second model drawn on the same axes takes others)."""
    from . import metrics

    pred, mos = metrics.as_pair(pred, mos)
    fig, ax = _figure(ax, figsize=(4.6, 4.6))
    ax.scatter(pred, mos, color=color, label=label or "images", **_point_style(len(pred)))
    params, ok = metrics.fit_logistic(pred, mos)
    if ok:
        x = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(x, metrics.logistic4(x, *params), color=fit_color, lw=1.8,
                label=f"fitted logistic ({label})" if label else "fitted logistic")
    if title:
        ax.set_title(score_summary(pred, mos))
    ax.set_xlabel("predicted score")
    ax.set_ylabel("human score")
    _legend_below(ax)
    return fig


def score_summary(pred, mos) -> str:
    """'PLCC (logistic) 0.966 · SRCC 0.963 (n = 630)': the headline numbers of a scatter."""
    from . import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r_p, r_s = metrics.plcc_logistic_checked(*metrics.as_pair(pred, mos))[0], metrics.srcc(pred, mos)
    return f"PLCC (logistic) {r_p:.3f} · SRCC {r_s:.3f} (n = {len(pred)})"


def calibration_slope(predicted_std, human_std) -> tuple[float, float]:
    """Least-squares line predicted spread = slope * human spread + intercept (slope 1 when the
    predicted spread follows the human one)."""
    from . import metrics

    predicted_std, human_std = metrics.as_vectors(predicted_std=predicted_std, human_std=human_std)
    return _fit_line(human_std, predicted_std)


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the least-squares line y = slope * x + intercept (NaN when x is constant)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def _binned_means(x: np.ndarray, y: np.ndarray, bins: int):
    """Means of x and y in ``bins`` equal-count bins of x."""
    n_bins = int(min(bins, max(1, len(x) // 3)))
    groups = [g for g in np.array_split(np.argsort(x, kind="stable"), n_bins) if len(g)]
    return np.array([x[g].mean() for g in groups]), np.array([y[g].mean() for g in groups])


def spread_calibration(predicted_std, human_std, ax=None, bins: int = 8, color: str = MODEL_COLOR,
                       label: str | None = None, reference: bool = True, study_r: float | None = None,
                       top: float | None = None):
    """Predicted spread against human spread: points, the diagonal y = x, the mean predicted spread in
    equal-count bins of the human spread (on the diagonal when calibrated) and the fitted line, whose
    slope the title gives (``calibration_slope``). ``study_r``: the agreement of a repeated study's
    sigma with this one's (``deqa.raters.repeated_study_agreement``); the line y = mean + r (x - mean)
    is drawn, where a perfect prediction of each image's own spread would lie on average: the raters'
    noise in the observed sigma leaves it a slope of r (and a correlation of sqrt(r)), not 1.
    ``reference=False`` leaves out the diagonal (a second model on the same axes);
    ``top``: the axes' upper limit (default: the largest spread drawn, plus 5%)."""
    from . import metrics

    predicted_std, human_std = metrics.as_vectors(predicted_std=predicted_std, human_std=human_std)
    fig, ax = _figure(ax, figsize=(4.6, 4.6))
    name = f"{label}: " if label else ""
    ax.scatter(human_std, predicted_std, color=color, label=f"{name}images",
               **{**_point_style(len(human_std)), "alpha": 0.3 if len(human_std) <= 2000 else 0.15})
    if top is None:
        top = float(max(human_std.max(), predicted_std.max(), 1e-3)) * 1.05
    if reference:
        ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", label="y = x (calibrated)")
    if study_r is not None and np.isfinite(study_r):
        mean = float(human_std.mean())
        ax.plot([0, top], [mean - study_r * mean, mean + study_r * (top - mean)], color=HUMAN_COLOR, lw=1.4,
                ls=":", label="a perfect prediction, given the raters' noise")
    bx, by = _binned_means(human_std, predicted_std, bins)
    ax.plot(bx, by, "o-", color=color, lw=1.6, ms=5, mec="white", label=f"{name}binned mean")
    slope, intercept = _fit_line(human_std, predicted_std)
    if np.isfinite(slope):
        ax.plot([0, top], [intercept, intercept + slope * top], color=REFERENCE_COLOR if reference else color,
                lw=1.6, ls="-" if reference else "-.", label=f"{name}fitted line (slope {slope:.2f})")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("human spread sigma (1-5 scale)")
    ax.set_ylabel("predicted spread")
    ax.set_title(f"spread calibration: slope {slope:.2f} (calibrated = 1)")
    _legend_below(ax)
    return fig


def spread_by_score(human_mu, predicted_std, label_spread, ax=None, bins: int = 12):
    """The predicted spread and the spread of the training label against the human score: points and
    their means in equal-count bins of the score. Shows how much of the spread the score alone
    explains (both shrink towards the ends of the scale)."""
    from . import metrics

    mu, predicted_std, label_spread = metrics.as_vectors(human_mu=human_mu, predicted_std=predicted_std,
                                                         label_spread=label_spread)
    fig, ax = _figure(ax, figsize=(4.6, 4.6))
    curves = ((label_spread, HUMAN_COLOR, "soft label"), (predicted_std, MODEL_COLOR, "predicted"))
    for values, color, name in curves:
        ax.scatter(mu, values, s=8, alpha=0.2, color=color, edgecolors="none")
        bx, by = _binned_means(mu, values, bins)
        ax.plot(bx, by, "o-", color=color, lw=1.6, ms=5, mec="white", label=f"{name} (binned mean)")
    ax.set_xlim(1, 5)
    ax.set_ylim(0, float(max(label_spread.max(), predicted_std.max())) * 1.05)
    ax.set_xlabel("human score mu (1-5 scale)")
    ax.set_ylabel("spread (std of the five levels)")
    ax.set_title("spread along the scale")
    _legend_below(ax)
    return fig


# --------------------------------------------------------------- one panel per data set, and pooled
#: the name of the panel of all data sets together (``deqa.evaluate.POOLED``)
POOLED_PANEL = "pooled"


#: fewest images a panel is drawn for (its title gives correlations)
MIN_PANEL_N = 3


def _groups(table, pooled: bool) -> list:
    """(name, rows) per data set in order of appearance, then every row together when ``pooled``
    and there is more than one data set; data sets of fewer than ``MIN_PANEL_N`` rows are left out
    (DeqaError when none is left)."""
    names = list(dict.fromkeys(table["dataset"].astype(str)))
    groups = [(name, table[table["dataset"].astype(str).to_numpy() == name]) for name in names]
    groups = [(name, part) for name, part in groups if len(part) >= MIN_PANEL_N]
    if pooled and len(names) > 1 and len(table) >= MIN_PANEL_N:
        groups.append((POOLED_PANEL, table))
    if not groups:
        raise DeqaError(f"no data set has the {MIN_PANEL_N} images a panel needs")
    return groups


def _panel_axes(n: int, ncols: int, size: tuple[float, float]):
    import matplotlib.pyplot as plt

    use_style()
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, list(axes.flat[:n])


def _shared_legend(fig, axes) -> None:
    """One legend above the panels (the first panel's entries, without their own numbers: each panel's
    title has them) instead of one under each."""
    import re

    handles, labels = axes[0].get_legend_handles_labels()
    labels = [re.sub(r" \(slope [^)]*\)", "", label) for label in labels]
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 4), fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.35 + 0.22 * ((len(labels) - 1) // 4)) / fig.get_figheight()))


def _matching(other, name: str):
    if other is None:
        return None
    return other if name == POOLED_PANEL else other[other["dataset"].astype(str).to_numpy() == name]


def scatter_panels(table, other=None, names=("model", "other model"), pooled: bool = True, ncols: int = 4,
                   xlabel: str = "predicted score"):
    """``score_scatter`` per data set (and pooled): ``score`` against the human ``mu`` (1-5) with the
    fitted logistic; a second model's rows (``other``, the same columns) overlaid in
    ``OTHER_MODEL_COLOR``. Each title names the panel and gives its PLCC (logistic) and SRCC."""
    groups = _groups(table, pooled)
    fig, axes = _panel_axes(len(groups), ncols, (4.3, 4.4 if other is None else 4.7))
    for ax, (name, part) in zip(axes, groups):
        score_scatter(part["score"], part["mu"], ax=ax, label=names[0] if other is not None else None,
                      title=False)
        lines = [plain(name) if name != POOLED_PANEL else "pooled (every set, mu on 1-5)"]
        theirs = _matching(other, name)
        if theirs is not None and len(theirs) >= 2:
            score_scatter(theirs["score"], theirs["mu"], ax=ax, label=names[1], color=OTHER_MODEL_COLOR,
                          fit_color="#873600", title=False)
            lines += [f"{plain(names[0], 20)}: {score_summary(part['score'], part['mu'])}",
                      f"{plain(names[1], 20)}: {score_summary(theirs['score'], theirs['mu'])}"]
        else:
            lines.append(score_summary(part["score"], part["mu"]))
        ax.set_title("\n".join(lines), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("human mu (1-5)")
    _shared_legend(fig, axes)
    return fig


def calibration_panels(table, other=None, names=("model", "other model"), pooled: bool = True,
                       study_r: dict | None = None, ncols: int = 4):
    """``spread_calibration`` per data set (and pooled), on the rows with a known human ``sigma``: the
    predicted ``std`` against ``sigma``; ``study_r`` maps a data set to the agreement a repeated study
    would reach (drawn where given); ``other``: a second model overlaid."""
    known = table[np.isfinite(table["sigma"].to_numpy(float))]
    groups = _groups(known, pooled)
    fig, axes = _panel_axes(len(groups), ncols, (4.3, 4.6))
    for ax, (name, part) in zip(axes, groups):
        theirs = _matching(other, name)
        if theirs is not None:
            theirs = theirs[np.isfinite(theirs["sigma"].to_numpy(float))]
        spreads = [part["sigma"], part["std"]] + ([theirs["std"]] if theirs is not None and len(theirs) else [])
        top = float(max(np.max(s) for s in spreads)) * 1.05
        r = (study_r or {}).get(name)
        spread_calibration(part["std"], part["sigma"], ax=ax, label=names[0] if other is not None else None,
                           study_r=r, top=top)
        title = [plain(name) if name != POOLED_PANEL else "pooled (every set)"]
        slope_a = calibration_slope(part["std"], part["sigma"])[0]
        corr = np.corrcoef(part["std"], part["sigma"])[0, 1] if len(part) > 2 else np.nan
        title.append(f"slope {slope_a:.2f} · corr {corr:.2f}")
        if r is not None:
            title.append(f"a perfect prediction: slope {r:.2f}, corr {np.sqrt(max(r, 0)):.2f}")
        if theirs is not None and len(theirs) >= 2:
            spread_calibration(theirs["std"], theirs["sigma"], ax=ax, label=names[1], color=OTHER_MODEL_COLOR,
                               reference=False, top=top)
            title[1] = f"{plain(names[0], 20)}: " + title[1]
            title.append(f"{plain(names[1], 20)}: slope {calibration_slope(theirs['std'], theirs['sigma'])[0]:.2f}")
        ax.set_title("\n".join(title), fontsize=9)
    _shared_legend(fig, axes)
    return fig


def score_density(table, other=None, names=("model", "other model"), pooled: bool = True, ncols: int = 4):
    """How the scores spread over the scale, per data set (and pooled): the density of the human mu
    and of the predicted score (and of a second model's), by seaborn's kernel density estimate cut at
    the data's range. A model that compresses the scale shows a narrower curve than the humans'."""
    import seaborn as sns

    groups = _groups(table, pooled)
    fig, axes = _panel_axes(len(groups), ncols, (4.0, 3.4))
    for ax, (name, part) in zip(axes, groups):
        curves = [(part["mu"], HUMAN_COLOR, "human mu", "--"),
                  (part["score"], MODEL_COLOR, f"{names[0]} score" if other is not None else "predicted score", "-")]
        theirs = _matching(other, name)
        if theirs is not None and len(theirs) > 1:
            curves.append((theirs["score"], OTHER_MODEL_COLOR, f"{names[1]} score", "-"))
        for values, color, label, style in curves:
            values = np.asarray(values, dtype=float)
            if len(values) > 1 and np.ptp(values) > 0:
                sns.kdeplot(x=values, ax=ax, color=color, label=label, ls=style, lw=1.6, cut=0)
        ax.set_xlim(1, 5)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("score (1-5)")
        ax.set_ylabel("density")
        ax.set_title(plain(name) if name != POOLED_PANEL else "pooled (every set)", fontsize=9)
        _legend_below(ax)
    _shared_legend(fig, axes)
    return fig


def distortion_srcc(results, overall: dict | None = None):
    """SRCC per distortion family and per strength, one row of two panels per data set (the output of
    ``deqa.evaluate.distortion_table``): a box per group from its bootstrap resamples (seaborn; the
    box holds the middle half of them, the whiskers reach their middle 95%, the interval of the
    table), the SRCC on all the group's images as a dot, and - ``overall`` - the data set's SRCC as a
    dashed line. Groups too small for a correlation are left out."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    replicates = results.attrs.get("replicates", {})
    sets = list(dict.fromkeys(results["dataset"]))
    if not sets:
        raise DeqaError("distortion_srcc: no distortion family to draw")
    heights = [max(2, (results["dataset"] == d).groupby(results["by"]).sum().max()) for d in sets]
    use_style()
    fig, axes = plt.subplots(len(sets), 2, figsize=(10.5, sum(0.28 * h + 1.3 for h in heights)), squeeze=False,
                             gridspec_kw={"height_ratios": [0.28 * h + 1.3 for h in heights]})
    for row, name in zip(axes, sets):
        for ax, by in zip(row, ("family", "strength")):
            part = results[(results["dataset"] == name) & (results["by"] == by) & np.isfinite(results["srcc"])]
            if part.empty:
                ax.set_axis_off()
                continue
            order = [str(g) for g in part["group"]]
            long = pd.DataFrame([(str(g), v) for g in part["group"]
                                 for v in replicates.get((name, by, g), np.array([]))
                                 if np.isfinite(v)], columns=["group", "srcc"])
            if len(long):
                with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11 a deprecated argument
                    warnings.simplefilter("ignore", DeprecationWarning)
                    sns.boxplot(data=long, x="srcc", y="group", order=order, ax=ax, whis=(2.5, 97.5),
                                showfliers=False, width=min(0.55, 0.12 * len(order) + 0.2), color=MODEL_COLOR,
                                boxprops={"alpha": 0.35}, medianprops={"visible": False}, linewidth=1)
            ax.scatter(part["srcc"], np.arange(len(order)), color=HUMAN_COLOR, s=18, zorder=3,
                       label="SRCC on the group's images")
            if overall and np.isfinite(overall.get(name, np.nan)):
                ax.axvline(overall[name], color=REFERENCE_COLOR, ls="--", lw=1.2, label="SRCC of the whole data set")
            shown = [("pristine" if by == "strength" and g == "0" else plain(g, 30)) for g in order]
            ax.set_yticks(np.arange(len(order)), [f"{g} (n = {n})" for g, n in zip(shown, part["n"])], fontsize=8)
            ax.set_ylabel("")
            ax.set_xlabel("SRCC (box: bootstrap resamples, whiskers: 95% interval)", fontsize=8)
            ax.set_title(f"{plain(name)}: per distortion {by}" + (f" (whole set: {overall[name]:.3f})"
                         if overall and np.isfinite(overall.get(name, np.nan)) else ""), fontsize=9)
    drawn = [ax for ax in axes.flat if ax.get_legend_handles_labels()[1]]
    if drawn:
        handles, labels = drawn[0].get_legend_handles_labels()
        fig.legend(handles, [label.split(" (")[0] for label in labels], loc="upper center", ncol=2, fontsize=8,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


GRID_KINDS = ("best", "worst", "uncertain", "spread")
_GRID_TITLES = {"best": "best predictions (smallest |score - human mu|)",
                "worst": "worst predictions (largest |score - human mu|)",
                "uncertain": "most uncertain predictions (largest predicted spread)",
                "spread": "from the narrowest to the widest predicted spread"}


def select_predictions(score, predicted_std, human_mu, kind: str = "best", n: int = 6) -> np.ndarray:
    """Indices of the ``n`` best (smallest |score - human mu|), worst (largest) or most uncertain
    (largest predicted spread) predictions, ties keeping the input order; or, for ``"spread"``, ``n``
    images at evenly spaced ranks of the predicted spread, narrowest first (the whole range, so
    that a spread shared by many images does not fill the grid)."""
    score, human_mu = np.asarray(score, dtype=float), np.asarray(human_mu, dtype=float)
    n = max(0, int(n))
    if kind == "spread":
        order = np.argsort(np.asarray(predicted_std, dtype=float), kind="stable")
        if n == 0 or len(order) == 0:
            return order[:0]
        return order[np.unique(np.round(np.linspace(0, len(order) - 1, min(n, len(order)))).astype(int))]
    if kind == "best":
        key = np.abs(score - human_mu)
    elif kind == "worst":
        key = -np.abs(score - human_mu)
    elif kind == "uncertain":
        key = -np.asarray(predicted_std, dtype=float)
    else:
        raise DeqaError(f"unknown kind {kind!r}: use one of {', '.join(GRID_KINDS)}")
    return np.argsort(key, kind="stable")[:n]


def _tile_title(preds, humans, i: int, predicted_std: np.ndarray) -> str:
    """Three lines: where the image comes from (data set, distortion family and strength, when the
    rows have them), the prediction and the human score."""
    where = []
    for frame in (humans, preds):
        if "dataset" in frame.columns:
            where.append(plain(frame["dataset"].iloc[i], 30))
            break
    for frame in (humans, preds):
        family = next((c for c in ("family", "distortion") if c in frame.columns), None)
        if family is not None and isinstance(frame[family].iloc[i], str):
            level = frame["level"].iloc[i] if "level" in frame.columns else None
            strength = f", strength {int(level)}" if level is not None and np.isfinite(level) and level > 0 else ""
            where.append(plain(frame[family].iloc[i], 24) + strength)
            break
    pred = f"pred {preds['score'].iloc[i]:.2f}"
    if np.isfinite(predicted_std[i]):
        pred += f" ± {predicted_std[i]:.2f}"
    if "score_read" in preds.columns:  # a score on its own scale, mapped to 1-5 by the fitted logistic
        pred = f"fitted {preds['score'].iloc[i]:.2f} (read {preds['score_read'].iloc[i]:.4g})"
    h_sigma = humans["sigma"].iloc[i] if "sigma" in humans.columns else np.nan
    human = f"human {humans['mu'].iloc[i]:.2f}" + (f" ± {h_sigma:.2f}" if np.isfinite(h_sigma) else "")
    return "\n".join([*where, pred, human])


def prediction_grid(images, preds, humans=None, kind: str = "best", n: int = 6, ncols: int = 3):
    """Thumbnails of the best, worst or most uncertain predictions, or of the range of predicted
    spreads (see ``select_predictions``), each titled with its data set, distortion family and
    strength (where the rows have ``dataset``, ``family`` or ``distortion``, and ``level``), the
    predicted and the human mu +- sigma. ``preds`` has ``score`` and ``std`` (and ``score_read``, a
    score-only model's value as its file has it, when ``score`` is that value mapped to 1-5 by the
    fitted logistic); ``humans`` (default
    ``preds``) has ``mu`` and ``sigma``; rows align with ``images`` (images, arrays or paths; a tile
    whose image is None says that it was not found). Only the chosen images are read."""
    import matplotlib.pyplot as plt

    images = list(images)
    humans = preds if humans is None else humans
    if len(preds) != len(images) or len(humans) != len(images):
        raise DeqaError(f"prediction_grid: {len(images)} images, {len(preds)} prediction rows, "
                        f"{len(humans)} human rows; give one of each per image")
    predicted_std = preds["std"].to_numpy(float) if "std" in preds.columns else np.full(len(preds), np.nan)
    chosen = select_predictions(preds["score"], predicted_std, humans["mu"], kind, n)
    use_style()
    ncols = max(1, min(ncols, len(chosen)))
    nrows = max(1, -(-len(chosen) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 3.5 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(chosen):
            continue
        i = int(chosen[k])
        if images[i] is None:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=8, color="0.4",
                    transform=ax.transAxes)
        else:
            ax.imshow(thumbnail(images[i]), interpolation="nearest")  # the real pixels, no smoothing
        ax.set_title(_tile_title(preds, humans, i, predicted_std), fontsize=8)
    fig.suptitle(_GRID_TITLES[kind])
    fig.tight_layout(h_pad=1.2)
    return fig


#: keys of a training log that are not curves
_LOG_META_KEYS = {"step", "epoch", "time", "elapsed", "wall_s", "seconds", "samples"}
_LOG_META_PREFIXES = ("val_n/",)  # how many images a validation number rests on: not a curve
_LOSS_KEYS = ("loss", "fid", "kl", "ce")
_PANEL_YLABELS = {"training losses": "loss (log scale)", "validation": "validation metric",
                  "learning rate": "learning rate", "other": "value"}


def _log_groups(rows) -> dict:
    """The numeric keys of a training log, grouped into panels (losses, validation, lr, other)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and k not in _LOG_META_KEYS
                 and not k.startswith(_LOG_META_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)]
    groups = {"training losses": [k for k in keys if not k.startswith("val_")
                                  and (k in _LOSS_KEYS or k.endswith("loss"))],
              "validation": [k for k in keys if k.startswith("val_")],
              "learning rate": [k for k in keys if k == "lr"]}
    groups["other"] = [k for k in keys if not any(k in g for g in groups.values())]
    return {name: ks for name, ks in groups.items() if ks}


def training_curves(run_dir_or_log_path):
    """Training curves from a run's ``metrics.jsonl``, against ``step``, one panel per group present:
    the loss parts (``LOSS_COLORS``, log y axis so that a spike does not flatten the rest), the
    validation metrics (``val_*``), the learning rate and any other numeric key; legends below."""
    import matplotlib.pyplot as plt

    rows = runlog.read_log(run_dir_or_log_path)
    if not rows:
        raise DeqaError(f"{runlog.log_path(run_dir_or_log_path)}: the training log is empty")
    groups = _log_groups(rows)
    if not groups:
        raise DeqaError("the training log has no numeric values to plot besides the step")
    use_style()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.9), squeeze=False)
    palette = ("k", REFERENCE_COLOR, "#5d6d7e")   # curves that are neither a loss part nor a data set
    for ax, (name, ks) in zip(axes.flat, groups.items()):
        others = 0
        for key in ks:
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            steps, values = np.array(pts, dtype=float).T
            if name == "training losses" and key in LOSS_COLORS:
                color = LOSS_COLORS[key]
            elif "/" in key:   # a metric of one data set (val_srcc/synth-koniq): that data set's colour
                color = dataset_color(key.split("/", 1)[1])
            else:
                color, others = palette[others % len(palette)], others + 1
            ax.plot(steps, values, marker="o" if len(pts) < 30 else None, ms=3, lw=1.4, color=color,
                    label="total L" if key == "loss" else key)
        ylabel = _PANEL_YLABELS[name]
        if name == "training losses":
            if all(np.min(line.get_ydata()) > 0 for line in ax.lines):
                ax.set_yscale("log")
            else:  # a zero or negative loss value: no log axis
                ylabel = "loss"
        ax.set(title=name, xlabel="step", ylabel=ylabel)
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        _legend_below(ax, ncol=2)
    fig.tight_layout()
    return fig
