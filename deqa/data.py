"""Reading IQA metadata into one table schema, checking it, and turning it into soft labels.
Explained in notebook 01 (``01_score_distributions``); the soft labels in notebook 02.

Every reader returns a :class:`pandas.DataFrame` with the columns of :data:`SCHEMA`:

=============  =========================================================================
``image``      path of the image relative to the data set root (str)
``mos``        mean opinion score on the data set's native scale (float)
``std``        std of the opinion scores on the same native scale (float, NaN if unknown)
``dataset``    data set name (str)
``split``      ``"train"``, ``"val"`` or ``"test"``
=============  =========================================================================

and, where the file has them, ``c1..c5`` (fractions of 1..5 ratings), ``n_ratings``, ``ref`` (the
pristine reference of a synthetically distorted image) and ``mos_0_100`` (KonIQ-10k's 0-100 MOS
column: KonIQ's ``mos`` is the 1-5 mean rating, as DeQA-Score uses it). A DeQA-Score meta JSON also
gives ``gt_score_norm``, ``std_norm`` (its mu and sigma on [1, 5]) and ``published_q_bad ..
published_q_excellent`` (its ``level_probs``, reversed to bad..excellent). Facts about the scale live in
``DataFrame.attrs``: ``lo`` and ``hi`` (the nominal scale, ``None`` when not known),
``lower_is_better`` (``True`` for a DMOS), ``format`` and ``source`` (the file read), and ``scales``
(``{dataset: {"lo", "hi", "lower_is_better"}}``, kept by :func:`combine`).

Formats (``format=``): ``koniq``, ``pyiqa``, ``liqe``, ``deqa_json``, ``qalign_json`` and ``csv``;
their readers are in ``deqa.formats`` and data/README.md describes each format and its quirks.

:func:`to_levels` turns a table into mu, sigma on [1, 5] and soft labels; with ``method="official"``
(the default) each data set gets the discretisation the published configuration gives it
(:func:`official_method`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError
from .formats import (FORMATS, HISTOGRAM, NOMINAL, NOMINAL_BY_FORMAT, PUBLISHED_LEVEL_COLUMNS,
                      PUBLISHED_MU, PUBLISHED_SIGMA, READERS, detect_format, numeric_column, raise_first,
                      require_columns)
from .levels import LABEL_COLUMNS

SCHEMA = ("image", "mos", "std", "dataset", "split")
OPTIONAL = HISTOGRAM + ("n_ratings", "ref", "mos_0_100")
SPLITS = ("train", "val", "test")
METHODS = ("official", "cdf", "pdf")

#: Data sets the published DeQA-Score configuration labels with ``pdf``; every other one gets ``cdf``.
OFFICIAL_PDF_DATASETS = ("koniq10k", "kadid10k")

_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test", "testing": "test"}

# Other names of the data sets in file names (guess_dataset) and in official_method.
_DATASET_ALIASES = {
    "koniq": "koniq10k", "koniq10k_distributions_sets": "koniq10k", "kadid": "kadid10k",
    "livechallenge": "livec", "clive": "livec", "live_challenge": "livec", "liveiqa": "live",
    "live_iqa_r2": "live", "live_md": "livemd", "agi": "agiqa3k", "agiqa": "agiqa3k",
    "koniq10k_plusplus": "koniq10k++",
}
_GENERIC_STEMS = {"data", "meta", "metadata", "labels", "labels_image", "labels640", "mos", "scores"}

_OPTIONS = {"lo", "hi", "lower_is_better", "std_scale", "std_is_variance", "keep_extra"}


# --------------------------------------------------------------------------------------- readers

def read_metadata(path, format: str = "auto", dataset: str | None = None,
                  split: str | None = None, **opts) -> pd.DataFrame:
    """Read one metadata file into the schema of this module, checked row by row.

    ``format``: ``"auto"`` (from the extension and the columns) or one of :data:`FORMATS`.
    ``dataset``: the name written to the ``dataset`` column (default: guessed from the file name).
    ``split``: for a file without a split column, the split of every row (default ``"test"``);
    for a file with one, keep only the rows of that split. A DeQA-Score JSON named ``train_*``,
    ``val_*`` or ``test_*`` is that split.
    Options: ``lo``, ``hi`` (nominal scale), ``lower_is_better``, ``std_scale`` (multiply std),
    ``std_is_variance`` (take the square root of the std column), ``keep_extra`` (keep the file's
    other columns). Bad input raises :class:`DeqaError` naming the file and the row.
    """
    path = Path(path)
    unknown = set(opts) - _OPTIONS
    if unknown:
        raise DeqaError(f"read_metadata: unknown option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    if split is not None and split not in SPLITS:
        raise DeqaError(f"read_metadata: split must be one of {SPLITS}, got {split!r}")
    if not path.is_file():
        raise DeqaError(f"{path}: metadata file not found")
    if path.stat().st_size == 0:
        raise DeqaError(f"{path}: the file is empty")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DeqaError(f"{path}: unknown metadata format {format!r}; use 'auto' or one of {FORMATS}")
    guessed = guess_dataset(path)
    name = dataset or guessed
    scale_key = guessed if guessed in NOMINAL else name.lower()  # known scale facts follow the file
    table, info = READERS[fmt](path)
    return _to_schema(table, info, _nominal_scale(fmt, scale_key, info), path, fmt, name, split, opts)


def _nominal_scale(fmt: str, scale_key: str, info: dict) -> tuple:
    """(lo, hi, lower_is_better) of a file: what its format fixes, else the known facts of the data
    set ``scale_key`` in that format, else the reader's guess for a data set it does not know."""
    if "scale" in info:
        return info["scale"]
    lo, hi, lower = (NOMINAL_BY_FORMAT.get(fmt, {}).get(scale_key) or NOMINAL.get(scale_key)
                     or info.get("scale_if_unknown") or (None, None, False))
    return lo, hi, info.get("lower_is_better", lower)


def guess_dataset(path) -> str:
    """A short data set name from a file name: meta_info_KADID10kDataset.csv -> 'kadid10k'."""
    path = Path(path)
    stem = path.stem
    match = re.fullmatch(r"meta_info_(.+?)Dataset", stem)
    name = (match.group(1) if match else stem).lower()
    if name in _GENERIC_STEMS and path.parent.name:
        name = path.parent.name.lower()
    name = re.sub(r"^(test|train|val)_", "", name)
    name = re.sub(r"_(all|\d+k)$", "", name)
    return _DATASET_ALIASES.get(name, name)


# ------------------------------------------------------------------------------------ validation

def validate(df: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check a table in the schema; raise :class:`DeqaError` naming ``source`` and the first bad row.

    Rows are numbered from 1 in file order (the header is not a row). Returns ``df`` unchanged.
    """
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise DeqaError(f"{source}: missing required column(s) {missing}; found {list(df.columns)}")
    if len(df) == 0:
        raise DeqaError(f"{source}: no data rows")
    images = df["image"]
    bad = images.isna().to_numpy() | (images.astype(str).str.strip() == "").to_numpy()
    raise_first(bad, source, images, "the image name is empty")
    mos = df["mos"].to_numpy(dtype=float)
    raise_first(~np.isfinite(mos), source, images, "MOS is missing or not a finite number")
    std = df["std"].to_numpy(dtype=float)
    raise_first(np.isinf(std), source, images, "std is infinite")
    raise_first(std < 0, source, images, "std is negative", values=std)
    split_ok = df["split"].isin(SPLITS).to_numpy()
    raise_first(~split_ok, source, images, "unknown split {value} (use one of " + ", ".join(SPLITS) + ")",
                 values=df["split"].to_numpy())
    raise_first(df["dataset"].isna().to_numpy() | (df["dataset"].astype(str) == "").to_numpy(),
                 source, images, "the dataset name is empty")
    key = _image_key(images)
    dup = key.duplicated(keep="first").to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((key == key.iloc[i]).to_numpy())[0])
        raise DeqaError(f"{source}: row {i + 1} (image {images.iloc[i]!r}): duplicated image name, "
                        f"already at row {first + 1}")
    if all(c in df.columns for c in HISTOGRAM):
        hist = df[list(HISTOGRAM)].to_numpy(dtype=float)
        given = ~np.all(np.isnan(hist), axis=1)  # a combined table has no histogram for some sets
        ok = np.all(np.isfinite(hist) & (hist >= -1e-9) & (hist <= 1 + 1e-9), axis=1)
        raise_first(given & ~ok, source, images, "c1..c5 must be fractions in [0, 1]")
        total = hist.sum(axis=1)
        raise_first(given & (np.abs(total - 1.0) > 1e-4), source, images, "c1..c5 must sum to 1",
                     values=total)
    if "n_ratings" in df.columns:
        n = df["n_ratings"].to_numpy(dtype=float)
        bad = ~np.isnan(n) & ((n < 0) | (n != np.round(n)))
        raise_first(bad, source, images, "n_ratings must be a whole number >= 0", values=n)
    return df


def _to_schema(table, info, nominal, path, fmt, name, split, opts):
    """A reader's raw table in the schema: numbers checked, std as given or from a variance,
    ``dataset`` and ``split`` filled, columns ordered, validated; ``split`` selected; the scale
    facts (``nominal`` = (lo, hi, lower_is_better), overridden by ``opts``) in ``attrs``."""
    source = str(path)
    images = table["image"].astype(str).where(table["image"].notna(), None)
    table["image"] = images
    table["mos"] = numeric_column(table["mos"], "MOS", path, images)
    scale = opts.get("std_scale")
    if opts.get("std_is_variance", info.get("std_is_variance", False)):
        variance = table["std"].to_numpy(dtype=float)
        raise_first(variance < 0, source, images, "the variance column (read as std) is negative",
                     values=variance)
        table["std"] = np.sqrt(variance)
    if scale is not None:
        table["std"] = table["std"] * float(scale)
    for col in HISTOGRAM + ("n_ratings",):
        if col in table:
            table[col] = numeric_column(table[col], col, path, images)
    if "dataset" not in table or fmt != "csv":
        table["dataset"] = name
    else:
        table["dataset"] = table["dataset"].fillna(name).astype(str)
    if "split" in table:
        raw_split = table["split"]
        mapped = raw_split.astype(str).str.strip().str.lower().map(_SPLIT_NAMES)
        table["split"] = mapped.where(mapped.notna(), raw_split.astype(str))
    else:
        table["split"] = split or "test"
        split = None
    if opts.get("keep_extra") and info.get("extra") is not None:
        extra = info["extra"]
        for col in extra.columns:
            if col not in table.columns:
                table[col] = extra[col].to_numpy()
    order = list(SCHEMA) + [c for c in OPTIONAL if c in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    validate(table, source)
    if split is not None:
        table = table[table["split"] == split].reset_index(drop=True)
        if len(table) == 0:
            raise DeqaError(f"{source}: no rows in split {split!r}")
    lo = opts.get("lo", nominal[0])
    hi = opts.get("hi", nominal[1])
    lower = bool(opts.get("lower_is_better", nominal[2]))
    table = table.reset_index(drop=True)
    table.attrs = {"lo": lo, "hi": hi, "lower_is_better": lower, "format": fmt, "source": path.name,
                   "scales": {d: {"lo": lo, "hi": hi, "lower_is_better": lower}
                              for d in pd.unique(table["dataset"])}}
    return table


# ------------------------------------------------------------------------------ overlap, combine

def _image_key(images: pd.Series, by: str = "path") -> pd.Series:
    """Image identity inside a data set: the path with forward slashes, case-insensitive;
    ``by="name"`` keeps only the file name (for copies that prefix a folder, as Q-Align's do)."""
    key = images.astype(str).str.strip().str.replace("\\", "/", regex=False).str.lower()
    if by == "name":
        return key.str.rsplit("/", n=1).str[-1]
    if by != "path":
        raise DeqaError(f"image identity must be by 'path' or 'name', got {by!r}")
    return key


def _identity(df: pd.DataFrame, by: str = "path") -> pd.Series:
    return df["dataset"].astype(str).str.lower() + "::" + _image_key(df["image"], by)


def check_no_overlap(train_df: pd.DataFrame, test_df: pd.DataFrame, by: str = "path") -> None:
    """Refuse a train table and a test table that share an image: same dataset and same image
    path (``by="path"``, case-insensitive) or same file name (``by="name"``)."""
    train_keys = _identity(train_df, by)
    shared = _identity(test_df, by).isin(set(train_keys)).to_numpy()
    if shared.any():
        i = int(np.flatnonzero(shared)[0])
        raise DeqaError(f"train/test overlap: {int(shared.sum())} test image(s) also in the training "
                        f"data, e.g. {test_df['dataset'].iloc[i]}/{test_df['image'].iloc[i]}")


def split_overlap(df: pd.DataFrame, by: str = "path") -> pd.DataFrame:
    """Rows whose image (dataset + image path or name) appears in more than one split of the table."""
    key = _identity(df, by)
    n_splits = df.groupby(key.to_numpy())["split"].nunique()
    return df[key.map(n_splits).to_numpy() > 1]


def check_split_overlap(df: pd.DataFrame, by: str = "path") -> None:
    """Refuse a table in which the same image appears in two splits."""
    rows = split_overlap(df, by)
    if len(rows):
        first = rows.iloc[0]
        key = _identity(rows, by)
        splits = sorted(rows.loc[(key == key.iloc[0]).to_numpy(), "split"].unique())
        n_images = key.nunique()
        raise DeqaError(f"split overlap: {n_images} image(s) appear in more than one split, e.g. "
                        f"{first['dataset']}/{first['image']} in {' and '.join(splits)}")


def combine(tables, check_overlap: bool = True, by: str = "path") -> pd.DataFrame:
    """Stack tables (e.g. several data sets, or train and test files) into one.

    Each data set keeps its own scale in ``attrs["scales"]``, which :func:`to_levels` uses. With
    ``check_overlap`` an image in two splits, or twice in one split, raises :class:`DeqaError`.
    """
    tables = list(tables)
    if not tables:
        raise DeqaError("combine: no tables given")
    scales: dict = {}
    for t in tables:
        for name in pd.unique(t["dataset"]):
            scale = t.attrs.get("scales", {}).get(name) or {
                "lo": t.attrs.get("lo"), "hi": t.attrs.get("hi"),
                "lower_is_better": bool(t.attrs.get("lower_is_better", False))}
            if name in scales and scales[name] != scale:
                raise DeqaError(f"combine: dataset {name!r} comes with two different scales "
                                f"{scales[name]} and {scale}; rename one with dataset=")
            scales[name] = scale
    out = pd.concat(tables, ignore_index=True)
    if check_overlap:
        check_split_overlap(out, by)
        key = _identity(out, by)
        dup = key.duplicated().to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise DeqaError(f"combine: {int(dup.sum())} image(s) appear twice in the same split, e.g. "
                            f"{out['dataset'].iloc[i]}/{out['image'].iloc[i]} ({out['split'].iloc[i]})")
    out.attrs = {"scales": scales}
    return out


# ---------------------------------------------------------------------------------- soft labels

def official_method(dataset: str) -> str:
    """The discretisation the published DeQA-Score configuration gives a data set: ``"pdf"`` for
    KonIQ-10k and KADID-10k, ``"cdf"`` for SPAQ and for every data set it does not name.

    The name is lower-cased and stripped of spaces, ``-`` and ``_``, then compared with
    :data:`OFFICIAL_PDF_DATASETS` and their short aliases (``koniq``, ``kadid``): ``KonIQ-10k`` and
    ``kadid10k`` match; ``koniq10k++`` (another annotation) and the synthetic ``synth-koniq`` do not,
    because the published choice was made for the real data sets' spreads, not for anything named
    after them. Explained in notebook 02.
    """
    key = re.sub(r"[\s_-]", "", str(dataset).lower())
    return "pdf" if _DATASET_ALIASES.get(key, key) in OFFICIAL_PDF_DATASETS else "cdf"


def to_levels(df: pd.DataFrame, lo=None, hi=None, method: str = "official", reference: bool | None = None,
              nominal: bool = False) -> pd.DataFrame:
    """Add ``mu``, ``sigma`` (the score on [1, 5]) and the soft labels ``q_bad .. q_excellent``.

    Each data set in the table is rescaled on its own (``deqa.levels.rescale``): between ``lo`` and
    ``hi`` when given, else its nominal scale from ``attrs`` when ``nominal=True`` and known, else
    its observed min and max MOS (the published implementation's choice: call this on the whole
    data set, not a split, or pass the scale). A DMOS (``attrs`` lower_is_better) is flipped. Rows
    that carry a DeQA-Score JSON's own ``gt_score_norm`` / ``std_norm`` keep them as mu / sigma.
    ``method``: ``"official"`` (per data set, :func:`official_method`), ``"cdf"`` or ``"pdf"``; the
    method each data set got is in ``attrs["methods"]``. ``reference``: True for the published label
    builder (rows with the JSON's own ``level_probs`` then take those as they are), False for the
    information projection, None for the package default (``deqa.soft_label.PUBLISHED_LABEL``). Rows with no std get the
    two-level label (``deqa.soft_label.soft_labels``). Explained in notebooks 01 and 02.
    """
    from .soft_label import soft_labels, use_reference

    reference = use_reference(reference)
    require_columns(df, ("image", "mos", "std", "dataset"), df.attrs.get("source", "table"))
    if method not in METHODS:
        raise DeqaError(f"to_levels: unknown method {method!r}; use one of {METHODS}")
    mu, sigma = _level_scale(df, lo, hi, nominal)
    names = df["dataset"].astype(str).to_numpy()
    methods = {name: official_method(name) if method == "official" else method for name in pd.unique(names)}
    q = np.zeros((len(df), 5))
    for name, used in methods.items():
        rows = np.flatnonzero(names == name)
        q[rows] = soft_labels(np.clip(mu[rows], 1.0, 5.0), sigma[rows], method=used, reference=reference)
    if reference and all(col in df.columns for col in PUBLISHED_LEVEL_COLUMNS):
        given = df[list(PUBLISHED_LEVEL_COLUMNS)].to_numpy(dtype=float)
        rows = np.all(np.isfinite(given), axis=1)
        q[rows] = given[rows]
    out = df.copy()
    out["mu"] = mu
    out["sigma"] = sigma
    for k, col in enumerate(LABEL_COLUMNS):
        out[col] = q[:, k]
    out.attrs = {**df.attrs, "methods": methods}
    return out


def _level_scale(df: pd.DataFrame, lo, hi, nominal: bool):
    """mu and sigma on [1, 5] for every row (see ``to_levels``): rescaled per data set, then the
    published mu / sigma where a row has them."""
    from .levels import rescale

    scales = df.attrs.get("scales", {})
    mu = np.empty(len(df))
    sigma = np.empty(len(df))
    names = df["dataset"].to_numpy()
    for name in pd.unique(names):
        rows = np.flatnonzero(names == name)
        scale = scales.get(name, {"lo": df.attrs.get("lo"), "hi": df.attrs.get("hi"),
                                  "lower_is_better": df.attrs.get("lower_is_better", False)})
        lo_ = lo if lo is not None else (scale.get("lo") if nominal else None)
        hi_ = hi if hi is not None else (scale.get("hi") if nominal else None)
        mos = df["mos"].to_numpy(dtype=float)[rows]
        try:
            mu[rows], sigma[rows] = rescale(mos, df["std"].to_numpy(dtype=float)[rows], lo_, hi_,
                                            bool(scale.get("lower_is_better", False)))
        except ValueError as exc:
            raise DeqaError(f"to_levels: dataset {name!r}: {exc}; pass lo= and hi=") from None
        outside = (mu[rows] < 1 - 1e-9) | (mu[rows] > 5 + 1e-9)
        if outside.any():
            i = rows[int(np.flatnonzero(outside)[0])]
            raise DeqaError(f"to_levels: dataset {name!r}: row {i + 1} (image {df['image'].iloc[i]!r}) "
                            f"has MOS {df['mos'].iloc[i]:.6g} outside the scale [{lo_}, {hi_}]")
    if PUBLISHED_MU in df.columns:
        given_mu = df[PUBLISHED_MU].to_numpy(dtype=float)
        given_sigma = (df[PUBLISHED_SIGMA].to_numpy(dtype=float) if PUBLISHED_SIGMA in df.columns
                       else np.full(len(df), np.nan))
        rows = np.isfinite(given_mu)
        mu[rows], sigma[rows] = given_mu[rows], given_sigma[rows]
    return mu, sigma
