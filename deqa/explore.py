"""Interactive explorers for instructors: the soft label of N(mu, sigma^2) (notebook 02) and the
fidelity-loss landscape (notebook 03).

Each explorer is a pure ``update_*`` function, which computes the numbers and draws a matplotlib
Figure (no pyplot state, nothing shown), and a thin ipywidgets wrapper that calls it whenever a
slider moves. Tests drive the update functions directly; the wrappers need ``ipywidgets``.
"""
from __future__ import annotations

import numpy as np

from .errors import DeqaError
from .levels import CENTERS, LEVELS, score, spread
from .losses import EPS_FIDELITY


def _figure(ncols: int, width: float, height: float):
    from matplotlib.figure import Figure

    from . import plots
    plots.use_style()
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


# --- soft labels (notebook 02) ---------------------------------------------------------------------

def update_soft_label(mu: float, sigma: float, method: str = "cdf", reference: bool | None = None,
                      draw: bool = True, n_grid: int = 161, mode: str | None = None):
    """The soft label of one image and its neighbourhood, for the soft-label explorer.

    ``mode`` is one of ``soft_label.MODES`` (``"projection"``, ``"reference"``, ``"active_set"``);
    ``reference`` and the default are as in ``soft_labels``.
    Returns ``(state, fig)``: ``state`` holds the ``mode`` used, the label ``q`` (5,), the raw masses
    ``p``, whether the row ``fallback`` to the two-level label, its ``score``, ``spread`` and ``sum``, and
    ``grid_mu`` / ``grid_q`` / ``grid_fallback``: the labels of every mu on a grid over [1, 5] at this sigma. The
    figure (None when ``draw=False``) shows the label's bars with mu marked, and the grid as a heat
    map with the fallback rows marked. Everything comes from ``soft_label.soft_labels``.
    """
    from .soft_label import level_masses, resolve_mode, soft_labels

    mu, sigma = float(mu), float(sigma)
    if not 1.0 <= mu <= 5.0 or not sigma >= 0.0:
        raise DeqaError(f"update_soft_label: need 1 <= mu <= 5 and sigma >= 0, got mu={mu}, sigma={sigma}")
    mode = resolve_mode(mode, reference)
    q, fb = soft_labels([mu], [sigma], method=method, mode=mode, return_fallback=True)
    grid = np.linspace(1.0, 5.0, n_grid)
    grid_q, grid_fb = soft_labels(grid, np.full_like(grid, sigma), method=method, mode=mode,
                                  return_fallback=True)
    state = {"mu": mu, "sigma": sigma, "method": method, "mode": mode, "reference": mode == "reference",
             "q": q[0], "p": level_masses([mu], [sigma], method)[0], "fallback": bool(fb[0]),
             "score": float(score(q[0])), "spread": float(spread(q[0])), "sum": float(q[0].sum()),
             "grid_mu": grid, "grid_q": grid_q, "grid_fallback": grid_fb}
    return state, (_draw_soft_label(state) if draw else None)


def _draw_soft_label(state):
    from . import plots

    fig, (ax, heat) = _figure(2, 10.0, 3.4)
    ax.bar(CENTERS, state["q"], color=plots.LEVEL_COLORS, width=0.7)
    ax.axvline(state["mu"], color=plots.HUMAN_COLOR, ls="--", lw=1, label=r"$\mu$")
    ax.set_xticks(CENTERS, LEVELS, fontsize=8)
    ax.set(ylim=(0, 1.05), xlabel="level", ylabel="target probability")
    mode = state["mode"].replace("_", " ")
    kept = int((state["q"] > 1e-3).sum())
    flag = "FALLBACK (two-level)" if state["fallback"] else f"no fallback, {kept} levels above 1e-3"
    ax.set_title(f"{mode}, {state['method']}: {flag}\nscore {state['score']:.3f}, spread "
                 f"{state['spread']:.3f}, sum {state['sum']:.3f}", fontsize=9)
    grid, fb = state["grid_mu"], state["grid_fallback"]
    step = grid[1] - grid[0]
    image = heat.imshow(state["grid_q"].T, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis",
                        interpolation="nearest", extent=(grid[0] - step / 2, grid[-1] + step / 2, 0.5, 5.5))
    for m in grid[fb]:   # hatch the fallback columns
        heat.axvspan(m - step / 2, m + step / 2, fill=False, hatch="//", lw=0, color="white")
    heat.axvline(state["mu"], color="white", ls="--", lw=1)
    heat.set_yticks(CENTERS, LEVELS, fontsize=8)
    heat.set(xlabel=r"$\mu$", ylabel="level", ylim=(0.5, 5.5),
             title=rf"labels for every $\mu$ at $\sigma$ = {state['sigma']:.2f}" + "\n"
             f"hatched: two-level fallback ({fb.mean():.0%} of the grid)")
    heat.grid(False)
    fig.colorbar(image, ax=heat, label="target probability q")
    return fig


def soft_label_explorer():
    """Sliders for mu and sigma and toggles for cdf/pdf and the mode (projection, active set, reference),
    redrawing ``update_soft_label``. Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    controls = {
        "mu": widgets.FloatSlider(value=3.7, min=1.0, max=5.0, step=0.01, description="mu"),
        "sigma": widgets.FloatSlider(value=0.6, min=0.0, max=2.0, step=0.01, description="sigma"),
        "method": widgets.ToggleButtons(options=["cdf", "pdf"], value="cdf", description="masses"),
        "mode": widgets.ToggleButtons(options=[("published", "reference"), ("projection", "projection"),
                                               ("active set", "active_set")], value="reference", description="mode"),
    }

    def show(**values):
        display(update_soft_label(**values)[1])
    out = widgets.interactive_output(show, controls)
    return _box(widgets, "soft-label explorer (sliders for mu and sigma, cdf/pdf, published/projection/active set)",
                [widgets.HBox([controls["mu"], controls["sigma"]]),
                 widgets.HBox([controls["method"], controls["mode"]]), out])


# --- the fidelity landscape (notebook 03) ----------------------------------------------------------

def fidelity_value(p_hat, p, eps: float = EPS_FIDELITY):
    """L_fid = 1 - sqrt(p_hat p + eps) - sqrt((1 - p_hat)(1 - p) + eps) (numpy)."""
    p_hat, p = np.asarray(p_hat, dtype=float), np.asarray(p, dtype=float)
    return 1.0 - np.sqrt(p_hat * p + eps) - np.sqrt((1.0 - p_hat) * (1.0 - p) + eps)


def fidelity_slope(p_hat, p, eps: float = EPS_FIDELITY):
    """dL_fid / dp_hat = -p / (2 sqrt(p_hat p + eps)) + (1 - p) / (2 sqrt((1 - p_hat)(1 - p) + eps))."""
    p_hat, p = np.asarray(p_hat, dtype=float), np.asarray(p, dtype=float)
    return -p / (2.0 * np.sqrt(p_hat * p + eps)) + (1.0 - p) / (2.0 * np.sqrt((1.0 - p_hat) * (1.0 - p) + eps))


def bce_value(p_hat, p):
    """Binary cross-entropy -p log p_hat - (1 - p) log(1 - p_hat), with 0 log 0 = 0 (inf where it diverges)."""
    p_hat, p = np.asarray(p_hat, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -(np.where(p > 0, p * np.log(p_hat), 0.0) + np.where(p < 1, (1 - p) * np.log(1 - p_hat), 0.0))


def bce_slope(p_hat, p):
    """dBCE / dp_hat = -p / p_hat + (1 - p) / (1 - p_hat) (a term whose weight is 0 counts as 0)."""
    p_hat, p = np.asarray(p_hat, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, -p / p_hat, 0.0) + np.where(p < 1, (1 - p) / (1 - p_hat), 0.0)


def update_fidelity(p_hat: float, p: float, draw: bool = True):
    """One point of the fidelity landscape, for the fidelity explorer.

    Returns ``(state, fig)``: ``state`` holds the fidelity loss and its slope dL/dp_hat at
    (p_hat, p), the same for binary cross-entropy, and the curves over p_hat at this p. The figure
    (None when ``draw=False``) draws both losses and both slopes (log scale) with the point marked.
    """
    p_hat, p = float(p_hat), float(p)
    if not (0.0 <= p_hat <= 1.0 and 0.0 <= p <= 1.0):
        raise DeqaError(f"update_fidelity: p_hat and p must lie in [0, 1], got {p_hat}, {p}")
    grid = np.concatenate([np.logspace(-6, -1, 120), np.linspace(0.1, 0.9, 161), 1 - np.logspace(-1, -6, 120)])
    state = {"p_hat": p_hat, "p": p,
             "fidelity": float(fidelity_value(p_hat, p)), "fidelity_slope": float(fidelity_slope(p_hat, p)),
             "bce": float(bce_value(p_hat, p)), "bce_slope": float(bce_slope(p_hat, p)),
             "grid": grid, "fidelity_curve": fidelity_value(grid, p), "bce_curve": bce_value(grid, p)}
    return state, (_draw_fidelity(state) if draw else None)


def _draw_fidelity(state):
    from . import plots

    fid_c, bce_c = plots.OBJECTIVE_COLORS["fidelity"], plots.HUMAN_COLOR
    fig, (ax, slope) = _figure(2, 10.0, 3.4)
    g, x = state["grid"], state["p_hat"]
    ax.plot(g, state["fidelity_curve"], color=fid_c, label="fidelity")
    ax.plot(g, state["bce_curve"], color=bce_c, ls="--", label="BCE")
    ax.plot([x, x], [state["fidelity"], min(state["bce"], 6.0)], "o", color=plots.ACCENT_COLOR, label="(P̂, P)")
    for a in (ax, slope):
        a.axvline(state["p"], color="grey", ls=":", lw=1, label="P̂ = P")
    ax.set(xlabel="predicted P̂", ylabel="loss", ylim=(-0.05, 6), title=f"P = {state['p']:.2f}: "
           f"fidelity {state['fidelity']:.4f}, BCE {state['bce']:.4f}")
    with np.errstate(divide="ignore"):
        slope.plot(g, np.abs(fidelity_slope(g, state["p"])), color=fid_c, label="fidelity")
        slope.plot(g, np.abs(bce_slope(g, state["p"])), color=bce_c, ls="--", label="BCE")
    slope.plot([x, x], [max(abs(state["fidelity_slope"]), 1e-3), min(max(abs(state["bce_slope"]), 1e-3), 1e7)],
               "o", color=plots.ACCENT_COLOR, label="(P̂, P)")
    slope.set(yscale="log", ylim=(1e-3, 1e7), xlabel="predicted P̂", ylabel="|dL/dP̂| (log scale)",
              title=f"slope: fidelity {state['fidelity_slope']:.3g}, BCE {state['bce_slope']:.3g}")
    slope.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig


def fidelity_explorer():
    """Sliders for P_hat and P, redrawing ``update_fidelity``. Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    controls = {"p_hat": widgets.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.005, description="P_hat",
                                             readout_format=".3f"),
                "p": widgets.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.01, description="P")}

    def show(**values):
        display(update_fidelity(**values)[1])
    out = widgets.interactive_output(show, controls)
    return _box(widgets, "fidelity explorer (sliders for P_hat and P)", [widgets.HBox(list(controls.values())), out])


def _box(widgets, what: str, children):
    """A VBox whose text form (what a saved notebook shows without a live kernel) names the explorer."""
    class Explorer(widgets.VBox):
        def __repr__(self):
            return f"[{what}: run this cell in Jupyter to use it]"
    return Explorer(children)


def _widgets():
    try:
        import ipywidgets
        from IPython.display import display
    except ImportError as exc:
        raise DeqaError(f"the explorers need ipywidgets (pip install 'ipywidgets>=8.0'): {exc}") from None
    return ipywidgets, display
