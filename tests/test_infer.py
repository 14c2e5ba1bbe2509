"""Scoring: one forward per batch, batch independence, probabilities, corrupt files, the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from deqa import cli, infer, levels
from deqa import collate as C
from deqa import images
from deqa import mllm as M
from deqa.levels import PREDICTION_COLUMNS, PROB_COLUMNS


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from deqa.tiny import build_tiny

    out = build_tiny(tmp_path_factory.mktemp("tiny_infer") / "model", seed=3)
    model, processor = M.load(out)
    return out, model, processor


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory):
    """Seven readable images of different shapes (some not square) in a folder with a sub-folder."""
    root = tmp_path_factory.mktemp("images")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        h, w = 30 + 11 * i, 70 - 5 * i
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = root / ("sub" if i % 3 == 0 else ".") / f"img{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        paths.append(path.resolve())
    return root, sorted(paths)


def test_scores_do_not_depend_on_the_batch(tiny, image_dir):
    _, model, processor = tiny
    paths = image_dir[1]
    runs = [infer.score_images(model, processor, paths, batch_size=b, progress=False) for b in (1, 4, 7)]
    for df in runs:
        assert list(df.columns) == ["image", *PREDICTION_COLUMNS]
        assert df["image"].tolist() == [str(p) for p in paths]
    for df in runs[1:]:
        assert np.abs(df[list(PREDICTION_COLUMNS)].to_numpy() - runs[0][list(PREDICTION_COLUMNS)].to_numpy()).max() <= 1e-4


def test_probabilities_score_and_spread(tiny, image_dir):
    _, model, processor = tiny
    df = infer.score_images(model, processor, image_dir[1], progress=False)
    p = df[list(PROB_COLUMNS)].to_numpy()
    assert np.all(np.isfinite(p)) and np.all(p > 0)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(df["score"], p @ levels.CENTERS, atol=1e-9)
    assert np.allclose(df["std"], levels.spread(p), atol=1e-9)
    assert df["score"].between(1, 5).all()


def test_probabilities_are_the_softmax_of_the_full_forward_at_the_last_position(tiny, image_dir):
    _, model, processor = tiny
    imgs = [images.open_image(p) for p in image_dir[1][:3]]
    df = infer.score_images(model, processor, imgs, progress=False)
    assert "image" not in df.columns
    ids = C.level_token_ids(processor)
    batch = C.Collator(processor, ids)(imgs)
    with torch.no_grad():
        logits = model(**C.model_inputs(batch)).logits[:, -1]
    expected = torch.softmax(logits[:, ids], dim=-1).numpy()
    assert np.allclose(df[list(PROB_COLUMNS)].to_numpy(), expected, atol=1e-6)


def test_a_corrupt_image_is_named_and_skipped(tiny, image_dir, tmp_path):
    _, model, processor = tiny
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    paths = [image_dir[1][0], broken, image_dir[1][1]]
    with pytest.warns(UserWarning, match="broken.jpg"):
        df = infer.score_images(model, processor, paths, batch_size=2, progress=False)
    assert df["image"].tolist() == [str(image_dir[1][0]), str(image_dir[1][1])]
    assert df.attrs["skipped"] == [str(broken)]


def test_cli_score_writes_the_csv(tiny, image_dir, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    rc = cli.main(["score", "--model", str(tiny[0]), str(image_dir[0]), "--out", str(out), "--batch-size", "3",
                   "--device", "cpu", "--no-progress"])
    assert rc == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["image", *PREDICTION_COLUMNS]
    assert len(df) == 7
    assert sorted(df["image"]) == sorted(str(p) for p in image_dir[0].rglob("img*"))
    assert np.allclose(df[list(PROB_COLUMNS)].sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case", ["missing model", "no images", "missing image"])
def test_cli_score_bad_input_is_one_line_error(case, tiny, image_dir, tmp_path, capsys):
    model_dir, images = str(tiny[0]), str(image_dir[0])
    if case == "missing model":
        args = ["--model", str(tmp_path / "no-such-model"), images]
    elif case == "no images":
        (tmp_path / "empty").mkdir()
        args = ["--model", model_dir, str(tmp_path / "empty")]
    else:
        args = ["--model", model_dir, str(tmp_path / "nothing.png")]
    rc = cli.main(["score", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
