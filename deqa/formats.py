"""Readers of the published IQA metadata formats: each turns one file into a raw table (``image``,
``mos``, ``std`` and what else the file holds) plus the facts it knows about the scale. Used by
``deqa.data.read_metadata``, which checks the table and fills the schema; data/README.md describes
each format and its quirks. Explained in notebook 01 (``01_score_distributions``).

Formats: ``koniq`` (official KonIQ-10k sets file), ``pyiqa`` (``meta_info_*.csv`` and other CSVs
whose columns are recognised by name), ``liqe`` (tab-separated path, mos, std), ``deqa_json``
(DeQA-Score meta JSON), ``qalign_json`` (Q-Align JSON) and ``csv`` (the package's own schema, as
written by ``python -m deqa synth``). A reader returns ``(table, info)``; ``info`` may hold ``scale``
(lo, hi, lower_is_better) when the format fixes it, ``lower_is_better`` or ``scale_if_unknown`` when it
knows only part of it, ``std_is_variance``, and ``extra`` (the raw file, for ``keep_extra``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError, first_line
from .levels import CENTERS, LEVELS

FORMATS = ("koniq", "pyiqa", "liqe", "deqa_json", "qalign_json", "csv")
HISTOGRAM = ("c1", "c2", "c3", "c4", "c5")
#: A DeQA-Score meta JSON's own mu and sigma on [1, 5] (its field names, kept as columns).
PUBLISHED_MU, PUBLISHED_SIGMA = "gt_score_norm", "std_norm"
#: Its own labels (``level_probs``, excellent..bad in the file), bad..excellent.
PUBLISHED_LEVEL_COLUMNS = tuple(f"published_q_{name}" for name in LEVELS)
#: KonIQ-10k read as DeQA-Score reads it: the mean of the 1-5 ratings and their SD.
KONIQ_SCALE = (1.0, 5.0, False)

_KONIQ_PYIQA_SPLIT_CODES = {0: "train", 1: "val", 2: "test"}

# Nominal scale and direction of the MOS column in the pyiqa / Q-Align copies (the values those files
# hold, per data set; KonIQ's 0-100 is Q-Align's). LIQE's txt files use other scales (see README);
# the KonIQ readers give the 1-5 mean rating (KONIQ_SCALE), and so do DeQA-Score's JSONs.
NOMINAL = {
    "koniq10k": (0.0, 100.0, False), "kadid10k": (1.0, 5.0, False), "spaq": (0.0, 100.0, False),
    "livec": (0.0, 100.0, False), "csiq": (0.0, 1.0, True), "live": (0.0, 100.0, True),
    "livemd": (0.0, 100.0, True), "tid2013": (0.0, 9.0, False), "tid2008": (0.0, 9.0, False),
    "koniq10k++": (1.0, 5.0, False), "flive": (0.0, 100.0, False),
}
NOMINAL_BY_FORMAT = {"deqa_json": {"koniq10k": KONIQ_SCALE}}

# Column names recognised by the pyiqa / generic CSV reader, in order of preference.
_IMAGE_COLUMNS = ("image", "dist_name", "img_name", "image_name", "Image name", "name",
                  "filename", "img_path", "name_image", "path")
_MOS_COLUMNS = ("mos", "MOS", "dmos", "DMOS", "qmos", "mos_quality", "gt_score", "score",
                "elo_score", "mos_image")
_STD_COLUMNS = ("std", "SD", "sd", "std_quality", "mos_std")
_REF_COLUMNS = ("ref_name", "hq_name", "ref")


def detect_format(path) -> str:
    """Guess the format of a metadata file from its extension, header or first JSON entry."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        entries = _load_json(path)
        first = entries[0] if isinstance(entries[0], dict) else {}
        return "deqa_json" if ("std" in first and "gt_score" in first) else "qalign_json"
    if suffix in (".txt", ".tsv"):
        return "liqe"
    if suffix == ".csv":
        columns = set(_read_csv(path, nrows=0).columns)
        if {"image_name", "MOS", "SD", "set"} <= columns:
            return "koniq"
        if {"image", "mos"} <= columns:
            return "csv"
        return "pyiqa"
    raise DeqaError(f"{path}: cannot tell the metadata format from the extension {suffix!r}; "
                    f"pass format= one of {FORMATS}")


def _koniq_table(raw: pd.DataFrame, path, image_col: str, mos_col: str, sd_col: str) -> pd.DataFrame:
    """KonIQ-10k as DeQA-Score reads it: ``mos`` = the mean of the 1-5 ratings, sum_k k c_k, from the
    histogram; ``std`` = SD (already on 1-5); the 0-100 MOS column (z-scored, rescaled; what pyiqa and
    Q-Align call MOS) kept as ``mos_0_100``."""
    images = raw[image_col].astype(str)
    hist = np.column_stack([numeric_column(raw[col], col, path, images) for col in HISTOGRAM])
    raise_first(~np.all(np.isfinite(hist), axis=1), str(path), images,
                 "c1..c5 are missing (the 1-5 mean rating is computed from them)")
    table = pd.DataFrame({"image": raw[image_col], "mos": hist @ CENTERS,
                          "std": numeric_column(raw[sd_col], sd_col, path, images)})
    for k, col in enumerate(HISTOGRAM):
        table[col] = hist[:, k]
    table["n_ratings"] = raw["c_total"]
    table["mos_0_100"] = numeric_column(raw[mos_col], mos_col, path, images)
    return table


def _read_koniq(path):
    raw = _read_csv(path)
    require_columns(raw, ("image_name", *HISTOGRAM, "c_total", "MOS", "SD", "set"), path)
    table = _koniq_table(raw, path, "image_name", "MOS", "SD")
    table["split"] = raw["set"]
    return table, {"scale": KONIQ_SCALE, "extra": raw}


def _read_pyiqa(path):
    raw = _read_csv(path)
    image_col = _pick(raw, _IMAGE_COLUMNS)
    mos_col = _pick(raw, _MOS_COLUMNS)
    if image_col is None or mos_col is None:
        raise DeqaError(f"{path}: no image column ({', '.join(_IMAGE_COLUMNS)}) or no MOS column "
                        f"({', '.join(_MOS_COLUMNS)}) among {list(raw.columns)}")
    std_col = _pick(raw, _STD_COLUMNS)
    ref_col = _pick(raw, _REF_COLUMNS)
    columns = set(raw.columns)
    info = {"extra": raw}
    if {"split", "c_total"} <= columns and set(HISTOGRAM) <= columns and std_col is not None:
        # pyiqa's KonIQ-10k copy: the official file's numbers, split coded 0/1/2
        table = _koniq_table(raw, path, image_col, mos_col, std_col)
        codes = pd.to_numeric(raw["split"], errors="coerce")
        table["split"] = codes.map(_KONIQ_PYIQA_SPLIT_CODES).fillna(raw["split"].astype(str))
        info["scale"] = KONIQ_SCALE
    else:
        table = pd.DataFrame({"image": raw[image_col], "mos": raw[mos_col]})
        table["std"] = (numeric_column(raw[std_col], std_col, path, raw[image_col]) if std_col
                        else pd.Series(np.nan, index=raw.index))
        if "split" in columns:
            table["split"] = raw["split"]
    if mos_col.lower() == "dmos" and std_col is not None:
        # pyiqa's KADID-10k copy: the official dmos.csv with `var` renamed `std` (LIQE's std is the
        # square root of it); its "dmos" is a quality MOS on 1-5, higher is better.
        info.update(std_is_variance=True, lower_is_better=False, scale_if_unknown=(1.0, 5.0, False))
    elif mos_col.lower() == "dmos":
        info["lower_is_better"] = True  # CSIQ, LIVE-MD: a true DMOS, lower is better
    if ref_col is not None and ref_col != image_col:
        table["ref"] = raw[ref_col]
    return table, info


def _read_liqe(path):
    try:
        raw = pd.read_csv(path, sep="\t", header=None, dtype={0: str}, keep_default_na=False,
                          na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: not a tab-separated LIQE file (path, mos, std): {first_line(exc)}") from None
    if raw.shape[1] < 2:
        raise DeqaError(f"{path}: a LIQE file needs tab-separated columns path, mos[, std]; "
                        f"found {raw.shape[1]} column(s)")
    table = pd.DataFrame({"image": raw[0], "mos": raw[1]})
    table["std"] = numeric_column(raw[2], "std", path, raw[0]) if raw.shape[1] > 2 else np.nan
    return table, {"scale": (None, None, False), "extra": None}


def _read_deqa_json(path):
    raw = _json_frame(path)
    require_columns(raw, ("image", "gt_score"), path)
    images = raw["image"]
    table = pd.DataFrame({"image": images, "mos": raw["gt_score"]})
    table["std"] = numeric_column(raw["std"], "std", path, images) if "std" in raw else np.nan
    if "split" in raw:
        table["split"] = raw["split"]
    elif _split_from_name(path):
        table["split"] = _split_from_name(path)
    for col in (PUBLISHED_MU, PUBLISHED_SIGMA):
        if col in raw:
            table[col] = numeric_column(raw[col], col, path, images)
    if PUBLISHED_SIGMA in table:
        raise_first(table[PUBLISHED_SIGMA].to_numpy() < 0, str(path), images, "std_norm is negative")
    if "level_probs" in raw:
        given = _published_levels(raw["level_probs"], path, images)
        for k, col in enumerate(PUBLISHED_LEVEL_COLUMNS):
            table[col] = given[:, k]
    return table, {"extra": raw}


def _split_from_name(path) -> str | None:
    """'train_koniq_7k.json' -> 'train', 'test_spaq_2k.json' -> 'test' (DeQA-Score's meta JSONs)."""
    match = re.match(r"(train|val|test)_", Path(path).name.lower())
    return match.group(1) if match else None


def _published_levels(values: pd.Series, path, images) -> np.ndarray:
    """DeQA-Score's ``level_probs`` (excellent..bad) as (N, 5) bad..excellent; NaN rows where absent."""
    out = np.full((len(values), 5), np.nan)
    for i, value in enumerate(values):
        if not isinstance(value, (list, tuple)) and pd.isna(value):
            continue
        try:
            row = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            row = np.full(1, np.nan)
        if row.shape != (5,) or not np.all(np.isfinite(row) & (row >= 0)):
            raise DeqaError(f"{path}: row {i + 1} (image {images.iloc[i]!r}): level_probs must be five "
                            f"non-negative numbers, excellent..bad; got {value!r}")
        out[i] = row[::-1]
    return out


def _read_qalign_json(path):
    raw = _json_frame(path)
    image_col = "image" if "image" in raw else ("img_path" if "img_path" in raw else None)
    if image_col is None:
        raise DeqaError(f"{path}: Q-Align JSON entries need an 'image' or 'img_path' field; "
                        f"found {sorted(raw.columns)}")
    score = raw["gt_score"] if "gt_score" in raw else pd.Series(None, index=raw.index, dtype=object)
    if "id" in raw:  # "10007357496.jpg->68.7285714286": the score after the arrow
        from_id = raw["id"].astype(str).str.rsplit("->", n=1).str[1]
        score = score.where(score.notna(), from_id.where(raw["id"].astype(str).str.contains("->")))
    elif "gt_score" not in raw:
        raise DeqaError(f"{path}: Q-Align JSON entries need 'gt_score' or an 'id' of the form NAME->SCORE")
    table = pd.DataFrame({"image": raw[image_col], "mos": score, "std": np.nan})
    return table, {"extra": raw}


def _read_schema_csv(path):
    raw = _read_csv(path)
    require_columns(raw, ("image", "mos"), path)
    table = raw.copy()
    if "std" not in table:
        table["std"] = np.nan
    else:
        table["std"] = numeric_column(raw["std"], "std", path, raw["image"])
    return table, {"scale": _synthetic_scale(path), "extra": None}


# The score scales of ``python -m deqa synth``, named in the params.json beside each meta.csv.
_SYNTH_SCALES = {"1-5": (1.0, 5.0, False), "0-100": (0.0, 100.0, False),
                 "dmos-0-100": (0.0, 100.0, True)}


def _synthetic_scale(path):
    """Nominal scale and direction from the params.json the synthetic generator writes beside meta.csv."""
    params = Path(path).with_name("params.json")
    try:
        scale = json.loads(params.read_text(encoding="utf-8"))["spec"]["scale"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None, False
    return _SYNTH_SCALES.get(scale, (None, None, False))


READERS = {"koniq": _read_koniq, "pyiqa": _read_pyiqa, "liqe": _read_liqe,
            "deqa_json": _read_deqa_json, "qalign_json": _read_qalign_json, "csv": _read_schema_csv}


# ------------------------------------------------------------------------------------- helpers

def _read_csv(path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except pd.errors.EmptyDataError:
        raise DeqaError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: not a readable CSV file: {first_line(exc)}") from None


def _load_json(path):
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: not valid JSON: {first_line(exc)}") from None
    if not isinstance(entries, list):
        raise DeqaError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    if not entries:
        raise DeqaError(f"{path}: the file is empty (no entries)")
    return entries


def _json_frame(path) -> pd.DataFrame:
    entries = _load_json(path)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DeqaError(f"{path}: row {i + 1}: expected a JSON object, got {type(entry).__name__}")
    return pd.DataFrame.from_records(entries)


def require_columns(raw: pd.DataFrame, columns, path) -> None:
    """Refuse a table that lacks any of ``columns``, naming the file and the columns it has."""
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DeqaError(f"{path}: missing required column(s) {missing}; found {list(raw.columns)}")


def _pick(raw: pd.DataFrame, candidates):
    for c in candidates:
        if c in raw.columns:
            return c
    lower = {str(c).lower(): c for c in raw.columns}
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    return None


def numeric_column(values: pd.Series, what: str, path, images) -> pd.Series:
    """Column as float; a value that is present but not a number raises, naming the row."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(float)
    text = values.astype(object)
    out = pd.to_numeric(values.astype(str).str.strip().where(values.notna(), None), errors="coerce")
    bad = (out.isna() & values.notna() & (values.astype(str).str.strip() != "")).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        image = images.iloc[i] if images is not None else "?"
        raise DeqaError(f"{path}: row {i + 1} (image {image!r}): {what} is not a number "
                        f"({text.iloc[i]!r})")
    return out.astype(float)


def raise_first(mask, source, images, message, values=None) -> None:
    """Raise DeqaError for the first row where ``mask`` is set: '<source>: row i (image ...): message'."""
    mask = np.asarray(mask, dtype=bool)
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        if values is not None:
            value = values[i]
            shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
            message = message.format(value=shown) if "{value}" in message else f"{message} ({shown})"
        raise DeqaError(f"{source}: row {i + 1} (image {images.iloc[i]!r}): {message}")


# ---------------------------------------------------------------------- distortions from file names
#: KADID-10k's 25 distortion types, numbered as in its file names (``I01_03_02.png``: reference 01,
#: type 03, level 02).
KADID_DISTORTIONS = {
    1: "gaussian blur", 2: "lens blur", 3: "motion blur", 4: "color diffusion", 5: "color shift",
    6: "color quantization", 7: "color saturation 1", 8: "color saturation 2", 9: "jpeg2000", 10: "jpeg",
    11: "white noise", 12: "white noise in color component", 13: "impulse noise", 14: "multiplicative noise",
    15: "denoise", 16: "brighten", 17: "darken", 18: "mean shift", 19: "jitter", 20: "non-eccentricity patch",
    21: "pixelate", 22: "quantization", 23: "color block", 24: "high sharpen", 25: "contrast change",
}
#: TID2013's 24 distortion types (``i01_03_2.bmp``: reference 01, type 03, level 2); TID2008 has the
#: first 17, numbered the same.
TID_DISTORTIONS = {
    1: "additive gaussian noise", 2: "noise in color components", 3: "spatially correlated noise",
    4: "masked noise", 5: "high frequency noise", 6: "impulse noise", 7: "quantization noise",
    8: "gaussian blur", 9: "image denoising", 10: "jpeg", 11: "jpeg2000", 12: "jpeg transmission errors",
    13: "jpeg2000 transmission errors", 14: "non-eccentricity pattern noise", 15: "local block-wise distortions",
    16: "mean shift", 17: "contrast change", 18: "change of color saturation", 19: "multiplicative gaussian noise",
    20: "comfort noise", 21: "lossy compression of noisy images", 22: "color quantization with dither",
    23: "chromatic aberrations", 24: "sparse sampling and reconstruction",
}
#: CSIQ's six types, by the word in its file names (``1600.AWGN.3.png``: reference 1600, level 3).
CSIQ_DISTORTIONS = {"awgn": "white noise", "jpeg": "jpeg", "jpeg2000": "jpeg2000", "fnoise": "pink noise",
                    "blur": "gaussian blur", "contrast": "contrast decrement"}

_KADID_NAME = re.compile(r"^(?P<ref>i\d{2})_(?P<family>\d{2})_(?P<level>\d{2})\.\w+$", re.IGNORECASE)
_TID_NAME = re.compile(r"^(?P<ref>i\d{2})_(?P<family>\d{2})_(?P<level>\d)\.\w+$", re.IGNORECASE)
_CSIQ_NAME = re.compile(r"^(?P<ref>.+)\.(?P<family>awgn|jpeg|jpeg2000|fnoise|blur|contrast)\.(?P<level>\d+)\.\w+$",
                        re.IGNORECASE)
#: the columns ``distortions`` gives
DISTORTION_COLUMNS = ("family", "level", "ref")


def parse_distortion(image) -> tuple[str, int, str] | None:
    """(family, level, reference) of a KADID-10k, TID2013 / TID2008 or CSIQ image from its published
    file name (any folder before it, any case), or None when the name follows none of them.

    ``I01_03_02.png`` (KADID-10k: two-digit level) -> ("motion blur", 2, "I01");
    ``i01_08_3.bmp`` (TID: one-digit level) -> ("gaussian blur", 3, "I01");
    ``1600.AWGN.3.png`` (CSIQ) -> ("white noise", 3, "1600"). Explained in notebook 05."""
    name = str(image).replace("\\", "/").rsplit("/", 1)[-1]
    for pattern, names in ((_KADID_NAME, KADID_DISTORTIONS), (_TID_NAME, TID_DISTORTIONS)):
        match = pattern.match(name)
        if match and int(match["family"]) in names:
            return names[int(match["family"])], int(match["level"]), match["ref"].upper()
    match = _CSIQ_NAME.match(name)
    if match:
        return CSIQ_DISTORTIONS[match["family"].lower()], int(match["level"]), match["ref"]
    return None


def distortions(table: pd.DataFrame) -> pd.DataFrame:
    """``family``, ``level`` and ``ref`` (the pristine reference or scene) of every row of a metadata
    table, aligned with it: the synthetic sets' own ``distortion``, ``level`` and ``scene`` columns
    where the table has them, else parsed from the ``image`` names (``parse_distortion``). Rows with
    neither get None / NaN; a pristine image (level 0) keeps family ``"pristine"``."""
    out = pd.DataFrame({"family": pd.Series([None] * len(table), dtype=object, index=table.index),
                        "level": np.nan, "ref": pd.Series([None] * len(table), dtype=object, index=table.index)})
    own = {"distortion", "level"} <= set(table.columns)
    if own:
        known = table["distortion"].notna()
        out.loc[known, "family"] = table.loc[known, "distortion"].astype(str)
        out.loc[known, "level"] = pd.to_numeric(table.loc[known, "level"], errors="coerce")
        if "scene" in table.columns:
            out.loc[known, "ref"] = table.loc[known, "scene"].astype(str)
    rest = out["family"].isna().to_numpy()
    if "image" in table.columns and rest.any():
        parsed = [parse_distortion(name) for name in table["image"].to_numpy()[rest]]
        rows = out.index[rest]
        for row, found in zip(rows, parsed):
            if found is not None:
                out.at[row, "family"], out.at[row, "level"], out.at[row, "ref"] = found
    return out
