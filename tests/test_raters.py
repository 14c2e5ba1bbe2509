"""The rating simulator: histograms, MOS/std, determinism, and measurable rater bias and noise."""
from __future__ import annotations

import numpy as np
import pytest

from deqa import raters
from deqa.errors import DeqaError


def test_summarise_matches_the_ratings_it_counts():
    counts = np.array([[0, 0, 0, 0, 3], [1, 0, 0, 0, 1], [2, 5, 9, 3, 1]])
    table = raters.summarise(counts)
    for row, c in zip(table.itertuples(), counts):
        ratings = np.repeat(np.arange(1, 6), c)
        assert row.mos == pytest.approx(ratings.mean())
        assert row.std == pytest.approx(ratings.std(ddof=1))
        assert row.n_ratings == c.sum()
    assert table.loc[1, "std"] == pytest.approx(np.sqrt(8.0))  # ratings 1 and 5: sample std, ddof=1
    fractions = table[["c1", "c2", "c3", "c4", "c5"]].to_numpy()
    np.testing.assert_allclose(fractions, counts / counts.sum(1, keepdims=True))
    assert list(table.columns) == ["mos", "std", "c1", "c2", "c3", "c4", "c5", "n_ratings"]


def test_summarise_refuses_empty_rows_and_wrong_shapes():
    with pytest.raises(DeqaError, match="row 1"):
        raters.summarise(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
    with pytest.raises(DeqaError, match="shape"):
        raters.summarise(np.ones((2, 4), int))


def test_simulate_ratings_shape_totals_and_determinism():
    q = np.linspace(1, 5, 50)
    a = raters.simulate_ratings(q, n_raters=20, seed_or_rng=7)
    b = raters.simulate_ratings(q, n_raters=20, seed_or_rng=7)
    c = raters.simulate_ratings(q, n_raters=20, seed_or_rng=8)
    assert a.shape == (50, 5) and a.dtype.kind == "i"
    assert np.all(a.sum(1) == 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    mos = raters.summarise(a)["mos"].to_numpy()
    assert np.corrcoef(mos, q)[0, 1] > 0.97


def test_mos_is_unbiased_in_the_middle_and_clipped_at_the_ends():
    n = 2000
    mid = raters.summarise(raters.simulate_ratings(np.full(n, 3.2), 25, 0.0, 0.6, 0))
    assert mid["mos"].mean() == pytest.approx(3.2, abs=0.03)
    top = raters.summarise(raters.simulate_ratings(np.full(n, 5.0), 25, 0.0, 0.6, 0))
    assert 4.6 < top["mos"].mean() < 4.9  # ratings above 5 are clipped: MOS is pulled inwards


def test_each_raters_bias_shifts_the_rating():
    pool = raters.RaterPool(bias=np.full(10, 0.6), noise_sd=np.zeros(10))
    counts = raters.simulate_ratings([3.0, 2.0], n_raters=10, pool=pool)
    np.testing.assert_array_equal(counts, [[0, 0, 0, 10, 0], [0, 0, 10, 0, 0]])


def test_larger_noise_gives_larger_std():
    q = np.full(500, 3.0)
    stds = [raters.summarise(raters.simulate_ratings(q, 25, 0.2, s, 1))["std"].mean() for s in (0.3, 0.6, 1.0)]
    assert stds[0] < stds[1] < stds[2]
    # with little clipping at q = 3, the rating std is near sqrt(bias^2 + noise^2 + rounding 1/12)
    assert stds[1] == pytest.approx(np.sqrt(0.2**2 + 0.6**2 * np.exp(0.25**2) + 1 / 12), rel=0.06)


def test_larger_bias_spreads_the_mos_of_equal_images():
    # same latent quality everywhere: MOS differs between images only through which raters they got
    q = np.full(1000, 3.0)
    spread = [raters.summarise(raters.simulate_ratings(q, 10, b, 0.3, 2, n_pool=40))["mos"].std() for b in (0.0, 0.8)]
    assert spread[1] > 1.5 * spread[0]


def test_bad_input():
    with pytest.raises(DeqaError, match="n_raters"):
        raters.simulate_ratings([3.0], n_raters=5, pool=raters.rater_pool(3, 0.1, 0.1, 0))
    with pytest.raises(DeqaError, match="row 1"):
        raters.simulate_ratings([3.0, np.nan])


def test_repeated_study_agreement_predicts_two_real_studies():
    """Split-half agreement of the rating spreads, stepped up to all raters, against the correlation
    of two simulated studies of the same images with new raters from the same pool."""
    q = np.random.default_rng(0).uniform(1.2, 4.8, 4000)
    pool = raters.rater_pool(120, 0.3, 0.6, rng=1)
    one = raters.summarise(raters.simulate_ratings(q, 25, seed_or_rng=2, pool=pool))
    two = raters.summarise(raters.simulate_ratings(q, 25, seed_or_rng=3, pool=pool))
    hist = one[["c1", "c2", "c3", "c4", "c5"]]
    estimate = raters.repeated_study_agreement(hist, one["n_ratings"])
    actual = np.corrcoef(one["std"], two["std"])[0, 1]
    assert abs(estimate - actual) < 0.05
    assert estimate == raters.repeated_study_agreement(hist, one["n_ratings"])  # seeded
    # raters without bias and with less noise: the spread is mostly the scale's ends, which a second
    # study reproduces; the agreement rises (0.22 -> 0.48 measured)
    calm = raters.summarise(raters.simulate_ratings(q, 25, seed_or_rng=2, pool=raters.rater_pool(120, 0.0, 0.3, rng=1)))
    assert raters.repeated_study_agreement(calm[["c1", "c2", "c3", "c4", "c5"]], calm["n_ratings"]) > estimate + 0.15
    assert np.isnan(raters.repeated_study_agreement(hist.iloc[:2], one["n_ratings"].iloc[:2]))
