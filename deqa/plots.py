"""Figures in one consistent style, saved deterministically. Used by every notebook; the
evaluation plots are explained in notebook 05 (``05_distribution_plots``).

``use_style()`` sets the house style; ``savefig(fig, name)`` writes ``<figures>/<name>.png`` (and an
SVG when asked) with fixed metadata, so re-running a notebook rewrites identical bytes.

Evaluation figures: ``level_bars``, ``image_distribution`` / ``distribution_panels`` (predicted vs
human five-level distributions), ``score_scatter``, ``spread_calibration``, ``prediction_grid`` and
``training_curves`` (from a run's ``metrics.jsonl``).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np

from . import paths, runlog
from .errors import DeqaError
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
MODE_COLORS = {"reference": ACCENT_COLOR, "active_set": "#85c1e9", "default": MODEL_COLOR}

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
    ax.plot(x, y, color=color, lw=1.6, label=label)


def level_bars(ax, pred_probs, human_probs=None, pred_mu=None, pred_sigma=None, human_mu=None,
               human_sigma=None, title=None, legend: bool = True):
    """Predicted (and human) five-level probabilities as paired bars, bad..excellent on the x axis,
    with each side's Gaussian N(mu, sigma^2) drawn over them (mu and sigma default to the score and
    spread of the bars; unit-width levels let density and probability share the y axis). The title
    gives mu +- sigma of each side unless ``title`` is given. Returns the Figure."""
    from .levels import score, spread

    series = [("predicted", np.asarray(pred_probs, dtype=float), pred_mu, pred_sigma, MODEL_COLOR)]
    if human_probs is not None:
        series.append(("human", np.asarray(human_probs, dtype=float), human_mu, human_sigma, HUMAN_COLOR))
    width = 0.8 / len(series)
    top, summary = 0.0, []
    for i, (label, probs, mu, sigma, color) in enumerate(series):
        if probs.shape != (5,):
            raise DeqaError(f"{label} level probabilities must have 5 entries (bad..excellent), got {probs.shape}")
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(CENTERS + offset, probs, width=width, color=color, alpha=0.45, label=f"{label} levels")
        mu = float(score(probs)) if mu is None else float(mu)
        sigma = float(spread(probs)) if sigma is None else float(sigma)
        _gaussian_curve(ax, mu, sigma, color, f"{label} Gaussian")
        top = max(top, float(probs.max()), 1.0 / (max(sigma, 1e-3) * np.sqrt(2.0 * np.pi)))
        summary.append(f"{label} {mu:.2f} ± {sigma:.2f}")
    ax.set_xticks(CENTERS, LEVELS, fontsize=8)
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0, min(top, 1.5) * 1.08)
    ax.set_ylabel("probability")
    ax.set_title(title if title is not None else " · ".join(summary), fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="best")
    return ax.figure


def image_distribution(ax_img, ax_bars, image, pred_probs, human_probs=None, pred_mu=None,
                       pred_sigma=None, human_mu=None, human_sigma=None, title=None, legend: bool = True):
    """One image: its thumbnail in ``ax_img`` (titled ``title``) beside ``level_bars`` (predicted vs
    human) in ``ax_bars``. Returns the Figure."""
    ax_img.imshow(thumbnail(image), interpolation="nearest")  # the real pixels, no smoothing
    ax_img.set_axis_off()
    if title:
        ax_img.set_title(title, fontsize=9)
    level_bars(ax_bars, pred_probs, human_probs, pred_mu, pred_sigma, human_mu, human_sigma, legend=legend)
    return ax_img.figure


def _row_values(row, columns) -> np.ndarray | None:
    if all(c in row.index for c in columns):
        return row[list(columns)].to_numpy(dtype=float)
    return None


def distribution_panels(images, preds, humans=None, titles=None, ncols: int = 2):
    """A figure of ``image_distribution`` panels, one per image.

    ``preds``: DataFrame rows aligned with ``images`` holding ``p_bad .. p_excellent`` and optionally
    ``score``, ``std``. ``humans`` (default: ``preds``, e.g. the output of
    ``evaluate.join_predictions``): ``mu``, ``sigma`` and optionally ``q_bad .. q_excellent``.
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
    fig, axes = plt.subplots(nrows, 2 * ncols, figsize=(5.6 * ncols, 2.5 * nrows + 0.4), squeeze=False,
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
        pred_sigma = p.get("std")
        human_q = _row_values(h, LABEL_COLUMNS)
        human_mu, human_sigma = h.get("mu"), h.get("sigma")
        if human_q is None and human_mu is not None:
            from .soft_label import soft_labels

            human_q = soft_labels([min(max(human_mu, 1.0), 5.0)], [human_sigma], method="cdf")[0]
        title = titles[k] if titles is not None else None
        image_distribution(ax_img, ax_bars, images[k], probs, human_q, p.get("score"), pred_sigma,
                           human_mu, None if human_sigma is None or np.isnan(human_sigma) else human_sigma,
                           title, legend=False)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def score_scatter(pred, mos, ax=None, label: str | None = None):
    """Predicted score against human score with the fitted 4-parameter logistic; PLCC and SRCC in the title."""
    from . import metrics

    pred, mos = metrics.as_pair(pred, mos)
    fig, ax = _figure(ax, figsize=(4.6, 4.2))
    ax.scatter(pred, mos, s=12, alpha=0.6, color=MODEL_COLOR, edgecolors="none", label=label)
    params, ok = metrics.fit_logistic(pred, mos)
    if ok:
        x = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(x, metrics.logistic4(x, *params), color=ACCENT_COLOR, lw=1.8, label="logistic fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r_p, r_s = metrics.plcc(pred, mos), metrics.srcc(pred, mos)
    ax.set_title(f"PLCC {r_p:.3f} · SRCC {r_s:.3f} (n = {len(pred)})")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("human score")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def spread_calibration(pred_std, human_std, ax=None, bins: int = 8):
    """Predicted spread against human spread: points, the diagonal y = x, and the mean predicted spread
    in equal-count bins of the human spread (a calibration curve: on the diagonal when calibrated)."""
    from . import metrics

    pred_std, human_std = metrics.as_vector(pred_std, "pred_std"), metrics.as_vector(human_std, "human_std")
    metrics.same_length(pred_std=pred_std, human_std=human_std)
    fig, ax = _figure(ax, figsize=(4.6, 4.2))
    ax.scatter(human_std, pred_std, s=12, alpha=0.5, color=MODEL_COLOR, edgecolors="none", label="images")
    top = float(max(human_std.max(), pred_std.max(), 1e-3)) * 1.05
    ax.plot([0, top], [0, top], color="0.5", lw=1, ls="--", label="y = x")
    n_bins = int(min(bins, max(1, len(human_std) // 3)))
    order = np.argsort(human_std, kind="stable")
    groups = [g for g in np.array_split(order, n_bins) if len(g)]
    ax.plot([human_std[g].mean() for g in groups], [pred_std[g].mean() for g in groups], "o-",
            color=HUMAN_COLOR, lw=1.6, ms=4, label="binned mean")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("human spread (sigma, 1-5 scale)")
    ax.set_ylabel("predicted spread")
    ax.set_title(f"spread: mean human {human_std.mean():.2f}, predicted {pred_std.mean():.2f}")
    ax.legend(fontsize=8, loc="upper left")
    return fig


GRID_KINDS = ("best", "worst", "uncertain")


def select_predictions(score, pred_std, human_mu, kind: str = "best", n: int = 6) -> np.ndarray:
    """Indices of the ``n`` best (smallest |score - human mu|), worst (largest) or most uncertain
    (largest predicted spread) predictions; ties keep the input order."""
    score, human_mu = np.asarray(score, dtype=float), np.asarray(human_mu, dtype=float)
    if kind == "best":
        key = np.abs(score - human_mu)
    elif kind == "worst":
        key = -np.abs(score - human_mu)
    elif kind == "uncertain":
        key = -np.asarray(pred_std, dtype=float)
    else:
        raise DeqaError(f"unknown kind {kind!r}: use one of {', '.join(GRID_KINDS)}")
    return np.argsort(key, kind="stable")[: max(0, int(n))]


def prediction_grid(images, preds, humans=None, kind: str = "best", n: int = 6, ncols: int = 3):
    """Thumbnails of the best, worst or most uncertain predictions (see ``select_predictions``), each
    titled with predicted and human mu +- sigma. ``preds`` has ``score`` and ``std``; ``humans``
    (default ``preds``) has ``mu`` and ``sigma``; rows align with ``images``."""
    import matplotlib.pyplot as plt

    images = list(images)
    humans = preds if humans is None else humans
    if len(preds) != len(images) or len(humans) != len(images):
        raise DeqaError(f"prediction_grid: {len(images)} images, {len(preds)} prediction rows, "
                        f"{len(humans)} human rows; give one of each per image")
    pred_std = preds["std"].to_numpy(float) if "std" in preds.columns else np.full(len(preds), np.nan)
    chosen = select_predictions(preds["score"], pred_std, humans["mu"], kind, n)
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
        ax.set_title(f"pred {preds['score'].iloc[i]:.2f} ± {pred_std[i]:.2f}\n"
                     f"human {humans['mu'].iloc[i]:.2f} ± {h_sigma:.2f}", fontsize=8)
    fig.suptitle({"best": "best predictions", "worst": "worst predictions",
                  "uncertain": "most uncertain predictions"}[kind])
    fig.tight_layout()
    return fig


#: keys of a training log that are not curves
_LOG_META_KEYS = {"step", "epoch", "time", "elapsed", "wall_s", "seconds", "samples"}
_LOG_META_PREFIXES = ("val_n/",)  # how many images a validation number rests on: not a curve
_LOSS_KEYS = ("loss", "fid", "kl", "ce")


def training_curves(run_dir_or_log_path):
    """Training curves from a run's ``metrics.jsonl``: losses (``loss``, ``fid``, ``kl``, ``ce`` and any
    other ``*loss``), validation metrics (``val_*``), the learning rate, and any other numeric key, each
    against ``step``; a panel per group that is present."""
    import matplotlib.pyplot as plt

    rows = runlog.read_log(run_dir_or_log_path)
    if not rows:
        raise DeqaError(f"{runlog.log_path(run_dir_or_log_path)}: the training log is empty")
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and k not in _LOG_META_KEYS
                 and not k.startswith(_LOG_META_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool)]
    groups = {"training losses": [k for k in keys if not k.startswith("val_")
                                  and (k in _LOSS_KEYS or k.endswith("loss"))],
              "validation": [k for k in keys if k.startswith("val_")],
              "learning rate": [k for k in keys if k == "lr"]}
    groups["other"] = [k for k in keys if not any(k in g for g in groups.values())]
    groups = {name: ks for name, ks in groups.items() if ks}
    if not groups:
        raise DeqaError("the training log has no numeric values to plot besides the step")
    use_style()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    palette = (MODEL_COLOR, HUMAN_COLOR, ACCENT_COLOR, *LEVEL_COLORS)
    for ax, (name, ks) in zip(axes.flat, groups.items()):
        for j, key in enumerate(ks):
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            steps, values = np.array(pts, dtype=float).T
            ax.plot(steps, values, marker="o" if len(pts) < 30 else None, ms=3, lw=1.4,
                    color=palette[j % len(palette)], label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
