"""The training data: each data set's rows with their labels, the endless stream of same-data-set
pairs, and the batches of pairs a training step consumes. Explained in notebook 04
(``04_finetune_mllm``).

A metadata file is read once per run (``load_splits`` gives every split from one reading). Each data
set is labelled on its WHOLE table (its min/max MOS defines the scale, as the published code does),
then split. The pair stream is a pure function of the number of pairs already consumed, so a resumed
run continues with exactly the pairs an uninterrupted one would have used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import DeqaError
from .images import load_image
from .levels import LABEL_COLUMNS


@dataclass
class TrainData:
    """The images and targets of one split of several data sets, one row per image.

    ``target`` (N, 5): the level distribution to learn (soft or one-hot), ``mu``/``sigma``: the
    score on [1, 5] (DMOS flipped) that the Thurstone target of the fidelity loss uses.
    """

    table: pd.DataFrame  # the metadata rows (+ mu, sigma, q_*), index 0..N-1
    paths: list[Path]
    target: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    datasets: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def answer_levels(self) -> np.ndarray:
        """The level written in the answer text during training: the target's most likely level."""
        return self.target.argmax(axis=1)


def _labelled_tables(metas, method: str, reference: bool, nominal: bool) -> list[pd.DataFrame]:
    """Every metadata file read once (an image in two splits across files is refused) and labelled
    on its whole table, with the metadata file and row number of every row."""
    from . import data

    tables = [data.read_metadata(Path(meta)) for meta in metas]
    data.check_split_overlap(pd.concat(tables, ignore_index=True))
    labelled = []
    for meta, table in zip(metas, tables):
        table = data.to_levels(table, method=method, reference=reference, nominal=nominal)
        table["_row"] = np.arange(1, len(table) + 1)
        table["_meta"] = str(meta)
        labelled.append(table)
    return labelled


def _select(labelled: list[pd.DataFrame], split: str, label: str, check_images: bool) -> TrainData | None:
    """The rows of ``split``, images resolved relative to their metadata file (None when empty)."""
    from .soft_label import one_hot_labels

    parts, paths = [], []
    for table in labelled:
        rows = table[table["split"] == split]
        meta = Path(table["_meta"].iloc[0]) if len(table) else None
        for row, image in zip(rows["_row"], rows["image"]):
            path = Path(image) if Path(image).is_absolute() else meta.resolve().parent / image
            if check_images and not path.is_file():
                raise DeqaError(f"{meta}: row {row} (image {image!r}): image file not found: {path}")
            paths.append(path)
        parts.append(rows)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(table) == 0:
        return None
    mu = table["mu"].to_numpy(dtype=float)
    target = one_hot_labels(mu) if label == "onehot" else table[list(LABEL_COLUMNS)].to_numpy(dtype=float)
    return TrainData(table=table, paths=paths, target=target, mu=mu, sigma=table["sigma"].to_numpy(dtype=float),
                     datasets=table["dataset"].astype(str).to_numpy())


def check_readable(data: TrainData, progress: bool = True) -> None:
    """Open every image of ``data`` before training starts (decoded at a reduced size where the format
    allows), so that a corrupt file stops the run at once with its metadata file and row named rather
    than in the middle of training."""
    from PIL import Image

    from .setup import progress as progress_bar

    rows = zip(data.paths, data.table["_meta"], data.table["_row"], data.table["image"])
    for path, meta, row, image in progress_bar(rows, total=len(data), desc="checking images", unit="img",
                                               leave=False, disable=not progress):
        try:
            with Image.open(path) as im:
                im.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale; every byte is still read
                im.load()
        except (OSError, ValueError) as exc:
            raise DeqaError(f"{meta}: row {row} (image {image!r}): cannot read the image {path}: {exc}") from None


def load_splits(metas, splits=("train", "val"), label: str = "soft", method: str = "official",
                reference: bool = False, nominal: bool = False, check_images: bool = True) -> dict:
    """``{split: TrainData or None}`` from one reading of every metadata file: soft (or one-hot,
    ``label``) labels built per data set on its whole table (``deqa.data.to_levels`` with
    ``method``, ``reference``, ``nominal``), images resolved relative to the metadata file's folder.
    A missing image file raises DeqaError naming the file and the row. Explained in notebook 04."""
    labelled = _labelled_tables(metas, method, reference, nominal)
    return {split: _select(labelled, split, label, check_images) for split in splits}


def load_split(metas, split: str, **options) -> TrainData:
    """One split of ``load_splits`` (same options); no row in that split is a DeqaError."""
    found = load_splits(metas, (split,), **options)[split]
    if found is None:
        raise DeqaError(f"no rows in the {split!r} split of {', '.join(map(str, metas))}")
    return found


class PairStream:
    """The endless stream of (A, B) pairs, epoch after epoch, addressed by the number of pairs
    already consumed: ``take(start, n)`` is a pure function of its arguments, so a resumed run
    continues with exactly the pairs an uninterrupted one would have used."""

    def __init__(self, datasets, seed: int, rank: int = 0, world_size: int = 1):
        from .pairs import PairSampler

        self.sampler = PairSampler(datasets, seed=seed, rank=rank, world_size=world_size,
                                   drop_last=world_size > 1)
        self.per_epoch = len(self.sampler)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, epoch: int):
        if epoch not in self._cache:
            self._cache = {epoch: self.sampler.epoch_pairs(epoch)}  # keep one epoch in memory
        return self._cache[epoch]

    def take(self, start: int, n: int):
        a, b = [], []
        while n > 0:
            epoch, offset = divmod(start, self.per_epoch)
            ia, ib = self._epoch(epoch)
            k = min(n, self.per_epoch - offset)
            a.append(ia[offset:offset + k])
            b.append(ib[offset:offset + k])
            start, n = start + k, n - k
        return np.concatenate(a), np.concatenate(b)


class PairBatchDataset:
    """Micro-batch ``i`` of the run (counted from pair ``start``): the collated A and B images, with
    the targets and Thurstone inputs of each half. A map-style dataset so that a DataLoader can
    prepare batches in worker processes without changing what they contain."""

    def __init__(self, data: TrainData, stream: PairStream, collator, batch_size: int, start: int,
                 count: int):
        self.data, self.stream, self.collator = data, stream, collator
        self.batch_size, self.start, self.count = batch_size, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        ia, ib = self.stream.take(self.start + i * self.batch_size, self.batch_size)
        idx = np.concatenate([ia, ib])
        images = [load_image(self.data.paths[j]) for j in idx]
        batch = dict(self.collator(images, levels=[int(v) for v in self.data.answer_levels[idx]]))
        batch["target"] = torch.as_tensor(self.data.target[idx], dtype=torch.float32)
        batch["mu"] = torch.as_tensor(self.data.mu[idx], dtype=torch.float64)
        batch["sigma"] = torch.as_tensor(self.data.sigma[idx], dtype=torch.float64)
        return batch


def batches(dataset: PairBatchDataset, num_workers: int = 0):
    """The dataset's batches in order, prepared in ``num_workers`` processes (0: in this one)."""
    if num_workers <= 0:
        return (dataset[i] for i in range(len(dataset)))
    return iter(torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                            num_workers=num_workers, persistent_workers=False))
