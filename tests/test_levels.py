"""Levels: rescaling native scores onto [1, 5], and the score and spread of level probabilities,
checked against numbers worked out by hand (DESIGN section 3, notebook 01)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from deqa.levels import CENTERS, LEVELS, level_index, rescale, score, spread


def test_levels_and_centres():
    assert LEVELS == ("bad", "poor", "fair", "good", "excellent")
    np.testing.assert_array_equal(CENTERS, [1, 2, 3, 4, 5])
    with pytest.raises(ValueError):
        CENTERS[0] = 0.0  # read-only


def test_rescale_min_max_default():
    # lo = 20, hi = 80 (data min/max): mu = 4 (mos - 20) / 60 + 1, sigma = 4 std / 60
    mu, sigma = rescale([20.0, 35.0, 50.0, 80.0], [6.0, 15.0, 0.0, 3.0])
    np.testing.assert_allclose(mu, [1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(sigma, [0.4, 1.0, 0.0, 0.2])


def test_rescale_nominal_scale():
    # a 0-100 scale given explicitly: 25 -> 2, 60 -> 3.4, std 10 -> 0.4
    mu, sigma = rescale([25.0, 60.0], [10.0, 5.0], lo=0, hi=100)
    np.testing.assert_allclose(mu, [2.0, 3.4])
    np.testing.assert_allclose(sigma, [0.4, 0.2])
    # the min/max default would stretch the same two rows to the ends of [1, 5]
    mu_default, sigma_default = rescale([25.0, 60.0], [10.0, 5.0])
    np.testing.assert_allclose(mu_default, [1.0, 5.0])
    np.testing.assert_allclose(sigma_default, [40 / 35, 20 / 35])


def test_rescale_lower_is_better_flips_mu_only():
    # DMOS on 0-1, lower is better: 0.1 -> 4 * 0.1 + 1 = 1.4 -> flipped 4.6
    mu, sigma = rescale([0.1, 0.5, 0.9], [0.05, 0.1, 0.2], lo=0, hi=1, lower_is_better=True)
    np.testing.assert_allclose(mu, [4.6, 3.0, 1.4])
    np.testing.assert_allclose(sigma, [0.2, 0.4, 0.8])
    # ordering is reversed against the plain rescale
    mu_plain, _ = rescale([0.1, 0.5, 0.9], lo=0, hi=1)
    np.testing.assert_allclose(mu + mu_plain, 6.0)


def test_rescale_without_std_gives_nan_sigma_and_scalar_input():
    mu, sigma = rescale([1.0, 3.0])
    np.testing.assert_allclose(mu, [1.0, 5.0])
    assert np.all(np.isnan(sigma))
    mu, sigma = rescale(7.0, 1.0, lo=5, hi=9)
    assert mu.shape == (1,) and mu[0] == pytest.approx(3.0) and sigma[0] == pytest.approx(1.0)
    # NaN std passes through as NaN (no std known for that row)
    _, sigma = rescale([1.0, 2.0, 3.0], [0.5, np.nan, 0.25])
    assert np.isnan(sigma[1]) and sigma[0] == pytest.approx(1.0) and sigma[2] == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mos=[1.0, np.nan, 3.0]), "not finite at row 1"),
    (dict(mos=[1.0, 2.0, np.inf]), "not finite at row 2"),
    (dict(mos=[1.0, 2.0], std=[0.1, 0.2, 0.3]), "shape"),
    (dict(mos=[1.0, 2.0, 3.0], std=[0.1, -0.2, 0.3]), "negative std at row 1"),
    (dict(mos=[4.0, 4.0]), "hi > lo"),
    (dict(mos=[1.0, 2.0], lo=5, hi=1), "hi > lo"),
])
def test_rescale_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rescale(**kwargs)


def test_score_and_spread_by_hand():
    q = np.array([
        [0.0, 0.0, 1.0, 0.0, 0.0],   # all on fair: score 3, spread 0
        [0.5, 0.0, 0.0, 0.0, 0.5],   # bad/excellent halves: score 3, spread 2
        [0.1, 0.2, 0.4, 0.2, 0.1],   # symmetric: score 3, var 0.1*4*2 + 0.2*1*2 = 1.2
        [0.0, 0.0, 0.0, 0.25, 0.75],  # score 4.75, var 0.25*0.5625 + 0.75*0.0625 = 0.1875
        [0.2, 0.2, 0.2, 0.2, 0.2],   # uniform: score 3, var 2
    ])
    np.testing.assert_allclose(score(q), [3.0, 3.0, 3.0, 4.75, 3.0])
    np.testing.assert_allclose(spread(q), [0.0, 2.0, math.sqrt(1.2), math.sqrt(0.1875), math.sqrt(2.0)],
                               atol=1e-12)


def test_score_and_spread_keep_leading_axes():
    q = np.zeros((2, 3, 5))
    q[..., 3] = 1.0
    q[1, 2] = [0.0, 0.0, 0.0, 0.5, 0.5]
    assert score(q).shape == (2, 3)
    assert score(q)[1, 2] == pytest.approx(4.5)
    assert spread(q)[1, 2] == pytest.approx(0.5)
    assert spread(q)[0, 0] == 0.0


def test_score_rejects_wrong_last_axis():
    with pytest.raises(ValueError, match="last axis of 5"):
        score(np.ones((3, 4)) / 4)
    with pytest.raises(ValueError, match="last axis of 5"):
        spread(np.ones(6) / 6)


def test_level_index_bins():
    mu = [1.0, 1.8, 1.8000001, 2.6, 2.61, 3.4, 3.41, 4.2, 4.21, 5.0]
    np.testing.assert_array_equal(level_index(mu), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
