"""How a model's predictions compare with the human labels, per data set: one evaluation path for the
``evaluate`` command, training validation, the ablation and the notebooks. Explained in notebook 05
(``05_distribution_plots``).

    python -m deqa evaluate PREDS META [META ...] [--split test] [--n-boot 1000] [--json]

Predictions (read by ``deqa.predictions``: the CSV of ``python -m deqa score``, score-only files,
DeQA-Score's evaluation output) are matched to their metadata rows by image path; the human side is
each data set's ``mu, sigma, q_bad .. q_excellent`` (``deqa.data.to_levels``: the MOS rescaled to
[1, 5] on the data set's whole table). ``per_dataset_table`` turns such a joined table into one row of
``deqa.metrics`` numbers per group, and a ``pooled`` row of all groups together; ``python -m deqa
report`` draws the same numbers.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .errors import DeqaError, first_line
from .levels import HUMAN_COLUMNS, LABEL_COLUMNS, NATIVE_STD, PROB_COLUMNS
from .metrics import (BOOTSTRAP_STATISTICS, GAP_COLUMNS, bootstrap, bootstrap_all, distribution_gaps, krcc,
                      plcc, plcc_logistic_checked, srcc)
from .predictions import check_predictions, read_predictions

#: Columns of ``per_dataset_table``, in order (the index is the data set, or the group, name).
TABLE_COLUMNS = ("n", "plcc", "plcc_logistic", "srcc", "krcc", *GAP_COLUMNS)
#: the bootstrap interval of each correlation, when asked for (``n_boot``)
INTERVAL_COLUMNS = tuple(f"{stat}_{end}" for stat in BOOTSTRAP_STATISTICS for end in ("low", "high"))
#: the name of the row of every data set together (``pooled=True``)
POOLED = "pooled"

#: fewest images a group's correlations are given for (any two distinct points correlate perfectly)
MIN_CORRELATION_N = 3



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
    check_predictions(preds_df, source)
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


def _pool_map(function, tasks, workers: int):
    """``[function(*task) for task in tasks]``, in ``workers`` processes when more than one (forked:
    the tasks' arrays are not copied through pipes; the results come back in order)."""
    if workers <= 1 or len(tasks) <= 1:
        return [function(*task) for task in tasks]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(function, *task) for task in tasks]
        return [f.result() for f in futures]


def _intervals(score: np.ndarray, mu: np.ndarray, n_boot: int, seed: int) -> dict:
    results = bootstrap_all(BOOTSTRAP_STATISTICS, score, mu, n_boot=n_boot, seed=seed)
    return {f"{stat}_{end}": getattr(r, end) for stat, r in zip(BOOTSTRAP_STATISTICS, results)
            for end in ("low", "high")}


def correlation_intervals(groups: dict, n_boot: int = 1000, seed: int = 0, workers: int = 1) -> dict:
    """95% percentile bootstrap intervals (``deqa.metrics.bootstrap_all``) of every correlation of
    each group: ``groups`` maps a name to its (score, mu) arrays; returns ``{name: {"srcc_low": ..,
    "srcc_high": .., ...}}`` for the correlations in ``INTERVAL_COLUMNS``. Each group is resampled
    with the same ``seed``; ``workers`` processes share the groups (the results do not depend on it;
    the largest groups go first)."""
    names = sorted(groups, key=lambda name: -len(groups[name][0]))
    results = _pool_map(_intervals, [(*groups[name], n_boot, seed) for name in names], workers)
    by_name = dict(zip(names, results))
    return {name: by_name[name] for name in groups}


def per_dataset_table(table: pd.DataFrame, by: str = "dataset", pooled: bool = False, n_boot: int = 0,
                      seed: int = 0, workers: int = 1) -> pd.DataFrame:
    """One row per group of ``by`` (the index, in order of appearance): n, PLCC, PLCC after the
    logistic, SRCC, KRCC of ``score`` against the human ``mu``, and - for the rows with a known human
    ``sigma``, when the table has the predicted ``std`` - the mean distribution gaps (Gaussian KL and
    W2; JS and W1 of the five-level ``p_*`` against ``q_*`` when both are there).

    ``pooled``: a last row ``POOLED``, every row of the table together (each data set's human mu is on
    its own 1-5 scale). ``n_boot`` > 0: each correlation gets its bootstrap interval
    (``correlation_intervals``, columns ``INTERVAL_COLUMNS``).

    Correlations are NaN for a group of fewer than ``MIN_CORRELATION_N`` images or with constant
    predictions (or human scores): ``.attrs["undefined"]`` maps such a group to the reason. A group
    whose logistic fit does not converge gets the raw PLCC in ``plcc_logistic`` and its name in
    ``.attrs["logistic_fallback"]``."""
    rows, fallback, undefined = {}, [], {}
    parts = {str(name): table.iloc[idx] for name, idx in table.groupby(by, sort=False).indices.items()}
    if pooled and POOLED in parts:
        raise DeqaError(f"a data set is named {POOLED!r}, the name of the row of all data sets together; "
                        "rename it")
    if pooled and len(table):
        parts[POOLED] = table
    for name, part in parts.items():
        rows[name], ok, why = _group_row(part)
        if not ok:
            fallback.append(name)
        if why:
            undefined[name] = why
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(TABLE_COLUMNS))
    if n_boot > 0:
        defined = {name: (part["score"].to_numpy(float), part["mu"].to_numpy(float))
                   for name, part in parts.items() if name not in undefined}
        intervals = correlation_intervals(defined, n_boot=n_boot, seed=seed, workers=workers)
        for col in INTERVAL_COLUMNS:
            out[col] = [intervals.get(name, {}).get(col, np.nan) for name in out.index]
    out.index.name = by
    out.attrs["logistic_fallback"] = fallback
    out.attrs["undefined"] = undefined
    return out


def evaluate_table(preds_df: pd.DataFrame, meta_df: pd.DataFrame, split: str | None = None,
                   source: str = "predictions", pooled: bool = False, n_boot: int = 0, seed: int = 0,
                   workers: int = 1) -> pd.DataFrame:
    """``per_dataset_table`` of ``join_predictions``: one row per data set (the index) with
    ``TABLE_COLUMNS``, on the 1-5 level scale, and the ``POOLED`` row last with ``pooled``.
    ``preds_df``: predictions (``deqa.predictions.read_predictions``); ``meta_df``: our metadata
    schema. A data set with no prediction at all still gets its row (n = 0). ``.attrs`` carries
    ``missing_predictions`` and ``unmatched_predictions`` from ``join_predictions``,
    ``logistic_fallback`` and ``undefined`` from ``per_dataset_table``: nothing is dropped silently."""
    joined = join_predictions(preds_df, meta_df, split=split, source=source)
    return table_of(joined, pooled=pooled, n_boot=n_boot, seed=seed, workers=workers)


def table_of(joined: pd.DataFrame, pooled: bool = False, n_boot: int = 0, seed: int = 0,
             workers: int = 1) -> pd.DataFrame:
    """``evaluate_table`` of a table already joined (``join_predictions``); warns about groups whose
    correlations are undefined or whose logistic fit fell back."""
    table = per_dataset_table(joined, pooled=pooled, n_boot=n_boot, seed=seed, workers=workers)
    for name in table.attrs["logistic_fallback"]:
        warnings.warn(f"data set {name!r}: the logistic fit did not converge; plcc_logistic is the "
                      "raw PLCC", RuntimeWarning, stacklevel=3)
    for name, why in table.attrs["undefined"].items():
        warnings.warn(f"data set {name!r}: {why}", RuntimeWarning, stacklevel=3)
    missing = joined.attrs["missing_predictions"]
    absent = [name for name in missing if name not in table.index]
    if absent:
        attrs = dict(table.attrs)
        empty = pd.DataFrame({"n": 0}, index=pd.Index(absent, name="dataset"))
        head, tail = (table.iloc[:-1], table.iloc[-1:]) if pooled and len(joined) else (table, table.iloc[:0])
        table = pd.concat([head, empty, tail])
        table.attrs.update(attrs)
    table["n"] = table["n"].astype(int)
    table.index.name = "dataset"
    table.attrs["missing_predictions"] = {k: v for k, v in missing.items() if v}
    table.attrs["unmatched_predictions"] = joined.attrs["unmatched_predictions"]
    return table


# ----------------------------------------------------------------- per distortion family and strength
DISTORTION_COLUMNS = ("dataset", "by", "group", "n", "srcc", "srcc_low", "srcc_high")


def distortion_table(joined: pd.DataFrame, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """SRCC of ``score`` against ``mu`` inside each distortion family and each distortion strength of
    every data set that has them (``deqa.formats.distortions``: the synthetic sets' columns, or the
    KADID-10k, TID2013 / TID2008 and CSIQ file names), with its bootstrap interval
    (``deqa.metrics.bootstrap``). Pristine images (strength 0) join every family, as a family's
    ranking runs from its pristine images to its strongest distortion; they form strength 0 too.

    Columns ``DISTORTION_COLUMNS``: ``by`` is ``"family"`` or ``"strength"``; ``n`` counts the
    group's images; the SRCC is NaN (no interval) below ``MIN_CORRELATION_N`` images or with
    constant scores. ``.attrs["replicates"]`` maps (dataset, by, group) to the resampled SRCCs (for
    ``deqa.plots.distortion_srcc``). Explained in notebook 05."""
    from .formats import distortions
    from .metrics import srcc as spearman

    found = distortions(joined)
    rows, replicates = [], {}
    for name in dict.fromkeys(joined["dataset"].astype(str)):
        in_set = (joined["dataset"].astype(str) == name).to_numpy() & found["family"].notna().to_numpy()
        if not in_set.any():
            continue
        family, strength = found["family"].to_numpy(), found["level"].to_numpy(float)
        pristine = in_set & (strength == 0)
        groups = [("family", f, in_set & ((family == f) | pristine))
                  for f in dict.fromkeys(family[in_set & ~pristine])]
        groups += [("strength", int(k), in_set & (strength == k)) for k in np.unique(strength[in_set])
                   if np.isfinite(k)]
        for by, group, mask in groups:
            score, mu = joined["score"].to_numpy(float)[mask], joined["mu"].to_numpy(float)[mask]
            row = {"dataset": name, "by": by, "group": group, "n": int(mask.sum()),
                   "srcc": np.nan, "srcc_low": np.nan, "srcc_high": np.nan}
            if len(score) >= MIN_CORRELATION_N and np.ptp(score) > 0 and np.ptp(mu) > 0:
                if n_boot > 0:
                    result = bootstrap("srcc", score, mu, n_boot=n_boot, seed=seed, level=level)
                    row.update(srcc=result.estimate, srcc_low=result.low, srcc_high=result.high)
                    replicates[(name, by, group)] = result.replicates
                else:
                    row["srcc"] = spearman(score, mu)
            rows.append(row)
    out = pd.DataFrame(rows, columns=list(DISTORTION_COLUMNS))
    out.attrs["replicates"] = replicates
    return out


# ---------------------------------------------------------------------------------- command line
def add_prediction_arguments(parser) -> None:
    """The options that say how to read the predictions (``evaluate`` and ``report`` share them)."""
    from .predictions import PREDICTION_FORMATS

    parser.add_argument("--preds-format", default="auto", choices=("auto", *PREDICTION_FORMATS),
                        help="format of the predictions: deqa (the CSV of `deqa score`), scores (one score "
                        "per image, any scale), iqa_eval (DeQA-Score's published evaluation output, JSON "
                        "lines with logits); default: told apart by the content")
    parser.add_argument("--image-col", default=None, help="score-only predictions: the column of image names "
                        "(default: found by common names, see README)")
    parser.add_argument("--score-col", default=None, help="score-only predictions: the column of scores")
    parser.add_argument("--lower-better", action="store_true", help="score-only predictions: lower scores "
                        "mean better quality (read negated)")
    parser.add_argument("--format", default="auto", help="metadata format for deqa.data.read_metadata "
                        "(default: auto)")
    parser.add_argument("--split", default=None, help="only this split of the metadata (e.g. test); "
                        "default: every row")


def add_arguments(parser) -> None:
    parser.add_argument("preds", metavar="PREDS", help="predictions: `deqa score` CSV, score-only CSV or "
                        "DeQA-Score's evaluation output")
    parser.add_argument("meta", metavar="META", nargs="+", help="metadata file(s) of the data set(s)")
    add_prediction_arguments(parser)
    parser.add_argument("--n-boot", type=int, default=0, metavar="N", help="give each correlation a 95%% "
                        "bootstrap interval from N resamples (default 0: none)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def read_inputs(args):
    """(predictions, metadata) as the command line names them: one reader per format
    (``deqa.predictions.read_predictions``, ``deqa.data.read_metadata``)."""
    preds = read_predictions(args.preds, format=args.preds_format, image_col=args.image_col,
                             score_col=args.score_col, lower_better=args.lower_better)
    return preds, read_all_metadata(args.meta, args.format)


def read_all_metadata(paths_, fmt: str = "auto") -> pd.DataFrame:
    """Read and stack the metadata files, each data set keeping its scale facts (``data.combine``);
    ``.attrs["files"]`` lists (path, format, data sets, rows) per file and ``.attrs["roots"]`` the
    folder of each data set's file (where its relative image paths start)."""
    from . import data

    tables = [data.read_metadata(p, format=fmt) for p in paths_]
    out = data.combine(tables, check_overlap=False) if len(tables) > 1 else tables[0]
    out.attrs["files"] = [(str(p), t.attrs.get("format"), list(dict.fromkeys(t["dataset"].astype(str))), len(t))
                          for p, t in zip(paths_, tables)]
    out.attrs["roots"] = {str(name): str(Path(p).parent) for p, t in zip(paths_, tables)
                          for name in dict.fromkeys(t["dataset"].astype(str))}
    return out


HEADERS = {"plcc": "PLCC", "plcc_logistic": "PLCC-logistic", "srcc": "SRCC", "krcc": "KRCC", "kl": "KL",
           "w2": "W2", "js_gaussian": "JS-Gaussian", "js_levels": "JS-levels", "w1_levels": "W1-levels"}


def format_table(table: pd.DataFrame) -> str:
    """The table as text; correlations with their interval when it has them."""
    shown = table[list(TABLE_COLUMNS)].astype(object)
    for col in TABLE_COLUMNS[1:]:
        shown[col] = [_number(v) for v in table[col]]
        if f"{col}_low" in table.columns:
            shown[col] = [f"{v} [{_number(lo, 3)}, {_number(hi, 3)}]" if np.isfinite(lo) else v
                          for v, lo, hi in zip(shown[col], table[f"{col}_low"], table[f"{col}_high"])]
    shown.columns = ["n", *(HEADERS.get(c, c) for c in TABLE_COLUMNS[1:])]
    return shown.to_string()


def _number(value, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def check_some_match(table: pd.DataFrame, preds: pd.DataFrame, preds_name, meta_names, split=None) -> None:
    """A one-line DeqaError when no prediction matched a metadata image (the wrong META, paths that
    share no name with it): the count matched and two examples of each side."""
    if int(table["n"].sum()) > 0:
        return
    examples = ", ".join(repr(x) for x in table.attrs["unmatched_predictions"][:2])
    meta_examples = ", ".join(repr(x) for images in table.attrs["missing_predictions"].values()
                              for x in images[:2])
    meta_examples = ", ".join(meta_examples.split(", ")[:2])
    where = f" (split {split!r})" if split else ""
    raise DeqaError(f"none of the {len(preds)} predictions in {preds_name} matches an image of "
                    f"{', '.join(map(str, meta_names))}{where}: 0 of {len(preds)} matched; predictions e.g. "
                    f"{examples}; metadata e.g. {meta_examples or '(none)'}: wrong metadata file?")


def notes(table: pd.DataFrame, preds: pd.DataFrame) -> list[str]:
    """What the table alone does not say: images without a prediction, predictions matching nothing,
    groups whose correlations are undefined, logistic fits that fell back, the scale of the scores."""
    out = [f"{len(images)} image(s) of {name!r} have no prediction (e.g. {', '.join(images[:3])})"
           for name, images in table.attrs["missing_predictions"].items()]
    unmatched = table.attrs["unmatched_predictions"]
    if unmatched:
        out.append(f"{len(unmatched)} prediction(s) match no metadata image (e.g. {', '.join(unmatched[:3])})")
    out += [f"{name}: {why}" for name, why in table.attrs["undefined"].items()]
    fallback = table.attrs["logistic_fallback"]
    if fallback:
        out.append(f"the logistic fit did not converge for {', '.join(fallback)}: PLCC-logistic is the raw PLCC")
    score = pd.to_numeric(preds["score"]).to_numpy(float)
    if not preds.attrs.get("on_levels", True):
        out.append(f"score-only predictions on {preds.attrs.get('scale', 'their own scale')}: correlations "
                   "only (no spread, no level probabilities)")
    elif len(score) and (score.min() < 1 - 1e-6 or score.max() > 5 + 1e-6):
        out.append(f"scores range from {score.min():g} to {score.max():g}, outside the 1-5 level scale "
                   "the distribution gaps assume")
    return out


def _record(name, row) -> dict:
    return {"dataset": name, **{k: (None if pd.isna(v) else (int(v) if k == "n" else float(v)))
                                for k, v in row.items()}}


def table_json(table: pd.DataFrame, preds: pd.DataFrame) -> dict:
    """The table as ``evaluate --json`` prints it (and ``report`` writes it): one record per data set,
    the ``pooled`` record, what is missing or unmatched, and how the predictions were read."""
    missing = table.attrs["missing_predictions"]
    records = [_record(name, row) for name, row in table.iterrows()]
    pooled = [r for r in records if r["dataset"] == POOLED]
    return {"datasets": [r for r in records if r["dataset"] != POOLED],
            "pooled": pooled[0] if pooled else None,
            "predictions": {k: preds.attrs.get(k) for k in ("format", "description", "scale")},
            "missing_predictions": {k: len(v) for k, v in missing.items()},
            "missing_examples": {k: v[:5] for k, v in missing.items()},
            "unmatched_predictions": table.attrs["unmatched_predictions"],
            "logistic_fallback": table.attrs["logistic_fallback"],
            "undefined": table.attrs["undefined"]}


def run(args) -> int:
    if args.n_boot < 0:
        raise DeqaError(f"--n-boot must be 0 or more, got {args.n_boot}")
    preds, meta = read_inputs(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the fallbacks are reported below
        table = evaluate_table(preds, meta, split=args.split, source=str(args.preds), pooled=True,
                               n_boot=args.n_boot, workers=default_workers())
    check_some_match(table, preds, args.preds, args.meta, args.split)
    if args.json:
        print(json.dumps(table_json(table, preds), indent=2))
        return 0
    shown = table if len(table) > 2 else table.drop(index=POOLED, errors="ignore")
    print(format_table(shown))
    print("KL = Gaussian KL(human || predicted); JS-Gaussian = the published Gaussian 'JS' (KL to a moment-matched\n"
          "midpoint), JS-levels = Jensen-Shannon of the five-level distributions, both in nats; W1, W2 in level units")
    if len(shown) > 1 and POOLED in shown.index:
        print(f"{POOLED}: every data set together, each against its own human mu on the 1-5 scale")
    if args.n_boot:
        print(f"[low, high]: 95% percentile bootstrap intervals over the images ({args.n_boot} resamples)")
    for note in notes(table, preds):
        print(f"note: {note}")
    return 0


def default_workers() -> int:
    """Processes for the bootstrap: the CPU cores this process may use, at most 4."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))
