"""deqa: a runnable tutorial reimplementation of DeQA-Score (You et al., CVPR 2025).

Submodules are imported lazily so that ``import deqa`` stays fast and the light chapters (01-03)
never import transformers: ``from deqa import levels, soft_label, losses, data, mllm, train,
infer, metrics, plots``. ``deqa.model`` is another name for ``deqa.mllm`` (the name the design
document uses).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "levels", "soft_label", "losses", "pairs", "data", "formats", "raters", "synth", "images", "tower", "tiny",
    "tiny_archs", "mllm", "collate", "lora", "trainset", "runconfig", "runlog", "checkpoints", "train",
    "recipe", "infer", "metrics", "evaluate", "plots", "paths", "setup", "ablation", "distributed", "cotrain",
    "explore", "paper_table", "predictions", "report",
)
_ALIASES = {"model": "mllm"}


def __getattr__(name: str):
    if name in _SUBMODULES or name in _ALIASES:
        return importlib.import_module(f"{__name__}.{_ALIASES.get(name, name)}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_ALIASES))
