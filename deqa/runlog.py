"""A run folder's training log, ``metrics.jsonl``: one JSON object per line, each with its ``step``
(training loss parts every ``log_every`` steps, validation numbers every ``eval_every``). Written by
``deqa.train``, read by ``deqa.plots`` and the notebooks. Explained in notebook 04.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import DeqaError

METRICS_LOG = "metrics.jsonl"
#: the keys of a log row that measure wall-clock time: they differ from run to run
WALL_CLOCK_KEYS = ("seconds", "time", "elapsed", "wall_s")


def log_path(run_dir_or_log_path) -> Path:
    """The log file itself, given a run folder or the file."""
    path = Path(run_dir_or_log_path)
    return path / METRICS_LOG if path.is_dir() else path


def read_log(run_dir_or_log_path, missing_ok: bool = False, drop_partial_last: bool = False) -> list[dict]:
    """The rows of a training log (a run folder means its ``metrics.jsonl``). A line that is not a
    JSON object with a ``step`` is a DeqaError naming the file and line; an absent file is one too,
    unless ``missing_ok`` (then no rows). ``drop_partial_last``: a last line cut short (a run killed
    while writing it) is dropped instead, as a resumed run does."""
    path = log_path(run_dir_or_log_path)
    if not path.is_file():
        if missing_ok:
            return []
        raise DeqaError(f"{path}: training log not found")
    rows = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if drop_partial_last and number == len(lines):
                break
            raise DeqaError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "step" not in row:
            raise DeqaError(f"{path}: line {number} has no 'step'")
        rows.append(row)
    return rows


def clean_row(row: dict) -> dict:
    """Floats rounded to 6 decimals; a NaN or infinite value is left out (the log never holds one)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, float):
            if not math.isfinite(value):
                continue
            value = round(value, 6)
        out[key] = value
    return out


def append_row(path: Path, row: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def write_rows(path: Path, rows: list[dict]) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_portable(run_dir_or_log_path, out_path) -> Path:
    """Copy a run's log to ``out_path`` without its wall-clock fields (``WALL_CLOCK_KEYS``): what a
    repeated run writes bit for bit (chapter 04 commits its log so; chapter 05 reads it back)."""
    rows = [{k: v for k, v in row.items() if k not in WALL_CLOCK_KEYS} for row in read_log(run_dir_or_log_path)]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_rows(out_path, rows)
    return out_path
