"""Scoring: one forward per batch, batch independence, probabilities, corrupt files, the CLI."""
from __future__ import annotations

import io
import os

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


def test_a_16_bit_png_scores_as_its_8_bit_twin(tiny, tmp_path):
    _, model, processor = tiny
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (48, 64), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    white = np.full_like(grey, 255)
    Image.fromarray(white).save(tmp_path / "white.png")
    df = infer.score_images(model, processor, [tmp_path / n for n in ("g8.png", "g16.png", "white.png")],
                            progress=False)
    s8, s16, s_white = df["score"]
    assert abs(s16 - s8) < 1e-6
    assert abs(s_white - s8) > 1e-4  # the test can tell a clipped (white) reading apart


def _score_cli(*args):
    return cli.main(["score", "--no-progress", "--device", "cpu", *map(str, args)])


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert all(f in lines[-1] for f in fragments), lines[-1]
    return lines[-1]


@pytest.mark.parametrize("case", ["an input", "another image", "a folder", "under a file", "batch size"])
def test_cli_score_checks_out_and_batch_size_before_loading_the_model(case, image_dir, tmp_path, capsys):
    """Every check here fails before the model loads: the model path does not even exist."""
    first = image_dir[1][0]
    before = first.read_bytes()
    other = tmp_path / "holiday.jpg"
    other.write_bytes(before)
    args = {"an input": ["--out", first, first, image_dir[1][1]],
            "another image": ["--out", other, first],
            "a folder": ["--out", tmp_path, first],
            "under a file": ["--out", tmp_path / "holiday.jpg" / "p.csv", first],
            "batch size": ["--batch-size", "0", first]}[case]
    rc = _score_cli("--model", tmp_path / "no-such-model", *args)
    assert rc == 2
    expected = {"an input": "image file name", "another image": "image file name", "a folder": "is a folder",
                "under a file": "is a file, not a folder", "batch size": "--batch-size"}[case]
    _one_error_line(capsys, expected)
    assert first.read_bytes() == before and other.read_bytes() == before


def test_cli_score_refuses_an_input_given_as_out_whatever_its_name(tiny, image_dir, tmp_path, capsys):
    named = tmp_path / "results.csv"  # an image that happens to have a .csv name
    named.write_bytes(image_dir[1][0].read_bytes())
    rc = _score_cli("--model", tmp_path / "no-such-model", "--out", named, named)
    assert rc == 2
    _one_error_line(capsys, "one of the input images")
    assert named.read_bytes() == image_dir[1][0].read_bytes()


def test_cli_score_refuses_an_unwritable_out_folder(image_dir, tmp_path, capsys, monkeypatch):
    from deqa import outfile

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root writes anywhere: let the check see what a user would
        real = os.access
        monkeypatch.setattr(outfile.os, "access", lambda p, mode: False if str(p) == str(locked) else real(p, mode))
    try:
        rc = _score_cli("--model", tmp_path / "no-such-model", "--out", locked / "p.csv", image_dir[1][0])
    finally:
        locked.chmod(0o755)
    assert rc == 2
    _one_error_line(capsys, "cannot write in", str(locked))


def test_cli_score_skips_and_exits_non_zero_when_nothing_is_readable(tiny, tmp_path, capsys):
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    out = tmp_path / "out.csv"
    out.write_text("earlier results\n")
    rc = _score_cli("--model", tiny[0], tmp_path / "zero.png", tmp_path / "text.png", "--out", out)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["warning", "warning", "error"], err
    assert "no image could be read" in err[-1] and "2 file(s)" in err[-1]
    assert out.read_text() == "earlier results\n"


def test_cli_score_summary_and_one_line_warnings_without_out(tiny, image_dir, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.open(image_dir[1][0]).save(folder / "good.png")
    (folder / "broken.png").write_text("not an image")
    (folder / "phone.heic").write_bytes(b"")
    rc = _score_cli("--model", tiny[0], folder)
    captured = capsys.readouterr()
    assert rc == 0
    rows = pd.read_csv(io.StringIO(captured.out))
    assert rows["image"].tolist() == [str(folder / "good.png")]
    err = captured.err.strip().splitlines()
    assert len(err) == 3, err
    assert err[0].startswith("warning: skipping") and "phone.heic" in err[0]
    assert err[1].startswith("warning: skipping") and "broken.png" in err[1]
    assert err[2] == "scored 1 images (2 skipped)"


def test_cli_score_names_that_are_not_utf8(tiny, image_dir, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/bad\xff\xfename.png"
    try:
        with open(raw, "wb") as f:
            f.write(image_dir[1][0].read_bytes())
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / "nonutf.csv"
    assert _score_cli("--model", tiny[0], folder, "--out", out) == 0
    data = out.read_bytes()
    assert b"bad\xff\xfename.png" in data
    back = pd.read_csv(out, encoding_errors="surrogateescape")
    assert os.fsencode(back["image"][0]) == raw


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from deqa import outfile
    from deqa.errors import DeqaError

    out = tmp_path / "preds.csv"
    out.write_text("old results\n")
    out.chmod(0o640)
    outfile.write_text_atomic(out, "new\n")
    assert out.read_text() == "new\n" and (out.stat().st_mode & 0o777) == 0o640

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outfile.os, "fsync", no_space)
    with pytest.raises(DeqaError, match="cannot write .*No space left"):
        outfile.write_text_atomic(out, "newer\n")
    assert out.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds.csv"]  # no temporary file left


def test_low_memory_decodes_big_jpegs_smaller_with_close_scores(tiny, tmp_path, monkeypatch):
    _, model, processor = tiny
    assert infer.decode_side(processor) == 1024  # 4 x 64 px, floored at 1024
    yy, xx = np.mgrid[0:1500, 0:2400]
    smooth = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=90)
    seen = []
    real_open = infer.open_image
    monkeypatch.setattr(infer, "open_image", lambda p, m=None: seen.append(real_open(p, m).size) or real_open(p, m))
    whole = infer.score_images(model, processor, [tmp_path / "big.jpg"], progress=False)
    small = infer.score_images(model, processor, [tmp_path / "big.jpg"], progress=False, min_side=700)
    assert seen == [(2400, 1500), (1200, 750)]  # 1/2: 1/4 would be under 700 on a side
    assert abs(small["score"][0] - whole["score"][0]) < 0.05


def test_predictions_made_before_join_their_split_as_predict_data_does(tiny_model, smoke_data, tmp_path):
    """with_predictions on a score CSV (images relative to the data folder) gives predict_data's table."""
    from pathlib import Path

    from deqa import infer, levels, mllm, trainset
    from deqa.errors import DeqaError

    model, processor = mllm.load(tiny_model)
    test = trainset.load_split(smoke_data, "test")
    scored = infer.predict_data(model, processor, test)
    root = Path(smoke_data[0]).parent.parent
    saved = scored[["path", *levels.PREDICTION_COLUMNS]].rename(columns={"path": "image"})
    saved["image"] = [Path(p).resolve().relative_to(root.resolve()).as_posix() for p in saved["image"]]
    saved = saved.iloc[::-1]   # any order
    pd.testing.assert_frame_equal(infer.with_predictions(test, saved, root), scored)
    with pytest.raises(DeqaError, match="1 of .* images have no prediction"):
        infer.with_predictions(test, saved.iloc[1:], root)
    with pytest.raises(DeqaError, match="two predictions"):
        infer.with_predictions(test, pd.concat([saved, saved.iloc[:1]]), root)
