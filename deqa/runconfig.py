"""Every setting of a training run, stated once: the ``TrainConfig`` fields carry their defaults,
their help text, whether ``--resume`` needs them unchanged, and how the command line spells them; the
``train`` command's options are generated from them. Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from .errors import DeqaError
from .losses import LossSettings
from .soft_label import PUBLISHED_LABEL


def setting(default=MISSING, help: str = "", resume: bool = False, **cli):
    """A run setting: its default, its ``--help`` text, whether ``--resume`` needs it unchanged
    (``resume``), and how the command line spells it (``cli``: ``flag``, ``negative`` for a
    ``--no-...`` flag, ``consts``, ``group``, ``choices``, ``metavar``, ``required``)."""
    return field(default=default, metadata={"help": help, "resume": resume, "cli": cli})


@dataclass
class TrainConfig:
    """Every setting of a training run (saved as ``RUN_DIR/train_config.json``; the ``train`` command's
    options are generated from these fields). Explained in notebook 04.

    ``batch_size`` is the number of (A, B) pairs per forward pass (2 x batch_size images); one
    optimizer step accumulates ``grad_accum`` of them. Give ``steps`` (optimizer steps) or
    ``epochs`` (passes over the training images as image A).
    """

    # what to train, on what, where
    model: str = setting(help="hub id or local folder of an MLLM (e.g. one written by build-tiny)",
                         resume=True, metavar="ID_OR_DIR")
    data: list[str] = setting(help="metadata file of a data set (repeat for co-training); images are found "
                                   "relative to its folder", resume=True, metavar="META")
    out: str = setting(help="run folder to write", metavar="RUN_DIR")
    # how long
    steps: int | None = setting(None, "optimizer steps", resume=True, group="length")
    epochs: float | None = setting(None, "passes over the training images (default 3)", resume=True,
                                   group="length")
    batch_size: int = setting(8, "pairs per forward pass", resume=True)
    grad_accum: int = setting(1, "forward passes per optimizer step", resume=True)
    # the optimizer: AdamW, cosine schedule with linear warm-up
    lr: float | None = setting(None, "peak learning rate (default: 3e-4 small full, 2e-4 LoRA, 2e-5 large full)",
                               resume=True)
    weight_decay: float = setting(0.0, "AdamW weight decay (not on biases and norms)", resume=True)
    warmup_ratio: float = setting(0.03, "share of the steps with a linear warm-up", resume=True)
    max_grad_norm: float = setting(1.0, "gradient clipping norm (0: no clipping)", resume=True)
    # what is trained
    mode: str | None = setting(None, "full fine-tuning or LoRA (default: LoRA above 100 M parameters)", resume=True,
                               consts={"--lora": ("lora", "LoRA on the language model (default for models > 100 M "
                                                          "parameters)"),
                                       "--full": ("full", "full fine-tuning (default for small models)")})
    lora_r: int = setting(16, "LoRA rank", resume=True)
    lora_alpha: int = setting(32, "LoRA alpha (scale alpha / r)", resume=True)
    lora_dropout: float = setting(0.05, "dropout on the LoRA input", resume=True)
    train_vision: bool = setting(False, "LoRA: also train the vision tower in full", resume=True)
    merge: bool = setting(False, "LoRA: save the final model merged into its base")
    # labels
    label: str = setting("soft", "soft: the level token learns the soft label (KL), DeQA; onehot: Q-Align's "
                         "cross-entropy over the whole answer, level word included (no KL)", resume=True,
                         choices=("soft", "onehot"))
    question: str = setting("random", "random: each image asked one of the ten published questions, drawn per "
                            "epoch; fixed: always the scoring question", resume=True, choices=("random", "fixed"))
    method: str = setting("official", "soft-label discretisation: official = pdf for KonIQ-10k and KADID-10k, cdf "
                          "for the others, as published", resume=True, choices=("official", "cdf", "pdf"))
    reference_labels: bool = setting(PUBLISHED_LABEL, "which soft label: the published builder or the "
                                     "information projection (default: deqa.soft_label.PUBLISHED_LABEL)",
                                     resume=True,
                                     consts={"--reference-labels": (True, "soft labels exactly as the published "
                                                                          "implementation builds them"),
                                             "--projection-labels": (False, "this repository's information "
                                                                            "projection (chapter 02)")})
    nominal_scale: bool = setting(False, "rescale each data set by its nominal scale, not its min/max MOS",
                                  resume=True)
    # the loss (defaults: deqa.losses.LossSettings)
    use_fidelity: bool = setting(LossSettings.use_fidelity, "drop the fidelity loss (single-image KL + CE)",
                                 resume=True, negative="--no-fidelity")
    use_kl: bool = setting(LossSettings.use_kl, "drop the KL at the level position (CE-only ablation)",
                           resume=True, negative="--no-kl")
    gamma: float = setting(LossSettings.gamma, "weight of CE + KL against the fidelity loss", resume=True)
    p_hat: str = setting(LossSettings.p_hat_variant, "P_hat with sigma = 1 (reference code) or the predicted "
                         "sigma (paper)", resume=True, choices=("fixed", "predicted"))
    detach_sigma: bool = setting(LossSettings.detach_sigma, "--p-hat predicted: no gradient through sigma",
                                 resume=True)
    closed_set: bool = setting(LossSettings.closed_set, "KL over the five level logits only, not the whole "
                               "vocabulary", resume=True)
    # the machine
    seed: int = setting(0, "seed of the weights' init, the pairs and dropout", resume=True)
    device: str = setting("auto", "auto (cuda, mps, cpu), cpu, cuda, cuda:1 ...")
    bf16: bool = setting(True, "no bf16 autocast on CUDA (bf16 is not used on the CPU, where it is slow)",
                         negative="--no-bf16")
    attn_implementation: str | None = setting(None, "attention kernel (default: the model's own, sdpa for most)",
                                              choices=("eager", "sdpa", "flash_attention_2"))
    max_pixels: int | None = setting(None, "Qwen2-VL / Qwen2.5-VL: at most N pixels per image (fewer visual "
                                     "tokens)", metavar="N")
    gradient_checkpointing: bool | None = setting(None, "recompute activations in backward (default: large "
                                                  "models on CUDA)", negative="--no-gradient-checkpointing")
    num_workers: int = setting(0, "processes preparing batches")
    # logging, validation, checkpoints
    log_every: int = setting(10, "log the training loss every N steps")
    eval_every: int = setting(0, "validate every N steps (0: at the end only; negative: never)")
    eval_limit: int | None = setting(512, "at most N validation images per data set")
    eval_batch_size: int = setting(32, "images per forward pass in validation")
    save_every: int = setting(0, "checkpoint every N steps (0: at the end and on interruption only)")
    stop_at: int | None = setting(None, "stop after step N with a checkpoint, as if interrupted")
    resume: bool = setting(False, "continue the interrupted run in RUN_DIR")
    recipe: str | None = setting(None, "start from a preset: official = the published DeQA-Score recipe (LoRA r 128, "
                                 "alpha 256, lr 2e-5, 16 pairs, 3 epochs, vision trained in full); flags override it",
                                 choices=("official",))
    progress: bool = setting(True, "no progress bar", negative="--no-progress")

    def __post_init__(self):
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(p) for p in self.data]
        self.model, self.out = str(self.model), str(self.out)

    @classmethod
    def from_recipe(cls, name: str, **settings) -> "TrainConfig":
        """The preset ``RECIPES[name]``, with ``settings`` on top (``steps`` replaces its ``epochs``)."""
        return cls(**resolve_settings(settings, name))

    def loss_settings(self) -> LossSettings:
        """The loss step's settings; one-hot labels train the level word by the cross-entropy, so no KL."""
        return LossSettings(gamma=self.gamma, p_hat_variant=self.p_hat, detach_sigma=self.detach_sigma,
                            use_fidelity=self.use_fidelity, use_kl=self.use_kl and self.label != "onehot",
                            closed_set=self.closed_set)

    def check(self) -> None:
        """Refuse settings that cannot make sense (NaN, infinite, negative, out of range, the same
        metadata file twice) with a one-line message, before anything is read or written."""
        if not self.data:
            raise DeqaError("train: give at least one --data META file")
        seen = {}
        for meta in self.data:
            key = str(Path(meta).expanduser().resolve())
            if key in seen:
                raise DeqaError(f"train: --data {meta} is given twice (also as {seen[key]}): every image would count twice")
            seen[key] = meta
        if (self.steps is None) == (self.epochs is None):
            raise DeqaError("train: give exactly one of steps (--steps) or epochs (--epochs)")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise DeqaError(f"train: {f.name} must be a finite number, got {value}")
            _check_range(f.name, value)
            cli = f.metadata["cli"]
            allowed = cli.get("choices") or tuple(v for v, _ in cli.get("consts", {}).values())
            if allowed and value not in allowed + ((None,) if f.default is None else ()):
                raise DeqaError(f"train: {f.name} must be one of {list(allowed)}, got {value!r}")


#: the range of each numeric setting, inclusive of ``lo``; ``hi`` is excluded (None: no bound)
_RANGES = {"steps": (1, None), "epochs": (0, None), "batch_size": (1, None), "grad_accum": (1, None),
           "lr": (0, None), "weight_decay": (0, None), "warmup_ratio": (0, 1), "max_grad_norm": (0, None),
           "lora_r": (1, None), "lora_alpha": (0, None), "lora_dropout": (0, 1), "gamma": (0, None),
           "seed": (0, 2**32), "max_pixels": (1, None), "num_workers": (0, None), "log_every": (1, None),
           "eval_limit": (1, None), "eval_batch_size": (1, None), "save_every": (0, None), "stop_at": (1, None)}
_POSITIVE = {"epochs", "lr", "lora_alpha"}  # also > lo


def _check_range(name: str, value) -> None:
    if name not in _RANGES or value is None:
        return
    lo, hi = _RANGES[name]
    bad = value < lo or (name in _POSITIVE and value <= lo) or (hi is not None and value >= hi)
    if bad:
        bound = f"in [{lo}, {hi})" if hi is not None else ("positive" if name in _POSITIVE else f"at least {lo}")
        raise DeqaError(f"train: {name} must be {bound}, got {value}")


#: presets of settings (``--recipe``); the published one is DeQA-Score's training of mPLUG-Owl2
RECIPES = {
    "official": {"mode": "lora", "lora_r": 128, "lora_alpha": 256, "lora_dropout": 0.05, "lr": 2e-5,
                 "warmup_ratio": 0.03, "weight_decay": 0.0, "batch_size": 16, "grad_accum": 1, "epochs": 3.0,
                 "train_vision": True, "gamma": LossSettings.gamma, "p_hat": "fixed", "method": "official",
                 "reference_labels": True,
                 "label": "soft", "question": "random", "use_fidelity": True, "use_kl": True},
}
#: the training length when neither steps nor epochs is given
DEFAULT_EPOCHS = 3.0


def resolve_settings(given: dict, recipe: str | None = None) -> dict:
    """Every field's value: its default, then the recipe's, then ``given`` (what the user set); a
    ``steps`` given replaces a recipe's ``epochs``, and with neither the run lasts ``DEFAULT_EPOCHS``."""
    recipe = given.get("recipe", recipe)
    if recipe is not None and recipe not in RECIPES:
        raise DeqaError(f"train: unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    values = {f.name: None if f.default is MISSING else f.default for f in fields(TrainConfig)}
    preset = dict(RECIPES.get(recipe, {}))
    if given.get("steps") is not None:
        preset.pop("epochs", None)
    values.update(preset)
    values.update(given)
    values["recipe"] = recipe
    if values["steps"] is None and values["epochs"] is None:
        values["epochs"] = DEFAULT_EPOCHS
    return values


def resolved_paths(config: TrainConfig) -> dict:
    """The model (when it is a local folder) and the metadata files as absolute paths: what the resume
    check compares, whatever the working directory and however the paths were spelled."""
    def resolve(path: str) -> str:
        p = Path(path).expanduser()
        return str(p.resolve()) if p.exists() else path

    return {"model": resolve(config.model), "data": [resolve(m) for m in config.data]}


def check_resume(saved: dict, config: TrainConfig) -> None:
    """Refuse to resume with a setting that changes the run (fields marked ``resume``); paths are
    compared resolved (``saved["paths"]``, written by ``train``)."""
    now, before = asdict(config), dict(saved)
    if "paths" in saved:  # runs written before the paths were recorded compare the strings as given
        now.update(resolved_paths(config))
        before.update(saved["paths"])
    for f in fields(config):
        key = f.name
        if f.metadata["resume"] and key in before and before[key] != now[key] \
                and not (key == "mode" and now[key] is None):
            raise DeqaError(f"resume: setting {key} differs from the interrupted run "
                            f"({now[key]!r} now, {before[key]!r} before); use the same settings")


# ------------------------------------------------------------------------------ command line

def _cli_type(f):
    """The argparse ``type`` of a field, from its annotation (``int | None`` -> int)."""
    first = str(f.type).split("|")[0].strip()
    return {"int": int, "float": float, "str": str}.get(first, str)


def add_config_arguments(parser) -> None:
    """The ``train`` command's options, one per ``TrainConfig`` field with its help and default. Only
    the options given end up in the parsed arguments (``argparse.SUPPRESS``), so that a recipe fills
    the rest (``resolve_settings``)."""
    import argparse

    quiet = argparse.SUPPRESS
    groups = {"length": parser.add_mutually_exclusive_group()}
    for f in fields(TrainConfig):
        cli, text = f.metadata["cli"], f.metadata["help"]
        target = groups[cli["group"]] if "group" in cli else parser
        flag = "--" + f.name.replace("_", "-")
        shown = f" (default {f.default})" if f.default not in (MISSING, None, False, True) else ""
        if "consts" in cli:
            group = parser.add_mutually_exclusive_group()
            for const_flag, (value, const_help) in cli["consts"].items():
                group.add_argument(const_flag, dest=f.name, action="store_const", const=value, default=quiet,
                                   help=const_help)
        elif "negative" in cli:
            if f.default is None:
                target.add_argument(flag, dest=f.name, action="store_true", default=quiet, help=text)
                target.add_argument(cli["negative"], dest=f.name, action="store_false", default=quiet,
                                    help="do not " + flag[2:].replace("-", " "))
            else:
                target.add_argument(cli["negative"], dest=f.name, action="store_false", default=quiet, help=text)
        elif isinstance(f.default, bool):
            target.add_argument(flag, action="store_true", default=quiet, help=text)
        else:
            target.add_argument(flag, type=_cli_type(f), default=quiet, choices=cli.get("choices"),
                                action="append" if f.name == "data" else "store", metavar=cli.get("metavar"),
                                help=text + (" (required)" if f.default is MISSING else shown))


def settings_from_args(args) -> dict:
    """The run's settings from parsed ``train`` arguments: defaults, the recipe, then the flags given."""
    names = {f.name for f in fields(TrainConfig)}
    return resolve_settings({k: v for k, v in vars(args).items() if k in names})


def config_from_settings(values: dict) -> TrainConfig:
    """A TrainConfig from ``resolve_settings``'s values; the required ones missing is a one-line error."""
    missing = [f"--{f.name}" for f in fields(TrainConfig) if f.default is MISSING and not values.get(f.name)]
    if missing:
        raise DeqaError(f"train: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required")
    return TrainConfig(**values)
