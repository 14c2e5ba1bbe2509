"""The options a GPU user expects, checked on CPU with tiny models: --max-pixels shrinks Qwen's
visual tokens (and is refused where the processor resizes to a fixed size), --attn-implementation
reaches the model, and a model trained with them saves and scores."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deqa import mllm, synth, tiny_archs
from deqa.errors import DeqaError
from deqa.tiny import build_tiny


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("options")
    tiny_archs.BUILDERS["qwen2_vl"](base / "qwen")
    build_tiny(base / "llava")
    synth.make_synthetic(base / "data", smoke=True, progress=False)
    return base


def _visual_rows(processor, image) -> int:
    enc = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[image], return_tensors="pt")
    return int(enc["pixel_values"].shape[0])


def test_max_pixels_shrinks_qwen_visual_tokens(folders):
    _, processor = mllm.load(folders / "qwen")
    image = Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype("uint8"))
    before = _visual_rows(processor, image)
    mllm.set_max_pixels(processor, 32 * 32)
    after = _visual_rows(processor, image)
    assert (before, after) == (64, 16)  # 128 px / 16 px patches -> 8 x 8, capped at 32 x 32 px -> 4 x 4


def test_max_pixels_refused_for_fixed_size_processors(folders):
    _, processor = mllm.load(folders / "llava")
    with pytest.raises(DeqaError, match="fixed size"):
        mllm.set_max_pixels(processor, 1000)


def test_attn_implementation_reaches_the_model(folders):
    net, _ = mllm.load(folders / "llava", attn_implementation="eager")
    assert net.config._attn_implementation == "eager"


@pytest.mark.slow
def test_train_with_gpu_options_then_score(folders, tmp_path):
    metas = sorted((folders / "data").glob("*/meta.csv"))
    cmd = [sys.executable, "-m", "deqa", "train", "--model", str(folders / "qwen"), "--out", str(tmp_path / "run"),
           "--steps", "2", "--batch-size", "2", "--lora", "--attn-implementation", "eager",
           "--max-pixels", "1024", "--no-bf16", "--eval-every", "-1", "--no-progress", "--data", str(metas[0])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    images = sorted((folders / "data" / metas[0].parent.name / "images").glob("*.png"))[:3]
    scored = subprocess.run([sys.executable, "-m", "deqa", "score", "--model", str(tmp_path / "run"),
                             *map(str, images), "--max-pixels", "1024", "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stderr[-2000:]
    lines = scored.stdout.strip().splitlines()
    assert lines[0].split(",")[:3] == ["image", "score", "std"] and len(lines) == 4
    scores = [float(line.split(",")[1]) for line in lines[1:]]
    assert all(1.0 <= s <= 5.0 for s in scores)
