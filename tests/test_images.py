"""deqa.images: images read as a viewer shows them (bit depth, EXIF orientation, transparency) and
folders searched without silently dropping files."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from deqa import images
from deqa.errors import DeqaError


@pytest.fixture
def grey8():
    """An 8-bit grey picture with the whole 0..255 range."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    arr[0, 0], arr[0, 1] = 0, 255
    return arr


def _grey(path) -> np.ndarray:
    rgb = np.asarray(images.open_image(path)).astype(int)
    assert rgb.shape[2] == 3 and np.array_equal(rgb[..., 0], rgb[..., 2])
    return rgb[..., 0]


def test_16_bit_png_reads_as_its_8_bit_picture(tmp_path, grey8):
    Image.fromarray(grey8).save(tmp_path / "g8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert np.abs(_grey(tmp_path / "g16.png") - grey8).max() <= 1
    # a plain convert("RGB") clips: almost every pixel would be 255
    assert np.mean(np.asarray(Image.open(tmp_path / "g16.png").convert("L")) == 255) > 0.9


def test_other_wide_modes_are_scaled_by_their_range(tmp_path, grey8):
    big_endian = Image.frombytes("I;16B", (60, 40), (grey8.astype(">u2") * 257).tobytes())
    assert np.abs(np.asarray(images.to_rgb(big_endian))[..., 0].astype(int) - grey8).max() <= 1
    as_int32 = Image.fromarray(grey8.astype(np.int32) * 257)
    assert as_int32.mode == "I"
    assert np.abs(np.asarray(images.to_rgb(as_int32))[..., 0].astype(int) - grey8).max() <= 1
    Image.fromarray(grey8.astype(np.float32) / 255).save(tmp_path / "f01.tif")
    assert Image.open(tmp_path / "f01.tif").mode == "F"
    assert np.abs(_grey(tmp_path / "f01.tif") - grey8).max() <= 1
    # a float image in no standard range is stretched from its min..max: 0..1000 -> 0..255
    Image.fromarray(grey8.astype(np.float32) * (1000 / 255)).save(tmp_path / "f1000.tif")
    assert np.abs(_grey(tmp_path / "f1000.tif") - grey8).max() <= 1
    with pytest.raises(ValueError, match="non-finite"):
        images.to_8bit(np.array([[0.0, np.nan]], np.float32), "F")


def test_exif_orientation_is_applied(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (30, 80, 3), dtype=np.uint8)).save(tmp_path / "raw.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    Image.open(tmp_path / "raw.jpg").save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    raw = Image.open(tmp_path / "rot.jpg")
    assert raw.size == (80, 30)
    shown = images.open_image(tmp_path / "rot.jpg")
    assert shown.size == (30, 80)
    expected = raw.convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(np.asarray(shown), np.asarray(expected))


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere, hidden on the left half
    rgba[:, 5:, 3] = 255
    rgba[:, :5, 3] = 0
    rgba[0, 0, 3] = 128  # half transparent: half way to white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = np.asarray(images.open_image(tmp_path / "a.png")).astype(int)
    assert out[5, 2].tolist() == [255, 255, 255]
    assert out[5, 7].tolist() == [200, 0, 0]
    assert np.abs(out[0, 0] - [228, 128, 128]).max() <= 1
    rgba[..., 3] = 255  # opaque alpha: the RGB as it is
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert np.all(np.asarray(images.open_image(tmp_path / "opaque.png")) == [200, 0, 0])


def test_palette_cmyk_and_1_bit_still_read(tmp_path):
    pal = Image.new("P", (4, 3))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "p.gif")
    assert np.asarray(images.open_image(tmp_path / "p.gif"))[1, 1].tolist() == [10, 20, 30]
    Image.new("CMYK", (5, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    red = np.asarray(images.open_image(tmp_path / "c.jpg")).astype(int)
    assert red.shape == (4, 5, 3) and red[..., 0].min() > 200 and red[..., 1:].max() < 60
    one = Image.new("1", (6, 2), 1)
    one.save(tmp_path / "b.png")
    assert np.all(np.asarray(images.open_image(tmp_path / "b.png")) == 255)


def test_large_jpeg_is_drafted_only_when_asked(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (600, 960, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    assert images.open_image(tmp_path / "big.jpg").size == (960, 600)
    assert images.open_image(tmp_path / "big.jpg", min_side=150).size == (240, 150)  # 1/4
    assert images.open_image(tmp_path / "big.jpg", min_side=400).size == (960, 600)  # 1/2 < 400
    Image.fromarray(rng.integers(0, 256, (600, 960, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    assert images.open_image(tmp_path / "big.png", min_side=150).size == (960, 600)  # JPEG only


def _jpeg(path, value=100):
    Image.new("RGB", (8, 8), (value, value, value)).save(path, format="JPEG")


def test_scan_lists_image_types_it_does_not_read(tmp_path):
    _jpeg(tmp_path / "a.jfif")
    _jpeg(tmp_path / "b.jpe")
    (tmp_path / "c.heic").write_bytes(b"not read")
    Image.new("RGB", (8, 8)).save(tmp_path / "d.png")
    (tmp_path / "notes.txt").write_text("ignored")
    found, skipped = images.scan_images([tmp_path])
    assert [os.path.basename(p) for p in found] == ["a.jfif", "b.jpe", "d.png"]
    assert len(skipped) == 1 and "c.heic" in skipped[0] and "HEIC" in skipped[0]
    assert np.asarray(images.open_image(found[0]))[0, 0, 0] in range(98, 103)
    only = tmp_path / "only"
    only.mkdir()
    (only / "x.heif").write_bytes(b"")
    with pytest.raises(DeqaError, match="no readable images.*x.heif"):
        images.find_images([only])


def test_scan_follows_linked_folders_once_and_never_loops(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (4, 4)).save(outside / "o.png")
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(root / "sub" / "s.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "above.png")  # must not be found through a link up
    try:
        os.symlink(outside, root / "linked")
        os.symlink(root / "sub", root / "again")  # the same folder twice
        os.symlink(tmp_path, root / "sub" / "up")  # a loop: a folder above the searched one
        os.symlink(root / "missing.png", root / "dangling.png")
    except (OSError, NotImplementedError):
        pytest.skip("symbolic links are not available here")
    found, skipped = images.scan_images([root])
    names = sorted(os.path.basename(p) for p in found)
    assert names == ["o.png", "s.png"]
    assert any("dangling.png" in s and "missing file" in s for s in skipped)
