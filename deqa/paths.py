"""Where the tutorial reads and writes: one place, overridable by environment variables.

Used by every notebook's setup cell (see ``deqa.setup``) and by the tests, which point the
outputs at temporary folders so that executing a notebook never touches tracked files.

| variable            | default                         | what                                  |
|---------------------|---------------------------------|---------------------------------------|
| ``DEQA_SMOKE``      | unset                           | ``1`` shrinks every notebook to seconds |
| ``DEQA_FIGURES``    | ``<repo>/figures``              | figures written by the notebooks      |
| ``DEQA_DATA``       | ``<repo>/data/generated``       | generated synthetic data sets         |
| ``DEQA_RUNS``       | ``<repo>/runs``                 | trained models and training logs      |
| ``DEQA_REAL_IQA``   | ``<repo>/../shared/real-iqa``   | real human annotations, if present    |
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def smoke() -> bool:
    """True when ``DEQA_SMOKE`` is set to something other than ``0``/empty."""
    return os.environ.get("DEQA_SMOKE", "").strip() not in ("", "0", "false", "False")


def figures_dir() -> Path:
    return _env_path("DEQA_FIGURES", ROOT / "figures")


def data_dir() -> Path:
    return _env_path("DEQA_DATA", ROOT / "data" / "generated")


def runs_dir() -> Path:
    return _env_path("DEQA_RUNS", ROOT / "runs")


def real_iqa_dir() -> Path:
    return _env_path("DEQA_REAL_IQA", (ROOT / ".." / "shared" / "real-iqa").resolve())


def real_iqa_available() -> bool:
    return (real_iqa_dir() / "MANIFEST.md").is_file()
