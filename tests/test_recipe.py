"""deqa.recipe: the embedded model's two-stage recipe, end to end in smoke mode."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deqa import mllm, recipe


@pytest.mark.slow
def test_embedded_two_stage_recipe_in_smoke_mode(smoke_data, tmp_path):
    data_dir = Path(smoke_data[0]).parents[1]
    summary = recipe.train_embedded(tmp_path / "tiny-deqa", data_dir, smoke=True, progress=False)
    assert (tmp_path / "tiny-deqa" / "model" / "config.json").is_file()
    assert summary["stage2_steps"] == recipe.EMBEDDED_SMOKE["stage2_steps"]
    stages = json.loads((tmp_path / "tiny-deqa" / "stages.json").read_text())
    assert stages["stage1_seconds"] > 0 and set(stages["validation"]) == {"synth-koniq", "synth-spaq"}
    model, _ = mllm.load(tmp_path / "tiny-deqa")  # a run folder loads its final model
    assert type(model).__name__ == "LlavaForConditionalGeneration"
