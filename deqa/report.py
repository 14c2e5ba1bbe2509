"""A report of a model's predictions that a reviewer can read without writing code: the table of
``python -m deqa evaluate`` with bootstrap intervals and the figures of chapter 05, per data set and
pooled, in a folder that opens in any browser with no server and no network. Explained at the end of
notebook 05 (``05_distribution_plots``).

    python -m deqa report PREDS META [META ...] --out REPORT_DIR [--compare OTHER --names A B]

``PREDS`` is read by ``deqa.predictions`` (the CSV of ``deqa score``, a score-only CSV from another
tool, DeQA-Score's evaluation output) and joined to the metadata by ``deqa.evaluate``; every figure
is drawn by ``deqa.plots``. The folder holds ``index.html`` (a jinja2 template, every string from the
inputs escaped), the figures as PNG (and SVG where they are vector), ``report.json`` (the numbers) and
a marker file saying that deqa wrote it. It is written to a temporary folder and moved into place
only when everything succeeded; an existing folder is replaced only when deqa wrote it. The same
inputs give the same bytes: no timestamp, the command and the versions are written instead.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError

#: the file that marks a folder as written by this command (a folder without it is never replaced)
MARKER = ".deqa-report"
MARKER_TEXT = "written by python -m deqa report; the next report with the same --out replaces this folder\n"
#: the correlations of the table, in the order shown
CORRELATIONS = ("plcc_logistic", "srcc", "krcc", "plcc")
#: the distribution gaps: the three DeQA-Score's cal_distribution_gap.py prints, in its order and under its
#: names, then the two on the five levels
GAPS = ("kl", "js_gaussian", "w2", "js_levels", "w1_levels")
HEADINGS = {"plcc_logistic": "PLCC (logistic)", "srcc": "SRCC", "krcc": "KRCC", "plcc": "PLCC (raw)",
            "kl": "KL", "js_gaussian": "JS", "w2": "WD", "js_levels": "JS (5 levels)", "w1_levels": "W1 (5 levels)"}
N_PANELS = 4  #: images per data set in the distribution panels
N_TILES = 8  #: images per grid of best, worst and most uncertain predictions


# ------------------------------------------------------------------------------------ the folder
def check_out_dir(out, inputs=()) -> Path:
    """``--out`` as a Path, checked before any work: not a file, not a folder that deqa did not write
    (one without ``MARKER`` that holds anything), not holding one of the ``inputs``, in a folder
    that can be written."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise DeqaError(f"--out {out} is a file; give a folder for the report")
    if out.is_dir() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise DeqaError(f"--out {out} exists and was not written by deqa report (no {MARKER} in it); "
                        "choose another folder, or empty it first")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DeqaError(f"--out {out}: cannot write in {parent}")
    if out.is_dir():
        inside = out.resolve()
        for item in inputs:
            if item is not None and inside in Path(item).resolve().parents:
                raise DeqaError(f"--out {out} holds one of the inputs ({item}); the report replaces that "
                                "folder: choose another")
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out``; a previous report there is moved aside first
    and removed after (readers never see half a report)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if out.exists():
        check_out_dir(out)  # written by deqa (or empty) still?
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------ the inputs
def _read(path, fmt: str, image_col, score_col, lower_better: bool, other: bool = False):
    """``deqa.predictions.read_predictions``; for the ``--compare`` file (``other``) the format is
    told from its content and the column options apply only when it is score-only too."""
    from .predictions import detect_format, read_predictions

    if other and detect_format(path) != "scores":
        image_col, score_col, lower_better = None, None, False
    return read_predictions(path, format=fmt, image_col=image_col, score_col=score_col,
                            lower_better=lower_better)


def _keys(joined: pd.DataFrame) -> pd.Series:
    return joined["dataset"].astype(str) + "\x00" + joined["image"].astype(str)


def _common(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of two joined tables that are the same metadata images, in the same order."""
    kb = pd.Series(np.arange(len(b)), index=_keys(b))
    ka = _keys(a)
    keep = ka.isin(kb.index).to_numpy()
    order = kb.loc[ka[keep]].to_numpy()
    return a[keep].reset_index(drop=True), b.iloc[order].reset_index(drop=True)


def _find_image(row, roots: dict, preds_dir: Path, image_root) -> str | None:
    """The image file of a joined row: the prediction's path as given, or beside the predictions
    file, or the metadata's path under ``--image-root`` or under the metadata file's folder."""
    candidates = [Path(str(row["pred_image"])), preds_dir / str(row["pred_image"])]
    if image_root is not None:
        candidates += [Path(image_root) / str(row["image"]), Path(image_root) / str(row["pred_image"])]
    root = roots.get(str(row["dataset"]))
    if root is not None:
        candidates.append(Path(root) / str(row["image"]))
    for path in candidates:
        with contextlib.suppress(OSError, ValueError):
            if path.is_file():
                return str(path)
    return None


# ---------------------------------------------------------------------------------- the numbers
def _cell(value, low=None, high=None, digits: int = 4) -> dict:
    """A table cell: the exact value (``data-value``) and its text, with the interval when given."""
    if value is None or not np.isfinite(value):
        return {"value": "", "text": "-", "interval": ""}
    interval = ""
    if low is not None and np.isfinite(low) and np.isfinite(high):
        interval = f"[{low:.3f}, {high:.3f}]"
    return {"value": repr(float(value)), "text": f"{value:.{digits}f}", "interval": interval}


def _table_rows(table: pd.DataFrame) -> list[dict]:
    from .evaluate import POOLED

    rows = []
    for name, row in table.iterrows():
        cells = [_cell(row.get(c), row.get(f"{c}_low"), row.get(f"{c}_high")) for c in CORRELATIONS]
        cells += [_cell(row.get(c)) for c in GAPS]
        rows.append({"name": str(name), "pooled": name == POOLED, "n": int(row["n"]), "cells": cells})
    return rows


def _compare_rows(a: pd.DataFrame, b: pd.DataFrame, n_boot: int, workers: int, names) -> list[dict]:
    """Per data set and pooled, on the images both models scored: each correlation of A and B and
    their paired difference A - B with its paired bootstrap interval."""
    from .evaluate import MIN_CORRELATION_N, POOLED, _pool_map

    groups = [(str(n), a.index[a["dataset"].astype(str) == n]) for n in dict.fromkeys(a["dataset"].astype(str))]
    if len(groups) > 1:
        groups.append((POOLED, a.index))
    tasks, usable = [], []
    for name, idx in groups:
        sa, sb, mu = (a.loc[idx, "score"].to_numpy(float), b.loc[idx, "score"].to_numpy(float),
                      a.loc[idx, "mu"].to_numpy(float))
        ok = len(idx) >= MIN_CORRELATION_N and min(np.ptp(sa), np.ptp(sb), np.ptp(mu)) > 0
        usable.append(ok)
        if ok:
            tasks += [(stat, sa, sb, mu, n_boot) for stat in CORRELATIONS]
    results = iter(_pool_map(_paired, tasks, workers))
    rows = []
    for (name, idx), ok in zip(groups, usable):
        cells = []
        for _stat in CORRELATIONS:
            value_a, value_b, diff, low, high = next(results) if ok else (np.nan,) * 5
            cells.append({"a": _cell(value_a), "b": _cell(value_b), "diff": _cell(diff, low, high),
                          "verdict": _verdict(low, high, names)})
        rows.append({"name": name, "pooled": name == POOLED, "n": len(idx), "cells": cells})
    return rows


def _paired(stat, a, b, mu, n_boot):
    from .metrics import paired_bootstrap

    result = paired_bootstrap(stat, a, b, mu, n_boot=max(n_boot, 1))
    return (*_both(stat, a, b, mu), result.estimate, result.low if n_boot else np.nan,
            result.high if n_boot else np.nan)


def _both(stat, a, b, mu):
    from . import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if stat == "plcc_logistic":
            return metrics.plcc_logistic_checked(a, mu)[0], metrics.plcc_logistic_checked(b, mu)[0]
        f = getattr(metrics, stat)
        return f(a, mu), f(b, mu)


def _verdict(low, high, names) -> str:
    """Which model the interval of A - B favours, or a tie when it holds 0."""
    if low is None or not np.isfinite(low):
        return ""
    if low > 0:
        return f"{names[0]} higher"
    if high < 0:
        return f"{names[1]} higher"
    return "a tie (the interval holds 0)"


# --------------------------------------------------------------------------------- the figures
class _Figures:
    """Collects the figures of the page: each drawn, saved (PNG, and SVG when vector) and closed."""

    def __init__(self, folder: Path, bar):
        self.folder, self.bar, self.items, self.skipped = folder, bar, [], []

    def add(self, name: str, title: str, caption: str, draw, vector: bool = True, listing=None) -> None:
        import matplotlib.pyplot as plt

        from . import plots

        try:
            fig = draw()
        except DeqaError as exc:  # too little of what the figure needs: said on the page, not a failure
            self.skip(title, str(exc))
            return
        try:
            plots.savefig(fig, name, svg=vector, directory=self.folder)
        finally:
            plt.close(fig)
        self.items.append({"name": name, "title": title, "caption": caption, "listing": listing or [],
                           "png": f"figures/{name}.png", "svg": f"figures/{name}.svg" if vector else None})
        self.bar.update(1)

    def skip(self, title: str, why: str) -> None:
        self.skipped.append({"title": title, "why": why})
        self.bar.update(1)


def _panel_rows(joined: pd.DataFrame, k: int = N_PANELS) -> pd.DataFrame:
    """``k`` images of a data set at evenly spaced ranks of the human mu, low to high quality."""
    order = np.argsort(joined["mu"].to_numpy(float), kind="stable")
    picks = order[np.unique(np.round(np.linspace(0, len(order) - 1, min(k, len(order)))).astype(int))]
    return joined.iloc[picks].reset_index(drop=True)


def _panel_title(row) -> str:
    from .plots import plain

    text = plain(Path(str(row["image"])).name, 34)
    if isinstance(row.get("family"), str):
        level = row.get("level")
        strength = f", strength {int(level)}" if np.isfinite(level) and level > 0 else ""
        text += f"\n{plain(row['family'], 30)}{strength}"
    return text


def _listed(row) -> dict:
    """One tile of a grid, for the list under it: the image as the predictions name it."""
    return {"image": str(row["pred_image"]), "dataset": str(row["dataset"]),
            "pred": f"{row['score']:.3f}", "human": f"{row['mu']:.3f}"}


def _fitted_scores(joined: pd.DataFrame) -> pd.Series:
    """A score-only model's score mapped to 1-5 by each data set's fitted logistic (what the grids
    rank by when the scores are on another scale)."""
    from . import metrics

    out = pd.Series(np.nan, index=joined.index)
    for _name, idx in joined.groupby("dataset", sort=False).indices.items():
        part = joined.iloc[idx]
        params, ok = metrics.fit_logistic(part["score"], part["mu"]) if len(part) >= 2 else (None, False)
        out.iloc[idx] = metrics.logistic4(part["score"], *params) if ok else np.nan
    return out


def _draw_figures(figures: _Figures, joined, pair, names, table, on_levels: bool, score_label: str,
                  images: dict, n_boot: int) -> None:
    """Every figure of the page, or the line saying why it is not drawn. ``pair``: the two models'
    rows on their common images (drawn together), or (joined, None)."""
    from . import plots, raters

    common, other = pair
    drawn = joined if other is None else common  # the figures that overlay both models use the common images
    from .evaluate import distortion_table
    from .formats import HISTOGRAM

    sets = list(dict.fromkeys(joined["dataset"].astype(str)))
    pooled_note = " The last panel pools every data set, each against its own human mu on 1-5." if len(sets) > 1 else ""
    figures.add("scatter", "Predicted against human score",
                "Each point is an image: the prediction against the human mu (the MOS rescaled to 1-5 per data "
                "set). The curve is the 4-parameter logistic fitted to them, the published protocol: PLCC "
                "(logistic) measures how close the points lie to it, SRCC how well their order agrees."
                + pooled_note + (" The second model's points and curve are drawn in orange." if other is not None
                                 else ""),
                lambda: plots.scatter_panels(drawn, other, names, xlabel=score_label))
    if on_levels:
        figures.add("density", "How the scores spread over the scale",
                    "The density of the human mu (dashed) and of the predicted scores, per data set. A model "
                    "that squeezes the scale draws a narrower curve than the humans'; one that is biased, a "
                    "shifted one.", lambda: plots.score_density(drawn, other, names))
    else:
        figures.skip("How the scores spread over the scale", "score-only predictions on their own scale: "
                     "a density on the 1-5 scale needs scores on it")
    known = drawn[np.isfinite(drawn["sigma"].to_numpy(float))] if "std" in drawn.columns else drawn.iloc[:0]
    if on_levels and len(known):
        study = {}
        have = all(c in known.columns for c in HISTOGRAM) and "n_ratings" in known.columns
        if have:
            for name, part in [*((n, known[known["dataset"].astype(str) == n]) for n in sets), ("pooled", known)]:
                r = raters.repeated_study_agreement(part[list(HISTOGRAM)], part["n_ratings"])
                if np.isfinite(r):
                    study[name] = r
        figures.add("calibration", "Predicted against human spread",
                    "Each point is an image: the spread of the predicted levels against the human sigma. A "
                    "calibrated model sits on the diagonal (slope 1); the binned means show where it does not. "
                    + ("The dotted line is where a perfect prediction of each image's own spread would lie on "
                       "average: a repeated study with as many raters would agree with this one's sigma only at r "
                       "(measured by splitting each image's ratings in two, stepped up to all raters), and this "
                       "noise leaves even a perfect prediction a slope of r and a correlation of sqrt(r), both in "
                       "the panel's title. In the pooled panel r also counts what differs between the data sets' "
                       "raters, which a model that sees only the image cannot know."
                       if study else "No rating histograms in the metadata: the agreement a repeated study "
                       "would reach cannot be computed."),
                    lambda: plots.calibration_panels(known, other if other is None else
                                                     other[np.isfinite(other["sigma"].to_numpy(float))],
                                                     names, study_r=study))
    else:
        figures.skip("Predicted against human spread", "no predicted spread (score-only predictions)" if not on_levels
                     else "the metadata has no human std for these images")
    dist = distortion_table(joined, n_boot=n_boot)
    if len(dist) and dist["srcc"].notna().any():
        overall = {str(n): float(v) for n, v in table["srcc"].items()}
        figures.add("distortions", "SRCC per distortion family and strength",
                    "Inside each distortion family (its pristine images included, where the data set has "
                    "them) and each strength: the SRCC on the group's images (dot) and the spread of its "
                    f"bootstrap resamples ({n_boot} resamples of the group's images; box: middle half, "
                    "whiskers: the 95% interval). Overlapping intervals cannot tell two families apart. Inside "
                    "one strength the images cover a narrower range of quality than the whole set, and a narrow "
                    "range is harder to rank: compare groups of one kind only.",
                    lambda: plots.distortion_srcc(dist, overall))
    else:
        figures.skip("SRCC per distortion family and strength", "no data set with distortion families: only "
                     "the synthetic sets and KADID-10k, TID2013 / TID2008 and CSIQ (by their file names) have them")
    if on_levels:
        for number, name in enumerate(sets, start=1):
            rows = _panel_rows(joined[joined["dataset"].astype(str) == name])
            paths_ = [images.get(i) for i in rows["_row"]]
            found = any(p is not None for p in paths_)
            with_hist = "c1" in rows.columns and rows["c1"].notna().any()
            hist = " and the raters' own histogram (diamonds)" if with_hist else ""
            figures.add(f"distributions_{number}", f"Predicted levels against the human ones: {name}",
                        f"{len(rows)} images of {name} at evenly spaced ranks of the human mu, lowest first: the "
                        "five predicted level probabilities (blue) beside the human soft label (grey, the training "
                        f"target built from mu and sigma){hist}, and the Gaussian of each side."
                        + ("" if found else " No image file was found: the levels are drawn without thumbnails."),
                        lambda rows=rows, paths_=paths_, found=found: plots.distribution_panels(
                            paths_ if found else None, rows, titles=[_panel_title(r) for _, r in rows.iterrows()],
                            ncols=2 if found else 4),
                        vector=not found)
    else:
        figures.skip("Predicted levels against the human ones", "score-only predictions have no level probabilities")
    if not images:
        for kind in ("best", "worst", "most uncertain"):
            why = ("score-only predictions have no spread" if kind == "most uncertain" and not on_levels else
                   "no image file was found (give --image-root where the images are): the grids show thumbnails")
            figures.skip(f"The {kind} predictions", why)
        return
    grid = joined.copy()
    if not on_levels:  # ranked by the score mapped to 1-5; the tiles also give it as the file has it
        grid["score"] = _fitted_scores(joined)
        grid = grid[np.isfinite(grid["score"].to_numpy(float))]
    grid = grid.reset_index(drop=True)
    paths_ = [images.get(i) for i in grid["_row"]]
    std = grid["std"].to_numpy(float) if "std" in grid.columns else np.full(len(grid), np.nan)
    kinds = [("best", "the smallest |score - human mu|"), ("worst", "the largest |score - human mu|"),
             ("uncertain", "the widest predicted spread")]
    for kind, what in kinds:
        if kind == "uncertain" and not on_levels:
            figures.skip("The most uncertain predictions", "score-only predictions have no spread")
            continue
        scale = "" if on_levels else " (the score mapped to 1-5 by the data set's fitted logistic)"
        figures.add(f"grid_{kind}", f"The {'most uncertain' if kind == 'uncertain' else kind} predictions",
                    f"The {N_TILES} images with {what}{scale}, over every data set; each tile gives the data set, "
                    "the distortion family and strength where known, the prediction and the human mu +- sigma.",
                    lambda kind=kind: plots.prediction_grid(paths_, grid, kind=kind, n=N_TILES, ncols=4),
                    vector=False, listing=[_listed(grid.iloc[int(i)]) for i in plots.select_predictions(
                        grid["score"], std, grid["mu"], kind, N_TILES)])


# ------------------------------------------------------------------------------------- the page
def _versions() -> str:
    import matplotlib
    import scipy
    import seaborn

    from . import __version__

    return (f"deqa {__version__} (Python {sys.version.split()[0]}, numpy {np.__version__}, scipy "
            f"{scipy.__version__}, pandas {pd.__version__}, matplotlib {matplotlib.__version__}, seaborn "
            f"{seaborn.__version__})")


def _render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template("report.html").render(**context)


def shown_command(argv) -> str:
    """The command line as typed, with ``--out`` shown as this folder: the page does not depend on
    where it was written, so the same inputs give the same bytes."""
    words, skip = ["python", "-m", "deqa", *argv], False
    shown = []
    for word in words:
        if skip:
            shown.append("<this folder>")
            skip = False
            continue
        if word == "--out":
            skip = True
        elif word.startswith("--out="):
            word = "--out=<this folder>"
        shown.append(word)
    return " ".join(w if w == "<this folder>" or w.endswith("=<this folder>") else shlex.quote(w) for w in shown)


def _compare(joined, other_path, meta, split, names, n_boot, workers, preds_name, options):
    """Read and join the second model's predictions: (A's rows, B's rows) on the images both scored,
    B's predictions, the comparison rows of the page and the notes it adds."""
    from . import evaluate

    other_preds = _read(Path(other_path), "auto", *options, other=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        other_joined = evaluate.join_predictions(other_preds, meta, split=split, source=str(other_path))
    mine, theirs = _common(joined, other_joined)
    if len(mine) == 0:
        raise DeqaError(f"{other_path}: none of its predictions is an image that {preds_name} scored "
                        f"too (0 of {len(other_preds)} in common); nothing to compare")
    notes = []
    if len(mine) < len(joined) or len(theirs) < len(other_joined):
        notes.append(f"the comparison uses the {len(mine)} images both models scored ({len(joined)} "
                     f"scored by {names[0]}, {len(other_joined)} by {names[1]})")
    return mine, theirs, other_preds, _compare_rows(mine, theirs, n_boot, workers, names), notes


def _locate_images(joined, on_levels: bool, roots: dict, preds_dir: Path, image_root, progress: bool) -> dict:
    """{row: image file} for the rows a figure may show (the panels' and the grids'), where found."""
    from .setup import progress as progress_bar

    chosen = set(_grid_rows(joined, on_levels))
    if on_levels:
        for name in dict.fromkeys(joined["dataset"].astype(str)):
            chosen.update(_panel_rows(joined[joined["dataset"].astype(str) == name])["_row"].tolist())
    images = {}
    for i in progress_bar(sorted(chosen), desc="finding images", disable=not progress, unit="image"):
        path = _find_image(joined.iloc[i], roots, preds_dir, image_root)
        if path is not None:
            images[i] = path
    return images


def _new_folder(out: Path) -> Path:
    """A temporary folder beside ``out`` (the same file system, so that it can be renamed into place),
    with the permissions a new folder gets."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    (tmp / "figures").mkdir()
    return tmp


def _described(preds, path) -> dict:
    """What the page says about a predictions file: path, rows, format, description, scale."""
    return {"path": str(path), "rows": len(preds), **{k: preds.attrs.get(k) for k in ("format", "description",
                                                                                      "scale")}}


def build(preds_path, meta_paths, out, other_path=None, names=None, preds_format: str = "auto",
          image_col=None, score_col=None, lower_better: bool = False, meta_format: str = "auto",
          split=None, n_boot: int = 1000, image_root=None, workers: int = 1, progress: bool = True,
          command: str | None = None) -> dict:
    """Write the report of ``preds_path`` against ``meta_paths`` to the folder ``out`` (see the module
    docstring); ``other_path``: a second model's predictions, compared on the images both scored.
    Returns what was written: ``{"out", "figures", "skipped", "notes", "bytes"}``. Warnings (partial
    matches, undefined correlations) go to stderr as well as into the page."""
    import matplotlib

    matplotlib.use("Agg")
    from . import evaluate
    from .formats import distortions
    from .setup import progress as progress_bar

    if n_boot < 0:
        raise DeqaError(f"--n-boot must be 0 or more, got {n_boot}")
    names = tuple(names) if names else ("A", "B")
    if len(names) != 2 or not all(str(n).strip() for n in names):
        raise DeqaError("--names takes two non-empty names, the model of PREDS first")
    out = check_out_dir(out, [preds_path, other_path, *meta_paths])
    options = (image_col, score_col, lower_better)
    preds = _read(Path(preds_path), preds_format, *options)
    meta = evaluate.read_all_metadata(meta_paths, meta_format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # evaluate.notes says it once, below
        joined = evaluate.join_predictions(preds, meta, split=split, source=str(preds_path))
        table = evaluate.table_of(joined, pooled=True, n_boot=n_boot, workers=workers)
    evaluate.check_some_match(table, preds, preds_path, meta_paths, split)
    notes = evaluate.notes(table, preds)
    on_levels = bool(preds.attrs.get("on_levels"))
    mine, theirs, other_preds, compare_rows = joined, None, None, []
    if other_path is not None:
        mine, theirs, other_preds, compare_rows, more = _compare(joined, other_path, meta, split, names, n_boot,
                                                                 workers, preds_path, options)
        notes += more
        if not (on_levels and other_preds.attrs.get("on_levels")):
            theirs = None  # two scales that need not agree: one axis cannot hold both
            notes.append(f"{names[1]}'s predictions are not overlaid in the figures: both models must give "
                         "scores on the 1-5 level scale (the table compares them all the same)")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)

    joined = joined.assign(_row=np.arange(len(joined)))
    if not on_levels:
        joined["score_read"] = -joined["score"] if lower_better else joined["score"]
    found = distortions(joined)
    joined["family"], joined["level"] = found["family"].to_numpy(), found["level"].to_numpy(float)
    images = _locate_images(joined, on_levels, meta.attrs.get("roots", {}), Path(preds_path).parent, image_root,
                            progress)
    score_label = ("predicted score" if on_levels else f"predicted score ({'negated ' if lower_better else ''}"
                   f"{preds.attrs.get('score_column', 'score')}, its own scale)")
    tmp = _new_folder(out)
    try:
        steps = 7 + (len(set(joined["dataset"])) if on_levels else 1)
        with progress_bar(total=steps, desc="drawing figures", disable=not progress) as bar:
            figures = _Figures(tmp / "figures", bar)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                _draw_figures(figures, joined, (mine, theirs), names, table, on_levels, score_label, images, n_boot)
        summary = evaluate.table_json(table, preds)
        if compare_rows:
            summary["compare"] = {"names": list(names), "other": str(other_path), "rows": compare_rows}
        context = {
            "title": f"Predictions report: {Path(str(preds_path)).name}", "preds": _described(preds, preds_path),
            "other": None if other_path is None else _described(other_preds, other_path),
            "names": names, "metadata": meta.attrs.get("files", []), "split": split,
            "matched": int(table.loc[[i for i in table.index if i != evaluate.POOLED], "n"].sum()),
            "headings": [HEADINGS[c] for c in CORRELATIONS], "gap_headings": [HEADINGS[c] for c in GAPS],
            "columns": list(CORRELATIONS) + list(GAPS), "rows": _table_rows(table), "n_boot": n_boot,
            "on_levels": on_levels, "compare_rows": compare_rows, "notes": notes,
            "figures": figures.items, "skipped": figures.skipped, "command": command or "(called from Python)",
            "versions": _versions(), "pooled_name": evaluate.POOLED,
        }
        (tmp / "index.html").write_text(_render(context), encoding="utf-8", errors="surrogateescape")
        (tmp / "report.json").write_text(json.dumps(_plain_json(summary), indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8", errors="surrogateescape")
        (tmp / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": out, "figures": [f["name"] for f in figures.items], "skipped": figures.skipped,
            "notes": notes, "bytes": written}


def _grid_rows(joined: pd.DataFrame, on_levels: bool) -> set:
    """The rows the grids may show (the best, worst and most uncertain ones)."""
    from .plots import select_predictions

    std = joined["std"].to_numpy(float) if "std" in joined.columns else np.full(len(joined), np.nan)
    score = joined["score"] if on_levels else _fitted_scores(joined)
    ok = np.isfinite(np.asarray(score, dtype=float))
    rows = joined["_row"].to_numpy()[ok]
    score, std, mu = np.asarray(score, dtype=float)[ok], std[ok], joined["mu"].to_numpy(float)[ok]
    kinds = ("best", "worst", "uncertain") if on_levels else ("best", "worst")
    return {int(rows[i]) for kind in kinds for i in select_predictions(score, std, mu, kind, N_TILES)}


def _plain_json(value):
    """Numbers JSON can hold (NaN -> null), numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ------------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    from .evaluate import add_prediction_arguments

    parser.add_argument("preds", metavar="PREDS", help="predictions: `deqa score` CSV, score-only CSV or "
                        "DeQA-Score's evaluation output (JSON lines)")
    parser.add_argument("meta", metavar="META", nargs="+", help="metadata file(s) of the data set(s)")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder to write (replaced only "
                        "if deqa report wrote it)")
    add_prediction_arguments(parser)
    parser.add_argument("--compare", metavar="OTHER", default=None, help="a second model's predictions: "
                        "paired differences of every correlation on the images both scored")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), default=None,
                        help="names of the two models (default: A and B)")
    parser.add_argument("--n-boot", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for the intervals (default 1000; 0: none)")
    parser.add_argument("--image-root", default=None, metavar="DIR", help="folder the metadata's image paths "
                        "start from (default: the predictions' paths, then each metadata file's folder)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes for the bootstrap (default: the CPU cores, at most 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from .evaluate import default_workers

    if args.names and args.compare is None:
        raise DeqaError("--names names the two models of --compare; give --compare OTHER too")
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise DeqaError(f"--workers must be at least 1, got {workers}")
    result = build(args.preds, args.meta, args.out, other_path=args.compare, names=args.names,
                   preds_format=args.preds_format, image_col=args.image_col, score_col=args.score_col,
                   lower_better=args.lower_better, meta_format=args.format, split=args.split,
                   n_boot=args.n_boot, image_root=args.image_root, workers=workers,
                   progress=not args.no_progress, command=shown_command(getattr(args, "_argv", sys.argv[1:])))
    count = len(result["figures"])
    print(f"report -> {result['out'] / 'index.html'} ({count} figure{'' if count == 1 else 's'}, "
          f"{result['bytes'] / 1e6:.1f} MB)")
    return 0
