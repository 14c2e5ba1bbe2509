"""The training data: each data set's rows with their labels, the endless stream of same-data-set
pairs, and the batches of pairs a training step consumes. Explained in notebook 04
(``04_finetune_mllm``).

A metadata file is read once per run (``load_splits`` gives every split from one reading). Each data
set is labelled on its WHOLE table (its min/max MOS defines the scale, as the published code does),
then split. The pair stream is a pure function of the number of pairs already consumed, so a resumed
run continues with exactly the pairs an uninterrupted one would have used.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .errors import DeqaError
from .levels import LABEL_COLUMNS, level_index

#: mixed into the seed of the question draws, so that they are independent of the pair draws
QUESTION_SEED_TAG = 7


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
        """The level written in the answer text during training: the published equal-width bin of mu
        (``deqa.levels.level_index``), whatever the soft label's most likely level."""
        return level_index(self.mu)


def _labelled_tables(metas, method: str, reference: bool | None, nominal: bool) -> list[pd.DataFrame]:
    """Every metadata file read once (an image in two splits across files is refused) and labelled
    on its whole table, with the metadata file and row number of every row. Kept for the process
    (``deqa.process_cache``: by the files' content and the label settings); callers get copies."""
    from . import process_cache
    from .soft_label import use_reference

    try:
        key = (tuple(process_cache.content_key(m) for m in metas), method, use_reference(reference), nominal)
    except OSError:  # a missing file: read_metadata names it
        return _read_labelled(metas, method, reference, nominal)
    tables = process_cache.remembered_tables(key)
    if tables is None:
        tables = _read_labelled(metas, method, reference, nominal)
        process_cache.remember_tables(key, tables)
    return [t.copy() for t in tables]


def _read_labelled(metas, method: str, reference: bool | None, nominal: bool) -> list[pd.DataFrame]:
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
        folder = str(meta.resolve().parent) if meta is not None else ""
        for row, image in zip(rows["_row"], rows["image"]):
            path = os.path.join(folder, image)  # an absolute image path stays as it is
            if check_images and not os.path.isfile(path):
                raise DeqaError(f"{meta}: row {row} (image {image!r}): image file not found: {Path(path)}")
            paths.append(Path(path))
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
    than in the middle of training. A file found readable is not opened again in this process while it
    is unchanged (``deqa.process_cache.READABLE``)."""
    from PIL import Image

    from .process_cache import READABLE, file_key, settled
    from .setup import progress as progress_bar

    rows = zip(data.paths, data.table["_meta"], data.table["_row"], data.table["image"])
    for path, meta, row, image in progress_bar(rows, total=len(data), desc="checking images", unit="img",
                                               leave=False, disable=not progress):
        try:
            key = file_key(path)
            if key in READABLE:
                continue
            with Image.open(path) as im:
                im.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale; every byte is still read
                im.load()
        except (OSError, ValueError) as exc:
            raise DeqaError(f"{meta}: row {row} (image {image!r}): cannot read the image {path}: {exc}") from None
        if settled(key):
            READABLE.add(key)


def load_splits(metas, splits=("train", "val"), label: str = "soft", method: str = "official",
                reference: bool | None = None, nominal: bool = False, check_images: bool = True) -> dict:
    """``{split: TrainData or None}`` from one reading of every metadata file: soft (or one-hot,
    ``label``) labels built per data set on its whole table (``deqa.data.to_levels`` with
    ``method``, ``reference``: None for the package default, ``nominal``), images resolved relative to the metadata file's folder.
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
    continues with exactly the pairs an uninterrupted one would have used. ``questions(start, n)``
    gives the question each image of those pairs is asked: one of ``deqa.collate.QUESTIONS`` drawn per
    image and epoch, as the published training does, seeded the same way."""

    def __init__(self, datasets, seed: int, rank: int = 0, world_size: int = 1):
        from .pairs import PairSampler

        self.sampler = PairSampler(datasets, seed=seed, rank=rank, world_size=world_size,
                                   drop_last=world_size > 1)
        self.seed, self.n_images = seed, len(datasets)
        self.per_epoch = len(self.sampler)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._drawn: tuple = (None, None)  # (epoch, the question index of every image in it)

    def _epoch(self, epoch: int):
        if epoch not in self._cache:
            self._cache = {epoch: self.sampler.epoch_pairs(epoch)}  # keep one epoch in memory
        return self._cache[epoch]

    def _segments(self, start: int, n: int):
        """(epoch, first, last) slices of the epochs that pairs start .. start + n fall in."""
        while n > 0:
            epoch, offset = divmod(start, self.per_epoch)
            k = min(n, self.per_epoch - offset)
            yield epoch, offset, offset + k
            start, n = start + k, n - k

    def take(self, start: int, n: int):
        parts = [tuple(ix[lo:hi] for ix in self._epoch(epoch)) for epoch, lo, hi in self._segments(start, n)]
        return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])

    def questions(self, start: int, n: int):
        """Indices into ``QUESTIONS`` of the A and B images of the pairs ``take(start, n)`` gives."""
        from .collate import QUESTIONS

        qa, qb = [], []
        for epoch, lo, hi in self._segments(start, n):
            if self._drawn[0] != epoch:  # keep one epoch's draw
                self._drawn = (epoch, np.random.default_rng([self.seed, epoch, QUESTION_SEED_TAG]).integers(
                    len(QUESTIONS), size=self.n_images))
            drawn = self._drawn[1]
            ia, ib = self._epoch(epoch)
            qa.append(drawn[ia[lo:hi]])
            qb.append(drawn[ib[lo:hi]])
        return np.concatenate(qa), np.concatenate(qb)


class PairBatchDataset:
    """Micro-batch ``i`` of the run (counted from pair ``start``): the collated A and B images, with
    the targets and Thurstone inputs of each half. A map-style dataset so that a DataLoader can
    prepare batches in worker processes without changing what they contain."""

    def __init__(self, data: TrainData, stream: PairStream, collator, batch_size: int, start: int,
                 count: int, questions: str = "random"):
        self.data, self.stream, self.collator = data, stream, collator
        self.batch_size, self.start, self.count = batch_size, start, count
        self.random_questions = questions == "random"

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        first = self.start + i * self.batch_size
        ia, ib = self.stream.take(first, self.batch_size)
        idx = np.concatenate([ia, ib])
        questions = None
        if self.random_questions:
            from .collate import QUESTIONS

            questions = [QUESTIONS[k] for k in np.concatenate(self.stream.questions(first, self.batch_size))]
        batch = dict(self.collator.files([self.data.paths[j] for j in idx],
                                         levels=[int(v) for v in self.data.answer_levels[idx]], questions=questions))
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
