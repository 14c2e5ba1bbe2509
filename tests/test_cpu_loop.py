"""benchmarks/cpu_loop.py in its dry mode: the same code path as the full measurement at smoke size,
its report and its JSON (the targets themselves are checked by the script's exit status at full size)."""
from __future__ import annotations

import json
from pathlib import Path


from benchmarks import cpu_loop


def test_dry_run_reports_both_ratios_from_one_process(tiny_model, smoke_data, tmp_path, capsys):
    out = tmp_path / "loop.json"
    code = cpu_loop.main(["--dry-run", "--model", tiny_model, "--data", str(Path(smoke_data[0]).parent.parent),
                          "--reps", "2", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0  # a dry run checks no target
    for name in ("training", "scoring"):
        for clock in ("wall", "cpu"):
            assert f"{name} ({clock} time): bare / deqa = " in text
    assert "rep 0 (A B)" in text and "rep 1 (B A)" in text  # alternated
    got = json.loads(out.read_text())
    assert got["dry_run"] and got["threads"] == 1 and len(got["reps"]) == 2
    assert got["same_weights"]  # the bare loop trains on the deqa runs' own batches: the same weights
    for rep in got["reps"]:
        assert rep["deqa_train"] > rep["deqa_loop"] > 0 and rep["bare_train"] > 0
        assert rep["deqa_score"] > 0 and rep["bare_score"] > 0
        assert rep["deqa_n_test"] == sum(1 for m in smoke_data for line in Path(m).read_text().splitlines()
                                    if line.split(",")[4] == "test")
    for key in ("training_wall", "training_cpu", "scoring_wall", "scoring_cpu"):
        r = got[key]
        assert r["low"] <= r["ratio"] <= r["high"]  # the median of the pairs' ratios
        assert r["low"] - 1e-9 <= r["all_reps"] <= r["high"] + 1e-9  # a weighted mean of the pairs' ratios
        assert r["of_medians"] > 0
        assert r["target"] == cpu_loop.TARGETS[key.split("_")[0]]


def test_missed_targets_are_named_at_full_size():
    row = {"ratio": 0.5, "low": 0.4, "high": 0.6, "of_medians": 0.5, "all_reps": 0.5}
    out = {"training_wall": {**row, "target": 0.95}, "training_cpu": {**row, "ratio": 0.97, "target": 0.95},
           "scoring_wall": {**row, "ratio": 0.93, "target": 0.9}, "scoring_cpu": {**row, "target": 0.9},
           "reps": [{"deqa_train": 1.2, "deqa_loop": 0.8, "deqa_score": 0.1}], "same_weights": True,
           "per_run": {"train_wall": 1, "loop": 0.8, "fixed_train": 0.2, "score": 0.1, "step_ms": 5, "bare_step_ms": 4}}
    lines = []
    assert cpu_loop.report(out, "wall", log=lines.append) == ["training ratio (wall time) 0.500 is below the target 0.95"]
    assert cpu_loop.report(out, "cpu", log=lines.append) == ["scoring ratio (cpu time) 0.500 is below the target 0.9"]


def test_too_few_repetitions_is_a_one_line_error(capsys):
    assert cpu_loop.main(["--dry-run", "--reps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --reps must be at least 1, got 0"
    assert cpu_loop.main(["--reps", "4"]) == 2  # the targets are medians of at least 5
    assert capsys.readouterr().err.strip() == "error: --reps must be at least 5 at full size, got 4"
