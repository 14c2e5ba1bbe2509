"""Same-data-set pair sampling (deqa.pairs)."""
from __future__ import annotations

import numpy as np
import pytest

from deqa.errors import DeqaError
from deqa.pairs import PairSampler, sample_partners


def mixed_names(rng, n=3000):
    return rng.choice(np.array(["koniq", "spaq", "kadid", "tiny"]), size=n, p=[0.5, 0.3, 0.19, 0.01])


def test_partners_same_dataset_never_self_and_deterministic():
    names = mixed_names(np.random.default_rng(0))
    b = sample_partners(names, 7)
    assert b.shape == names.shape and b.dtype.kind == "i"
    assert np.all(names[b] == names)
    assert np.all(b != np.arange(names.size))
    np.testing.assert_array_equal(b, sample_partners(list(names), 7))
    np.testing.assert_array_equal(b, sample_partners(names, np.random.default_rng(7)))
    assert not np.array_equal(b, sample_partners(names, 8))


def test_partners_uniform_over_the_other_members():
    # 6 images: rows 0-3 in "a", rows 4-5 in "b"; row 0's partner is uniform over rows 1, 2, 3
    names = np.array(["a", "a", "b", "a", "b", "a"])
    draws = np.stack([sample_partners(names, s) for s in range(3000)])
    assert np.all(draws[:, 2] == 4) and np.all(draws[:, 4] == 2)  # a 2-image set pairs the two
    counts = np.array([(draws[:, 0] == j).sum() for j in (1, 3, 5)])
    expected = 3000 / 3
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 13.8, counts  # chi-square, 2 degrees of freedom, p = 0.001
    # one big draw: each of 200 members of a group is chosen as a partner about equally often
    big = np.repeat(["x", "y"], [200, 50])
    hits = np.bincount(np.concatenate([sample_partners(big, s)[:200] for s in range(100)]), minlength=250)
    expected = 100 * 200 / 200 * 1.0  # each row picks 1 of 199 others, 200 rows, 100 rounds
    chi2 = ((hits[:200] - expected) ** 2 / expected).sum()
    assert chi2 < 199 + 5 * np.sqrt(2 * 199), chi2
    assert hits[200:].sum() == 0  # never across data sets


def test_single_image_dataset_is_refused_by_name():
    with pytest.raises(DeqaError, match="'lonely'"):
        sample_partners(["a", "a", "lonely"], 0)
    with pytest.raises(DeqaError, match="'lonely'"):
        PairSampler(["a", "lonely", "a"])


def test_pair_sampler_epochs_shuffle_and_repeat():
    names = mixed_names(np.random.default_rng(1), n=500)
    s = PairSampler(names, seed=3)
    a0, b0 = s.epoch_pairs(0)
    a1, _ = s.epoch_pairs(1)
    assert sorted(a0) == list(range(500)) and not np.array_equal(a0, a1)
    np.testing.assert_array_equal(a0, PairSampler(names, seed=3).epoch_pairs(0)[0])
    np.testing.assert_array_equal(b0, PairSampler(names, seed=3).epoch_pairs(0)[1])
    assert np.all(names[b0] == names[a0]) and np.all(a0 != b0)
    assert np.array_equal(PairSampler(names, shuffle=False).epoch_pairs(0)[0], np.arange(500))


@pytest.mark.parametrize("drop_last", [False, True])
def test_pair_sampler_ranks_disjoint_and_covering(drop_last):
    names = mixed_names(np.random.default_rng(2), n=503)
    full_a, full_b = PairSampler(names, seed=5).epoch_pairs(4)
    shards = [PairSampler(names, seed=5, rank=r, world_size=4, drop_last=drop_last).epoch_pairs(4)
              for r in range(4)]
    got_a = np.concatenate([a for a, _ in shards])
    assert len(set(got_a)) == len(got_a)  # disjoint
    lengths = [len(a) for a, _ in shards]
    if drop_last:
        assert lengths == [125] * 4 and len(got_a) == 500
    else:
        assert sorted(got_a) == list(range(503)) and lengths == [126, 126, 126, 125]
    partner_of = dict(zip(full_a, full_b))  # ranks see the same global pairs
    assert all(partner_of[a] == b for sa, sb in shards for a, b in zip(sa, sb))
    assert [len(PairSampler(names, rank=r, world_size=4, drop_last=drop_last)) for r in range(4)] == lengths
    with pytest.raises(DeqaError, match="rank"):
        PairSampler(names, rank=4, world_size=4)
