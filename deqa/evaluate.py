"""How a model's predictions compare with the human labels, per data set: one evaluation path for the
``evaluate`` command, training validation, the ablation and the notebooks. Explained in notebook 05
(``05_distribution_plots``).

    python -m deqa evaluate PREDS_CSV META [META ...] [--split test] [--json]

Predictions (``score, std, p_bad .. p_excellent``, from ``python -m deqa score``) are matched to their
metadata rows by image path; the human side is each data set's ``mu, sigma, q_bad .. q_excellent``
(``deqa.data.to_levels``: the MOS rescaled to [1, 5] on the data set's whole table).
``per_dataset_table`` turns such a joined table into one row of ``deqa.metrics`` numbers per group.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .errors import DeqaError, first_line
from .formats import raise_first
from .levels import HUMAN_COLUMNS, LABEL_COLUMNS, NATIVE_STD, PROB_COLUMNS
from .metrics import GAP_COLUMNS, distribution_gaps, krcc, plcc, plcc_logistic_checked, srcc

#: Columns of ``per_dataset_table``, in order (the index is the data set, or the group, name).
TABLE_COLUMNS = ("n", "plcc", "plcc_logistic", "srcc", "krcc", *GAP_COLUMNS)

#: fewest images a group's correlations are given for (any two distinct points correlate perfectly)
MIN_CORRELATION_N = 3

#: how far a row of p_bad .. p_excellent may sum from 1 (the CSV keeps 6 decimals)
PROB_SUM_TOLERANCE = 1e-3


# --------------------------------------------------------------------------------- matching images
def _path_key(path) -> str:
    """A path as '/'-joined components, without a root or '.' parts (so suffixes compare)."""
    parts = PurePosixPath(str(path).replace("\\", "/")).parts
    return "/".join(p for p in parts if p not in ("/", "."))


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


# ------------------------------------------------------------------------------------- joining
def _check_predictions(preds: pd.DataFrame, source: str) -> None:
    """One-line DeqaError naming ``source`` and the row (1 = the first data row) for a missing column,
    a missing or non-numeric value, a negative ``std`` or ``p_*`` values that are not probabilities."""
    missing = [c for c in ("image", "score") if c not in preds.columns]
    if missing:
        raise DeqaError(f"{source}: missing column(s) {missing}; expected image, score, std, "
                        f"{', '.join(PROB_COLUMNS)}")
    numeric = ["score"] + [c for c in ("std", *PROB_COLUMNS) if c in preds.columns]
    values = preds[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    images = preds["image"]
    raise_first(~np.all(np.isfinite(values), axis=1), source, images,
                f"a missing or non-numeric value in {numeric}")
    if "std" in numeric:
        std = values[:, numeric.index("std")]
        raise_first(std < 0, source, images, "std is negative", values=std)
    cols = [c for c in PROB_COLUMNS if c in numeric]
    if cols:
        p = values[:, [numeric.index(c) for c in cols]]
        bad = (p < 0).any(axis=1) | (p > 1).any(axis=1)
        if len(cols) == len(PROB_COLUMNS):
            bad |= np.abs(p.sum(axis=1) - 1) > PROB_SUM_TOLERANCE
        if bad.any():
            shown = ", ".join(f"{c} = {v:g}" for c, v in zip(cols, p[np.flatnonzero(bad)[0]]))
            raise_first(bad, source, images, f"{', '.join(cols)} are not probabilities ({shown}; each must "
                        "be in [0, 1] and together they must sum to 1)")


def human_labels(meta: pd.DataFrame, method: str = "official", reference: bool | None = None) -> pd.DataFrame:
    """``meta`` with each data set's human ``mu, sigma, q_bad .. q_excellent`` (``deqa.data.to_levels``
    on the rows given: keep a data set's every row so its min/max defines the scale; ``reference``:
    which label, None for the package default)."""
    from . import data

    derived = [c for c in HUMAN_COLUMNS if c in meta.columns]
    plain = meta.drop(columns=derived).reset_index(drop=True)
    plain.attrs = dict(meta.attrs)
    return data.to_levels(plain, method=method, reference=reference)


def join_predictions(preds_df: pd.DataFrame, meta_df: pd.DataFrame, split: str | None = None,
                     source: str = "predictions") -> pd.DataFrame:
    """Predictions joined to their metadata rows, one row per matched image.

    Columns: the metadata's (``image, mos, dataset, split, ...``, its native ``std`` renamed
    ``mos_std``), the human ``mu, sigma, q_bad .. q_excellent`` (``human_labels``), then the
    prediction's ``pred_image`` (its path) and ``score, std, p_bad .. p_excellent`` (those present).
    ``split`` keeps only that split (the rescaling still uses every row of a data set). Images are
    matched as ``match_images`` says; nothing is dropped silently: ``.attrs["missing_predictions"]``
    maps each data set to its images without a prediction and ``.attrs["unmatched_predictions"]``
    lists the predictions matching no image (or several equally). Two predictions for one image
    raise DeqaError.
    """
    _check_predictions(preds_df, source)
    need = [c for c in ("image", "mos", "std", "dataset") if c not in meta_df.columns]
    if need:
        raise DeqaError(f"metadata: missing column(s) {need}; expected image, mos, std, dataset, split")
    meta = human_labels(meta_df).rename(columns={"std": NATIVE_STD})
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
    pred_part = preds.loc[matched, pred_cols].reset_index(drop=True).rename(columns={"image": "pred_image"})
    for col in pred_part.columns[1:]:
        pred_part[col] = pd.to_numeric(pred_part[col])
    joined = pd.concat([meta.iloc[index[matched]].reset_index(drop=True), pred_part], axis=1)
    joined.attrs["missing_predictions"] = missing
    joined.attrs["unmatched_predictions"] = preds["image"][~matched].astype(str).tolist()
    return joined


# ---------------------------------------------------------------------------------- the table
def _group_row(part: pd.DataFrame) -> tuple[dict, bool, str | None]:
    """The metrics of one group's rows, whether the logistic fit converged, and why the correlations
    are undefined (None when they are not)."""
    score, mu = part["score"].to_numpy(float), part["mu"].to_numpy(float)
    row, ok, undefined = {"n": len(part)}, True, None
    if len(part) < MIN_CORRELATION_N:
        undefined = f"too few images to correlate (n = {len(part)}, at least {MIN_CORRELATION_N} needed)"
    elif np.ptp(score) == 0:
        undefined = "every prediction is the same: correlations are undefined"
    elif np.ptp(mu) == 0:
        undefined = "every human score is the same: correlations are undefined"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a NaN in the table says it already
            row.update(plcc=plcc(score, mu), srcc=srcc(score, mu), krcc=krcc(score, mu))
            row["plcc_logistic"], ok = plcc_logistic_checked(score, mu)
    known = np.isfinite(part["sigma"].to_numpy(float))
    if "std" in part.columns and known.any():
        rows = part[known]
        has_probs = all(c in rows.columns for c in (*PROB_COLUMNS, *LABEL_COLUMNS))
        gaps = distribution_gaps(rows["score"], rows["std"], rows["mu"], rows["sigma"],
                                 rows[list(PROB_COLUMNS)] if has_probs else None,
                                 rows[list(LABEL_COLUMNS)] if has_probs else None)
        row.update(gaps.attrs["mean"])
    return row, ok, undefined


def per_dataset_table(table: pd.DataFrame, by: str = "dataset") -> pd.DataFrame:
    """One row per group of ``by`` (the index, in order of appearance): n, PLCC, PLCC after the
    logistic, SRCC, KRCC of ``score`` against the human ``mu``, and - for the rows with a known human
    ``sigma``, when the table has the predicted ``std`` - the mean distribution gaps (Gaussian KL and
    W2; JS and W1 of the five-level ``p_*`` against ``q_*`` when both are there).

    Correlations are NaN for a group of fewer than ``MIN_CORRELATION_N`` images or with constant
    predictions (or human scores): ``.attrs["undefined"]`` maps such a group to the reason. A group
    whose logistic fit does not converge gets the raw PLCC in ``plcc_logistic`` and its name in
    ``.attrs["logistic_fallback"]``."""
    rows, fallback, undefined = {}, [], {}
    for name, idx in table.groupby(by, sort=False).indices.items():
        rows[str(name)], ok, why = _group_row(table.iloc[idx])
        if not ok:
            fallback.append(str(name))
        if why:
            undefined[str(name)] = why
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(TABLE_COLUMNS))
    out.index.name = by
    out.attrs["logistic_fallback"] = fallback
    out.attrs["undefined"] = undefined
    return out


def evaluate_table(preds_df: pd.DataFrame, meta_df: pd.DataFrame, split: str | None = None,
                   source: str = "predictions") -> pd.DataFrame:
    """``per_dataset_table`` of ``join_predictions``: one row per data set (the index) with
    ``TABLE_COLUMNS``, on the 1-5 level scale. ``preds_df``: the output of ``python -m deqa score``;
    ``meta_df``: our metadata schema. A data set with no prediction at all still gets its row
    (n = 0). ``.attrs`` carries ``missing_predictions`` and ``unmatched_predictions`` from
    ``join_predictions``, ``logistic_fallback`` and ``undefined`` from ``per_dataset_table``:
    nothing is dropped silently."""
    joined = join_predictions(preds_df, meta_df, split=split, source=source)
    table = per_dataset_table(joined)
    for name in table.attrs["logistic_fallback"]:
        warnings.warn(f"data set {name!r}: the logistic fit did not converge; plcc_logistic is the "
                      "raw PLCC", RuntimeWarning, stacklevel=2)
    for name, why in table.attrs["undefined"].items():
        warnings.warn(f"data set {name!r}: {why}", RuntimeWarning, stacklevel=2)
    missing = joined.attrs["missing_predictions"]
    absent = [name for name in missing if name not in table.index]
    if absent:
        attrs = dict(table.attrs)
        table = pd.concat([table, pd.DataFrame({"n": 0}, index=pd.Index(absent, name="dataset"))])
        table.attrs.update(attrs)
    table["n"] = table["n"].astype(int)
    table.index.name = "dataset"
    table.attrs["missing_predictions"] = {k: v for k, v in missing.items() if v}
    table.attrs["unmatched_predictions"] = joined.attrs["unmatched_predictions"]
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
    path = Path(path)
    if not path.is_file():
        raise DeqaError(f"{path}: predictions file not found")
    try:
        # file names that are not valid UTF-8 were written by `score` with their original bytes
        return pd.read_csv(path, encoding_errors="surrogateescape")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: cannot read the predictions CSV ({first_line(exc)})") from None


def _read_all_metadata(paths_, fmt: str) -> pd.DataFrame:
    """Read and stack the metadata files, each data set keeping its scale facts (``data.combine``)."""
    from . import data

    tables = [data.read_metadata(p, format=fmt) for p in paths_]
    return data.combine(tables, check_overlap=False) if len(tables) > 1 else tables[0]


_HEADERS = {"plcc": "PLCC", "plcc_logistic": "PLCC-logistic", "srcc": "SRCC", "krcc": "KRCC", "kl": "KL",
            "w2": "W2", "js_gaussian": "JS-Gaussian", "js_levels": "JS-levels", "w1_levels": "W1-levels"}


def format_table(table: pd.DataFrame) -> str:
    shown = table.copy()
    shown.columns = [_HEADERS.get(c, c) for c in shown.columns]
    return shown.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")


def _check_some_match(table: pd.DataFrame, preds: pd.DataFrame, args) -> None:
    """A DeqaError when no prediction matched a metadata image (a header-only file, the wrong META)."""
    if int(table["n"].sum()) > 0:
        return
    if preds.empty:
        raise DeqaError(f"{args.preds}: no predictions (the file has a header only)")
    split = f" (split {args.split!r})" if args.split else ""
    examples = ", ".join(table.attrs["unmatched_predictions"][:2])
    raise DeqaError(f"none of the {len(preds)} predictions in {args.preds} matches an image of "
                    f"{', '.join(map(str, args.meta))}{split} (e.g. {examples}): wrong metadata file?")


def _notes(table: pd.DataFrame, preds: pd.DataFrame) -> list[str]:
    """What the table alone does not say: images without a prediction, predictions matching nothing,
    groups whose correlations are undefined, logistic fits that fell back, scores off the 1-5 scale."""
    notes = [f"{len(images)} image(s) of {name!r} have no prediction (e.g. {', '.join(images[:3])})"
             for name, images in table.attrs["missing_predictions"].items()]
    unmatched = table.attrs["unmatched_predictions"]
    if unmatched:
        notes.append(f"{len(unmatched)} prediction(s) match no metadata image (e.g. {', '.join(unmatched[:3])})")
    notes += [f"{name}: {why}" for name, why in table.attrs["undefined"].items()]
    fallback = table.attrs["logistic_fallback"]
    if fallback:
        notes.append(f"the logistic fit did not converge for {', '.join(fallback)}: PLCC-logistic is the raw PLCC")
    score = pd.to_numeric(preds["score"]).to_numpy(float)
    if len(score) and (score.min() < 1 - 1e-6 or score.max() > 5 + 1e-6):
        notes.append(f"scores range from {score.min():g} to {score.max():g}, outside the 1-5 level scale "
                     "the distribution gaps assume")
    return notes


def run(args) -> int:
    preds = _read_predictions(args.preds)
    meta = _read_all_metadata(args.meta, args.format)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallbacks are reported below
        table = evaluate_table(preds, meta, split=args.split, source=str(args.preds))
    _check_some_match(table, preds, args)
    missing = table.attrs["missing_predictions"]
    if args.json:
        records = [{"dataset": name, **{k: (None if pd.isna(v) else (int(v) if k == "n" else float(v)))
                                        for k, v in row.items()}}
                   for name, row in table.iterrows()]
        print(json.dumps({"datasets": records,
                          "missing_predictions": {k: len(v) for k, v in missing.items()},
                          "missing_examples": {k: v[:5] for k, v in missing.items()},
                          "unmatched_predictions": table.attrs["unmatched_predictions"],
                          "logistic_fallback": table.attrs["logistic_fallback"],
                          "undefined": table.attrs["undefined"]}, indent=2))
        return 0
    print(format_table(table))
    print("KL = Gaussian KL(human || predicted); JS-Gaussian = the published Gaussian 'JS' (KL to a moment-matched\n"
          "midpoint), JS-levels = Jensen-Shannon of the five-level distributions, both in nats; W1, W2 in level units")
    for note in _notes(table, preds):
        print(f"note: {note}")
    return 0
