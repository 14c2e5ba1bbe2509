"""deqa.recipe: the embedded model's two-stage recipe, end to end in smoke mode."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_official_recipe_trains_the_published_label(real_iqa):
    """``--recipe official`` resolves to the published label builder with the published density per
    data set, and the labels training builds from those settings (``trainset.load_splits``, the call
    ``deqa.train`` makes) equal the published builder's, row by row, on real KonIQ-10k and KADID-10k."""
    from benchmarks.published_labels import published_labels
    from deqa import trainset
    from deqa.levels import CENTERS, LABEL_COLUMNS
    from deqa.runconfig import TrainConfig, resolve_settings
    from deqa.soft_label import PUBLISHED_LABEL

    settings = resolve_settings({}, "official")
    assert settings["reference_labels"] is True and settings["method"] == "official"
    assert TrainConfig.__dataclass_fields__["reference_labels"].default is PUBLISHED_LABEL
    files = {"koniq": real_iqa / "koniq10k" / "koniq10k_distributions_sets.csv",
             "kadid": real_iqa / "kadid10k" / "meta_info_KADID10kDataset.csv"}
    for name, meta in files.items():
        splits = trainset.load_splits([meta], ("train", "val", "test"), label=settings["label"],
                                      method=settings["method"], reference=settings["reference_labels"],
                                      nominal=settings["nominal_scale"], check_images=False)
        table = pd.concat([s.table for s in splits.values() if s is not None]).sort_values("_row")
        raw = pd.read_csv(meta)
        if name == "koniq":   # the published input: the mean of the 1-5 ratings and their SD
            mos, std = raw[["c1", "c2", "c3", "c4", "c5"]].to_numpy(float) @ CENTERS, raw["SD"].to_numpy(float)
        else:                 # KADID-10k's pyiqa file holds the variance in its std column
            mos, std = raw["dmos"].to_numpy(float), np.sqrt(raw["std"].to_numpy(float))
        q_pub, _, mu_pub, _ = published_labels(mos.tolist(), std.tolist(), "pdf")
        assert len(table) == len(q_pub)
        np.testing.assert_allclose(table["mu"].to_numpy(), mu_pub, rtol=0, atol=1e-9)
        worst = np.max(np.abs(table[list(LABEL_COLUMNS)].to_numpy() - q_pub))
        print(f"{name}: {len(table)} rows, max |training label - published| = {worst:.1e}")
        assert worst <= 1e-9
        assert np.max(np.abs(q_pub.sum(axis=1) - 1)) > 0.01   # the published rows that do not sum to 1 too
