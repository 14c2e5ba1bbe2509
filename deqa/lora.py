"""Where LoRA goes in an MLLM: the language model's attention and MLP linears, never the vision
tower's; the vision-to-language projector (and, when asked, the whole vision tower) trained in full
and saved with the adapter. Explained in notebook 04 (``04_finetune_mllm``, section 8).

The supported architectures have their module names in ``LORA_TARGETS``; any other model gets the
same policy derived from its module tree (``derive_targets``), which the tests check against the
table for every architecture in it.
"""
from __future__ import annotations

import re
import warnings

from .errors import DeqaError

#: names of linear layers inside a language model that LoRA adapts (LLaMA/Qwen/Mistral style)
LORA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: last names of the vision-to-language projector in the supported architectures
PROJECTOR_NAMES = ("multi_modal_projector", "connector", "merger", "mm_projector")
#: last names of the vision tower in the supported architectures
VISION_NAMES = ("vision_tower", "visual", "vision_model")

_LM_LINEARS = r"\.layers\.\d+\.(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)"

#: per model_type: ``target_modules`` (a regex peft matches in full against module names: the
#: language model's attention and MLP linears only, never the vision tower's, whose Qwen2.5-VL
#: MLP uses the same gate/up/down names) and ``modules_to_save`` (the vision-to-text projector).
LORA_TARGETS = {
    "llava": {"target_modules": rf".*language_model{_LM_LINEARS}",
              "modules_to_save": ["multi_modal_projector"]},
    "qwen2_vl": {"target_modules": rf".*language_model{_LM_LINEARS}", "modules_to_save": ["merger"]},
    "qwen2_5_vl": {"target_modules": rf".*language_model{_LM_LINEARS}", "modules_to_save": ["merger"]},
    "idefics3": {"target_modules": rf".*text_model{_LM_LINEARS}", "modules_to_save": ["connector"]},
}


def lora_settings(model_or_type) -> dict:
    """``LORA_TARGETS`` entry for a model (by ``config.model_type``) or a model_type string."""
    model_type = model_or_type if isinstance(model_or_type, str) else model_or_type.config.model_type
    if model_type not in LORA_TARGETS:
        raise DeqaError(f"no LoRA targets known for model type {model_type!r}; "
                        f"known: {', '.join(sorted(LORA_TARGETS))}")
    entry = LORA_TARGETS[model_type]
    return {"target_modules": entry["target_modules"], "modules_to_save": list(entry["modules_to_save"])}


# ---------------------------------------------------------------------------------------------
# the same policy for an architecture the table does not know, from the module tree

def language_model_prefix(model) -> str:
    """Dotted name of the language model inside an MLLM (e.g. ``model.language_model``)."""
    get_decoder = getattr(model, "get_decoder", None)
    lm = get_decoder() if callable(get_decoder) else getattr(model, "language_model", None)
    name = _module_name(model, lm) if lm is not None else None
    if name:
        return name
    for candidate, _ in model.named_modules():
        if candidate.split(".")[-1] in ("language_model", "text_model"):
            return candidate
    raise DeqaError(f"cannot find the language model inside {type(model).__name__} for LoRA")


def _module_name(model, module) -> str | None:
    for name, m in model.named_modules():
        if m is module:
            return name
    return None


def _outermost(model, names) -> list[str]:
    """Full names of the outermost modules whose last name is in ``names``."""
    out = []
    for name, _ in model.named_modules():
        if name.split(".")[-1] in names and not any(name.startswith(o + ".") for o in out):
            out.append(name)
    return out


def derive_targets(model) -> dict:
    """``target_modules`` (a regex on the language model's ``LORA_LINEARS``) and ``modules_to_save``
    (the projector) found in the module tree, for architectures missing from ``LORA_TARGETS``."""
    import torch

    prefix = language_model_prefix(model)
    found = sorted({name.split(".")[-1] for name, m in model.named_modules()
                    if name.startswith(prefix + ".") and isinstance(m, torch.nn.Linear)
                    and name.split(".")[-1] in LORA_LINEARS})
    if not found:
        raise DeqaError(f"no linear layer named {'/'.join(LORA_LINEARS)} in {prefix}: cannot place LoRA")
    return {"target_modules": rf"{re.escape(prefix)}\..*\.({'|'.join(found)})",
            "modules_to_save": [name.split(".")[-1] for name in _outermost(model, PROJECTOR_NAMES)]}


def lora_targets(model, train_vision: bool = False) -> dict:
    """``target_modules`` and ``modules_to_save`` for ``model``: its ``LORA_TARGETS`` entry when the
    table knows its model type, else ``derive_targets``. With ``train_vision`` the vision tower is
    trained in full too (and replaces a projector that sits inside it, as Qwen's merger does)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    settings = lora_settings(model_type) if model_type in LORA_TARGETS else derive_targets(model)
    if train_vision:
        vision = _outermost(model, VISION_NAMES)
        keep = [m for m in settings["modules_to_save"]
                if not any(full.startswith(v + ".") for v in vision for full in _outermost(model, (m,)))]
        settings["modules_to_save"] = keep + [v.split(".")[-1] for v in vision]
    return settings


def apply_lora(model, r: int = 16, alpha: int = 32, dropout: float = 0.05, train_vision: bool = False):
    """Wrap ``model`` with peft LoRA of rank ``r`` on its language model (``lora_targets``)."""
    from peft import LoraConfig, get_peft_model

    settings = lora_targets(model, train_vision)
    lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=settings["target_modules"],
                      modules_to_save=settings["modules_to_save"] or None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks a deprecated transformers flag
        return get_peft_model(model, lora)
