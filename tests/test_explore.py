"""The explorers' update functions (deqa.explore), driven without a browser."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from deqa import explore, losses
from deqa.errors import DeqaError
from deqa.levels import score, spread
from deqa.soft_label import level_masses, soft_labels


@pytest.mark.parametrize("mu, sigma, method, reference", [
    (3.7, 0.6, "cdf", False), (3.7, 0.6, "cdf", True), (4.7, 0.9, "pdf", True), (2.2, 0.1, "pdf", False),
])
def test_soft_label_update_reports_soft_labels_own_output(mu, sigma, method, reference):
    state, fig = explore.update_soft_label(mu, sigma, method, reference)
    q, fb = soft_labels([mu], [sigma], method=method, reference=reference, return_fallback=True)
    np.testing.assert_array_equal(state["q"], q[0])
    assert state["fallback"] == bool(fb[0])
    assert state["score"] == pytest.approx(float(score(q[0])))
    assert state["spread"] == pytest.approx(float(spread(q[0])))
    assert state["sum"] == pytest.approx(float(q[0].sum()))
    grid_q, grid_fb = soft_labels(state["grid_mu"], np.full_like(state["grid_mu"], sigma), method=method,
                                  reference=reference, return_fallback=True)
    np.testing.assert_array_equal(state["grid_q"], grid_q)
    np.testing.assert_array_equal(state["grid_fallback"], grid_fb)
    label_bars, mass_bars = fig.axes[0].containers        # the label in front of the raw masses
    assert np.allclose([b.get_height() for b in label_bars], q[0])
    p = level_masses([mu], [sigma], method)[0]
    np.testing.assert_array_equal(state["p"], p)
    assert np.allclose([b.get_height() for b in mass_bars], p) and not mass_bars[0].get_fill()
    assert ("FALLBACK" in fig.axes[0].get_title()) == bool(fb[0])


@pytest.mark.parametrize("mode", ["projection", "active_set", "reference"])
def test_soft_label_update_offers_the_three_modes(mode):
    # mu 4.7, sigma 0.9, pdf: the reference falls back to two levels, the active set cuts to the same two
    # levels without falling back, the default keeps three levels above 1e-3
    state, fig = explore.update_soft_label(4.7, 0.9, "pdf", mode=mode)
    q, fb = soft_labels([4.7], [0.9], method="pdf", mode=mode, return_fallback=True)
    np.testing.assert_array_equal(state["q"], q[0])
    assert state["mode"] == mode and state["reference"] == (mode == "reference")
    assert state["fallback"] == (mode == "reference") == bool(fb[0])
    assert (state["q"] > 1e-3).sum() == (3 if mode == "projection" else 2)
    assert fig.axes[0].get_title().startswith({"reference": "published"}.get(mode, mode.replace("_", " ")))
    with pytest.raises(DeqaError, match="reference=True"):
        explore.update_soft_label(3.0, 0.5, reference=True, mode="active_set")


def test_soft_label_update_flags_the_fallback_and_refuses_bad_input():
    assert explore.update_soft_label(3.0, 0.1, draw=False)[0]["fallback"]        # sigma < 0.2
    assert not explore.update_soft_label(3.0, 0.8, draw=False)[0]["fallback"]
    assert explore.update_soft_label(3.0, 0.8, draw=False)[1] is None
    with pytest.raises(DeqaError, match="mu"):
        explore.update_soft_label(5.5, 0.5)


@pytest.mark.parametrize("p_hat, p", [(0.3, 0.9), (0.5, 0.5), (0.0, 1.0), (0.999, 0.2), (1e-6, 1.0)])
def test_fidelity_update_matches_the_loss_and_autograd(p_hat, p):
    state, fig = explore.update_fidelity(p_hat, p)
    ph = torch.tensor(p_hat, dtype=torch.float64, requires_grad=True)
    loss = losses.fidelity(ph, torch.tensor(p, dtype=torch.float64))
    loss.backward()
    assert state["fidelity"] == pytest.approx(float(loss.detach()), abs=1e-12)
    assert state["fidelity_slope"] == pytest.approx(float(ph.grad), rel=1e-9)
    with np.errstate(divide="ignore"):
        expected_bce = -(p * np.log(p_hat) if p > 0 else 0.0) - ((1 - p) * np.log(1 - p_hat) if p < 1 else 0.0)
    assert state["bce"] == pytest.approx(expected_bce)
    loss_ax, slope_ax, bce_ax = fig.axes                     # BCE on a twin axis of the loss panel
    assert slope_ax.get_yscale() == "log" and bce_ax.get_ylim()[1] == explore.BCE_TOP
    # the fidelity axis is scaled to the fidelity curve (at most 1), not to BCE's range
    top = loss_ax.get_ylim()[1]
    assert top == pytest.approx(max(1.05 * state["fidelity_curve"].max(), 0.05)) and top < 1.1


def test_fidelity_update_numbers_at_known_points():
    state, _ = explore.update_fidelity(0.0, 1.0, draw=False)
    assert state["fidelity_slope"] == pytest.approx(-0.5 / np.sqrt(1e-8))   # the 5000 cap
    assert state["bce"] == np.inf and state["bce_slope"] == -np.inf
    state, _ = explore.update_fidelity(0.7, 0.7, draw=False)
    assert abs(state["fidelity"]) < 1e-7 and abs(state["fidelity_slope"]) < 1e-6
    assert state["bce_slope"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DeqaError, match="\\[0, 1\\]"):
        explore.update_fidelity(1.2, 0.5)


@pytest.mark.parametrize("variant", ["fixed", "predicted"])
def test_pair_update_matches_thurstone_p_hat_and_the_fidelity_loss(variant):
    za, zb = [0.3, -1.0, 2.0, 0.5, -0.7], [1.2, 0.4, -0.3, -2.0, 0.0]
    state, fig = explore.update_pair(62.0, 10.0, 55.0, 14.0, za, zb, variant=variant)
    # Thurstone by hand: Phi(7 / sqrt(10^2 + 14^2)) = Phi(0.4069) = 0.6579 (chapter 03, exercise 1)
    assert state["p"] == pytest.approx(stats.norm.cdf(7 / np.sqrt(296)), abs=1e-9)
    assert state["gap_z"] == pytest.approx(7 / np.sqrt(296))
    ta, tb = torch.tensor([za], dtype=torch.float64), torch.tensor([zb], dtype=torch.float64)
    probs_a = np.exp(za) / np.exp(za).sum()
    np.testing.assert_allclose(state["probs_a"], probs_a, rtol=1e-12)
    assert state["mu_hat_a"] == pytest.approx(probs_a @ np.arange(1, 6))
    assert state["sigma_hat_b"] == pytest.approx(float(losses.predicted_mean_std(tb)[1][0]))
    sd = 1.0 if variant == "fixed" else np.hypot(state["sigma_hat_a"], state["sigma_hat_b"])
    assert state["p_hat"] == pytest.approx(stats.norm.cdf((state["mu_hat_a"] - state["mu_hat_b"]) / (sd * (np.sqrt(2) if variant == "fixed" else 1))), abs=1e-7)
    assert state["p_hat"] == pytest.approx(float(losses.p_hat(ta, tb, variant)[0]), abs=1e-12)
    expected = 1 - np.sqrt(state["p_hat"] * state["p"] + 1e-8) - np.sqrt((1 - state["p_hat"]) * (1 - state["p"]) + 1e-8)
    assert state["fidelity"] == pytest.approx(expected, abs=1e-12)
    assert len(fig.axes) == 3 and f"{state['p_hat']:.3f}" in fig.axes[2].get_title()


def test_pair_update_hard_targets_and_bad_input():
    # swapping A and B turns P into 1 - P; two exact scores give a hard target
    flat = [0.0] * 5
    state, _ = explore.update_pair(3.0, 0.5, 2.0, 0.5, flat, flat, draw=False)
    swapped, _ = explore.update_pair(2.0, 0.5, 3.0, 0.5, flat, flat, draw=False)
    assert state["p"] + swapped["p"] == pytest.approx(1.0)
    assert state["p_hat"] == pytest.approx(0.5) and state["fidelity"] > 0
    assert explore.update_pair(3.0, 0.0, 2.0, 0.0, flat, flat, draw=False)[0]["p"] == 1.0
    with pytest.raises(DeqaError, match="five finite"):
        explore.update_pair(3.0, 0.5, 2.0, 0.5, [0.0] * 4, flat)
    with pytest.raises(DeqaError, match="sigma"):
        explore.update_pair(3.0, -0.5, 2.0, 0.5, flat, flat)


def test_range_conflict_update_splits_the_labels_but_not_the_pairs():
    from deqa import cotrain
    state, fig = explore.update_range_conflict(1.5, 0.25, reference=True)
    # the band is cotrain's data set with that latent distribution, rescaled as the toy rescales it
    sets = {"full_1to5": cotrain.RESTRICTED["full_1to5"],
            "band_0to100": cotrain.ToySet(0.0, 100.0, False, 1.5, 0.25, 1.0, 0.10)}
    frame = cotrain.make_toy_sets(sets, n_per_set=300, seed=0).frame
    mu, sigma = cotrain.rescaled_targets(frame)
    band = (frame["dataset"] == "band_0to100").to_numpy()
    np.testing.assert_array_equal(state["mu_band"], mu[band])
    np.testing.assert_array_equal(state["z_band"], frame["z"].to_numpy()[band])
    assert state["mu_band"].min() == pytest.approx(1.0) and state["mu_band"].max() == pytest.approx(5.0)
    probe = state["probe_band"]
    np.testing.assert_array_equal(state["q_band"], soft_labels([probe["mu"]], [probe["sigma"]], reference=True)[0])
    # the same quality gets a target more than a level lower in the "only good" set ...
    assert state["target_gap"] > 1.0 and state["probe_full"]["mu"] - probe["mu"] > 1.0
    # ... while the pair targets of both sets still follow the latent order
    assert state["agreement_full"] > 0.9 and state["agreement_band"] > 0.75
    for key in ("full", "band"):
        dz, p = state[f"pairs_{key}"]
        assert stats.spearmanr(dz, p).statistic > 0.8 and p[dz > 0.5].mean() > 0.7 and p[dz < -0.5].mean() < 0.3
    # a band as wide as the full set leaves (almost) nothing to split
    wide, _ = explore.update_range_conflict(0.0, 1.0, draw=False)
    assert wide["target_gap"] < 0.2 and wide["target_gap"] < state["target_gap"] / 5
    assert len(fig.axes) == 3
    with pytest.raises(DeqaError, match="width"):
        explore.update_range_conflict(1.0, 0.0)


def test_widget_wrappers_build_and_name_themselves():
    pytest.importorskip("ipywidgets")
    for make, name in ((explore.soft_label_explorer, "soft-label"), (explore.fidelity_explorer, "fidelity"),
                       (explore.pair_explorer, "pair"), (explore.range_conflict_explorer, "range-conflict")):
        box = make()
        assert len(box.children) >= 2
        assert name in repr(box) and "run this cell in Jupyter" in repr(box)
        sliders = [w for row in box.children for w in getattr(row, "children", [row]) if hasattr(w, "continuous_update")]
        assert sliders and not any(w.continuous_update for w in sliders)   # redraw on release only


@pytest.mark.slow
def test_saved_notebooks_keep_only_the_text_form_of_a_widget():
    nbformat = pytest.importorskip("nbformat")
    from deqa import nbrun
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explore.fidelity_explorer()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/plain": "[fidelity explorer]",
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0}})]
    nb.cells = [cell]
    nbrun.clean(nb)
    assert nb.cells[0].outputs[0]["data"] == {"text/plain": "[fidelity explorer]"}
