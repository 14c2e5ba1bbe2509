"""Reading image files, for scoring and for training: one way to open an image, one way to find them.

Used by ``python -m deqa score`` (``deqa.infer``) and by the training data (``deqa.trainset``).
Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DeqaError

#: file suffixes searched for in a folder (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: image suffixes deqa does not read: a folder search lists such files as skipped instead of
#: ignoring them as it ignores ``.txt`` or ``.json`` files
OTHER_IMAGE_SUFFIXES = (".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".svg", ".psd", ".ico", ".tga",
                        ".ppm", ".pgm", ".pbm", ".pnm", ".exr", ".hdr", ".dng", ".raw", ".cr2", ".cr3",
                        ".nef", ".arw", ".orf", ".rw2", ".raf")

# modes PIL keeps with more than 8 bits per sample: converted by their value range, not clipped
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


def readable_suffixes() -> tuple[str, ...]:
    """``IMAGE_SUFFIXES``, plus ``.avif`` where this PIL build reads AVIF."""
    from PIL import features

    avif = "avif" in features.modules and features.check_module("avif")
    return IMAGE_SUFFIXES + ((".avif",) if avif else ())


def open_image(path, min_side: int | None = None):
    """The image at ``path`` as 8-bit RGB, as a viewer shows it, fully decoded (so a truncated file
    fails here, not later). Raises ``OSError``/``ValueError`` for an unreadable file.

    * EXIF orientation is applied (a portrait photo stored sideways comes out upright).
    * 16-bit and 32-bit integer and float greyscale (PIL modes ``I;16*``, ``I``, ``F``) are scaled to
      8 bits by their value range (``to_8bit``) instead of being clipped at 255.
    * Transparency is composited on white, as most viewers show it; a fully opaque alpha channel
      changes nothing. Palette, CMYK, 1-bit and 48-bit RGB go through PIL's own conversion.
    * ``min_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (the codec's draft mode,
      far less memory for large photos) as long as both sides stay at least ``min_side``.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if min_side:
            im.draft(None, (int(min_side), int(min_side)))  # a no-op for formats other than JPEG
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
        return to_rgb(im)


def to_rgb(im):
    """A decoded PIL image as 8-bit RGB (the conversions ``open_image`` lists)."""
    from PIL import Image

    if im.mode in _WIDE_MODES:
        return Image.fromarray(to_8bit(np.asarray(im), im.mode), mode="L").convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return rgba.convert("RGB")
    return im.convert("RGB")


def to_8bit(values: np.ndarray, mode: str = "I") -> np.ndarray:
    """Grey values of more than 8 bits -> uint8, by their range. 16-bit modes (``I;16*``) divide by
    257 (65535 -> 255: an 8-bit picture stored as 16 bits x 257 comes back unchanged). Integer
    ``I`` takes [0, 255] as it is and [0, 65535] as 16 bits; float ``F`` takes [0, 1] as 0..255 and
    [0, 255] as it is. Anything else is stretched from its min..max to 0..255. Non-finite values
    raise ``ValueError``."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"image of mode {mode} has non-finite pixel values")
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scaled = x / 257.0
    elif lo >= 0 and hi <= 1 and mode == "F":
        scaled = x * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = x
    elif lo >= 0 and hi <= 65535 and mode != "F":
        scaled = x / 257.0
    else:
        scaled = (x - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def load_image(path, min_side: int | None = None):
    """``open_image``, with an unreadable file turned into a DeqaError that names it."""
    try:
        return open_image(path, min_side=min_side)
    except (OSError, ValueError) as exc:
        raise DeqaError(f"{path}: cannot read the image: {exc}") from None


def scan_images(inputs) -> tuple[list[str], list[str]]:
    """``(images, skipped)`` named by ``inputs``: files as given, folders searched recursively.

    In a folder, files with a suffix of ``IMAGE_SUFFIXES`` are taken (sorted); files with a suffix
    of ``OTHER_IMAGE_SUFFIXES`` (HEIC, AVIF, ...) and links to nowhere are returned in ``skipped``
    as ``"path (reason)"``; other files are ignored. Linked sub-folders are followed, each folder
    is read once (a folder reached twice, through a link and directly, gives its images once), and
    a link to the searched folder or to one above it is not followed (it would loop).
    """
    found, skipped = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images, other = _scan_folder(path)
            found += images
            skipped += other
        elif path.is_file():
            found.append(str(item))
        else:
            raise DeqaError(f"image or folder {item} does not exist")
    return found, skipped


def _scan_folder(root: Path) -> tuple[list[str], list[str]]:
    images, skipped = [], []
    # a link to the folder itself or to one above it would loop: treat those as read already
    seen = {_key(p) for p in root.resolve().parents}
    readable = readable_suffixes()

    def unreadable(exc: OSError) -> None:
        skipped.append(f"{exc.filename} (folder cannot be read: {exc.strerror})")

    for folder, dirs, files in os.walk(str(root), followlinks=True, onerror=unreadable):
        key = _key(folder)
        if key in seen:  # reached again through a link: read once
            dirs[:] = []
            continue
        seen.add(key)
        dirs.sort()
        for name in files:
            p = os.path.join(folder, name)
            suffix = os.path.splitext(name)[1].lower()
            if suffix in readable:
                if os.path.isfile(p):
                    images.append(p)
                else:
                    skipped.append(f"{p} (a link to a missing file)")
            elif suffix in OTHER_IMAGE_SUFFIXES:  # (.avif is in readable where PIL reads it)
                skipped.append(f"{p} ({suffix[1:].upper()} images are not read; convert to PNG or JPEG)")
    return sorted(images), sorted(skipped)


def _key(folder) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def no_images_error(inputs, skipped=()) -> DeqaError:
    """The error for inputs holding no image to read (naming a skipped file, if any)."""
    where = ", ".join(map(str, inputs))
    if skipped:
        return DeqaError(f"no readable images in {where}: {len(skipped)} file(s) skipped, e.g. {skipped[0]}")
    return DeqaError(f"no images found in {where} (looked for {', '.join(readable_suffixes())})")


def find_images(inputs) -> list[str]:
    """The image files of ``scan_images``; raises DeqaError when there are none."""
    found, skipped = scan_images(inputs)
    if not found:
        raise no_images_error(inputs, skipped)
    return found
