"""The GPU check (benchmarks/gpu_session.sh) in its CPU dry run: both benchmarks run on tiny
configurations of the same classes, and their JSON holds what the GPU check reads (notebook 04, GPUs)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_end_to_end  # noqa: E402  (benchmarks/, beside gpu_common)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _rows(intervals):
    seconds, rows = 0.0, []
    for step, dt in enumerate(intervals, start=1):
        seconds += dt
        rows.append({"step": step, "loss": 1.0, "seconds": seconds})
    return rows


def test_loop_rates_spread_the_checkpoint():
    # steps 1-2 warm up; a checkpoint after step 5 lands in step 6's interval (7 s = 2 s step + 5 s)
    rates = gpu_end_to_end.loop_rates(_rows([3, 2.5, 2, 2, 2, 7, 2, 2]), total=8, save_every=5, skip=2,
                                      images_per_step=32, checkpoint_every=10)
    assert rates["steady_steps"] == [3, 4, 5, 7, 8] and rates["checkpoint_steps"] == [6]
    assert rates["steady_step_seconds_mean"] == pytest.approx(2.0)
    assert rates["checkpoint_seconds"] == pytest.approx(5.0)
    assert rates["images_per_s_between_checkpoints"] == pytest.approx(16.0)
    assert rates["images_per_s"] == pytest.approx(32 / (2.0 + 5.0 / 10))
    # validation rows (no "seconds") are passed over; a missing step is refused
    rows = _rows([1, 1, 1, 1]) + [{"step": 4, "val_srcc": 0.5}]
    assert gpu_end_to_end.loop_rates(rows, 4, 2, 1, 8, 100)["steady_steps"] == [2, 4]
    with pytest.raises(SystemExit, match="no row for step 3"):
        gpu_end_to_end.loop_rates(_rows([1, 1]), 4, 2, 1, 8, 100)


@pytest.mark.slow
def test_gpu_session_dry_run(tmp_path):
    from deqa.runconfig import RECIPES

    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh"), "--dry-run", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    log = (out / "gpu_session.log").read_text()
    assert "=== gpu_throughput.py: done" in log and "=== gpu_end_to_end.py: done" in log

    step = json.loads((out / "gpu_throughput_dry-run.json").read_text())
    assert step["dry_run"] is True
    assert [row["batch"] for row in step["training"]] == [2, 4]
    assert all(_positive(row["ratio_deqa_vs_bare"]) for row in step["training"])  # target >= 0.9 on a GPU
    assert all(_positive(row["ratio_vs_generate"]) for row in step["scoring"])  # target > 1 on a GPU

    e2e = json.loads((out / "gpu_end_to_end_dry-run.json").read_text())
    assert e2e["dry_run"] is True and e2e["complete"] is True and e2e["stage"] == "done"
    for key in ("device", "torch", "transformers", "peft", "python"):
        assert isinstance(e2e[key], str) and e2e[key]
    for key in ("whole_loop_images_per_s", "bare_step_images_per_s", "score_images_per_s",
                "bare_forward_images_per_s", "generate_images_per_s", "ratio_vs_bare_step",
                "ratio_vs_bare_forward", "score_ratio_vs_generate"):
        assert _positive(e2e[key]), key
    assert e2e["ratio_vs_bare_step"] == pytest.approx(e2e["whole_loop_images_per_s"] / e2e["bare_step_images_per_s"])
    assert set(e2e["targets"]) == {"ratio_vs_bare_step", "score_ratio_vs_generate"}
    assert set(e2e["peak_memory_gib"]) == {"bare_step", "bare_forward", "train_device", "score_device"}
    assert all(_positive(e2e["startup_seconds"][k]) for k in ("train", "score"))
    # the bare step trained what deqa trained, with the recipe's LoRA and batch
    official = RECIPES["official"]
    assert e2e["same_trainable_as_bare"] is True and e2e["gradient_checkpointing"] is True
    assert e2e["recipe"]["lora_r"] == official["lora_r"] and e2e["recipe"]["train_vision"] is True
    assert e2e["images_per_step"] == e2e["bare"]["step"]["images_per_step"] == 2 * official["batch_size"]
    train, score = e2e["train"], e2e["score"]
    assert train["mode"] == "lora" and train["steady_steps"] == [3, 5, 6] and train["checkpoint_steps"] == [4]
    assert len(train["step_seconds"]) == train["steps"] == 6
    # start-up, loop and the end (final checkpoint and model) add up to the command's wall time
    parts = train["startup_seconds"] + train["loop_seconds"] + train["finish_seconds"]
    assert parts == pytest.approx(train["total_seconds"], abs=1.0)
    assert score["images"] == 8 * 21
    assert score["startup_seconds"] + score["seconds"] == pytest.approx(score["total_seconds"])
    assert "WORK" in train["command"] and "/tmp" not in train["command"]
