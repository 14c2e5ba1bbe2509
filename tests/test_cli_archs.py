"""Each supported architecture end to end from the command line, as a user runs it:
build-tiny -> train 2 steps -> (the run saves) -> score with the reloaded run -> evaluate."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from deqa import synth

ARCHS = ("llava", "qwen2_vl", "qwen2_5_vl", "idefics3")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_data")
    synth.make_synthetic(out, smoke=True, progress=False)
    return sorted(out.glob("*/meta.csv"))


def _deqa(*args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "deqa", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"python -m deqa {' '.join(map(str, args))}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    return done


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_build_train_reload_score_from_the_command_line(arch, data, tmp_path):
    _deqa("build-tiny", tmp_path / "model", "--arch", arch)
    _deqa("train", "--model", tmp_path / "model", "--data", data[0], "--out", tmp_path / "run", "--steps", 2,
          "--batch-size", 2, "--eval-every", -1, "--no-progress")
    assert (tmp_path / "run" / "model").is_dir()
    images = sorted((data[0].parent / "images").glob("*.png"))[:5]
    _deqa("score", "--model", tmp_path / "run", *images, "--out", tmp_path / "preds.csv", "--no-progress")
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == ["image", "score", "std", "p_bad", "p_poor", "p_fair", "p_good", "p_excellent"]
    assert len(preds) == len(images) and preds["score"].between(1, 5).all()
    probs = preds[["p_bad", "p_poor", "p_fair", "p_good", "p_excellent"]].to_numpy()
    assert abs(probs.sum(axis=1) - 1).max() < 1e-4
    report = _deqa("evaluate", tmp_path / "preds.csv", data[0])
    assert data[0].parent.name in report.stdout
