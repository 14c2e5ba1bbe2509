"""Interactive explorers for instructors: the soft label of N(mu, sigma^2) (notebook 02), and the
fidelity-loss landscape, a pair of images (Thurstone's P, the predicted P_hat and the loss) and the
range conflict of co-training (all three notebook 03).

Each explorer ``NAME_explorer()`` is a thin ipywidgets wrapper around a pure ``update_NAME`` function,
which computes the numbers and draws a matplotlib Figure (no pyplot state, nothing shown); the
sliders redraw it when released. Tests drive the update functions directly; the wrappers need
``ipywidgets``.
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
    figure (None when ``draw=False``) shows the label's bars in front of the raw masses p (outline bars)
    with mu marked, and the grid as a heat map with the fallback rows marked. Everything comes from
    ``soft_label.level_masses`` and ``soft_label.soft_labels``.
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


#: the explorers' names of the soft-label modes (``soft_label.MODES``)
MODE_NAMES = {"reference": "published", "projection": "projection", "active_set": "active set"}


def _draw_soft_label(state):
    from matplotlib.patches import Patch

    from . import plots

    fig, (ax, heat) = _figure(2, 10.0, 3.4)
    p = np.nan_to_num(state["p"], nan=0.0, posinf=0.0)    # sigma = 0 gives no finite pdf masses
    top = max(1.05, min(float(p.max()) * 1.05, 2.1))      # a pdf mass can exceed 1 (a density)
    ax.bar(CENTERS, state["q"], color=plots.LEVEL_COLORS, width=0.6, label="label q")
    ax.bar(CENTERS, p, width=0.86, fill=False, edgecolor=plots.HUMAN_COLOR, lw=1.2, ls="--",
           label=f"raw masses p (sum {p.sum():.3f})")
    ax.axvline(state["mu"], color=plots.HUMAN_COLOR, ls=":", lw=1, label=r"$\mu$")
    ax.set_xticks(CENTERS, LEVELS, fontsize=8)
    ax.set(ylim=(0, top), xlabel="level", ylabel="probability (p: mass or density)")
    handles, labels = ax.get_legend_handles_labels()
    handles[labels.index("label q")] = Patch(facecolor="#bbbbbb", label="label q (level colours)")
    ax.legend(handles=handles, loc="upper left", fontsize=7)
    mode = MODE_NAMES[state["mode"]]
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
    """Sliders for mu and sigma and toggles for cdf/pdf and the mode (published, projection, active set),
    redrawing ``update_soft_label`` (the label's bars over the raw masses, and its neighbourhood).
    Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    controls = {
        "mu": _slider(widgets, 3.7, 1.0, 5.0, 0.01, "mu"),
        "sigma": _slider(widgets, 0.6, 0.0, 2.0, 0.01, "sigma"),
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
    (None when ``draw=False``) draws both losses, each on its own y axis (fidelity on the left, scaled
    to its curve; BCE on the right), and both slopes (log scale), with the point marked.
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


BCE_TOP = 6.0  #: the BCE axis of the fidelity explorer stops here (BCE is infinite at the edges)


def _draw_fidelity(state):
    from . import plots

    fid_c, bce_c = plots.OBJECTIVE_COLORS["fidelity"], plots.HUMAN_COLOR
    fig, (ax, slope) = _figure(2, 10.5, 3.4)
    g, x = state["grid"], state["p_hat"]
    bce_ax = ax.twinx()                      # BCE on its own scale, so the fidelity curve fills its axis
    bce_ax.spines["right"].set_visible(True)
    bce_ax.grid(False)
    bce_ax.plot(g, np.minimum(state["bce_curve"], 10 * BCE_TOP), color=bce_c, ls="--", lw=1.2, label="BCE (right axis)")
    bce_ax.plot([x], [min(state["bce"], BCE_TOP)], "s", color=bce_c, mfc="white")
    bce_ax.set(ylim=(-0.05 * BCE_TOP, BCE_TOP), ylabel="BCE")
    fid_top = max(1.05 * float(state["fidelity_curve"].max()), 0.05)
    ax.plot(g, state["fidelity_curve"], color=fid_c, lw=2, label="fidelity (left axis)")
    ax.plot([x], [state["fidelity"]], "o", color=fid_c, label=r"($\hat P$, P)")
    ax.axvline(state["p"], color="grey", ls=":", lw=1, label=r"$\hat P$ = P")
    ax.set(xlabel=r"predicted $\hat P$", ylabel="fidelity loss", ylim=(-0.05 * fid_top, fid_top),
           title=f"P = {state['p']:.2f}: fidelity {state['fidelity']:.4f}, BCE {state['bce']:.4f}")
    ax.set_zorder(bce_ax.get_zorder() + 1)   # the fidelity curve in front, the BCE behind it
    ax.patch.set_visible(False)
    handles = ax.get_legend_handles_labels()[0] + bce_ax.get_legend_handles_labels()[0][:1]
    ax.legend(handles=handles, loc="upper center", fontsize=7)
    with np.errstate(divide="ignore"):
        slope.plot(g, np.abs(fidelity_slope(g, state["p"])), color=fid_c, label="fidelity")
        slope.plot(g, np.abs(bce_slope(g, state["p"])), color=bce_c, ls="--", label="BCE")
    slope.plot([x, x], [max(abs(state["fidelity_slope"]), 1e-3), min(max(abs(state["bce_slope"]), 1e-3), 1e7)],
               "o", color="k", label=r"($\hat P$, P)")
    slope.axvline(state["p"], color="grey", ls=":", lw=1)
    slope.set(yscale="log", ylim=(1e-3, 1e7), xlabel=r"predicted $\hat P$", ylabel=r"|dL/d$\hat P$| (log scale)",
              title=f"slope: fidelity {state['fidelity_slope']:.3g}, BCE {state['bce_slope']:.3g}")
    slope.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    return fig


def fidelity_explorer():
    """Sliders for P_hat and P, redrawing ``update_fidelity``. Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    controls = {"p_hat": _slider(widgets, 0.3, 0.0, 1.0, 0.005, "P_hat", readout_format=".3f"),
                "p": _slider(widgets, 0.9, 0.0, 1.0, 0.01, "P")}

    def show(**values):
        display(update_fidelity(**values)[1])
    out = widgets.interactive_output(show, controls)
    return _box(widgets, "fidelity explorer (sliders for P_hat and P)", [widgets.HBox(list(controls.values())), out])


# --- a pair of images: Thurstone's P, the predicted P_hat and the loss (notebook 03) -------------

def update_pair(mu_a: float, sigma_a: float, mu_b: float, sigma_b: float, logits_a=(-2.0, -1.0, 0.5, 2.0, 1.0),
                logits_b=(-1.0, 1.0, 1.5, 0.5, -2.0), variant: str = "fixed", draw: bool = True):
    """One pair of images, for the pair explorer: the target from the human opinions and the
    prediction from each image's five level logits (bad..excellent).

    Returns ``(state, fig)``: ``state`` holds ``p`` (Thurstone's P(A > B) of N(mu_a, sigma_a^2) and
    N(mu_b, sigma_b^2), ``losses.thurstone``) and ``gap_z`` (the gap over the combined spread); per
    image the level probabilities ``probs_a`` / ``probs_b`` and their ``mu_hat_*`` / ``sigma_hat_*``
    (``losses.predicted_mean_std``); ``p_hat`` (``losses.p_hat`` with ``variant``), the ``fidelity``
    loss of (p_hat, p) and, for comparison, the ``bce``. The figure (None when ``draw=False``) draws
    both opinion densities, the density of their difference with the area that is P shaded, and
    the two predicted level distributions with P_hat and the loss in the title.
    """
    import torch

    from . import losses

    mu_a, sigma_a, mu_b, sigma_b = (float(v) for v in (mu_a, sigma_a, mu_b, sigma_b))
    if not (np.isfinite([mu_a, mu_b]).all() and sigma_a >= 0.0 and sigma_b >= 0.0):
        raise DeqaError(f"update_pair: need finite mu and sigma >= 0, got mu_a={mu_a}, sigma_a={sigma_a}, "
                        f"mu_b={mu_b}, sigma_b={sigma_b}")
    z = []
    for name, logits in (("logits_a", logits_a), ("logits_b", logits_b)):
        row = np.asarray(logits, dtype=float)
        if row.shape != (5,) or not np.isfinite(row).all():
            raise DeqaError(f"update_pair: {name} must be five finite level logits (bad..excellent), got {logits!r}")
        z.append(torch.tensor(row[None], dtype=torch.float64))
    as64 = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    p = float(losses.thurstone(as64(mu_a), as64(mu_b), as64(sigma_a), as64(sigma_b))[0])
    (mu_hat_a, sd_hat_a), (mu_hat_b, sd_hat_b) = losses.predicted_mean_std(z[0]), losses.predicted_mean_std(z[1])
    p_hat = float(losses.p_hat(z[0], z[1], variant)[0])
    state = {"mu_a": mu_a, "sigma_a": sigma_a, "mu_b": mu_b, "sigma_b": sigma_b, "variant": variant,
             "p": p, "gap_z": float((mu_a - mu_b) / np.sqrt(sigma_a ** 2 + sigma_b ** 2 + losses.EPS_THURSTONE)),
             "probs_a": losses.level_probs(z[0])[0].numpy(), "probs_b": losses.level_probs(z[1])[0].numpy(),
             "mu_hat_a": float(mu_hat_a[0]), "sigma_hat_a": float(sd_hat_a[0]),
             "mu_hat_b": float(mu_hat_b[0]), "sigma_hat_b": float(sd_hat_b[0]),
             "p_hat": p_hat, "fidelity": float(losses.fidelity(as64(p_hat), as64(p))[0]),
             "bce": float(bce_value(p_hat, p))}
    return state, (_draw_pair(state) if draw else None)


def _draw_pair(state):
    from scipy.stats import norm

    from . import plots

    fig, (ops, diff, pred) = _figure(3, 13.0, 3.4)
    spread = max(state["sigma_a"], state["sigma_b"], 0.05)
    x = np.linspace(min(state["mu_a"], state["mu_b"]) - 3.5 * spread, max(state["mu_a"], state["mu_b"]) + 3.5 * spread, 400)
    for key, ls in (("a", "-"), ("b", "--")):
        mu, sd = state[f"mu_{key}"], max(state[f"sigma_{key}"], 1e-3)
        ops.plot(x, norm.pdf(x, mu, sd), color=plots.HUMAN_COLOR, ls=ls, label=f"{key.upper()}: {mu:.2f} ± {state[f'sigma_{key}']:.2f}")
    ops.set(title="human opinions about A and B", xlabel="opinion", ylabel="density")
    ops.legend(loc="upper left", fontsize=7)
    gap, sd_d = state["mu_a"] - state["mu_b"], max(np.hypot(state["sigma_a"], state["sigma_b"]), 1e-3)
    d = np.linspace(gap - 4 * sd_d, gap + 4 * sd_d, 400)
    diff.plot(d, norm.pdf(d, gap, sd_d), color=plots.HUMAN_COLOR)
    diff.fill_between(d[d > 0], norm.pdf(d[d > 0], gap, sd_d), color=plots.HUMAN_COLOR, alpha=0.25,
                      label=f"P(A > B) = {state['p']:.3f}")
    diff.axvline(0, color="k", lw=0.8)
    diff.set(title=f"difference of opinions (z = {state['gap_z']:.2f})", xlabel="opinion A − opinion B", ylabel="density")
    diff.legend(loc="upper left", fontsize=7)
    for key, offset, fill in (("a", -0.18, True), ("b", 0.18, False)):
        pred.bar(CENTERS + offset, state[f"probs_{key}"], width=0.34, color=plots.MODEL_COLOR if fill else "white",
                 edgecolor=plots.MODEL_COLOR, hatch=None if fill else "//",
                 label=rf"{key.upper()}: $\hat\mu$ {state[f'mu_hat_{key}']:.2f}, $\hat\sigma$ {state[f'sigma_hat_{key}']:.2f}")
    pred.set_xticks(CENTERS, LEVELS, fontsize=8)
    pred.set(ylim=(0, 1.05), xlabel="level", ylabel="predicted probability",
             title=rf"$\hat P$ ({state['variant']}) = {state['p_hat']:.3f}, P = {state['p']:.3f}: "
                   f"L_fid {state['fidelity']:.4f}")
    pred.title.set_fontsize(9)
    pred.legend(loc="upper left", fontsize=7)
    return fig


def pair_explorer():
    """Sliders for the two images' human (mu, sigma) and their five level logits, and a toggle for the
    P_hat variant, redrawing ``update_pair``. Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    narrow = {"layout": widgets.Layout(width="220px"), "style": {"description_width": "62px"}}
    human = {"mu_a": _slider(widgets, 3.6, 1.0, 5.0, 0.05, "mu_A", **narrow),
             "sigma_a": _slider(widgets, 0.7, 0.0, 1.5, 0.05, "sigma_A", **narrow),
             "mu_b": _slider(widgets, 3.1, 1.0, 5.0, 0.05, "mu_B", **narrow),
             "sigma_b": _slider(widgets, 0.9, 0.0, 1.5, 0.05, "sigma_B", **narrow)}
    start = {"a": (-2.0, -1.0, 0.5, 2.0, 1.0), "b": (-1.0, 1.0, 1.5, 0.5, -2.0)}
    logits = {f"{key}{k}": _slider(widgets, start[key][k], -5.0, 5.0, 0.1, f"{key.upper()} {LEVELS[k]}", **narrow)
              for key in "ab" for k in range(5)}
    variant = widgets.ToggleButtons(options=["fixed", "predicted"], value="fixed", description="P_hat")

    def show(variant, **values):
        a = [values.pop(f"a{k}") for k in range(5)]
        b = [values.pop(f"b{k}") for k in range(5)]
        display(update_pair(logits_a=a, logits_b=b, variant=variant, **values)[1])
    out = widgets.interactive_output(show, {**human, **logits, "variant": variant})
    rows = [widgets.HBox(list(human.values())),
            widgets.HBox([logits[f"a{k}"] for k in range(5)]), widgets.HBox([logits[f"b{k}"] for k in range(5)]),
            variant, out]
    return _box(widgets, "pair explorer (human mu and sigma of A and B, their five level logits, fixed/predicted P_hat)", rows)


# --- the range conflict of co-training (notebook 03) ------------------------------------------------

def update_range_conflict(centre: float, width: float, n_per_set: int = 300, seed: int = 0,
                          reference: bool | None = None, n_pairs: int = 400, draw: bool = True):
    """Two toy data sets of ``deqa.cotrain``, for the range-conflict explorer: ``full_1to5`` (the
    whole quality range) and ``band_0to100``, whose latent qualities are N(centre, width^2), a band
    of the range. Moving the band redraws the same images (the same seed), so the picture moves smoothly.

    Returns ``(state, fig)``. ``state`` holds, per set, the latent quality ``z_*`` and the min-max
    rescaled target ``mu_*`` (``cotrain.rescaled_targets``, as the soft labels are built); the
    ``target_gap``: the mean over the band's images of |its target - the full set's target at the same
    z| (interpolated); the two ``probe_*`` images nearest to z = centre in each set, with their soft
    labels ``q_full`` / ``q_band`` (``soft_label.soft_labels``, ``reference`` as there); and, per set,
    ``pairs_*`` = (z_A - z_B, Thurstone's P of the native MOS and std) for ``n_pairs`` same-set pairs
    with ``agreement_*``, the share of them whose target says A is better exactly when z_A > z_B.
    The figure (None when ``draw=False``) draws the targets against z, the two probe labels and the
    pair targets against z_A - z_B.
    """
    import torch

    from . import cotrain, losses
    from .soft_label import soft_labels

    centre, width = float(centre), float(width)
    if not (np.isfinite(centre) and width > 0):
        raise DeqaError(f"update_range_conflict: need a finite centre and width > 0, got {centre}, {width}")
    sets = {"full_1to5": cotrain.RESTRICTED["full_1to5"],
            "band_0to100": cotrain.ToySet(0.0, 100.0, False, centre, width, 1.0, 0.10)}
    frame = cotrain.make_toy_sets(sets, n_per_set=n_per_set, seed=seed).frame
    mu, sigma = cotrain.rescaled_targets(frame)
    z, signed, std = frame["z"].to_numpy(), frame["mos"].to_numpy() * cotrain.quality_sign(frame), frame["std"].to_numpy()
    is_full = (frame["dataset"] == "full_1to5").to_numpy()
    order = np.argsort(z[is_full])
    full_at = lambda zz: np.interp(zz, z[is_full][order], mu[is_full][order])  # noqa: E731
    state = {"centre": centre, "width": width, "z_full": z[is_full], "mu_full": mu[is_full],
             "z_band": z[~is_full], "mu_band": mu[~is_full],
             "target_gap": float(np.mean(np.abs(mu[~is_full] - full_at(z[~is_full]))))}
    rng = np.random.default_rng(seed)
    for key, rows in (("full", np.flatnonzero(is_full)), ("band", np.flatnonzero(~is_full))):
        probe = rows[np.argmin(np.abs(z[rows] - centre))]
        state[f"probe_{key}"] = {"z": float(z[probe]), "mu": float(mu[probe]), "sigma": float(sigma[probe])}
        state[f"q_{key}"] = soft_labels([mu[probe]], [sigma[probe]], reference=reference)[0]
        a, b = rng.choice(rows, n_pairs), rng.choice(rows, n_pairs)
        p = losses.thurstone(*(torch.tensor(v[i], dtype=torch.float64) for v, i in
                               ((signed, a), (signed, b), (std, a), (std, b)))).numpy()
        state[f"pairs_{key}"] = (z[a] - z[b], p)
        state[f"agreement_{key}"] = float(np.mean((p > 0.5) == (z[a] > z[b])))
    return state, (_draw_range_conflict(state) if draw else None)


def _draw_range_conflict(state):
    from . import plots

    fig, (tgt, lab, pair) = _figure(3, 13.0, 3.5)
    colors = {"full": plots.dataset_color("full_1to5"), "band": plots.dataset_color("high_0to100")}
    names = {"full": "full_1to5", "band": "band_0to100"}
    for key in ("full", "band"):
        tgt.scatter(state[f"z_{key}"], state[f"mu_{key}"], s=5, alpha=0.5, color=colors[key], label=names[key])
    tgt.axvspan(state["centre"] - 2 * state["width"], state["centre"] + 2 * state["width"], color=colors["band"], alpha=0.08)
    tgt.axvline(state["centre"], color="grey", ls=":", lw=1)
    tgt.set(xlabel="latent quality z", ylabel="min-max rescaled target", ylim=(0.8, 5.2),
            title=f"absolute targets: mean |gap| at equal z {state['target_gap']:.2f}")
    tgt.legend(loc="upper left", fontsize=7, markerscale=3)
    for key, offset in (("full", -0.2), ("band", 0.2)):
        probe = state[f"probe_{key}"]
        lab.bar(CENTERS + offset, state[f"q_{key}"], width=0.4, color=colors[key],
                label=rf"{names[key]}: z {probe['z']:.2f}, $\mu$ {probe['mu']:.2f}")
    lab.set_xticks(CENTERS, LEVELS, fontsize=8)
    lab.set(ylim=(0, 1.05), xlabel="level", ylabel="target probability",
            title=f"soft labels at z ≈ {state['centre']:.2f}")
    lab.legend(loc="upper left", fontsize=7)
    for key in ("full", "band"):
        dz, p = state[f"pairs_{key}"]
        pair.scatter(dz, p, s=5, alpha=0.5, color=colors[key],
                     label=f"{names[key]}: {state[f'agreement_{key}']:.0%} agree with z")
    pair.axhline(0.5, color="grey", ls=":", lw=1)
    pair.axvline(0, color="grey", ls=":", lw=1)
    pair.set(xlabel="z_A − z_B (same data set)", ylabel="target P(A ≻ B)", ylim=(-0.05, 1.05),
             title="pair targets (fidelity)")
    pair.legend(loc="upper left", fontsize=7, markerscale=3)
    return fig


def range_conflict_explorer():
    """Sliders for the centre and the width of the restricted set's quality band, redrawing
    ``update_range_conflict``. Returns the ipywidgets box to display."""
    widgets, display = _widgets()
    controls = {"centre": _slider(widgets, 1.5, -2.0, 2.0, 0.05, "band centre"),
                "width": _slider(widgets, 0.25, 0.05, 1.2, 0.05, "band width")}

    def show(**values):
        display(update_range_conflict(**values)[1])
    out = widgets.interactive_output(show, controls)
    return _box(widgets, "range-conflict explorer (sliders for the centre and width of a restricted set's quality band)",
                [widgets.HBox(list(controls.values())), out])


def _slider(widgets, value, lo, hi, step, description, **options):
    """A float slider that redraws when released (``continuous_update=False``: one redraw per move)."""
    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                               continuous_update=False, **options)


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
