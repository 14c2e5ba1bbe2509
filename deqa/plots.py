"""Figures in one consistent style, saved deterministically. Used by every notebook; the
evaluation plots are explained in notebook 05 (``05_distribution_plots``).

``use_style()`` sets the house style; ``savefig(fig, name)`` writes ``<figures>/<name>.png`` (and an
SVG when asked) with fixed metadata, so re-running a notebook rewrites identical bytes.

Evaluation figures: ``level_bars``, ``image_distribution`` / ``distribution_panels`` (predicted levels
vs the human soft label and rating histogram), ``score_scatter``, ``spread_calibration`` and
``spread_by_score``, ``prediction_grid`` and ``training_curves`` (from a run's ``metrics.jsonl``).

One colour per concept: ``LEVEL_COLORS`` for the five levels only, ``HUMAN_COLOR`` / ``MODEL_COLOR``
for human vs predicted, ``ACCENT_COLOR`` for a fitted curve, ``LOSS_COLORS`` for the parts of the loss.
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
#: one colour per level, bad..excellent (red -> green), used wherever levels are drawn
LEVEL_COLORS = ("#c0392b", "#e67e22", "#f1c40f", "#7dbb42", "#1e8449")
HUMAN_COLOR = "#34495e"
MODEL_COLOR = "#2e86c1"
ACCENT_COLOR = "#8e44ad"
#: distortion families of the synthetic data (never the level colours: those mean levels)
FAMILY_COLORS = {"blur": "#4c72b0", "noise": "#8172b3", "jpeg": "#937860", "contrast": "#da8bc3"}
#: training objectives, in the chapter-03 toy and the chapter-06 ablation alike: absolute targets
#: (one-hot CE, soft-label KL, rescaled MSE) in light colours, objectives with the fidelity loss in
#: dark ones (soft-label KL + fidelity navy, the fidelity loss alone dark purple)
OBJECTIVE_COLORS = {"onehot_ce": "#8c8c8c", "soft_kl": "#64b5cd", "absolute": "#64b5cd",
                    "mse_rescaled": "#c2a5cf", "soft_kl_fid": "#1f3a93", "fidelity": "#5e2a84"}
#: data sets, by their order of appearance in a figure
DATASET_COLORS = ("#444444", "#a6761d", "#7570b3", "#e7298a")
#: the soft-label modes of notebook 02: the published builder, the earlier active set (a light blue) and
#: the default information projection (the dark blue of the same family)
MODE_COLORS = {"reference": ACCENT_COLOR, "active_set": "#85c1e9", "projection": MODEL_COLOR}
#: the parts of the DeQA loss in a training log (chapter 04's curves and ``training_curves`` alike)
LOSS_COLORS = {"kl": MODEL_COLOR, "ce": HUMAN_COLOR, "fid": ACCENT_COLOR, "loss": "k"}

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
    (drawn as markers when ``histograms``).
    """
    import matplotlib.pyplot as plt

    images = list(images)
    humans = preds if humans is None else humans
    if len(preds) != len(images) or len(humans) != len(images):
        raise DeqaError(f"distribution_panels: {len(images)} images, {len(preds)} prediction rows, "
                        f"{len(humans)} human rows; give one of each per image")
    use_style()
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(5.6 * ncols, 2.7 * nrows + 0.5), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1.9] * ncols})
    for k in range(nrows * ncols):
        ax_img, ax_bars = axes[k // ncols, 2 * (k % ncols)], axes[k // ncols, 2 * (k % ncols) + 1]
        if k >= n:
            ax_img.set_axis_off()
            ax_bars.set_axis_off()
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
        image_distribution(ax_img, ax_bars, images[k], probs, human_q, p.get("score"), p.get("std"),
                           human_mu, human_sigma, title, legend=False, human_hist=hist, gaussians=gaussians)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (_PANEL_LEGEND.index(labels[i])
                                                      if labels[i] in _PANEL_LEGEND else len(_PANEL_LEGEND)))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center", ncol=len(labels),
               fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    return fig


def _legend_below(ax, ncol: int = 2) -> None:
    """The legend under the axes, outside the data."""
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol)


def score_scatter(pred, mos, ax=None, label: str | None = None):
    """Predicted score against human score with the fitted 4-parameter logistic; the title gives the
    PLCC after the logistic (the published protocol) and the SRCC."""
    from . import metrics

    pred, mos = metrics.as_pair(pred, mos)
    fig, ax = _figure(ax, figsize=(4.6, 4.6))
    ax.scatter(pred, mos, s=12, alpha=0.6, color=MODEL_COLOR, edgecolors="none", label=label or "images")
    params, ok = metrics.fit_logistic(pred, mos)
    if ok:
        x = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(x, metrics.logistic4(x, *params), color=ACCENT_COLOR, lw=1.8, label="fitted logistic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r_p, r_s = metrics.plcc_logistic_checked(pred, mos)[0], metrics.srcc(pred, mos)
    ax.set_title(f"PLCC (logistic) {r_p:.3f} · SRCC {r_s:.3f} (n = {len(pred)})")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("human score")
    _legend_below(ax)
    return fig


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


def spread_calibration(predicted_std, human_std, ax=None, bins: int = 8):
    """Predicted spread against human spread: points, the diagonal y = x, the mean predicted spread in
    equal-count bins of the human spread (on the diagonal when calibrated) and the fitted line, whose
    slope the title gives (``calibration_slope``)."""
    from . import metrics

    predicted_std, human_std = metrics.as_vectors(predicted_std=predicted_std, human_std=human_std)
    fig, ax = _figure(ax, figsize=(4.6, 4.6))
    ax.scatter(human_std, predicted_std, s=10, alpha=0.3, color=MODEL_COLOR, edgecolors="none", label="images")
    top = float(max(human_std.max(), predicted_std.max(), 1e-3)) * 1.05
    ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", label="y = x (calibrated)")
    bx, by = _binned_means(human_std, predicted_std, bins)
    ax.plot(bx, by, "o-", color=MODEL_COLOR, lw=1.6, ms=5, mec="white", label="binned mean")
    slope, intercept = _fit_line(human_std, predicted_std)
    if np.isfinite(slope):
        ax.plot([0, top], [intercept, intercept + slope * top], color=ACCENT_COLOR, lw=1.6,
                label=f"fitted line (slope {slope:.2f})")
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


def prediction_grid(images, preds, humans=None, kind: str = "best", n: int = 6, ncols: int = 3):
    """Thumbnails of the best, worst or most uncertain predictions, or of the range of predicted
    spreads (see ``select_predictions``), each titled with predicted and human mu +- sigma.
    ``preds`` has ``score`` and ``std``; ``humans`` (default ``preds``) has ``mu`` and ``sigma``;
    rows align with ``images``."""
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.9 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(chosen):
            continue
        i = int(chosen[k])
        ax.imshow(thumbnail(images[i]), interpolation="nearest")  # the real pixels, no smoothing
        h_sigma = humans["sigma"].iloc[i] if "sigma" in humans.columns else np.nan
        ax.set_title(f"pred {preds['score'].iloc[i]:.2f} ± {predicted_std[i]:.2f}\n"
                     f"human {humans['mu'].iloc[i]:.2f} ± {h_sigma:.2f}", fontsize=8)
    fig.suptitle(_GRID_TITLES[kind])
    fig.tight_layout()
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
    palette = (*DATASET_COLORS, MODEL_COLOR, ACCENT_COLOR)
    for ax, (name, ks) in zip(axes.flat, groups.items()):
        others = 0
        for key in ks:
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            steps, values = np.array(pts, dtype=float).T
            if name == "training losses" and key in LOSS_COLORS:
                color = LOSS_COLORS[key]
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
