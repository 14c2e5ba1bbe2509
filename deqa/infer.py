"""Scoring images: one forward pass per batch, five level probabilities, their mean and spread.

``python -m deqa score --model RUN_OR_MODEL_DIR IMAGE_OR_DIR [...] [--out preds.csv] [--batch-size B]``

The prompt ends with "The quality of the image is"; the logits at the last position (left padding)
restricted to the five level tokens give p = softmax(z_bad..z_excellent), the score sum_k p_k c_k
and the spread sqrt(sum_k p_k (c_k - score)^2). ``predict_split`` scores a split of the metadata and
joins the predictions to the human labels, for validation, the ablation and the notebooks.
Explained in notebook 05 (``05_distribution_plots``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import levels
from .errors import DeqaError
from .images import open_image, to_rgb
from .losses import level_probs


def score_images(model, processor, images, batch_size: int = 16, progress: bool = True, level_ids=None,
                 square: bool = True, min_side: int | None = None) -> pd.DataFrame:
    """Score ``images`` (paths or PIL images) -> DataFrame with ``score, std, p_bad .. p_excellent``.

    With paths the first column is ``image`` (the path as given). Unreadable images are skipped
    with a warning naming them, and listed in ``df.attrs["skipped"]``. The result of an image does
    not depend on the batch it is in (left padding, one forward per batch). Files are read with
    ``deqa.images.open_image``, whole unless ``min_side`` lets a large JPEG be decoded at reduced
    size (``decode_side`` gives the value ``score --low-memory`` uses).
    """
    from .collate import Collator, level_token_ids
    from .setup import progress as progress_bar

    images = list(images)
    if batch_size < 1:
        raise DeqaError(f"batch size must be at least 1, got {batch_size}")
    if level_ids is None:
        level_ids = level_token_ids(processor)
    collate = Collator(processor, level_ids, train=False, square=square)
    was_training = model.training
    model.eval()

    names, probs, skipped = [], [], []
    with_paths = any(not hasattr(im, "convert") for im in images)
    bar = progress_bar(total=len(images), desc="scoring", unit="img", disable=not progress)
    try:
        for start in range(0, len(images), batch_size):
            chunk, chunk_names = [], []
            for i, item in enumerate(images[start : start + batch_size], start):
                name = str(item) if not hasattr(item, "convert") else f"image {i}"
                try:
                    img = _as_rgb(item) if hasattr(item, "convert") else open_image(item, min_side)
                except Exception as exc:  # unreadable or corrupt file: report it and go on
                    why = " ".join(str(exc).split())
                    warnings.warn(f"skipping {name}: cannot read the image ({type(exc).__name__}: {why})",
                                  stacklevel=2)
                    skipped.append(name)
                    continue
                chunk.append(img)
                chunk_names.append(name)
            if chunk:
                probs.append(_level_probabilities(model, collate(chunk), level_ids, chunk_names))
                names += chunk_names
            bar.update(min(batch_size, len(images) - start))
    finally:
        bar.close()
        model.train(was_training)

    df = _predictions(probs)
    if with_paths:
        df.insert(0, "image", names)
    df.attrs["skipped"] = skipped
    return df


def _level_probabilities(model, batch: dict, level_ids, names) -> np.ndarray:
    """(B, 5) level probabilities of a collated batch from one forward pass; a non-finite row is a
    DeqaError naming its image (``names``)."""
    from .mllm import level_logits

    with torch.no_grad():
        logits = level_logits(model, batch)
    p = level_probs(logits[:, list(level_ids)].float()).cpu().numpy().astype(np.float64)
    if not np.all(np.isfinite(p)):
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(p).all(axis=1))]
        raise DeqaError(f"the model gave non-finite level probabilities for {bad[0]}")
    return p


def _predictions(probs: list) -> pd.DataFrame:
    """``score, std, p_bad .. p_excellent`` of the batches' probabilities."""
    p = np.concatenate(probs) if probs else np.zeros((0, len(levels.LEVELS)))
    df = pd.DataFrame(p, columns=list(levels.PROB_COLUMNS))
    df.insert(0, "score", levels.score(p) if len(p) else np.zeros(0))
    df.insert(1, "std", levels.spread(p) if len(p) else np.zeros(0))
    return df


def _as_rgb(img):
    return img if img.mode == "RGB" else to_rgb(img)


def decode_side(processor) -> int | None:
    """The smallest side ``score --low-memory`` lets a JPEG be decoded at (``open_image(min_side=)``):
    four times the model's input side and at least 1024 px, so only photos far larger than the
    model's input are decoded at 1/2, 1/4 or 1/8 size (much less memory; their scores move by up
    to about 0.01) and common data-set images (1024 x 768 and smaller) stay whole. None when the
    processor's input size is unknown."""
    ip = getattr(processor, "image_processor", None)
    size = getattr(ip, "size", None)
    try:
        values = dict(size) if isinstance(size, dict) else vars(size)
    except TypeError:  # no size, or one this function does not know
        return None
    values = {k: v for k, v in values.items() if isinstance(v, (int, float)) and v}
    if not values:
        return None
    if hasattr(ip, "merge_size") and "longest_edge" in values:  # Qwen2-VL: a pixel budget
        side = math.isqrt(int(values["longest_edge"]))
    else:
        side = int(max(values.values()))
    return max(4 * side, 1024)


def predict_split(model, processor, metas, split: str = "test", batch_size: int = 32,
                  limit: int | None = None, progress: bool = False, seed: int = 0, **label_options) -> pd.DataFrame:
    """Score every image of ``split`` in the metadata files (``deqa.trainset.load_split``, which takes
    ``label_options``) and join the predictions to the human side: one row per image with the
    metadata columns (the native ``std`` renamed ``mos_std``), ``path``, the human ``mu, sigma,
    q_bad .. q_excellent`` and the predicted ``score, std, p_bad .. p_excellent``. ``limit`` keeps a
    fixed random subset of at most that many images per data set. Explained in notebook 04."""
    from .trainset import load_split

    return predict_data(model, processor, load_split(metas, split, **label_options), batch_size, limit,
                        progress, seed)


def predict_data(model, processor, data, batch_size: int = 32, limit: int | None = None,
                 progress: bool = False, seed: int = 0) -> pd.DataFrame:
    """``predict_split`` on a split already loaded (a ``deqa.trainset.TrainData``)."""
    table = _split_table(data)
    if limit is not None:
        keep = []
        for _, part in table.groupby("dataset", sort=False):
            idx = part.index.to_numpy()
            if len(idx) > limit:
                idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
            keep.append(idx)
        table = table.loc[np.concatenate(keep)].reset_index(drop=True)
    scores = _score_files(model, processor, list(table["path"]), batch_size, progress)
    return pd.concat([table, scores[list(levels.PREDICTION_COLUMNS)]], axis=1)


def _split_table(data) -> pd.DataFrame:
    """A loaded split's rows as ``predict_data`` returns them, before the predictions: the metadata
    columns (the native ``std`` renamed ``mos_std``) and the resolved image ``path``."""
    table = data.table.drop(columns=["_row", "_meta"], errors="ignore")
    table = table.rename(columns={"std": levels.NATIVE_STD})
    table["path"] = [str(p) for p in data.paths]
    return table.reset_index(drop=True)


def with_predictions(data, predictions: pd.DataFrame, root) -> pd.DataFrame:
    """``predict_data``'s table for predictions made before: ``predictions`` has the columns of a
    ``deqa score`` CSV, its ``image`` given relative to the folder ``root`` (chapter 04 commits its test
    predictions so, and chapter 05 reads them back with ``DEQA_REUSE=1`` instead of loading the model).
    Every image of ``data`` needs exactly one prediction; a missing or repeated one is a DeqaError."""
    table = _split_table(data)
    root = Path(root).resolve()
    try:
        keys = [Path(p).resolve().relative_to(root).as_posix() for p in table["path"]]
    except ValueError:
        raise DeqaError(f"the images of the split are not under {root}") from None
    given = predictions.set_index("image")
    if given.index.has_duplicates:
        raise DeqaError(f"two predictions for the image {given.index[given.index.duplicated()][0]!r}")
    missing = [k for k in keys if k not in given.index]
    if missing:
        raise DeqaError(f"{len(missing)} of {len(keys)} images have no prediction, e.g. {missing[0]!r}")
    scores = given.loc[keys, list(levels.PREDICTION_COLUMNS)].reset_index(drop=True)
    return pd.concat([table, scores], axis=1)


def _score_files(model, processor, paths: list[str], batch_size: int, progress: bool) -> pd.DataFrame:
    """``score_images`` of image files that must all be readable (else a DeqaError names the file),
    each decoded and preprocessed once per process (``deqa.collate.Collator.files``): the same numbers."""
    from .collate import Collator, level_token_ids
    from .setup import progress as progress_bar

    if batch_size < 1:
        raise DeqaError(f"batch size must be at least 1, got {batch_size}")
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper scores as its model
    level_ids = level_token_ids(processor)
    collate = Collator(processor, level_ids, train=False)
    was_training = model.training
    model.eval()
    probs = []
    bar = progress_bar(total=len(paths), desc="scoring", unit="img", disable=not progress)
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            probs.append(_level_probabilities(model, collate.files(chunk), level_ids, chunk))
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return _predictions(probs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    parser.add_argument("--model", required=True, help="trained run folder, model folder or hub id")
    parser.add_argument("--out", help="CSV to write (default: print the CSV)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="weights' dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="Qwen2-VL / Qwen2.5-VL: at most N pixels per image (fewer visual tokens)")
    parser.add_argument("--low-memory", action="store_true",
                        help="decode large JPEGs at 1/2, 1/4 or 1/8 size, keeping at least 4x the model's input "
                             "side (and 1024 px): far less memory for big photos; their scores move by up to ~0.01")


def run(args) -> int:
    from .images import OTHER_IMAGE_SUFFIXES, no_images_error, readable_suffixes, scan_images
    from .mllm import load, set_max_pixels
    from .outfile import check_out_file, write_text_atomic
    from .setup import resolve_device

    if args.batch_size < 1:
        raise DeqaError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise DeqaError(f"--max-pixels must be positive, got {args.max_pixels}")
    device = resolve_device(args.device)
    paths, not_read = scan_images(args.inputs)
    if not paths:
        raise no_images_error(args.inputs, not_read)
    out = None
    if args.out:
        out = check_out_file(args.out, paths, refuse_suffixes=readable_suffixes() + OTHER_IMAGE_SUFFIXES)
    for item in not_read:
        warnings.warn(f"skipping {item}")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else None)
    model, processor = load(args.model, dtype=dtype, device=device)
    if args.max_pixels is not None:
        set_max_pixels(processor, args.max_pixels)
    start = time.perf_counter()
    df = score_images(model, processor, paths, batch_size=args.batch_size, progress=not args.no_progress,
                      min_side=decode_side(processor) if args.low_memory else None)
    seconds = time.perf_counter() - start
    skipped = len(not_read) + len(df.attrs["skipped"])
    if df.empty:
        raise DeqaError(f"no image could be read: all {skipped} file(s) were skipped (see the warnings above)"
                        + (f"; {out} was not written" if out else ""))
    text = df.to_csv(index=False, float_format="%.6f")
    note = f" ({skipped} skipped)" if skipped else ""
    if out is not None:
        write_text_atomic(out, text)
        print(f"scored {len(df)} images in {seconds:.2f} s ({len(df) / max(seconds, 1e-9):.1f} images/s, "
              f"model loading not counted) -> {out}{note}")
    else:
        _print_text(text)
        if skipped:
            print(f"scored {len(df)} images{note}", file=sys.stderr)
    return 0


def _print_text(text: str) -> None:
    """Print ``text`` to stdout; file names that are not valid UTF-8 keep their original bytes."""
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
