"""deqa: a runnable tutorial reimplementation of DeQA-Score (You et al., CVPR 2025).

Submodules are imported lazily so that ``import deqa`` stays fast and the light chapters (01-03)
never import transformers: ``from deqa import levels, soft_label, losses, data, model, train,
infer, metrics, plots``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "levels", "soft_label", "losses", "pairs", "data", "raters", "synth", "tower", "tiny", "model",
    "train", "infer", "metrics", "plots", "paths", "setup", "ablation", "archs", "distributed", "cotrain",
    "explore",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
