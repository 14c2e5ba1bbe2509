"""deqa.metrics: correlations equal scipy's, the logistic fit, distribution gaps."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from scipy.spatial.distance import jensenshannon

from deqa import metrics
from deqa.errors import DeqaError
from deqa.levels import CENTERS


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = 3.0 + 1.5 * np.tanh(1.2 * x) + 0.25 * rng.normal(size=300)
    return x, y


def test_correlations_equal_scipy(scores):
    x, y = scores
    assert metrics.plcc(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-6)
    assert metrics.srcc(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-6)
    assert metrics.krcc(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-6)
    # ties (rounded scores) and pandas columns
    xr, yr = pd.Series(np.round(x, 1)), pd.Series(np.round(y))
    assert metrics.srcc(xr, yr) == pytest.approx(stats.spearmanr(xr, yr).statistic, abs=1e-6)
    assert metrics.krcc(xr, yr) == pytest.approx(stats.kendalltau(xr, yr).statistic, abs=1e-6)
    assert metrics.plcc(-x, y) == pytest.approx(-metrics.plcc(x, y), abs=1e-12)


def test_plcc_logistic_equals_independent_fit(scores):
    x, y = scores

    def residuals(b):  # the same model written out again, fitted by another optimiser
        return (b[0] - b[1]) / (1.0 + np.exp(-(x - b[2]) / abs(b[3]))) + b[1] - y

    start = [y.max(), y.min(), x.mean(), x.std() / 4]
    fit = optimize.least_squares(residuals, start, method="trf", xtol=1e-12, ftol=1e-12, gtol=1e-12)
    expected = stats.pearsonr(residuals(fit.x) + y, y).statistic
    params, ok = metrics.fit_logistic(x, y)
    assert ok
    assert metrics.plcc_logistic(x, y) == pytest.approx(expected, abs=1e-3)
    fitted, independent = metrics.logistic4(x, *params), residuals(fit.x) + y
    assert np.max(np.abs(fitted - independent)) < 1e-2
    assert metrics.plcc_logistic(x, y) > metrics.plcc(x, y)  # the data are sigmoidal: the fit helps
    assert np.allclose(metrics.logistic_start(x, y), start)


def test_logistic_fit_that_does_not_converge_warns_and_falls_back(scores):
    x, y = scores
    with pytest.warns(RuntimeWarning, match="did not converge"):
        value = metrics.plcc_logistic(x, y, maxfev=2)
    assert value == pytest.approx(metrics.plcc(x, y), abs=1e-12)
    params, ok = metrics.fit_logistic(x, y, maxfev=2)
    assert not ok and np.all(np.isnan(params))
    params, ok = metrics.fit_logistic([1, 2, 3], [2, 1, 3])  # 3 points cannot fix 4 parameters
    assert not ok


def test_bad_input_raises():
    with pytest.raises(DeqaError, match="index 2"):
        metrics.srcc([1, 2, np.nan, 4], [1, 2, 3, 4])
    with pytest.raises(DeqaError, match="length mismatch"):
        metrics.plcc([1, 2, 3], [1, 2])
    with pytest.raises(DeqaError, match="length mismatch"):
        metrics.distribution_gaps([3, 3], [1, 1], [3], [1])
    with pytest.raises(DeqaError, match="not finite"):
        metrics.distribution_gaps([3, 3], [1, np.nan], [3, 2], [1, 1])
    with pytest.raises(DeqaError, match="probability"):
        metrics.distribution_gaps([3], [1], [3], [1], [[np.nan, 0, 0, 0, 1]], [[0, 0, 1, 0, 0]])


def test_gaussian_gaps_match_hand_formulas():
    pm, ps, hm, hs = np.array([3.0, 2.0]), np.array([0.5, 1.0]), np.array([3.5, 2.0]), np.array([0.8, 0.5])
    gaps = metrics.distribution_gaps(pm, ps, hm, hs)
    # row 0: log(0.5/0.8) + (0.64 + 0.25) / (2 * 0.25) - 0.5 = -0.470004 + 1.78 - 0.5
    assert gaps["kl"].iloc[0] == pytest.approx(np.log(0.5 / 0.8) + 0.89 / 0.5 - 0.5, abs=1e-12)
    assert gaps["kl"].iloc[1] == pytest.approx(np.log(2.0) + 0.25 / 2.0 - 0.5, abs=1e-12)
    assert gaps["w2"].iloc[0] == pytest.approx(np.sqrt(0.25 + 0.09), abs=1e-12)
    assert gaps["w2"].iloc[1] == pytest.approx(0.5, abs=1e-12)
    assert gaps.attrs["mean"]["w2"] == pytest.approx((np.sqrt(0.34) + 0.5) / 2)
    assert metrics.distribution_gaps([3.0], [0.7], [3.0], [0.7])["kl"].iloc[0] == pytest.approx(0, abs=1e-12)
    # a zero spread is floored, so KL stays finite and equals the formula at the floor
    f = metrics.SIGMA_FLOOR
    kl0 = metrics.distribution_gaps([3.0], [0.0], [3.1], [0.5])["kl"].iloc[0]
    assert kl0 == pytest.approx(np.log(f / 0.5) + (0.25 + 0.01) / (2 * f * f) - 0.5, rel=1e-9)


def test_level_gaps_match_scipy():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=20)
    q = rng.dirichlet(np.ones(5), size=20)
    q[0] = [0, 0, 1, 0, 0]  # zeros: 0 log 0 = 0
    from deqa.levels import score, spread

    gaps = metrics.distribution_gaps(score(p), spread(p), score(q), spread(q), p, q)
    assert tuple(gaps.columns) == metrics.GAP_COLUMNS
    js = [jensenshannon(q[i], p[i]) ** 2 for i in range(20)]  # natural log by default
    w1 = [stats.wasserstein_distance(CENTERS, CENTERS, q[i], p[i]) for i in range(20)]
    assert np.allclose(gaps["js_levels"], js, atol=1e-10)
    assert np.allclose(gaps["w1_levels"], w1, atol=1e-10)
    assert metrics.js_levels([[1, 0, 0, 0, 0]], [[0, 0, 0, 0, 1]])[0] == pytest.approx(np.log(2))
    assert metrics.w1_levels([[1, 0, 0, 0, 0]], [[0, 0, 0, 0, 1]])[0] == pytest.approx(4.0)
    assert metrics.jensen_shannon is metrics.js_levels  # the former name, still used by notebooks


def _published_js_row(m1, s1, m2, s2):
    """The published Gaussian "JS" for one image, written out with the math module."""
    def kl(ma, sa, mb, sb):
        return math.log(sb / (sa + 1e-8)) + (sa * sa + (ma - mb) ** 2) / (2 * sb * sb + 1e-8) - 0.5
    mm, sm = (m1 + m2) / 2, math.sqrt((s1 * s1 + s2 * s2) / 2)
    return 0.5 * kl(m1, s1, mm, sm) + 0.5 * kl(m2, s2, mm, sm)


def test_gaussian_js_is_the_published_formula():
    rng = np.random.default_rng(11)
    m1, m2 = rng.uniform(1, 5, 500), rng.uniform(1, 5, 500)
    s1, s2 = rng.uniform(0.05, 1.5, 500), rng.uniform(0.05, 1.5, 500)
    s1[:3] = [0.0, 1e-6, 0.7]  # a zero human spread (KADID has some) stays finite
    js = metrics.gaussian_js(m1, s1, m2, s2)
    expected = [_published_js_row(*row) for row in zip(m1, s1, m2, s2)]
    assert np.max(np.abs(js - expected)) < 1e-10
    np.testing.assert_allclose(metrics.gaussian_js(m2, s2, m1, s1), js, atol=1e-12)  # symmetric
    # equal spreads: (m1 - m2)^2 / (8 s^2), up to the eps terms
    assert metrics.gaussian_js(3.0, 0.5, 3.4, 0.5) == pytest.approx(0.16 / (8 * 0.25), rel=1e-6)
    # not a true Jensen-Shannon divergence: with the Gaussian midpoint it exceeds log 2
    assert metrics.gaussian_js(1.0, 0.2, 5.0, 0.2) > 10 * np.log(2)
    gaps = metrics.distribution_gaps(m2, s2, m1, s1)
    assert list(gaps.columns) == ["kl", "w2", "js_gaussian"]
    np.testing.assert_allclose(gaps["js_gaussian"], js, atol=1e-12)


# ------------------------------------------------------------------------------------- bootstrap
def _resampled(x, y, counts, f):
    """The statistic on each resample, written out by repeating the items (the reference)."""
    out = []
    for row in counts:
        idx = np.repeat(np.arange(len(x)), row)
        out.append(f(x[idx], y[idx]))
    return np.array(out)


def test_bootstrap_replicates_are_the_statistic_on_each_resample(scores):
    x, y = scores
    x, y = np.round(x, 1), np.round(y, 1)  # ties, which the resamples multiply
    counts = np.concatenate(list(metrics.bootstrap_counts(len(x), 150, seed=4)))
    assert counts.shape == (150, len(x)) and np.all(counts.sum(1) == len(x))
    checks = {"srcc": lambda a, b: stats.spearmanr(a, b).statistic,
              "plcc": lambda a, b: stats.pearsonr(a, b).statistic,
              "krcc": lambda a, b: stats.kendalltau(a, b).statistic}
    for name, f in checks.items():
        result = metrics.bootstrap(name, x, y, n_boot=150, seed=4)
        assert np.allclose(result.replicates, _resampled(x, y, counts, f), atol=1e-12), name
        assert result.estimate == pytest.approx(f(x, y), abs=1e-12)
        assert result.low == pytest.approx(np.quantile(result.replicates, 0.025))
        assert result.high == pytest.approx(np.quantile(result.replicates, 0.975))
        assert result.low < result.estimate < result.high
    logistic = metrics.bootstrap("plcc_logistic", x[:120], y[:120], n_boot=20, seed=1)
    refit = _resampled(x[:120], y[:120], np.concatenate(list(metrics.bootstrap_counts(120, 20, 1))),
                       lambda a, b: metrics.plcc_logistic_checked(a, b)[0])
    assert np.allclose(logistic.replicates, refit, atol=1e-4)  # refitted in every resample


def test_bootstrap_is_seeded_and_shares_resamples(scores):
    x, y = scores
    a = metrics.bootstrap("srcc", x, y, n_boot=200, seed=7)
    assert tuple(a[:3]) == tuple(metrics.bootstrap("srcc", x, y, n_boot=200, seed=7)[:3])
    assert a.low != metrics.bootstrap("srcc", x, y, n_boot=200, seed=8).low
    together = metrics.bootstrap_all(("plcc", "srcc"), x, y, n_boot=200, seed=7)
    assert np.array_equal(together[1].replicates, a.replicates)
    # a callable statistic, and a cluster bootstrap: every resample holds whole groups
    groups = np.repeat(np.arange(30), 10)
    counts = np.concatenate(list(metrics.bootstrap_counts(len(x), 50, seed=2, groups=groups)))
    assert np.all(counts.reshape(50, 30, 10).std(axis=2) == 0)  # the ten images of a group go together
    mean_diff = metrics.bootstrap(lambda a, b: float(np.mean(a - b)), x, y, n_boot=100, groups=groups)
    assert mean_diff.estimate == pytest.approx(float(np.mean(x - y)))
    with pytest.raises(DeqaError, match="unknown statistic"):
        metrics.bootstrap("auc", x, y)


def test_paired_bootstrap_of_a_difference(scores):
    x, y = scores
    same = metrics.paired_bootstrap("srcc", x, x, y, n_boot=100)
    assert same.estimate == 0 and same.low == 0 and same.high == 0
    noisy = x + np.random.default_rng(1).normal(0, 1.0, len(x))
    diff = metrics.paired_bootstrap("srcc", x, noisy, y, n_boot=300)
    assert diff.estimate == pytest.approx(metrics.srcc(x, y) - metrics.srcc(noisy, y))
    assert diff.low > 0  # the noisier predictor is worse, beyond resampling noise
    # pairing: the interval of the difference is narrower than the two intervals side by side
    a, b = metrics.bootstrap("srcc", x, y, n_boot=300), metrics.bootstrap("srcc", noisy, y, n_boot=300)
    assert diff.high - diff.low < (a.high - a.low) + (b.high - b.low)
