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

from deqa import plots  # noqa: E402
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
    images = [Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(6)]
    return images, df


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
    assert "PLCC" in title and "SRCC" in title and "n = 40" in title
    assert len(fig.axes[0].lines) == 1  # the fitted logistic
    first, second = _save_twice(fig, "scatter", tmp_path)
    assert first == second
    fig2 = plots.spread_calibration(rng.uniform(0.3, 1, 30), rng.uniform(0.3, 1, 30))
    assert fig2.axes[0].get_xlabel().startswith("human spread")
    with pytest.raises(DeqaError, match="length mismatch"):
        plots.spread_calibration([0.5, 0.6], [0.5])


def test_prediction_grid_selects_best_worst_uncertain(joined):
    images, df = joined
    err = np.abs(df["score"] - df["mu"]).to_numpy()
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "best", 2).tolist() \
        == np.argsort(err)[:2].tolist()
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "worst", 1)[0] == np.argmax(err)
    assert plots.select_predictions(df["score"], df["std"], df["mu"], "uncertain", 1)[0] \
        == np.argmax(df["std"].to_numpy())
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
    assert sorted(line.get_label() for line in fig.axes[0].lines) == ["ce", "fid", "kl", "loss"]
    assert len(fig.axes[1].lines[0].get_xdata()) == 2
    first, second = _save_twice(fig, "curves", tmp_path)
    assert first == second
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 1}\nnot json\n')
    with pytest.raises(DeqaError, match="line 2"):
        plots.training_curves(tmp_path / "bad.jsonl")
