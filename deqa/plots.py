"""Figures in one consistent style, saved deterministically. Used by every notebook; the
evaluation plots are explained in notebook 05 (``05_distribution_plots``).

``use_style()`` sets the house style; ``savefig(fig, name)`` writes ``<figures>/<name>.png`` (and an
SVG when asked) with fixed metadata, so re-running a notebook rewrites identical bytes.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

from . import paths

DPI = 120
#: one colour per level, bad..excellent (red -> green), used wherever levels are drawn
LEVEL_COLORS = ("#c0392b", "#e67e22", "#f1c40f", "#7dbb42", "#1e8449")
HUMAN_COLOR = "#34495e"
MODEL_COLOR = "#2e86c1"
ACCENT_COLOR = "#8e44ad"

_STYLE = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "figure.figsize": (6.4, 4.0),
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "svg.hashsalt": "deqa",
    "svg.fonttype": "none",
}


def use_style() -> None:
    """Apply the house style to matplotlib (idempotent)."""
    matplotlib.rcParams.update(_STYLE)


def savefig(fig, name: str, svg: bool = False, directory: Path | None = None) -> Path:
    """Save ``fig`` as ``<figures>/<name>.png`` (+ ``.svg``) with fixed metadata; returns the PNG path."""
    out = Path(directory) if directory is not None else paths.figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, dpi=DPI, metadata={"Software": None})
    if svg:
        fig.savefig(out / f"{name}.svg", metadata={"Date": None, "Creator": None})
    return png
