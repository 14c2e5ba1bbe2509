"""Pairs for the fidelity loss: for each image A, a partner B drawn uniformly from the same data
set (never across data sets), reproducibly per epoch and split across distributed ranks.
Explained in notebook 03 (``03_fidelity_loss``).

Why same-data-set only: the Thurstone target compares two MOS, which is meaningful only on one
scale with one rater pool. Inside a data set it needs no rescaling at all.
"""
from __future__ import annotations

import numpy as np

from .errors import DeqaError


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def _groups(datasets):
    names = np.asarray(datasets)
    if names.ndim != 1:
        raise DeqaError(f"datasets must be one name per row (1-D), got shape {names.shape}")
    if names.size == 0:
        raise DeqaError("datasets is empty: there is nothing to pair")
    uniques, codes, sizes = np.unique(names, return_inverse=True, return_counts=True)
    single = np.flatnonzero(sizes < 2)
    if single.size:
        raise DeqaError(f"data set {str(uniques[single[0]])!r} has a single image: it cannot form a "
                        "same-data-set pair (drop it or add images)")
    return uniques, codes.reshape(-1), sizes


def sample_partners(datasets, rng_or_seed=0) -> np.ndarray:
    """For each row A, the index of a partner B != A drawn uniformly from A's own data set.

    ``datasets``: one data set name per row; ``rng_or_seed``: a numpy Generator or a seed (the
    same seed gives the same partners). Vectorised: each row draws j uniformly from the n - 1
    other members of its group and skips over its own position. A data set with a single image
    raises DeqaError naming it. Explained in notebook 03.
    """
    rng = _rng(rng_or_seed)
    _, codes, sizes = _groups(datasets)
    order = np.argsort(codes, kind="stable")          # rows grouped by data set
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    position = np.empty_like(order)                    # each row's rank inside its group
    position[order] = np.arange(order.size) - starts[codes[order]]
    j = rng.integers(0, sizes[codes] - 1)              # one of the n - 1 others ...
    j = j + (j >= position)                            # ... skipping A itself
    return order[starts[codes] + j]


class PairSampler:
    """Epoch-wise (A, B) index pairs for the fidelity loss.

    ``epoch_pairs(epoch)`` shuffles the order of the A images and draws each one's partner with a
    generator seeded by ``seed + epoch``, so every epoch differs and every run repeats. With
    ``world_size > 1`` all ranks build the same global permutation and rank r keeps the strided
    slice ``perm[r::world_size]``: slices are disjoint and together cover every image.
    ``drop_last=True`` trims the permutation to a multiple of ``world_size`` first, so that every
    rank gets the same number of pairs (needed when ranks must step together); the few images
    left out change from epoch to epoch. Explained in notebook 03 (pairs) and 04 (ranks, section 9).
    """

    def __init__(self, datasets, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        self.datasets = np.asarray(datasets)
        _groups(self.datasets)  # validate once, early
        if world_size < 1 or not 0 <= rank < world_size:
            raise DeqaError(f"PairSampler: need 0 <= rank < world_size, got rank={rank}, "
                            f"world_size={world_size}")
        self.seed, self.shuffle = int(seed), bool(shuffle)
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), bool(drop_last)

    def __len__(self) -> int:
        n = self.datasets.size
        if self.drop_last:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def epoch_pairs(self, epoch: int):
        """``(idx_a, idx_b)`` for this rank in this epoch: int arrays of equal length."""
        rng = np.random.default_rng(self.seed + int(epoch))
        n = self.datasets.size
        perm = rng.permutation(n) if self.shuffle else np.arange(n)
        partners = sample_partners(self.datasets, rng)
        if self.drop_last:
            perm = perm[: n - n % self.world_size]
        idx_a = perm[self.rank::self.world_size]
        return idx_a, partners[idx_a]
