"""The synthetic IQA data: scenes, distortions, latent quality, the written data sets, the command."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deqa import synth
from deqa.errors import DeqaError


def _grey(img) -> np.ndarray:
    return np.asarray(img, dtype=float).mean(axis=2)


def _gradient_energy(img) -> float:
    g = _grey(img)
    return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())


def _high_frequency(img) -> float:
    g = _grey(img)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean())


def _psnr(a, b) -> float:
    mse = ((np.asarray(a, float) - np.asarray(b, float)) ** 2).mean()
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def scenes():
    return [synth.render_scene(np.random.default_rng(s)) for s in range(4)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    table = synth.make_synthetic(out, smoke=True, progress=False)
    return out, table


def test_scenes_are_rgb_detailed_and_seeded(scenes):
    img = scenes[0]
    assert img.mode == "RGB" and img.size == (96, 96)
    a = np.asarray(img, float)
    assert a.std() > 20  # not flat colour
    assert _gradient_energy(img) > 100  # edges and fine detail for blur and JPEG to remove
    again = synth.render_scene(np.random.default_rng(0))
    assert np.array_equal(np.asarray(again), np.asarray(img))
    assert not np.array_equal(np.asarray(scenes[1]), np.asarray(img))


def _series(img, kind, measure):
    rng = np.random.default_rng(0)
    return [measure(synth.distort(img, kind, level, rng)) for level in range(6)]


def test_blur_lowers_gradient_energy_with_level(scenes):
    for img in scenes:
        energy = _series(img, "blur", _gradient_energy)
        assert all(np.diff(energy) < 0), energy


def test_noise_raises_high_frequency_energy_with_level(scenes):
    for img in scenes:
        hf = _series(img, "noise", _high_frequency)
        assert all(np.diff(hf) > 0), hf


def test_jpeg_lowers_psnr_with_level(scenes):
    for img in scenes:
        psnr = [_psnr(img, synth.distort(img, "jpeg", level)) for level in range(1, 6)]
        assert all(np.diff(psnr) < 0), psnr
        assert psnr[0] > 24 and psnr[0] - psnr[-1] > 4


def test_contrast_lowers_std_and_keeps_the_mean(scenes):
    for img in scenes:
        std = _series(img, "contrast", lambda im: np.asarray(im, float).std())
        assert all(np.diff(std) < 0), std
        assert std[5] / std[0] == pytest.approx(synth.CONTRAST_FACTOR[-1], abs=0.01)
        mean = _series(img, "contrast", lambda im: np.asarray(im, float).mean())
        assert max(mean) - min(mean) < 1.0


def test_level_zero_is_the_pristine_image_and_bad_input_is_refused(scenes):
    img = scenes[0]
    assert np.array_equal(np.asarray(synth.distort(img, "noise", 0)), np.asarray(img))
    with pytest.raises(DeqaError, match="unknown distortion"):
        synth.distort(img, "rain", 2)
    with pytest.raises(DeqaError, match="level"):
        synth.distort(img, "blur", 6)


def test_degrade_photo_scales_with_image_size():
    # mid-grey at 4 x the reference size: noise cells of 4 px survive a 4 x box downscale unchanged
    photo = Image.new("RGB", (384, 384), (128, 128, 128))
    noisy = synth.degrade_photo(photo, "noise", 3, rng=0)
    small = np.asarray(noisy.resize((96, 96), Image.BOX), float)
    assert small.std() == pytest.approx(synth.NOISE_SD[2] * 255, rel=0.05)
    big_scene = synth.render_scene(np.random.default_rng(3), size=384)
    energy = [_gradient_energy(synth.degrade_photo(big_scene, "blur", lv).resize((96, 96), Image.BOX))
              for lv in range(6)]
    assert all(np.diff(energy) < 0), energy
    assert synth.degrade_photo(big_scene, "jpeg", 5).size == (384, 384)


def test_family_quality_curves():
    q = synth.family_quality(["blur"] * 6, range(6))
    assert q[0] == pytest.approx(4.7) and q[-1] == pytest.approx(1.1)
    assert all(np.diff(q) < 0)
    # JPEG's curve is convex (mild at high quality), blur's concave
    assert synth.family_quality("jpeg", 1)[0] > synth.family_quality("blur", 1)[0]


def test_written_data_sets_follow_the_schema(written):
    out, table = written
    assert set(table["dataset"]) == {"synth-koniq", "synth-spaq"}
    for name in ("synth-koniq", "synth-spaq"):
        meta = pd.read_csv(out / name / "meta.csv")
        assert len(meta) == synth.SMOKE_N_SCENES * 21
        for col in ("image", "mos", "std", "dataset", "split", "c1", "c2", "c3", "c4", "c5", "n_ratings",
                    "distortion", "level", "scene"):
            assert col in meta.columns, col
        assert all((out / name / p).is_file() for p in meta["image"])
        np.testing.assert_allclose(meta[["c1", "c2", "c3", "c4", "c5"]].sum(axis=1), 1.0, atol=1e-5)
        assert set(meta["split"]) == {"train", "val", "test"}
        assert (meta.groupby("scene")["split"].nunique() == 1).all()  # no scene in two splits
        assert Image.open(out / name / meta["image"][0]).size == (96, 96)
    koniq = table[table.dataset == "synth-koniq"]
    spaq = table[table.dataset == "synth-spaq"]
    assert set(koniq["scene"]).isdisjoint(spaq["scene"])
    assert koniq["mos"].between(1, 5).all() and koniq["n_ratings"].eq(25).all()
    assert spaq["mos"].between(0, 100).all() and spaq["mos"].max() > 50 and spaq["n_ratings"].eq(12).all()
    # the 0-100 scale is 25 * (MOS on 1-5 - 1), std alike
    rating_mean = spaq[["c1", "c2", "c3", "c4", "c5"]].to_numpy() @ np.arange(1, 6)
    np.testing.assert_allclose(spaq["mos"], 25 * (rating_mean - 1), atol=1e-3)


def test_the_two_data_sets_hold_different_images(written):
    out, _ = written
    a = np.asarray(Image.open(out / "synth-koniq/images/koniq-0000_pristine0.png"))
    b = np.asarray(Image.open(out / "synth-spaq/images/spaq-0000_pristine0.png"))
    assert not np.array_equal(a, b)


def test_mos_falls_with_level_in_every_family(written):
    _, table = written
    for (name, kind), part in table[table.level > 0].groupby(["dataset", "distortion"]):
        pristine = table[(table.dataset == name) & (table.level == 0)]["mos"].mean()
        means = [pristine] + [part[part.level == lv]["mos"].mean() for lv in range(1, 6)]
        assert all(np.diff(means) < 0), (name, kind, means)


def test_same_seed_same_bytes_and_rerun_is_skipped(tmp_path):
    a = synth.make_synthetic(tmp_path / "a", n_scenes=3, seed=5, progress=False, datasets="synth-koniq")
    b = synth.make_synthetic(tmp_path / "b", n_scenes=3, seed=5, progress=False, datasets="synth-koniq")
    root_a, root_b = tmp_path / "a/synth-koniq", tmp_path / "b/synth-koniq"
    assert (root_a / "meta.csv").read_bytes() == (root_b / "meta.csv").read_bytes()
    for rel in (a["image"][0], a["image"][7], a["image"][20]):
        assert (root_a / rel).read_bytes() == (root_b / rel).read_bytes()
    pd.testing.assert_frame_equal(a, b)
    # a re-run with the same parameters reads the set back without rewriting anything
    stamp = (root_a / "meta.csv").stat().st_mtime_ns, (root_a / a["image"][3]).stat().st_mtime_ns
    again = synth.make_synthetic(tmp_path / "a", n_scenes=3, seed=5, progress=False, datasets="synth-koniq")
    assert ((root_a / "meta.csv").stat().st_mtime_ns, (root_a / a["image"][3]).stat().st_mtime_ns) == stamp
    pd.testing.assert_frame_equal(again, a)
    # another seed regenerates: other scenes, other ratings
    other = synth.make_synthetic(tmp_path / "a", n_scenes=3, seed=6, progress=False, datasets="synth-koniq")
    assert not np.array_equal(other["mos"], a["mos"])
    fewer = synth.make_synthetic(tmp_path / "a", n_scenes=4, seed=6, progress=False, datasets="synth-koniq", size=64)
    assert len(fewer) == 84 and len(list((root_a / "images").glob("*.png"))) == 84
    assert Image.open(root_a / fewer["image"][0]).size == (64, 64)
    synth.make_synthetic(tmp_path / "a", n_scenes=3, seed=6, progress=False, datasets="synth-koniq")
    assert len(list((root_a / "images").glob("*.png"))) == 63  # no stale images from the larger run


def test_dmos_is_lower_is_better(tmp_path):
    table = synth.make_synthetic(tmp_path, n_scenes=3, progress=False, datasets=["synth-dmos"])
    by_level = table.groupby("level")["mos"].mean()
    assert by_level[0] < by_level[5] and table["mos"].between(0, 100).all()


def test_make_synthetic_refuses_bad_input(tmp_path):
    with pytest.raises(DeqaError, match="n_scenes"):
        synth.make_synthetic(tmp_path, n_scenes=2, progress=False)
    with pytest.raises(DeqaError, match="synth-imagenet"):
        synth.make_synthetic(tmp_path, n_scenes=3, progress=False, datasets=["synth-imagenet"])


def test_quality_batch_is_fast_seeded_and_graded():
    images, quality, kind, level = synth.quality_batch(120, size=64, seed=1)
    assert images.shape == (120, 64, 64, 3) and images.dtype == np.uint8
    assert quality.shape == kind.shape == level.shape == (120,)
    again = synth.quality_batch(3, size=64, seed=1)
    assert np.array_equal(again[0], images[:3]) and np.array_equal(again[1], quality[:3])
    assert not np.array_equal(synth.quality_batch(3, size=64, seed=2)[0], images[:3])
    assert set(kind) <= set(synth.DISTORTIONS) | {"pristine"} and set(level) <= set(range(6))
    assert (kind == "pristine").sum() == (level == 0).sum()
    assert np.corrcoef(quality, level)[0, 1] < -0.9
    # its scenes are not the data sets' scenes
    first = synth.render_scene(synth._rng("synth", 1, 0, 0)).resize((64, 64), Image.BICUBIC)
    assert not any(np.array_equal(np.asarray(first), im) for im in images)


@pytest.mark.slow
def test_command_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "deqa", "synth", str(tmp_path / "d"), "--smoke", "--no-progress"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "synth-koniq: 168 images" in ok.stdout and "synth-spaq: 168 images" in ok.stdout
    assert (tmp_path / "d/synth-spaq/meta.csv").is_file()
    bad = subprocess.run([sys.executable, "-m", "deqa", "synth", str(tmp_path / "e"), "--n-scenes", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error:") and "n_scenes" in bad.stderr and "Traceback" not in bad.stderr


def test_run_prints_one_line_per_data_set(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args([str(tmp_path), "--n-scenes", "3", "--no-progress", "--datasets", "synth-spaq"])
    assert synth.run(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("synth-spaq: 63 images, 3 scenes, MOS ")
    assert "train/val/test 21/21/21" in lines[0]


def test_a_quality_band_keeps_only_that_part_of_the_range(tmp_path):
    table = synth.make_synthetic(tmp_path, n_scenes=6, progress=False, datasets=["synth-high", "synth-low"])
    high, low = table[table.dataset == "synth-high"], table[table.dataset == "synth-low"]
    assert high["quality"].between(3.4, 5.0).all() and low["quality"].between(1.0, 2.4).all()
    # the pristine image and every family's mildest level are good enough for synth-high; no level 3 is
    assert set(high["level"]) <= {0, 1, 2} and (high["level"] == 0).sum() == 6
    assert set(low["level"]) <= {3, 4, 5} and (low["level"] == 5).sum() == 6 * 4
    assert len(high) < 6 * 21 and len(list((tmp_path / "synth-high" / "images").glob("*.png"))) == len(high)
    assert set(high["split"]) == set(low["split"]) == {"train", "val", "test"}
    params = json.loads((tmp_path / "synth-high" / "params.json").read_text())
    assert params["spec"]["quality_band"] == [3.4, 5.0] and params["spec"]["scale"] == "0-100"
    # synth-low is a DMOS: its worst images have the highest score
    assert low.groupby("level")["mos"].mean().is_monotonic_increasing


def test_min_max_rescaling_gives_a_restricted_set_other_labels(tmp_path):
    from deqa import data

    synth.make_synthetic(tmp_path, n_scenes=6, progress=False, datasets=["synth-koniq", "synth-high"])
    labels = {name: data.to_levels(data.read_metadata(tmp_path / name / "meta.csv"))
              for name in ("synth-koniq", "synth-high")}
    blur1 = {name: t.query("distortion == 'blur' and level == 1")["mu"].mean() for name, t in labels.items()}
    # the same quality (mild blur, about 3.7 on 1-5): above fair in the full-range set, near the
    # bottom of synth-high, whose worst images it holds
    assert blur1["synth-koniq"] > 3.3 and blur1["synth-high"] < blur1["synth-koniq"] - 0.7
    # by the nominal 0-100 scale instead, the two sets agree
    nominal = data.to_levels(data.read_metadata(tmp_path / "synth-high" / "meta.csv"), nominal=True)
    assert abs(nominal.query("distortion == 'blur' and level == 1")["mu"].mean() - blur1["synth-koniq"]) < 0.3


def test_full_range_sets_keep_their_params_and_bad_specs_are_refused(written):
    out, _ = written
    params = json.loads((out / "synth-koniq" / "params.json").read_text())
    assert set(params["spec"]) == {"name", "n_raters", "n_pool", "bias_sd", "noise_sd", "scale"}
    with pytest.raises(DeqaError, match="quality_band"):
        synth.DatasetSpec("x", 5, 10, 0.2, 0.5, "1-5", quality_band=(4.0, 3.0))
    with pytest.raises(DeqaError, match="scale"):
        synth.DatasetSpec("x", 5, 10, 0.2, 0.5, "0-7")
    assert list(synth.in_band([1.0, 2.4, 2.41], (1.0, 2.4))) == [True, True, False]
