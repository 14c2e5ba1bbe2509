"""deqa.plots: every evaluation figure draws on small inputs, and saving is byte-for-byte repeatable."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from deqa import metrics, plots  # noqa: E402
from deqa.errors import DeqaError  # noqa: E402
from deqa.levels import LEVELS, score, spread  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def joined():
    """Six images with predicted and human distributions, as evaluate.join_predictions gives them."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(5, 2.0), size=6)
    q = rng.dirichlet(np.full(5, 2.0), size=6)
    df = pd.DataFrame({"score": score(p), "std": spread(p), "mu": score(q), "sigma": spread(q)})
    for k, level in enumerate(LEVELS):
        df[f"p_{level}"] = p[:, k]
        df[f"q_{level}"] = q[:, k]
    hist = rng.dirichlet(np.full(5, 1.0), size=6)
    for k in range(5):
        df[f"c{k + 1}"] = hist[:, k]
    images = [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(6)]
    return images, df


def _legend_outside(legend, ax) -> bool:
    """True when the drawn legend does not overlap the axes' data area."""
    ax.figure.canvas.draw()
    return not legend.get_window_extent().overlaps(ax.get_window_extent())


def _save_twice(fig, name, tmp_path) -> tuple[bytes, bytes]:
    first = plots.savefig(fig, name, directory=tmp_path / "one").read_bytes()
    second = plots.savefig(fig, name, directory=tmp_path / "two").read_bytes()
    return first, second


def test_distribution_panels_and_determinism(joined, tmp_path):
    images, df = joined
    fig = plots.distribution_panels(images[:3], df.iloc[:3], titles=["a", "b", "c"])
    bar_axes = fig.axes[1::2]
    assert [t.get_text() for t in bar_axes[0].get_xticklabels()] == list(LEVELS)
    assert len(bar_axes[0].patches) == 10  # five predicted + five human bars
    assert all(ax.get_xlabel() and ax.get_ylabel() == "probability" for ax in bar_axes[:3])
    # the human bars are the soft label; the rating histogram (c1..c5) is drawn as markers on them
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "human soft label" in labels and "human ratings (histogram)" in labels
    markers = [line for line in bar_axes[1].lines if line.get_label() == "human ratings (histogram)"]
    assert np.allclose(markers[0].get_ydata(), df.loc[1, ["c1", "c2", "c3", "c4", "c5"]].to_numpy(float))
    assert all(ax.get_legend() is None for ax in fig.axes)  # one legend, above the panels
    no_hist = plots.distribution_panels(images[:2], df.iloc[:2], histograms=False, gaussians=False)
    assert [t.get_text() for t in no_hist.legends[0].get_texts()] == ["predicted levels", "human soft label"]
    first, second = _save_twice(fig, "panels", tmp_path)
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second
    # the same figure drawn again from scratch gives the same bytes too
    again = plots.distribution_panels(images[:3], df.iloc[:3], titles=["a", "b", "c"])
    assert plots.savefig(again, "panels", directory=tmp_path / "three").read_bytes() == first


def test_image_distribution_on_given_axes(joined, tmp_path):
    images, df = joined
    plots.use_style()
    fig, (ax_img, ax_bars) = plt.subplots(1, 2)
    path = tmp_path / "img.png"
    images[0].save(path)
    out = plots.image_distribution(ax_img, ax_bars, path, df.filter(like="p_").iloc[0].to_numpy(),
                                   df.filter(like="q_").iloc[0].to_numpy(), title="one image")
    assert out is fig and ax_img.get_title() == "one image"
    heights = [p.get_height() for p in ax_bars.patches[:5]]
    assert np.allclose(heights, df.filter(like="p_").iloc[0].to_numpy())


def test_score_scatter_and_spread_calibration(tmp_path):
    rng = np.random.default_rng(1)
    pred = rng.uniform(1, 5, 40)
    mos = 1 + 4 / (1 + np.exp(-(pred - 3) * 2)) + 0.1 * rng.normal(size=40)
    fig = plots.score_scatter(pred, pd.Series(mos))
    title = fig.axes[0].get_title()
    # the headline PLCC is the one after the logistic fit (the published protocol), not the raw one
    assert f"PLCC (logistic) {metrics.plcc_logistic(pred, mos):.3f}" in title
    assert f"SRCC {metrics.srcc(pred, mos):.3f}" in title and "n = 40" in title
    assert f"{metrics.plcc(pred, mos):.3f}" not in title
    assert len(fig.axes[0].lines) == 1  # the fitted logistic
    assert _legend_outside(fig.axes[0].get_legend(), fig.axes[0])
    first, second = _save_twice(fig, "scatter", tmp_path)
    assert first == second
    human = rng.uniform(0.3, 1, 30)
    fig2 = plots.spread_calibration(0.25 * human + 0.5 + 0.01 * rng.normal(size=30), human)
    ax2 = fig2.axes[0]
    assert ax2.get_xlabel().startswith("human spread") and ax2.get_ylabel() == "predicted spread"
    slope, intercept = plots.calibration_slope(0.25 * human + 0.5, human)
    assert abs(slope - 0.25) < 1e-9 and abs(intercept - 0.5) < 1e-9
    fitted = np.polyfit(human, 0.25 * human + 0.5 + 0.01 * np.random.default_rng(1).normal(size=30), 1)[0]
    assert "slope 0.2" in ax2.get_title() and abs(fitted - 0.25) < 0.05
    assert [line.get_label() for line in ax2.lines][-1].startswith("fitted line (slope 0.2")
    assert _legend_outside(ax2.get_legend(), ax2)
    with pytest.raises(DeqaError, match="length mismatch"):
        plots.spread_calibration([0.5, 0.6], [0.5])


def test_spread_by_score_draws_both_binned_means():
    mu = np.linspace(1, 5, 60)
    label = 0.9 - 0.1 * (mu - 3) ** 2
    fig = plots.spread_by_score(mu, 0.5 * label + 0.3, label, bins=6)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"soft label (binned mean)", "predicted (binned mean)"}
    assert len(lines["soft label (binned mean)"].get_xdata()) == 6
    # the binned mean of the label is the mean of its bin: the middle bins are the widest
    y = lines["soft label (binned mean)"].get_ydata()
    assert np.argmax(y) in (2, 3) and abs(y[0] - label[:10].mean()) < 1e-12
    assert ax.get_xlabel().startswith("human score") and ax.get_ylabel().startswith("spread")


def test_prediction_grid_selects_best_worst_uncertain(joined):
    images, df = joined
    err = np.abs(df["score"] - df["mu"]).to_numpy()
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "best", 2).tolist() \
        == np.argsort(err)[:2].tolist()
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "worst", 1)[0] == np.argmax(err)
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "uncertain", 1)[0] \
        == np.argmax(df["std"].to_numpy())
    # "spread": the whole range of predicted spreads, narrowest first, never two equal picks
    picks = plots.select_predictions(df["score"], df["std"], df["mu"], "spread", 3)
    assert picks[0] == np.argmin(df["std"].to_numpy()) and picks[-1] == np.argmax(df["std"].to_numpy())
    assert len(set(picks.tolist())) == 3 and np.all(np.diff(df["std"].to_numpy()[picks]) > 0)
    tied = plots.select_predictions(np.zeros(10), np.r_[np.full(8, 0.83), 0.2, 0.5], np.zeros(10), "spread", 4)
    assert tied.tolist() == [8, 1, 4, 7]  # ranks 0, 3, 6, 9 of the sorted spreads
    for kind in plots.GRID_KINDS:
        fig = plots.prediction_grid(images, df, kind=kind, n=4, ncols=2)
        assert sum(ax.images != [] for ax in fig.axes) == 4
    with pytest.raises(DeqaError, match="unknown kind"):
        plots.prediction_grid(images, df, kind="median")


def test_training_curves_from_a_run_folder(tmp_path):
    rows = [{"step": s, "loss": 2.0 / (s + 1), "fid": 0.3 / (s + 1), "kl": 1.0 / (s + 1), "ce": 0.5,
             "lr": 1e-4 * (1 - s / 10)} for s in range(10)]
    rows += [{"step": 4, "val_srcc": 0.5, "val_plcc": 0.55}, {"step": 9, "val_srcc": 0.7, "val_plcc": 0.72}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fig = plots.training_curves(tmp_path)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["training losses", "validation", "learning rate"]
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert sorted(lines) == ["ce", "fid", "kl", "total L"]
    # the same colour for the same loss part as chapter 04, a log axis, legends outside the data
    assert lines["kl"].get_color() == plots.LOSS_COLORS["kl"] and lines["fid"].get_color() == plots.LOSS_COLORS["fid"]
    assert fig.axes[0].get_yscale() == "log" and all(ax.get_xlabel() == "step" for ax in fig.axes)
    assert all(ax.get_ylabel() for ax in fig.axes)
    assert all(_legend_outside(ax.get_legend(), ax) for ax in fig.axes)
    assert len(fig.axes[1].lines[0].get_xdata()) == 2
    first, second = _save_twice(fig, "curves", tmp_path)
    assert first == second
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 1}\nnot json\n')
    with pytest.raises(DeqaError, match="line 2"):
        plots.training_curves(tmp_path / "bad.jsonl")


def _two_sets(n=40, seed=3):
    rng = np.random.default_rng(seed)
    frames = []
    for name in ("set-a", "set $b$"):
        mu = rng.uniform(1, 5, n)
        frames.append(pd.DataFrame({"dataset": name, "mu": mu, "score": mu + rng.normal(0, 0.3, n),
                                    "sigma": rng.uniform(0.4, 1.0, n), "std": rng.uniform(0.5, 0.8, n)}))
    return pd.concat(frames, ignore_index=True)


def test_panels_per_data_set_and_pooled(tmp_path):
    table = _two_sets()
    fig = plots.scatter_panels(table)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("set-a\nPLCC (logistic)") and titles[1].startswith(r"set \$b\$")  # $ as text
    assert titles[2].startswith("pooled") and f"n = {len(table)}" in titles[2]
    part = table[table["dataset"] == "set-a"]
    assert f"SRCC {metrics.srcc(part['score'], part['mu']):.3f}" in titles[0]
    other = table.assign(score=table["score"] + 0.5)
    fig2 = plots.scatter_panels(table, other, names=("A", "B"))
    assert "A: PLCC" in fig2.axes[0].get_title() and "B: PLCC" in fig2.axes[0].get_title()
    assert len(fig2.axes[0].collections) == 2  # both models' points
    first, second = _save_twice(fig2, "scatter", tmp_path)
    assert first == second
    cal = plots.calibration_panels(table, study_r={"set-a": 0.36})
    assert "a perfect prediction: slope 0.36, corr 0.60" in cal.axes[0].get_title()
    assert "perfect" not in cal.axes[1].get_title()
    line = [ln for ln in cal.axes[0].lines if ln.get_linestyle() == ":"][0]
    x, y = line.get_xydata().T
    mean = part["sigma"].mean()
    assert np.allclose(y, mean + 0.36 * (x - mean))  # through the mean, slope r
    dens = plots.score_density(table)
    assert [ln.get_label() for ln in dens.axes[0].lines] == ["human mu", "predicted score"]
    assert dens.axes[0].get_ylim()[0] == 0


def test_distortion_srcc_boxes_and_tiles_with_families(joined):
    from deqa import evaluate

    rng = np.random.default_rng(0)
    rows = [{"image": f"I{r:02d}_{f:02d}_0{k}.png", "dataset": "kadid10k"}
            for r in range(1, 5) for f in (1, 10) for k in (1, 2, 3, 4, 5)]
    table = pd.DataFrame(rows)
    table["mu"] = 6 - table["image"].str[-5].astype(int) + rng.normal(0, 0.3, len(table))
    table["score"] = table["mu"] + rng.normal(0, 0.4, len(table))
    results = evaluate.distortion_table(table, n_boot=50)
    fig = plots.distortion_srcc(results, overall={"kadid10k": 0.9})
    family_ax, strength_ax = fig.axes[:2]
    assert [t.get_text() for t in family_ax.get_yticklabels()] == ["gaussian blur (n = 20)", "jpeg (n = 20)"]
    assert len(strength_ax.get_yticklabels()) == 5
    assert family_ax.lines[-1].get_xdata()[0] == 0.9  # the data set's SRCC, dashed
    # grid tiles: data set, family and strength, prediction, human
    images, df = joined
    df = df.assign(dataset="kadid10k", family=["jpeg", "white noise", None, "jpeg", "pristine", "jpeg"],
                   level=[3, 1, np.nan, 2, 0, 5])
    grid = plots.prediction_grid([None] * 6, df, kind="worst", n=6, ncols=3)
    titles = {ax.get_title().split("\n")[1]: ax.get_title() for ax in grid.axes if ax.get_title()}
    assert "jpeg, strength 3" in titles and "white noise, strength 1" in titles and "pristine" in titles
    assert all(t.startswith("kadid10k\n") for t in titles.values())
    assert any(t.get_text() == "image not found" for ax in grid.axes for t in ax.texts)


def test_distribution_panels_without_images(joined):
    _, df = joined
    fig = plots.distribution_panels(None, df.iloc[:4], titles=["a", "b", "c", "d"], ncols=4)
    assert len(fig.axes) == 4 and all(ax.get_title().split("\n")[0] in "abcd" for ax in fig.axes)
    assert not any(ax.images for ax in fig.axes)


def test_one_colour_one_meaning():
    """Data sets by name; families, labels, the model and the reference lines each in colours nothing else
    in the table uses (the objectives and the loss parts share theirs on purpose: a loss part is coloured
    as the objective it comes from)."""
    assert isinstance(plots.DATASET_COLORS, dict) and "synth-koniq" in plots.DATASET_COLORS
    groups = {"level": set(plots.LEVEL_COLORS), "dataset": set(plots.DATASET_COLORS.values()) | set(plots._MORE_DATASET_COLORS),
              "family": set(plots.FAMILY_COLORS.values()), "label": set(plots.MODE_COLORS.values()),
              "objective": set(plots.OBJECTIVE_COLORS.values()) | set(plots.LOSS_COLORS.values()) - {"k"},
              "model": {plots.MODEL_COLOR, plots.OTHER_MODEL_COLOR}, "human": {plots.HUMAN_COLOR},
              "reference": {plots.REFERENCE_COLOR}}
    for a in groups:
        for b in groups:
            if a < b:
                assert not groups[a] & groups[b], (a, b, groups[a] & groups[b])
    assert len(set(plots.LABEL_COLORS.values())) == 2 and plots.MODE_COLORS["reference"] == plots.LABEL_COLORS["published"]
    # the synthetic sets of one figure never share a colour; an unknown name gets the same colour every time
    synth = [plots.dataset_color(n) for n in ("synth-koniq", "synth-spaq", "synth-high", "synth-low")]
    assert len(set(synth)) == 4
    assert plots.dataset_color("my-set") == plots.dataset_color("my-set") in plots._MORE_DATASET_COLORS
