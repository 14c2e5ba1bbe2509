"""Shared fixtures: the real annotations folder (skipped, saying so, when absent) and temp outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from deqa import paths


@pytest.fixture(scope="session")
def real_iqa() -> Path:
    """Path to the real human annotations; tests that need it skip when it is absent."""
    if not paths.real_iqa_available():
        pytest.skip(f"real annotations not found at {paths.real_iqa_dir()} (set DEQA_REAL_IQA)")
    return paths.real_iqa_dir()


@pytest.fixture(autouse=True)
def _outputs_to_tmp(tmp_path_factory, monkeypatch):
    """Never let a test write into the tracked figures/ or the user's runs/ and data/."""
    base = tmp_path_factory.getbasetemp() / "outputs"
    for var, sub in (("DEQA_FIGURES", "figures"), ("DEQA_RUNS", "runs"), ("DEQA_DATA", "data")):
        if var not in os.environ:
            monkeypatch.setenv(var, str(base / sub))


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """The smoke-size synthetic data sets (two scales, about 100 training images each)."""
    from deqa.synth import make_synthetic

    out = tmp_path_factory.mktemp("synth")
    make_synthetic(out, smoke=True, progress=False)
    return sorted(str(p) for p in out.glob("*/meta.csv"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from deqa.tiny import build_tiny

    return str(build_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0))
