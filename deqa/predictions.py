"""Reading a model's predictions, whatever wrote them: one reader per format, shared by
``python -m deqa evaluate`` and ``python -m deqa report``. Explained in notebook 05
(``05_distribution_plots``).

Formats (``--preds-format``; ``auto`` tells them apart by their content, not by the file's extension):

* ``deqa``: the CSV of ``python -m deqa score``: ``image, score, std, p_bad .. p_excellent`` (the
  score and spread on the 1-5 level scale, the five level probabilities).
* ``scores``: one score per image and nothing else, as pyiqa or a spreadsheet writes it: a CSV or
  tab-separated file with a header (the columns found by the names in ``IMAGE_COLUMNS`` and
  ``SCORE_COLUMNS``, or given by ``image_col`` / ``score_col``) or without one (image, score). The
  score may be on any monotone scale (another metric's 0-100; lower-is-better with
  ``lower_better=True``, read negated): correlations do not care, but nothing that needs the 1-5
  level scale or the probabilities can be computed from it.
* ``iqa_eval``: DeQA-Score's published evaluation output (``src/evaluate/iqa_eval.py``): JSON lines
  with ``id``, ``image``, ``gt_score`` and ``logits`` keyed by the level words as the user passed them
  (``--level-names excellent good fair poor bad``; any case), optionally ``probs``. Its file is named
  after the metadata with a ``.json`` extension (``test_koniq.json``) although it holds one JSON
  object per line. The five probabilities are the softmax of the five logits, as its
  ``cal_distribution_gap.py`` computes them; the score and spread follow (``deqa.levels``).

``read_predictions`` returns a table with ``image``, ``score`` and, for the level formats, ``std`` and
``p_bad .. p_excellent``; ``.attrs`` says what was read (``format``, ``on_levels``, ``description``,
``scale``). Bad rows raise DeqaError naming the file and the row.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError, first_line
from .formats import raise_first
from .levels import LEVELS, PROB_COLUMNS
from .levels import score as level_score
from .levels import spread as level_spread

PREDICTION_FORMATS = ("deqa", "scores", "iqa_eval")
#: column names taken as the image of a score-only file, in order of preference (any case)
IMAGE_COLUMNS = ("image", "image_name", "img_name", "img", "image_path", "img_path", "filename", "file_name",
                 "file", "name", "path", "dist_name", "Image name")
#: column names taken as the score of a score-only file, in order of preference (any case)
SCORE_COLUMNS = ("score", "pred", "prediction", "predicted", "pred_score", "predicted_score", "pred_mos",
                 "predicted_mos", "mos_pred", "quality", "quality_score", "iqa_score", "output")
#: how far a row of p_bad .. p_excellent may sum from 1 (the CSV keeps 6 decimals)
PROB_SUM_TOLERANCE = 1e-3
_SNIFF_BYTES = 65536


# ----------------------------------------------------------------------------------- detection
def _head(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(_SNIFF_BYTES)
    except IsADirectoryError:
        raise DeqaError(f"{path}: is a folder; give the predictions file") from None
    except FileNotFoundError:
        raise DeqaError(f"{path}: predictions file not found") from None
    return raw.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")


def _delimiter(first_line_text: str) -> str:
    if "\t" in first_line_text:
        return "\t"
    if ";" in first_line_text and "," not in first_line_text:
        return ";"
    return ","


def _is_number(text: str) -> bool:
    try:
        float(text.strip().strip('"'))
    except ValueError:
        return False
    return True


def detect_format(path) -> str:
    """``iqa_eval`` for JSON (lines or a list), ``deqa`` for a table whose header has ``score`` and
    ``p_bad .. p_excellent``, ``scores`` for any other table."""
    path = Path(path)
    head = _head(path)
    if not head.strip():
        raise DeqaError(f"{path}: the predictions file is empty")
    if head[0] in "{[":
        return "iqa_eval"
    line = head.splitlines()[0]
    fields = [f.strip().strip('"') for f in line.split(_delimiter(line))]
    if "score" in fields and set(PROB_COLUMNS) <= set(fields):
        return "deqa"
    return "scores"


# ------------------------------------------------------------------------------------ checking
def check_predictions(preds: pd.DataFrame, source: str) -> None:
    """One-line DeqaError naming ``source`` and the row (1 = the first data row) for a missing column,
    a missing or non-numeric value, a negative ``std`` or ``p_*`` values that are not probabilities
    (each in [0, 1], the five summing to 1 within ``PROB_SUM_TOLERANCE``)."""
    missing = [c for c in ("image", "score") if c not in preds.columns]
    if missing:
        raise DeqaError(f"{source}: missing column(s) {missing}; expected image, score, std, "
                        f"{', '.join(PROB_COLUMNS)}")
    images = preds["image"]
    raise_first((images.isna() | (images.astype(str).str.strip() == "")).to_numpy(), source, images,
                "the image name is empty")
    numeric = ["score"] + [c for c in ("std", *PROB_COLUMNS) if c in preds.columns]
    values = preds[numeric].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.all(np.isfinite(values), axis=1)
    raise_first(bad, source, images, f"a missing, NaN or non-numeric value in {numeric}{_count(bad)}")
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
            first = int(np.flatnonzero(bad)[0])
            shown = ", ".join(f"{c} = {v:g}" for c, v in zip(cols, p[first]))
            raise_first(bad, source, images, f"{', '.join(cols)} are not probabilities ({shown}, sum "
                        f"{p[first].sum():g}; each must be in [0, 1] and together they must sum to 1){_count(bad)}")


def _count(bad: np.ndarray) -> str:
    n = int(np.count_nonzero(bad))
    return f"; {n} rows like this" if n > 1 else ""


# ------------------------------------------------------------------------------------- readers
def _read_table(path: Path, header: bool) -> pd.DataFrame:
    line = _head(path).splitlines()[0]
    try:
        # file names that are not valid UTF-8 were written by `score` with their original bytes
        # every column as text (an image named 00001 stays 00001); numbers are parsed by their checks
        return pd.read_csv(path, sep=_delimiter(line), header=0 if header else None, encoding="utf-8-sig",
                           encoding_errors="surrogateescape", skipinitialspace=True, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DeqaError(f"{path}: cannot read the predictions table ({first_line(exc)})") from None


def _read_deqa(path: Path, **_) -> pd.DataFrame:
    table = _read_table(path, header=True)
    table.columns = [str(c).strip() for c in table.columns]
    check_predictions(table, str(path))
    out = table[["image", "score", "std", *PROB_COLUMNS]].copy()
    for col in out.columns[1:]:
        out[col] = pd.to_numeric(out[col])
    out.attrs.update(description="the CSV of python -m deqa score (score, std and the five level probabilities)",
                     scale="the 1-5 level scale")
    return out


def _decimal_commas(table: pd.DataFrame) -> pd.DataFrame:
    """Columns of numbers written with a decimal comma (3,5: a spreadsheet of a locale that separates
    its fields with semicolons) as 3.5."""
    for col in table.columns:
        text = table[col].astype(str).str.strip()
        comma = text.str.fullmatch(r"-?\d+,\d+")
        if comma.any() and (comma | pd.to_numeric(text, errors="coerce").notna() | table[col].isna()).all():
            table[col] = table[col].str.replace(",", ".", regex=False)
    return table


def _find_column(columns, wanted, candidates, what: str, path: Path, option: str):
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise DeqaError(f"{path}: no column {wanted!r} ({option}); the columns are {list(columns)}")
    lower = {str(c).strip().lower(): c for c in columns}
    for name in candidates:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def _read_scores(path: Path, image_col=None, score_col=None, lower_better=False, **_) -> pd.DataFrame:
    line = _head(path).splitlines()[0]
    fields = [f.strip().strip('"') for f in line.split(_delimiter(line))]
    header = not (len(fields) >= 2 and _is_number(fields[1]) and image_col is None and score_col is None)
    table = _read_table(path, header=header)
    if _delimiter(line) == ";":
        table = _decimal_commas(table)
    if not header:
        table = table.iloc[:, :2]
        table.columns = ["image", "score"]
    columns = list(table.columns)
    image = _find_column(columns, image_col, IMAGE_COLUMNS, "image", path, "--image-col")
    if image is None:
        raise DeqaError(f"{path}: no image column among {columns}; name it with --image-col "
                        f"(recognised: {', '.join(IMAGE_COLUMNS)})")
    score = _find_column(columns, score_col, SCORE_COLUMNS, "score", path, "--score-col")
    how = "named" if score_col else "found by name"
    if score is None:  # a single numeric column besides the image: a metric named after itself
        numeric = [c for c in columns if c != image
                   and pd.to_numeric(table[c], errors="coerce").notna().all()]
        if len(numeric) != 1:
            raise DeqaError(f"{path}: no score column among {columns}; name it with --score-col "
                            f"(recognised: {', '.join(SCORE_COLUMNS)})")
        score, how = numeric[0], "the only numeric column"
    out = pd.DataFrame({"image": table[image], "score": table[score]})
    check_predictions(out, str(path))
    out["image"] = out["image"].astype(str)
    raw = pd.to_numeric(out["score"]).to_numpy(float)
    out["score"] = -raw if lower_better else raw
    direction = ("lower is better (--lower-better): negated, so that higher is better" if lower_better
                 else "higher is better")
    column = f"column {score!r} ({how})" if header else "the second column (no header)"
    out.attrs.update(description=f"scores only: {column}, images from "
                     + (f"column {image!r}" if header else "the first column"),
                     scale=f"their own scale as read ({raw.min():.4g} to {raw.max():.4g}), {direction}",
                     score_column=str(score), lower_better=bool(lower_better))
    return out


def _published_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line; a JSON list is read as its entries."""
    text = Path(path).read_text(encoding="utf-8", errors="surrogateescape").lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeqaError(f"{path}: not valid JSON: {first_line(exc)}") from None
        records = list(enumerate(entries, start=1))
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DeqaError(f"{path}: line {number} is not a JSON object ({first_line(exc)}); "
                                    "an evaluation run stopped while writing it?") from None
    if not records:
        raise DeqaError(f"{path}: no predictions (the file has no JSON lines)")
    return records


def _read_iqa_eval(path: Path, **_) -> pd.DataFrame:
    images, logits, words_seen = [], [], None
    for number, rec in _published_records(path):
        where = f"{path}: line {number}"
        if not isinstance(rec, dict) or "logits" not in rec or not isinstance(rec["logits"], dict):
            raise DeqaError(f"{where}: expected an object with 'image' and 'logits' keyed by the level "
                            "words (DeQA-Score's iqa_eval.py output)")
        if "image" not in rec and "img_path" not in rec:
            raise DeqaError(f"{where}: no 'image' field")
        by_word = {str(k).strip().lower(): (k, v) for k, v in rec["logits"].items()}
        if sorted(by_word) != sorted(LEVELS):
            raise DeqaError(f"{where}: logits are keyed by {list(rec['logits'])}; expected the five level "
                            f"words {', '.join(LEVELS)} (in any case)")
        row = []
        for level in LEVELS:
            value = by_word[level][1]
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not np.isfinite(value):
                raise DeqaError(f"{where} (image {rec.get('image')!r}): the logit of {by_word[level][0]!r} "
                                f"is {by_word[level][1]!r}, not a finite number")
            row.append(value)
        words_seen = words_seen or [by_word[level][0] for level in reversed(LEVELS)]
        images.append(str(rec.get("image", rec.get("img_path"))))
        logits.append(row)
    z = np.asarray(logits)
    z = z - z.max(axis=1, keepdims=True)  # softmax over the five level logits, bad..excellent
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    out = pd.DataFrame({"image": images, "score": level_score(p), "std": level_spread(p)})
    for k, col in enumerate(PROB_COLUMNS):
        out[col] = p[:, k]
    out.attrs.update(description="DeQA-Score's evaluation output (JSON lines from iqa_eval.py, logits keyed by "
                     f"{', '.join(map(str, words_seen))}): the five probabilities are the softmax of the "
                     "five logits, as its cal_distribution_gap.py computes them",
                     scale="the 1-5 level scale")
    return out


READERS = {"deqa": _read_deqa, "scores": _read_scores, "iqa_eval": _read_iqa_eval}


def read_predictions(path, format: str = "auto", image_col: str | None = None, score_col: str | None = None,
                     lower_better: bool = False) -> pd.DataFrame:
    """The predictions in ``path`` as a table (``image``, ``score`` and, for ``deqa`` and ``iqa_eval``,
    ``std`` and ``p_bad .. p_excellent``). ``format``: ``"auto"`` (``detect_format``) or one of
    ``PREDICTION_FORMATS``; ``image_col``, ``score_col`` and ``lower_better`` concern score-only
    files (giving a column implies ``scores``). ``.attrs``: ``format``, ``on_levels`` (True when the
    score is on the 1-5 level scale with probabilities), ``description`` and ``scale`` (one line each,
    for a report), ``source``."""
    path = Path(path)
    if format == "auto":
        format = "scores" if (image_col or score_col or lower_better) else detect_format(path)
    if format not in READERS:
        raise DeqaError(f"unknown predictions format {format!r}; use auto or one of {', '.join(PREDICTION_FORMATS)}")
    if format != "scores" and (image_col or score_col or lower_better):
        raise DeqaError(f"--image-col, --score-col and --lower-better are for score-only predictions, not {format!r}")
    _head(path)  # a missing file or a folder: a one-line error
    table = READERS[format](path, image_col=image_col, score_col=score_col, lower_better=lower_better)
    if table.empty:
        raise DeqaError(f"{path}: no predictions (the file has a header only)")
    table.attrs.update(format=format, on_levels=format != "scores", source=str(path))
    return table
