"""The embedded model's two-stage recipe: pre-train the tiny MLLM's CNN vision tower alone on
synthetic scenes (stage 1, the stand-in for the pre-trained vision encoder every real MLLM brings),
then fine-tune the whole MLLM with the DeQA loss (stage 2, ``deqa.train``). Explained in notebook 04
(``04_finetune_mllm``).

    train_embedded(RUN_DIR, DATA_DIR)      # both stages; the model ends in RUN_DIR/model
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from .errors import DeqaError
from .checkpoints import STAGE1_LOG, check_run_folder, save_model
from .train import TrainConfig, TrainResult, train

#: sizes of the embedded recipe, tuned on a 2-core CPU (about 2-3 minutes for both stages). At 64 px
#: the tower only reached a held-out SRCC of about 0.77 in stage 1 (mild blur and noise vanish when
#: the 96-px scenes are shrunk), at 96 px 0.97; stage 2 then reaches a test SRCC of about 0.95.
EMBEDDED = {"image_size": 96, "stage1_steps": 1500, "stage1_batch": 16, "stage1_lr": 1e-3,
            "stage1_eval": 256, "stage2_steps": 800, "stage2_batch": 8, "stage2_lr": 3e-4}
#: smoke mode: a few steps of each stage, seconds
EMBEDDED_SMOKE = {"image_size": 64, "stage1_steps": 20, "stage1_batch": 8, "stage1_lr": 1e-3,
                  "stage1_eval": 32, "stage2_steps": 12, "stage2_batch": 4, "stage2_lr": 3e-4}


def find_metas(data_dir) -> list[Path]:
    """The ``<name>/meta.csv`` files of a folder written by ``python -m deqa synth``."""
    metas = sorted(Path(data_dir).glob("*/meta.csv"))
    if not metas:
        raise DeqaError(f"no data set in {data_dir} (expected NAME/meta.csv; run python -m deqa synth {data_dir})")
    return metas


def _embedded_sizes(smoke: bool, overrides: dict) -> dict:
    sizes = dict(EMBEDDED_SMOKE if smoke else EMBEDDED)
    unknown = set(overrides) - set(sizes)
    if unknown:
        raise DeqaError(f"embedded recipe: unknown setting(s) {sorted(unknown)}; known: {sorted(sizes)}")
    sizes.update(overrides)
    return sizes


def _fresh_run_dir(run_dir: Path) -> None:
    """Empty ``run_dir`` for a new run, refusing a folder deqa did not write (``check_run_folder``)."""
    check_run_folder(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def pretrain_stage(run_dir, smoke: bool = False, seed: int = 0, progress: bool = True, **overrides) -> dict:
    """Stage 1 of the embedded recipe: build the tiny MLLM in ``run_dir/base`` (a fresh run folder),
    pre-train its CNN vision tower alone on its own synthetic scenes (``deqa.tower.pretrain_tower``)
    and save the MLLM with that tower to ``run_dir/stage1``. The stand-in for the pre-trained vision
    encoder every real MLLM brings. Returns ``{seconds, srcc_before, srcc, loss, steps, model_dir}``.
    Explained in notebook 04."""
    from . import mllm
    from .tiny import build_tiny
    from .tower import pretrain_tower

    sizes = _embedded_sizes(smoke, overrides)
    run_dir = Path(run_dir)
    _fresh_run_dir(run_dir)
    start = time.perf_counter()
    with mllm.quiet_transformers():
        base = Path(build_tiny(run_dir / "base", seed=seed, image_size=sizes["image_size"]))
        model, processor = mllm.load(base)
    tower = model.model.vision_tower
    history = pretrain_tower(tower, steps=sizes["stage1_steps"], batch_size=sizes["stage1_batch"],
                             lr=sizes["stage1_lr"], seed=seed, size=tower.config.image_size,
                             progress=progress, eval_size=sizes["stage1_eval"])
    out = save_model(model, processor, run_dir / "stage1")
    summary = {"seconds": time.perf_counter() - start, "srcc_before": history["srcc_before"],
               "srcc": history["srcc"], "loss": history["loss"], "steps": sizes["stage1_steps"],
               "model_dir": str(out)}
    (run_dir / STAGE1_LOG).write_text(json.dumps(summary))
    return summary


def finetune_stage(run_dir, data_dir, smoke: bool = False, seed: int = 0, progress: bool = True,
                   eval_every: int = 0, log_every: int = 10, **overrides) -> TrainResult:
    """Stage 2 of the embedded recipe: DeQA fine-tuning of the whole ``run_dir/stage1`` model (full
    fine-tuning: its random embeddings must learn too) on every ``NAME/meta.csv`` in ``data_dir``;
    the final model goes to ``run_dir/model``. Explained in notebook 04."""
    sizes = _embedded_sizes(smoke, overrides)
    run_dir = Path(run_dir)
    if not (run_dir / "stage1" / "config.json").is_file():
        raise DeqaError(f"no stage-1 model in {run_dir / 'stage1'}: run pretrain_stage first")
    metas = find_metas(data_dir)
    config = TrainConfig(model=str(run_dir / "stage1"), data=[str(m) for m in metas], out=str(run_dir),
                         steps=sizes["stage2_steps"], batch_size=sizes["stage2_batch"],
                         lr=sizes["stage2_lr"], mode="full", seed=seed, progress=progress,
                         eval_every=eval_every, log_every=log_every, device="cpu")
    return train(config)


def train_embedded(run_dir, data_dir, smoke: bool = False, seed: int = 0, progress: bool = True,
                   **overrides) -> dict:
    """The embedded model's two-stage recipe, end to end, leaving the final model in ``run_dir/model``:
    :func:`pretrain_stage` (the vision tower alone) then :func:`finetune_stage` (the whole MLLM
    with the DeQA loss on the data sets in ``data_dir``). ``overrides`` change the sizes of
    :data:`EMBEDDED` (e.g. ``stage2_steps=500``). Returns the timings and results of both stages
    (also written to ``run_dir/stages.json``). Explained in notebook 04."""
    find_metas(data_dir)  # refuse a missing data folder before anything is built
    stage1 = pretrain_stage(run_dir, smoke=smoke, seed=seed, progress=progress, **overrides)
    start = time.perf_counter()
    result = finetune_stage(run_dir, data_dir, smoke=smoke, seed=seed, progress=progress, **overrides)
    summary = {"stage1_seconds": stage1["seconds"], "stage1_srcc_before": stage1["srcc_before"],
               "stage1_srcc": stage1["srcc"], "stage1_steps": stage1["steps"],
               "stage2_seconds": time.perf_counter() - start, "stage2_steps": result.step,
               "validation": result.validation, "sizes": _embedded_sizes(smoke, overrides),
               "model_dir": str(result.model_dir)}
    (Path(run_dir) / "stages.json").write_text(json.dumps(summary, indent=1))
    return {**summary, "stage1_loss": stage1["loss"], "history": result.history}
