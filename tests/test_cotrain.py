"""The co-training toy of notebook 03 (deqa.cotrain): data sets, targets, the objectives' batch
losses, training, evaluation and the paired t-interval."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from deqa.soft_label import PUBLISHED_LABEL
from scipy import stats

from deqa import cotrain, losses
from deqa.errors import DeqaError


def test_restricted_sets_scales_ranges_directions_and_determinism():
    d = cotrain.make_toy_sets("restricted", n_per_set=300, seed=0)
    f = d.frame
    assert d.X.shape == (1200, 8) and len(f) == 1200
    np.testing.assert_array_equal(d.X, cotrain.make_toy_sets("restricted", n_per_set=300, seed=0).X)
    assert set(f.loc[f["dataset"] == "heldout_0to10", "split"]) == {"heldout"}
    assert set(f.loc[f["dataset"] != "heldout_0to10", "split"]) == {"train", "test"}
    by = f.groupby("dataset")
    z = by["z"].agg(["mean", "std"])
    assert z.loc["high_0to100", "mean"] > 1.3 and z.loc["low_dmos", "mean"] < -1.3
    assert z.loc["high_0to100", "std"] < 0.35 and z.loc["full_1to5", "std"] > 0.8
    top = by["mos"].max()
    assert 50 < top["high_0to100"] <= 100 and top["full_1to5"] <= 5.5 and top["low_dmos"] < 1.2
    corr = by.apply(lambda g: np.corrcoef(g["z"], g["mos"])[0, 1], include_groups=False)
    assert corr["full_1to5"] > 0.8 and corr["heldout_0to10"] > 0.8 and corr["low_dmos"] < 0
    assert (cotrain.quality_sign(f) == np.where(f["dataset"] == "low_dmos", -1.0, 1.0)).all()


def test_rescaled_targets_put_every_set_on_1_to_5_and_flip_the_dmos():
    f = cotrain.make_toy_sets("restricted", n_per_set=200, seed=1).frame
    mu, sigma = cotrain.rescaled_targets(f)
    for name, rows in f.groupby("dataset").indices.items():
        assert mu[rows].min() == pytest.approx(1.0) and mu[rows].max() == pytest.approx(5.0)
        sub = f.iloc[rows]
        assert np.allclose(sigma[rows], 4 * sub["std"] / (sub["mos"].max() - sub["mos"].min()))
    dm = (f["dataset"] == "low_dmos").to_numpy()
    assert np.corrcoef(mu[dm], f["mos"][dm])[0, 1] == pytest.approx(-1.0)
    # the same latent quality gets a lower target in the full set than in the "only good" set
    full, high = (f["dataset"] == "full_1to5").to_numpy(), (f["dataset"] == "high_0to100").to_numpy()
    near = lambda rows: mu[rows][np.abs(f["z"].to_numpy()[rows] - 1.5) < 0.1].mean()  # noqa: E731
    assert near(high) - near(full) < -0.5 or near(full) > near(high) + 0.5


def test_targets_and_batch_loss_of_each_objective_by_hand():
    f = cotrain.make_toy_sets("restricted", n_per_set=60, seed=2).frame
    f = f[f["split"] == "train"].reset_index(drop=True)
    t = cotrain.make_targets(f, reference=False)   # the projection: sum 1 and mean mu on every row
    assert t.q.shape == (len(f), 5) and torch.allclose(t.q.sum(1), torch.ones(len(f)), atol=1e-5)
    assert torch.allclose(t.q @ torch.arange(1.0, 6.0), t.mu, atol=1e-4)   # the label's mean is mu
    published = cotrain.make_targets(f, reference=True).q   # the published builder: rows may sum above 1
    assert published.sum(1).max() > 1.01 and torch.equal(cotrain.make_targets(f).q,
                                                          published if PUBLISHED_LABEL else t.q)
    gen = torch.Generator().manual_seed(0)
    a, b = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    za, zb = torch.randn(3, 5, generator=gen), torch.randn(3, 5, generator=gen)
    pa, pb = torch.softmax(za, -1), torch.softmax(zb, -1)
    c = torch.arange(1.0, 6.0)
    sa, sb = pa @ c, pb @ c
    mse = 0.5 * (((sa - t.mu[a]) ** 2).mean() + ((sb - t.mu[b]) ** 2).mean())
    kl = lambda q, p: (torch.xlogy(q, q) - q * torch.log(p)).sum(-1).mean()  # noqa: E731
    kl_ab = kl(t.q[a], pa) + kl(t.q[b], pb)
    d = (t.signed_mos[a] - t.signed_mos[b]) / torch.sqrt(t.std[a] ** 2 + t.std[b] ** 2)
    p = torch.tensor(stats.norm.cdf(d.numpy()), dtype=torch.float32)
    ph = torch.tensor(stats.norm.cdf(((sa - sb) / np.sqrt(2)).numpy()), dtype=torch.float32)
    fid = (1 - torch.sqrt(ph * p) - torch.sqrt((1 - ph) * (1 - p))).mean()
    expected = {"mse_rescaled": mse, "soft_kl": 0.5 * kl_ab, "fidelity": fid, "soft_kl_fid": fid + 0.05 * kl_ab}
    for objective, value in expected.items():
        got = cotrain.batch_loss(objective, za, zb, t, a, b)
        assert float(got) == pytest.approx(float(value), abs=2e-4), objective
    with pytest.raises(DeqaError, match="objective"):
        cotrain.batch_loss("mse_raw", za, zb, t, a, b)


def test_fidelity_beats_rescaled_mse_pooled_on_restricted_sets():
    d = cotrain.make_toy_sets("restricted", n_per_set=200, seed=0)
    table = cotrain.run_experiment(d, ("mse_rescaled", "fidelity"), epochs=30, seed=0)
    assert list(table.columns) == ["full_1to5", "high_0to100", "low_dmos", "heldout_0to10", cotrain.POOLED]
    assert table.loc["fidelity", cotrain.POOLED] > table.loc["mse_rescaled", cotrain.POOLED] + 0.1, table
    assert table.loc["fidelity", "heldout_0to10"] > table.loc["mse_rescaled", "heldout_0to10"], table
    assert (table["full_1to5"] > 0.6).all(), table     # both learn the full-range set


def test_train_scorer_lowers_its_loss_and_scores_in_1_to_5():
    d = cotrain.make_toy_sets("full_range", n_per_set=150, seed=3)
    model, history = cotrain.train_scorer(d, "soft_kl_fid", epochs=15, seed=3)
    assert len(history) == 15 and history[-1] < history[0]
    s = cotrain.predict(model, d.X)
    assert s.shape == (len(d.frame),) and s.min() >= 1.0 and s.max() <= 5.0
    with pytest.raises(DeqaError, match="objective"):
        cotrain.train_scorer(d, "bce", epochs=1)


def test_evaluate_scores_perfect_and_reversed_rankings():
    d = cotrain.make_toy_sets("restricted", n_per_set=100, seed=4)
    f = d.frame
    perfect = f["mos"].to_numpy() * cotrain.quality_sign(f)
    res = cotrain.evaluate(d, perfect)
    assert all(res[name] == pytest.approx(1.0) for name in f["dataset"].unique())
    assert res[cotrain.POOLED] < 1.0     # native scales do not agree across sets
    assert cotrain.evaluate(d, f["z"].to_numpy())[cotrain.POOLED] == pytest.approx(1.0)
    assert cotrain.evaluate(d, -f["z"].to_numpy())[cotrain.POOLED] == pytest.approx(-1.0)


def test_paired_difference_t_interval():
    diffs = np.array([0.1, 0.3, 0.2, 0.4, -0.1])
    rows = [{"seed": s, "objective": o, "test set": "x", "srcc": v}
            for s, d in enumerate(diffs) for o, v in (("base", 0.5), ("new", 0.5 + d))]
    out = cotrain.paired_difference(pd.DataFrame(rows), "new", "base")
    half = stats.t.ppf(0.975, 4) * diffs.std(ddof=1) / np.sqrt(5)
    assert out.loc["x", "mean diff"] == pytest.approx(diffs.mean())
    assert out.loc["x", "t half-width"] == pytest.approx(half)
    assert out.loc["x", "seeds"] == 5 and out.loc["x", "wins"] == 4
    with pytest.raises(DeqaError, match="both"):
        cotrain.paired_difference(pd.DataFrame(rows), "new", "missing")


def test_bad_settings_raise_deqa_error():
    with pytest.raises(DeqaError, match="scenario"):
        cotrain.make_toy_sets("imaginary")
    with pytest.raises(DeqaError, match="n_per_set"):
        cotrain.make_toy_sets(n_per_set=3)


def test_shift_scale_zero_removes_the_nuisance_shift_and_keeps_everything_else():
    shifted = cotrain.make_toy_sets("restricted", n_per_set=200, seed=5)
    plain = cotrain.make_toy_sets("restricted", n_per_set=200, seed=5, shift_scale=0.0)
    pd.testing.assert_frame_equal(shifted.frame, plain.frame)     # same images, qualities, scores, splits
    offset = pd.DataFrame(shifted.X - plain.X).groupby(shifted.frame["dataset"].to_numpy())
    assert (offset.std() < 1e-12).all().all()                     # one constant shift per data set ...
    assert offset.mean().abs().to_numpy().max() > 0.1             # ... and it is not zero
    # without it, what is left of the features beyond z * w is noise of mean ~0 in every set
    w = np.linalg.lstsq(plain.frame[["z"]].to_numpy(), plain.X, rcond=None)[0][0]
    residual = pd.DataFrame(plain.X - plain.frame[["z"]].to_numpy() * w).groupby(plain.frame["dataset"].to_numpy()).mean()
    assert residual.abs().to_numpy().max() < 0.15


def test_run_seeds_passes_the_shift_and_the_label_through(monkeypatch):
    seen = []
    real_make, real_run = cotrain.make_toy_sets, cotrain.run_experiment

    def make(*args, **kwargs):
        seen.append(("shift", kwargs["shift_scale"]))
        return real_make(*args, **kwargs)

    def run(data, objectives, epochs, seed, reference=None):
        seen.append(("reference", reference))
        return real_run(data, objectives, epochs=epochs, seed=seed, reference=reference)
    monkeypatch.setattr(cotrain, "make_toy_sets", make)
    monkeypatch.setattr(cotrain, "run_experiment", run)
    out = cotrain.run_seeds("restricted", n_per_set=60, epochs=1, seeds=(0,), objectives=("soft_kl",),
                            shift_scale=0.0, reference=False)
    assert seen == [("shift", 0.0), ("reference", False)] and len(out) == 5


def _train_alone_by_hand(d, objective, epochs, seed, reference):
    """One nn.Sequential scorer, one Adam, the loop written out: what each stacked copy must reproduce."""
    from deqa.pairs import PairSampler
    train = (d.frame["split"] == "train").to_numpy()
    frame = d.frame[train].reset_index(drop=True)
    X = torch.tensor(d.X[train], dtype=torch.float32)
    targets = cotrain.make_targets(frame, reference=reference)
    model = cotrain.make_scorer(X.shape[1], seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sampler, history = PairSampler(frame["dataset"].to_numpy(), seed=seed), []
    for epoch in range(epochs):
        idx_a, idx_b = sampler.epoch_pairs(epoch)
        total = 0.0
        for start in range(0, len(idx_a), 256):
            a, b = torch.as_tensor(idx_a[start:start + 256]), torch.as_tensor(idx_b[start:start + 256])
            logits = model(torch.cat([X[a], X[b]]))
            loss = cotrain.batch_loss(objective, logits[: len(a)], logits[len(a):], targets, a, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(a)
        history.append(total / len(idx_a))
    return model, history


def test_train_objectives_takes_the_steps_of_one_scorer_trained_alone():
    # the stacked scorers end where one plain scorer per objective, trained alone, ends (up to float rounding)
    d = cotrain.make_toy_sets("restricted", n_per_set=80, seed=6)
    together = cotrain.train_objectives(d, cotrain.OBJECTIVES, epochs=6, seed=6, reference=False)
    assert list(together) == list(cotrain.OBJECTIVES)
    for objective, (model, history) in together.items():
        alone, alone_history = _train_alone_by_hand(d, objective, epochs=6, seed=6, reference=False)
        np.testing.assert_allclose(cotrain.predict(model, d.X), cotrain.predict(alone, d.X), atol=1e-4)
        np.testing.assert_allclose(history, alone_history, rtol=1e-4)
        single, single_history = cotrain.train_scorer(d, objective, epochs=6, seed=6, reference=False)
        np.testing.assert_allclose(cotrain.predict(single, d.X), cotrain.predict(model, d.X), atol=1e-4)
    with pytest.raises(DeqaError, match="objective"):
        cotrain.train_objectives(d, ("soft_kl", "bce"), epochs=1)


def test_the_label_switch_reaches_the_kl_objectives():
    d = cotrain.make_toy_sets("restricted", n_per_set=80, seed=7)
    published, _ = cotrain.train_scorer(d, "soft_kl", epochs=3, seed=7, reference=True)
    projection, _ = cotrain.train_scorer(d, "soft_kl", epochs=3, seed=7, reference=False)
    default, _ = cotrain.train_scorer(d, "soft_kl", epochs=3, seed=7)
    assert np.abs(cotrain.predict(published, d.X) - cotrain.predict(projection, d.X)).max() > 1e-4
    expected = published if PUBLISHED_LABEL else projection
    np.testing.assert_array_equal(cotrain.predict(default, d.X), cotrain.predict(expected, d.X))
    # the fidelity objective has no label: the switch changes nothing
    fid = [cotrain.predict(cotrain.train_scorer(d, "fidelity", epochs=3, seed=7, reference=r)[0], d.X) for r in (True, False)]
    np.testing.assert_array_equal(*fid)


def test_fidelity_objective_uses_the_package_losses():
    # the fixed P_hat of the toy is losses.p_hat of the five level logits
    za, zb = torch.randn(4, 5), torch.randn(4, 5)
    sa, sb = cotrain.score(za), cotrain.score(zb)
    assert torch.allclose(losses.p_hat(za, zb, "fixed"), losses.normal_cdf((sa - sb) / np.sqrt(2.0)))
