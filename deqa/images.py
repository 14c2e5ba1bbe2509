"""Reading image files, for scoring and for training: one way to open an image, one way to find them.

Used by ``python -m deqa score`` (``deqa.infer``) and by the training data (``deqa.trainset``).
Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

from pathlib import Path

from .errors import DeqaError

#: file suffixes searched for in a folder (case-insensitive)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def open_image(path):
    """The image at ``path`` as RGB, fully decoded (so a truncated file fails here, not later).
    Raises ``OSError``/``ValueError`` for an unreadable file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im.convert("RGB")


def load_image(path):
    """``open_image``, with an unreadable file turned into a DeqaError that names it."""
    try:
        return open_image(path)
    except (OSError, ValueError) as exc:
        raise DeqaError(f"{path}: cannot read the image: {exc}") from None


def find_images(inputs) -> list[str]:
    """Image files named by ``inputs``: files as given, folders searched recursively (sorted)."""
    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [str(p) for p in files]
        elif path.is_file():
            found.append(str(item))
        else:
            raise DeqaError(f"image or folder {item} does not exist")
    if not found:
        raise DeqaError(f"no images found in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return found
