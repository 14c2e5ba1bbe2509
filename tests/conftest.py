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


@pytest.fixture(scope="session")
def report_inputs(tmp_path_factory):
    """Two small data sets and one model's predictions in every format ``deqa report`` reads.

    ``synth-a``: 60 images on disk with the synthetic sets' distortion columns and rating
    histograms; ``kadid10k``: 50 KADID-10k file names (families parsed from them), no image files.
    Returns a dict of paths: ``metas`` (two metadata CSVs), ``deqa`` (a `deqa score` CSV),
    ``iqa_eval`` (the same predictions as DeQA-Score's JSON lines, logits keyed by level words),
    ``scores`` (a score-only 0-100 CSV), ``other`` (a second, noisier model), ``root``."""
    import json

    import numpy as np
    import pandas as pd
    from PIL import Image

    from deqa.levels import LEVELS, score, spread
    from deqa.soft_label import soft_labels

    root = tmp_path_factory.mktemp("report_inputs")
    rng = np.random.default_rng(11)
    metas, rows = [], []
    for name, n in (("synth-a", 60), ("kadid10k", 50)):
        folder = root / name
        (folder / "images").mkdir(parents=True)
        if name == "synth-a":
            family = np.array(["pristine", "blur", "noise", "jpeg"])[np.arange(n) % 4]
            level = np.where(family == "pristine", 0, 1 + (np.arange(n) // 4) % 5)
            images = [f"images/s{i // 4:02d}_{f}{lv}.png" for i, (f, lv) in enumerate(zip(family, level))]
            extra = {"distortion": family, "level": level, "scene": [f"s{i // 4:02d}" for i in range(n)]}
        else:
            level = 1 + np.arange(n) % 5
            images = [f"images/I{1 + i // 25:02d}_{1 + (i // 5) % 5:02d}_{lv:02d}.png" for i, lv in enumerate(level)]
            extra = {}
        quality = np.clip(4.6 - 0.7 * level + rng.normal(0, 0.35, n), 1.1, 4.9)
        centers = np.arange(1, 6)
        weights = np.exp(-0.5 * ((centers[None] - quality[:, None]) / 0.8) ** 2)
        counts = np.stack([rng.multinomial(30, w / w.sum()) for w in weights])
        mos = counts @ centers / 30
        std = np.sqrt((counts * (centers[None] - mos[:, None]) ** 2).sum(1) / 29)
        scale = 25.0 if name == "synth-a" else 1.0  # synth-a on 0-100-ish, kadid10k on 1-5
        meta = pd.DataFrame({"image": images, "mos": mos * scale, "std": std * scale, "dataset": name,
                             "split": "test", **{f"c{k + 1}": counts[:, k] / 30 for k in range(5)},
                             "n_ratings": 30, **extra})
        meta.to_csv(folder / "meta.csv", index=False)
        metas.append(str(folder / "meta.csv"))
        if name == "synth-a":
            for i, image in enumerate(images):
                shade = int(40 + 40 * quality[i])
                pixels = np.clip(rng.normal(shade, 25, (24, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / image)
        predicted = np.clip(quality + rng.normal(0, 0.3, n), 1.05, 4.95)
        p = soft_labels(predicted, np.full(n, 0.7))
        for i, image in enumerate(images):
            rows.append({"image": str(folder / image), "score": score(p[i]), "std": spread(p[i]),
                         **{f"p_{level_}": p[i, k] for k, level_ in enumerate(LEVELS)}})
    preds = pd.DataFrame(rows)
    paths_ = {"metas": metas, "root": root}
    paths_["deqa"] = root / "preds.csv"
    preds.to_csv(paths_["deqa"], index=False, float_format="%.8f")
    paths_["iqa_eval"] = root / "test_meta.json"
    with open(paths_["iqa_eval"], "w") as f:
        for i, row in preds.iterrows():
            logits = np.log(np.maximum([row[f"p_{lv}"] for lv in LEVELS], 1e-12))
            words = dict(zip(("Excellent", "Good", "Fair", "Poor", "Bad"), logits[::-1].tolist()))
            f.write(json.dumps({"id": str(i), "image": row["image"], "gt_score": 0.0, "logits": words}) + "\n")
    paths_["scores"] = root / "musiq.csv"
    pd.DataFrame({"img_name": preds["image"], "musiq": 15 + 14 * preds["score"] + rng.normal(0, 4, len(preds))}) \
        .to_csv(paths_["scores"], index=False)
    other = preds.assign(score=np.clip(preds["score"] + rng.normal(0, 0.5, len(preds)), 1, 5))
    paths_["other"] = root / "other.csv"
    other.to_csv(paths_["other"], index=False, float_format="%.8f")
    return paths_
