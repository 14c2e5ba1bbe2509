"""The explorers' update functions (deqa.explore), driven without a browser."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deqa import explore, losses
from deqa.errors import DeqaError
from deqa.levels import score, spread
from deqa.soft_label import soft_labels


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
    bars = fig.axes[0].patches
    assert len(bars) == 5 and np.allclose([b.get_height() for b in bars], q[0])
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
    assert fig.axes[0].get_title().startswith(mode.replace("_", " "))
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
    assert len(fig.axes) == 2 and fig.axes[1].get_yscale() == "log"


def test_fidelity_update_numbers_at_known_points():
    state, _ = explore.update_fidelity(0.0, 1.0, draw=False)
    assert state["fidelity_slope"] == pytest.approx(-0.5 / np.sqrt(1e-8))   # the 5000 cap
    assert state["bce"] == np.inf and state["bce_slope"] == -np.inf
    state, _ = explore.update_fidelity(0.7, 0.7, draw=False)
    assert abs(state["fidelity"]) < 1e-7 and abs(state["fidelity_slope"]) < 1e-6
    assert state["bce_slope"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(DeqaError, match="\\[0, 1\\]"):
        explore.update_fidelity(1.2, 0.5)


def test_widget_wrappers_build_and_name_themselves():
    pytest.importorskip("ipywidgets")
    for box, name in ((explore.soft_label_explorer(), "soft-label"), (explore.fidelity_explorer(), "fidelity")):
        assert len(box.children) >= 2
        assert name in repr(box) and "run this cell in Jupyter" in repr(box)


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
