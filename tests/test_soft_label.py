"""Soft labels: the reference mode against the independent per-row implementation of the published
label builder (benchmarks/published_labels.py, shared with the speed benchmark), the default mode
(information projection) and the active-set mode on real annotations and on random rows. The maths
is in DESIGN section 3 and notebook 02."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from benchmarks.published_labels import published_labels
from deqa import metrics
from deqa.levels import CENTERS, rescale, score, spread
from deqa.soft_label import MODES, level_masses, one_hot_labels, soft_labels, two_level_labels

# ---------------------------------------------------------------------------------------------
# Real annotations, read with pandas (native scale). Each entry: mos, std, the method the published
# code uses for that data set, and the reference fallback-rate range DESIGN section 3 and the audit of
# the published builder state.

HIST = ["c1", "c2", "c3", "c4", "c5"]


def _koniq(root):
    """KonIQ-10k as DeQA-Score uses it: the mean of the 1-5 ratings (from the histogram) and SD."""
    df = pd.read_csv(root / "koniq10k" / "koniq10k_distributions_sets.csv")
    return df[HIST].to_numpy(float) @ CENTERS, df["SD"].to_numpy(float)


def _kadid(root):
    df = pd.read_csv(root / "kadid10k" / "meta_info_KADID10kDataset.csv")
    return df["dmos"].to_numpy(float), np.sqrt(df["std"].to_numpy(float))  # that column is a variance


def _livec(root):
    df = pd.read_csv(root / "live_challenge" / "meta_info_LIVEChallengeDataset.csv")
    return df["mos"].to_numpy(float), df["std"].to_numpy(float)


REAL = {
    # name: (reader, method, (low, high) reference fallback rate, or None when DESIGN states none)
    "koniq": (_koniq, "pdf", (0.005, 0.012)),
    "kadid": (_kadid, "pdf", (0.17, 0.21)),
    "livec": (_livec, "cdf", (0.03, 0.07)),
}


@pytest.fixture(scope="module")
def real_rows(real_iqa):
    """{name: (mu, sigma, method, published labels, published fallback mask)} for the three sets."""
    out = {}
    for name, (reader, method, _) in REAL.items():
        mos, std = reader(real_iqa)
        q, fb, mu, sigma = published_labels(mos.tolist(), std.tolist(), method)
        out[name] = (mu, sigma, method, q, fb)
    return out


@pytest.mark.parametrize("name", list(REAL))
def test_reference_mode_matches_published_builder_on_real_data(name, real_rows):
    mu, sigma, method, q_pub, fb_pub = real_rows[name]
    q, fb = soft_labels(mu, sigma, method, reference=True, return_fallback=True)
    assert q.shape == (mu.size, 5)
    worst = float(np.max(np.abs(q - q_pub)))
    print(f"{name}: {mu.size} rows, max |package - published| = {worst:.2e}")
    assert worst <= 1e-9
    np.testing.assert_array_equal(fb, fb_pub)


def test_rescale_matches_published_normalisation(real_iqa, real_rows):
    mos, std = _kadid(real_iqa)
    mu, sigma = rescale(mos, std)
    mu_pub, sigma_pub = real_rows["kadid"][0], real_rows["kadid"][1]
    assert np.max(np.abs(mu - mu_pub)) < 1e-12
    assert np.max(np.abs(sigma - sigma_pub)) < 1e-12


@pytest.mark.parametrize("name", list(REAL))
def test_reference_fallback_rates_on_real_data(name, real_rows):
    mu, sigma, method, _, _ = real_rows[name]
    _, fb_ref = soft_labels(mu, sigma, method, reference=True, return_fallback=True)
    _, fb_def = soft_labels(mu, sigma, method, return_fallback=True, mode="projection")
    _, fb_act = soft_labels(mu, sigma, method, mode="active_set", return_fallback=True)
    print(f"{name} ({method}): reference falls back on {fb_ref.mean():.2%}, default on "
          f"{fb_def.mean():.3%}, active set on {fb_act.mean():.3%} of {mu.size} rows")
    low, high = REAL[name][2]
    assert low <= fb_ref.mean() <= high
    # default mode: only where it must (no usable std, or mu at an end of the scale, where mean = mu
    # leaves a single level): the rows with the data set's min or max MOS and sigma < 0.2
    forced = np.isnan(sigma) | (sigma < 0.2) | (mu <= 1 + 1e-9) | (mu >= 5 - 1e-9)
    assert np.array_equal(fb_def, forced)
    assert fb_act.mean() < 0.002


# ---------------------------------------------------------------------------------------------
# Reference mode on random rows, including the edge cases (integers, mu = 3, tiny and zero sigma).


def _random_rows(n, seed):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(1, 5, n)
    sigma = rng.uniform(0, 1.6, n)
    edge_mu = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 3.0, 3.0, 2.5, 1.0, 5.0, 4.99999])
    edge_sigma = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.2, 1.2, 0.0, 0.19, 0.0, 0.3])
    return np.concatenate([mu, edge_mu]), np.concatenate([sigma, edge_sigma])


@pytest.mark.parametrize("method", ["cdf", "pdf"])
def test_reference_mode_matches_published_builder_on_random_rows(method):
    mu, sigma = _random_rows(400, seed=1)
    # the published builder rescales by min/max: feed mu in [1, 5] with 1 and 5 present (identity)
    q_pub, fb_pub, mu_pub, sigma_pub = published_labels(mu.tolist(), sigma.tolist(), method)
    assert np.max(np.abs(mu_pub - mu)) < 1e-12
    q, fb = soft_labels(mu, sigma, method, reference=True, return_fallback=True)
    assert np.max(np.abs(q - q_pub)) <= 1e-9
    np.testing.assert_array_equal(fb, fb_pub)


def test_reference_mode_flaws_are_reproduced():
    # mu = 3 exactly: alpha = 0 and the label is uniform whatever sigma
    q = soft_labels([3.0, 3.0, 3.0], [0.3, 0.6, 1.0], "cdf", reference=True)
    np.testing.assert_allclose(q, 0.2, atol=1e-12)
    # no renormalisation after the clip: some rows sum to more than 1
    mu, sigma = _random_rows(2000, seed=2)
    sums = soft_labels(mu, sigma, "cdf", reference=True).sum(axis=1)
    assert sums.max() > 1.03


# ---------------------------------------------------------------------------------------------
# Default mode (information projection) and active-set mode: properties.


def _check_valid(q, mu):
    assert np.all(q >= 0)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(score(q), mu, atol=1e-6)


@pytest.mark.parametrize("method", ["cdf", "pdf"])
def test_projection_valid_on_random_rows(method):
    mu, sigma = _random_rows(20000, seed=3)
    q, fb = soft_labels(mu, sigma, method, return_fallback=True, mode="projection")
    _check_valid(q, mu)
    assert np.max(np.abs(score(q) - mu)) < 1e-9
    # falls back only below sigma 0.2 or at mu = 1, 5 (one level left); otherwise every level with a
    # mass keeps some (cdf masses far in a tail round to 0, and so do their levels)
    np.testing.assert_array_equal(fb, (sigma < 0.2) | (mu == 1.0) | (mu == 5.0))
    p = level_masses(mu, sigma, method)
    np.testing.assert_array_equal(q[~fb] > 0, p[~fb] > 0)
    assert method == "cdf" or np.all(q[~fb] > 0)


@pytest.mark.parametrize("method", ["cdf", "pdf"])
def test_projection_is_the_information_projection(method):
    """q_k = p_k exp(lambda c_k) / Z: log(q / p) is a straight line in c (one lambda per row), the
    form of the distribution closest to p in KL among those with mean mu."""
    mu, sigma = _random_rows(3000, seed=4)
    keep = (sigma >= 0.2) & (mu > 1) & (mu < 5)
    mu, sigma = mu[keep], sigma[keep]
    p = level_masses(mu, sigma, method)
    q = soft_labels(mu, sigma, method, mode="projection")
    ok = np.all(p > 1e-250, axis=1)  # cdf masses far in the tail round to 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logr = np.log(q) - np.log(p / p.sum(axis=1, keepdims=True))
    slope = (logr[:, 4] - logr[:, 0]) / 4.0
    line = logr[:, :1] + slope[:, None] * (CENTERS - 1.0)
    assert ok.mean() > 0.9
    assert np.max(np.abs(logr - line)[ok]) < 1e-7
    # lambda = 0 where the masses already have mean mu: the label is the normalised masses
    sym = soft_labels([3.0, 3.0], [0.5, 1.2], method, mode="projection")
    p3 = level_masses([3.0, 3.0], [0.5, 1.2], method)
    np.testing.assert_allclose(sym, p3 / p3.sum(axis=1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("method", ["cdf", "pdf"])
def test_projection_is_continuous_in_mu_and_sigma(method):
    """On fine grids neighbouring labels differ by at most about the step (no jumps where a level
    would have been dropped, at integer mu, or near the ends); the only jump is the published
    fallback below sigma = 0.2."""
    mu = np.linspace(1.0, 5.0, 80001)  # step 5e-5, crosses every integer
    for s in (0.2, 0.35, 0.8, 1.5, 3.0):
        q = soft_labels(mu, np.full(mu.size, s), method, mode="projection")
        jump = np.abs(np.diff(q, axis=0)).max()
        assert jump < 2 * (mu[1] - mu[0]), (s, jump)
    sigma = np.linspace(0.2, 3.0, 56001)  # step 5e-5
    for m in (1.0 + 1e-7, 1.3, 2.0, 2.5, 3.0, 3.999999, 4.9):
        q = soft_labels(np.full(sigma.size, m), sigma, method, mode="projection")
        jump = np.abs(np.diff(q, axis=0)).max()
        assert jump < 2 * (sigma[1] - sigma[0]), (m, jump)
    # approaching the ends the label tends to the two-level label used exactly there
    for end, side in ((1.0, 1.0), (5.0, -1.0)):
        near = soft_labels([end + side * 1e-6], [0.7], method, mode="projection")[0]
        np.testing.assert_allclose(near, two_level_labels([end])[0], atol=1e-5)


@pytest.mark.parametrize("name", list(REAL))
def test_default_and_active_set_valid_on_real_data(name, real_rows):
    mu, sigma, method, _, _ = real_rows[name]
    for m in ("cdf", "pdf"):
        for mode in ("projection", "active_set"):
            _check_valid(soft_labels(mu, sigma, m, mode=mode), mu)


# Measured on the real labels (rescaled to [1, 5], the published method per data set): mean |spread
# - sigma| and the share of labels with two or fewer levels above 1e-3, for reference / active set /
# default; reference rows are normalised first, as a model's softmax output always is.
SPREAD_ERROR = {"koniq": (0.0405, 0.0608, 0.0298), "kadid": (0.1670, 0.1950, 0.1199),
                "livec": (0.0992, 0.1383, 0.0636)}
TWO_LEVEL_SHARE = {"koniq": (0.0103, 0.0361, 0.0012), "kadid": (0.1878, 0.2040, 0.0075),
                   "livec": (0.0770, 0.1061, 0.0145)}


def _label_measures(q, sigma):
    qn = q / q.sum(axis=1, keepdims=True)
    return np.abs(spread(qn) - sigma).mean(), np.mean((qn > 1e-3).sum(axis=1) <= 2)


@pytest.mark.parametrize("name", list(REAL))
def test_default_keeps_the_spread_on_real_data(name, real_rows):
    mu, sigma, method, _, _ = real_rows[name]
    got = {mode: _label_measures(soft_labels(mu, sigma, method, mode=mode), sigma)
           for mode in ("reference", "active_set", "projection")}
    print(f"{name} ({method}): " + "; ".join(f"{mode} mean |spread - sigma| {err:.4f}, two levels "
                                              f"or fewer {share:.2%}" for mode, (err, share) in got.items()))
    for k, mode in enumerate(("reference", "active_set", "projection")):
        assert got[mode][0] == pytest.approx(SPREAD_ERROR[name][k], abs=2e-4), mode
        assert got[mode][1] == pytest.approx(TWO_LEVEL_SHARE[name][k], abs=2e-4), mode
    assert got["projection"][0] <= got["reference"][0] and got["projection"][0] < got["active_set"][0]
    assert got["projection"][1] <= 0.02


def test_default_is_closest_to_the_koniq_rating_histograms(real_iqa):
    """Labels built from each histogram's own mean and SD on the 1-5 rating scale (no rescaling),
    compared with the histogram: the default label is the closest in JS (notebook 02 prints these)."""
    df = pd.read_csv(real_iqa / "koniq10k" / "koniq10k_distributions_sets.csv")
    hist = df[HIST].to_numpy(float)
    m, s = hist @ CENTERS, df["SD"].to_numpy(float)
    js = {}
    for mode in ("reference", "active_set", "projection"):
        q = soft_labels(m, s, "pdf", mode=mode)
        js[mode] = float(metrics.js_levels(hist, q / q.sum(axis=1, keepdims=True)).mean())
    print("mean JS(label, KonIQ histogram), pdf: " + ", ".join(f"{k} {v:.4f}" for k, v in js.items()))
    assert js["projection"] == pytest.approx(0.0025, abs=1e-4)
    assert js["projection"] < 0.6 * js["active_set"] and js["active_set"] < js["reference"]


def test_projection_is_not_uniform_at_mu_3():
    sigma = np.linspace(0.2, 1.5, 27)
    mu = np.full_like(sigma, 3.0)
    for method in ("cdf", "pdf"):
        for mode in ("projection", "active_set"):
            q = soft_labels(mu, sigma, method, mode=mode)
            _check_valid(q, mu)
            # symmetric about fair, peaked there, decreasing outwards
            np.testing.assert_allclose(q[:, 0], q[:, 4], atol=1e-9)
            np.testing.assert_allclose(q[:, 1], q[:, 3], atol=1e-9)
            assert np.all(q[:, 2] > q[:, 1] + 1e-3) and np.all(q[:, 1] > q[:, 0])
            assert np.all(np.abs(q - 0.2).max(axis=1) > 0.05)
    # cdf at mu = 3, sigma = 0.5: the raw masses already sum to about 1 with mean 3, so the label
    # is the masses themselves: Phi(1) - Phi(-1) = 0.6827 on fair
    q = soft_labels([3.0], [0.5], "cdf", mode="projection")[0]
    assert q[2] == pytest.approx(norm.cdf(1) - norm.cdf(-1), abs=2e-3)


def test_modes_at_mu_3_are_the_normalised_masses():
    # at mu = 3 the masses are symmetric, so their mean is already 3: both modes give p / sum(p); its
    # spread then follows from the masses alone
    sigma = np.array([0.4, 0.7, 1.0, 1.4])
    for method in ("cdf", "pdf"):
        p = level_masses(np.full(4, 3.0), sigma, method)
        for mode in ("projection", "active_set"):
            q = soft_labels(np.full(4, 3.0), sigma, method, mode=mode)
            np.testing.assert_allclose(q, p / p.sum(axis=1, keepdims=True), atol=1e-12)
            expect = np.sqrt((p @ (CENTERS - 3.0) ** 2) / p.sum(axis=1))
            np.testing.assert_allclose(spread(q), expect, atol=1e-12)
    # cdf, sigma = 1: Phi(0.5) - Phi(-0.5) = 0.3829 of the Gaussian on fair, renormalised over [0.5, 5.5]
    q = soft_labels([3.0], [1.0], "cdf", mode="projection")[0]
    assert q[2] == pytest.approx((norm.cdf(0.5) - norm.cdf(-0.5)) / (norm.cdf(2.5) - norm.cdf(-2.5)),
                                 abs=1e-12)


@pytest.mark.parametrize("method", ["cdf", "pdf"])
def test_active_set_mode_on_random_rows(method):
    mu, sigma = _random_rows(20000, seed=3)
    q, fb = soft_labels(mu, sigma, method, mode="active_set", return_fallback=True)
    _check_valid(q, mu)
    # Narrow Gaussians (0.2 <= sigma < 0.5) can still fall back: the affine family alpha p + beta
    # cannot always meet mean = mu with three or more levels. From sigma = 0.5 up, only mu = 1 or 5
    # (where mean = mu leaves a single level) does.
    narrow = (sigma >= 0.2) & (sigma < 0.5)
    assert np.all(fb[(mu == 1.0) | (mu == 5.0)])
    print(f"{method}: active set falls back on {fb[narrow].mean():.1%} of rows with 0.2 <= sigma < 0.5")
    assert not np.any(fb & (sigma >= 0.5) & (mu > 1.0) & (mu < 5.0))
    assert fb[narrow].mean() < 0.4
    # it zeroes levels: many rows keep three or fewer, where the default keeps all five
    assert np.mean((q[~fb] > 0).sum(axis=1) <= 3) > 0.3


def test_projection_keeps_spread_on_kadid_reference_fallbacks(real_rows):
    """Where the reference gives up (two-level label), the default label is never narrower
    (up to 1e-6) and on average clearly wider."""
    mu, sigma, method, _, _ = real_rows["kadid"]
    q_ref, fb_ref = soft_labels(mu, sigma, method, reference=True, return_fallback=True)
    q_def = soft_labels(mu, sigma, method, mode="projection")
    rows = fb_ref & (sigma >= 0.2)
    s_ref, s_def = spread(q_ref[rows]), spread(q_def[rows])
    wider = np.mean(s_def > s_ref + 0.01)
    print(f"kadid: {rows.sum()} reference fallbacks with sigma >= 0.2; mean spread "
          f"reference {s_ref.mean():.3f}, default {s_def.mean():.3f}, human {sigma[rows].mean():.3f}; "
          f"default wider by > 0.01 on {wider:.1%}, never narrower by more than "
          f"{max(0.0, float(np.max(s_ref - s_def))):.1e}")
    assert rows.sum() > 1000
    assert s_def.mean() > s_ref.mean() + 0.1
    assert np.all(s_def >= s_ref - 1e-6)
    assert wider > 0.6


def test_modes_and_their_errors():
    assert MODES == ("projection", "reference", "active_set")
    np.testing.assert_array_equal(soft_labels([2.2], [0.6], mode="reference"),
                                  soft_labels([2.2], [0.6], reference=True))
    with pytest.raises(ValueError, match="unknown soft-label mode 'affine'"):
        soft_labels([3.0], [0.5], mode="affine")
    with pytest.raises(ValueError, match="reference=True contradicts mode='active_set'"):
        soft_labels([3.0], [0.5], reference=True, mode="active_set")
    with pytest.raises(ValueError, match="the information projection is mode 'projection'"):
        soft_labels([3.0], [0.5], mode="default")


@pytest.mark.parametrize("published", [True, False])
def test_one_constant_sets_the_default_label_everywhere(published, monkeypatch):
    """soft_labels, data.to_levels, evaluate.human_labels, cotrain.make_targets and the train settings
    all build the label PUBLISHED_LABEL names when not told (trainset.load_splits: tests/test_trainset.py)."""
    import pandas as pd

    from deqa import cotrain, data, evaluate, soft_label
    from deqa.levels import LABEL_COLUMNS

    monkeypatch.setattr(soft_label, "PUBLISHED_LABEL", published)
    mu, sigma = np.array([1.6, 2.2, 3.0, 3.9, 4.6]), np.array([0.5, 0.9, 0.7, 0.35, 0.8])
    want = soft_labels(mu, sigma, "cdf", reference=published)
    other = soft_labels(mu, sigma, "cdf", reference=not published)
    assert np.max(np.abs(want - other)) > 0.01   # the two labels differ on these rows
    np.testing.assert_array_equal(soft_labels(mu, sigma, "cdf"), want)
    table = pd.DataFrame({"image": [f"{i}.png" for i in range(5)], "mos": mu, "std": sigma,
                          "dataset": "toy", "split": "train"})
    np.testing.assert_array_equal(data.to_levels(table, 1.0, 5.0, method="cdf")[list(LABEL_COLUMNS)].to_numpy(),
                                  want)
    human = evaluate.human_labels(table, method="cdf")
    np.testing.assert_array_equal(human[list(LABEL_COLUMNS)].to_numpy(),
                                  soft_labels(human["mu"], human["sigma"], "cdf", reference=published))
    frame = pd.DataFrame({"dataset": "full_1to5", "mos": mu, "std": sigma, "lower_is_better": False})
    np.testing.assert_array_equal(cotrain.make_targets(frame).q.numpy(),
                                  cotrain.make_targets(frame, reference=published).q.numpy())


def test_small_and_missing_sigma_give_two_level_label():
    mu = np.array([1.0, 1.3, 2.5, 3.0, 3.75, 5.0, 2.2])
    sigma = np.array([0.1, 0.0, 0.19, np.nan, np.nan, 0.05, np.nan])
    for method in ("cdf", "pdf"):
        for ref in (False, True):
            q, fb = soft_labels(mu, sigma, method, reference=ref, return_fallback=True)
            assert fb.all()
            np.testing.assert_allclose(score(q), mu, atol=1e-7)
            assert np.all((q > 1e-6).sum(axis=1) <= 2)
    q = soft_labels(mu, sigma, mode="projection")
    np.testing.assert_allclose(q[1], [0.7, 0.3, 0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(q[2], [0, 0.5, 0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(q[4], [0, 0, 0.25, 0.75, 0], atol=1e-12)
    np.testing.assert_allclose(q[5], [0, 0, 0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(two_level_labels([3.0]), [[0, 0, 1, 0, 0]], atol=1e-12)


def test_one_hot_bins():
    mu = [1.0, 1.8, 1.81, 2.6, 2.61, 3.4, 3.41, 4.2, 4.21, 5.0]
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # bad <= 1.8 < poor <= 2.6 < fair <= 3.4 < good <= 4.2 <
    q = one_hot_labels(mu)
    assert q.shape == (10, 5)
    np.testing.assert_array_equal(q.argmax(axis=1), expected)
    np.testing.assert_array_equal(q.sum(axis=1), 1.0)
    np.testing.assert_array_equal(q.max(axis=1), 1.0)


def test_level_masses_cdf_and_pdf():
    mu, sigma = 2.3, 0.6
    p_cdf = level_masses([mu], [sigma], "cdf")[0]
    p_pdf = level_masses([mu], [sigma], "pdf")[0]
    for k, c in enumerate(CENTERS):
        expect_cdf = norm.cdf(c + 0.5, mu, sigma) - norm.cdf(c - 0.5, mu, sigma)
        expect_pdf = math.exp(-0.5 * ((c - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        assert p_cdf[k] == pytest.approx(expect_cdf, abs=1e-12)
        assert p_pdf[k] == pytest.approx(expect_pdf, abs=1e-12)
    # cdf masses are the Gaussian's mass on [0.5, 5.5] in total; pdf masses need not sum to 1
    assert p_cdf.sum() == pytest.approx(norm.cdf(5.5, mu, sigma) - norm.cdf(0.5, mu, sigma))
    # for a narrow Gaussian the pdf at the nearest centre exceeds 1 (a density, not a probability)
    assert level_masses([3.0], [0.3], "pdf")[0, 2] > 1.0


def test_pdf_and_cdf_labels_differ_but_both_valid():
    mu = np.array([1.7, 2.9, 4.4])
    sigma = np.array([0.4, 0.8, 0.6])
    q_cdf = soft_labels(mu, sigma, "cdf", mode="projection")
    q_pdf = soft_labels(mu, sigma, "pdf", mode="projection")
    _check_valid(q_cdf, mu)
    _check_valid(q_pdf, mu)
    assert np.max(np.abs(q_cdf - q_pdf)) > 0.01
    # the pdf labels are narrower: cdf adds the within-bin variance
    assert np.all(spread(q_pdf) < spread(q_cdf))


@pytest.mark.parametrize("mu, sigma, match", [
    ([0.5], [0.5], "mu must lie in \\[1, 5\\].*row 0"),
    ([3.0, 5.2], [0.5, 0.5], "row 1"),
    ([3.0, 2.0], [0.5, -0.1], "negative sigma at row 1"),
    ([np.nan], [0.5], "not finite at row 0"),
])
def test_input_errors(mu, sigma, match):
    with pytest.raises(ValueError, match=match):
        soft_labels(mu, sigma)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        soft_labels([3.0], [0.5], "gaussian")
