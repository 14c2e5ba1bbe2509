"""Fine-tuning an MLLM with the DeQA-Score objective: soft-label KL at the level token, CE on the
other answer tokens, and the fidelity loss on same-data-set pairs. Explained in notebook 04
(``04_finetune_mllm``).

One loop serves a real Hugging Face MLLM on a GPU (LoRA by default) and the embedded tiny model on a
CPU (full fine-tuning): ``train(TrainConfig(...))`` prepares the run, loops, and finishes it.

    python -m deqa train --model ID_OR_DIR --data META [--data META2 ...] --out RUN_DIR [--steps N]

A run folder holds ``train_config.json`` (the settings), ``metrics.jsonl`` (``deqa.runlog``: training
loss parts every ``log_every`` steps, validation per data set every ``eval_every`` steps),
``checkpoint/`` (written atomically: ``model/`` loadable by ``deqa.mllm.load`` + ``trainer_state.pt``
with the optimizer, scheduler, RNG and sampler state) and, at the end, ``model/`` (the final model;
the run folder itself loads as that model). ``--resume`` continues an interrupted run to the same
weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import distributed, losses, mllm, runlog
from .checkpoints import (CHECKPOINT, RUN_CONFIG, RunLock, check_run_folder, find_checkpoint, load_checkpoint,
                          rng_state, save_checkpoint, save_model, set_rng_state, unwrap)
from .collate import Collator, level_token_ids, model_inputs
from .errors import DeqaError, Interrupted
from .losses import IGNORE_INDEX, LossSettings
from .runconfig import (TrainConfig, add_config_arguments, check_resume, config_from_settings, resolved_paths,
                        settings_from_args)
from .runlog import METRICS_LOG
from .setup import resolve_device
from .trainset import PairBatchDataset, PairStream, TrainData, batches, check_readable, load_splits

#: the signals that stop a run with a checkpoint: Ctrl-C, a scheduler's or ``timeout``'s SIGTERM, SIGHUP
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class TrainResult:
    """What ``train`` returns: where things are, how far it got and how long it took."""

    run_dir: Path
    model_dir: Path | None
    step: int
    total_steps: int
    seconds: float
    stopped: bool = False  # True when it stopped early (stop_at) with a checkpoint
    history: list = field(default_factory=list)  # the rows written to metrics.jsonl by this call
    validation: dict = field(default_factory=dict)  # the last validation {dataset: {srcc, plcc, n}}
    model: object = field(default=None, repr=False)  # the trained model (peft-wrapped in LoRA mode)
    processor: object = field(default=None, repr=False)


# ----------------------------------------------------------------------------------- the step

def pair_loss(model, batch: dict, level_ids, loss: LossSettings, device: str, bf16: bool = False) -> dict:
    """Forward the 2B images of a pair batch once and return ``deqa_loss``'s dict for it.

    Only the positions from the first answer token on are turned into vocabulary logits
    (``logits_to_keep``; left padding puts the answers of all rows at the end): they hold the level
    position and every answer token, and the (B, T, V) logits of a long image prompt are never
    built. ``bf16``: autocast to bf16 on CUDA. Explained in notebook 04.
    """
    inputs = model_inputs(batch, device)
    level_pos = batch["level_pos"].to(device)
    labels = batch["labels"].to(device)
    T = labels.shape[1]
    labelled = labels != IGNORE_INDEX
    first = torch.where(labelled.any(1), labelled.int().argmax(1), level_pos)  # first answer token
    keep = int(T - torch.minimum(first, level_pos).min())
    with _autocast(device, bf16):
        logits = model(**inputs, logits_to_keep=keep).logits
    offset = T - logits.shape[1]
    rows = torch.arange(len(level_pos), device=level_pos.device)
    level_logits = logits[rows, level_pos - offset].float()
    labels = labels[:, offset:]
    B = len(level_pos) // 2
    ce_a = losses.answer_ce(logits[:B], labels[:B])
    ce_b = losses.answer_ce(logits[B:], labels[B:])
    target = batch["target"].to(device)
    mu, sigma = batch["mu"].to(device), batch["sigma"].to(device)
    return losses.deqa_loss(level_logits[:B], level_logits[B:], target[:B], target[B:],
                            mu[:B], sigma[:B], mu[B:], sigma[B:], level_ids, ce_a, ce_b, **asdict(loss))


def _autocast(device: str, enabled: bool):
    if enabled and str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------- the run state

@dataclass
class Run:
    """A training run while it runs: what ``prepare`` builds, and how far the loop has got."""

    config: TrainConfig
    run_dir: Path
    dist: distributed.DistInfo
    device: str
    model: object
    processor: object
    level_ids: list
    collator: Collator
    train_data: TrainData
    val_data: TrainData | None
    stream: PairStream
    optimizer: object
    scheduler: object
    loss: LossSettings
    mode: str
    total: int
    step: int = 0  # optimizer steps done
    pairs_done: int = 0  # pairs of the stream consumed (on this rank)
    elapsed_before: float = 0.0  # training seconds of the earlier runs of a resumed run
    started: float = 0.0  # perf_counter when this call's loop began
    safe: tuple = ()  # (step, pairs_done, rng state) after the last completed step
    history: list = field(default_factory=list)
    validation: dict = field(default_factory=dict)
    validated_steps: set = field(default_factory=set)  # steps with a validation row in the log
    lock: RunLock | None = None
    stop_signal: int | None = None  # a stop signal arrived: stop after the current step
    in_update: bool = False  # between the optimizer step and the step count: no interrupt lands here

    @property
    def seconds(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


# ---------------------------------------------------------------------------------- preparing

def _load_model(config: TrainConfig, device: str, checkpoint: Path | None):
    """The model (with LoRA when asked) and processor, from the checkpoint when resuming; its mode
    ("full" or "lora") and parameter count."""
    cuda = device.startswith("cuda")
    base_ref = _resolve_model_ref(config.model)
    saved = checkpoint / "model" if checkpoint is not None else None
    lora_saved = saved is not None and (saved / "adapter_config.json").is_file()
    # a frozen base for LoRA is held in bf16 on a GPU (its LoRA weights are trained in float32)
    dtype = torch.bfloat16 if cuda and config.mode != "full" else None
    with mllm.quiet_transformers():
        model, processor = mllm.load(str(saved) if saved is not None and not lora_saved else base_ref,
                                     dtype=dtype, device=device, attn_implementation=config.attn_implementation)
    if config.max_pixels is not None:
        mllm.set_max_pixels(processor, config.max_pixels)
    n_params = sum(p.numel() for p in model.parameters())
    large = n_params > mllm.LARGE_MODEL_PARAMS
    mode = config.mode or ("lora" if lora_saved or large else "full")
    if mode == "lora":
        model = _with_lora(model, config, checkpoint if lora_saved else None, base_ref)
    else:
        model = model.float()
    model.to(device)
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else (cuda and large):
        model.gradient_checkpointing_enable()
        if hasattr(model, "enable_input_require_grads"):  # checkpointed blocks need an input with a grad
            model.enable_input_require_grads()
    model.train()
    return model, processor, mode, n_params


def _with_lora(model, config: TrainConfig, checkpoint: Path | None, base_ref: str):
    """LoRA on ``model`` (``deqa.lora``), or the adapter saved in ``checkpoint``; trainable weights
    in float32 (autocast does bf16)."""
    if checkpoint is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(checkpoint / "model"), is_trainable=True)
    else:
        from .lora import apply_lora

        model = apply_lora(model, r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                           train_vision=config.train_vision)
    model.peft_config["default"].base_model_name_or_path = base_ref
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def _resolve_model_ref(ref: str) -> str:
    """An existing local folder becomes an absolute path (a relative one would be taken as a hub id)."""
    p = Path(ref).expanduser()
    return str(p.resolve()) if p.exists() else ref


def _check_model_ref(ref: str) -> None:
    """Refuse early a model that is neither an existing folder nor shaped like a hub id (owner/name)."""
    if Path(ref).expanduser().exists():
        return
    hub_like = re.fullmatch(r"[\w.-]+/[\w.-]+", ref) is not None and not ref.startswith(".")
    if not hub_like:
        raise DeqaError(f"model path {ref} does not exist (and it is not a hub id of the form owner/name)")


def default_lr(mode: str, n_params: int) -> float:
    """3e-4 for full fine-tuning of a small model, 2e-4 for LoRA, 2e-5 for full fine-tuning of a
    large one (the reference recipe)."""
    if mode == "lora":
        return 2e-4
    return 3e-4 if n_params <= mllm.LARGE_MODEL_PARAMS else 2e-5


def _optimizer(model, lr: float, weight_decay: float):
    """AdamW; no weight decay on biases and normalisation weights (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _previous_run(config: TrainConfig, run_dir: Path, main: bool) -> dict | None:
    """The state of the interrupted run to resume (None for a new run), refusing a resume without a
    usable checkpoint, a changed setting, and a new run into a folder that already holds one."""
    if not config.resume:
        if main and find_checkpoint(run_dir) is not None:
            raise DeqaError(f"{run_dir} already holds a run: pass --resume to continue it, or choose "
                            "another --out")
        return None
    checkpoint, state = load_checkpoint(run_dir)
    if (run_dir / RUN_CONFIG).is_file():
        try:
            saved = json.loads((run_dir / RUN_CONFIG).read_text())
        except ValueError as exc:
            raise DeqaError(f"resume: {run_dir / RUN_CONFIG} is not readable JSON ({exc})") from None
        check_resume(saved, config)
    return {"checkpoint": checkpoint, "state": state}


def prepare(config: TrainConfig) -> Run:
    """Everything a run needs before its first step: the data (each metadata file read once, every
    image checked readable), the model, the pair stream, the optimizer and schedule, the state of an
    interrupted run when resuming, the run folder's lock, and its settings and log. Bad input is
    refused before anything is written."""
    import transformers

    config.check()
    run_dir = Path(config.out)
    check_run_folder(run_dir)
    device = resolve_device(config.device)
    dist = distributed.init(device)
    device = distributed.device_for(dist, device)
    previous = _previous_run(config, run_dir, dist.is_main)
    validate_now = dist.is_main and config.eval_every >= 0
    splits = load_splits(config.data, ("train", "val") if validate_now else ("train",), label=config.label,
                         method=config.method, reference=config.reference_labels, nominal=config.nominal_scale)
    if splits["train"] is None:
        raise DeqaError(f"no rows in the 'train' split of {', '.join(map(str, config.data))}")
    for part in splits.values():
        if part is not None:
            check_readable(part, progress=config.progress and dist.is_main)
    _check_model_ref(config.model)

    transformers.set_seed(config.seed)
    checkpoint = previous["checkpoint"] if previous else None
    model, processor, mode, n_params = _load_model(config, device, checkpoint)
    lr = config.lr if config.lr is not None else default_lr(mode, n_params)
    level_ids = level_token_ids(processor.tokenizer)
    stream = PairStream(splits["train"].datasets, config.seed, dist.rank, dist.world_size)
    pairs_per_step = config.batch_size * config.grad_accum
    total = config.steps or max(1, math.ceil(config.epochs * stream.per_epoch / pairs_per_step))
    warmup = int(math.ceil(config.warmup_ratio * total))
    optimizer = _optimizer(model, lr, config.weight_decay)
    scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, warmup, total)
    run = Run(config=config, run_dir=run_dir, dist=dist, device=device, model=model, processor=processor,
              level_ids=level_ids, collator=Collator(processor, level_ids, train=True,
                                                     level_in_ce=config.label == "onehot"),
              train_data=splits["train"], val_data=splits.get("val"), stream=stream,
              optimizer=optimizer, scheduler=scheduler, loss=config.loss_settings(), mode=mode, total=total)
    if previous is not None:
        _restore(run, previous["state"])
    run.model = distributed.wrap_ddp(model, dist, device)
    _claim_run_folder(run)
    _write_run_files(run, {"mode": mode, "lr": lr, "total_steps": total, "warmup_steps": warmup,
                           "parameters": n_params, "trainable": _trainable(run.model),
                           "train_images": _count_by_dataset(splits["train"]), "pairs_per_epoch": stream.per_epoch,
                           "world_size": dist.world_size, "device": device, "torch": torch.__version__,
                           "transformers": transformers.__version__})
    # each training image decoded and preprocessed once per process (when they fit deqa.process_cache's budget)
    run.collator.prepare_files(run.train_data.paths, progress=config.progress and dist.is_main)
    return run


def _claim_run_folder(run: Run) -> None:
    """Lock the run folder (rank 0) and look at it again under the lock: another run may have
    written into it while this one was loading."""
    if not run.dist.is_main:
        return
    run.lock = RunLock(run.run_dir).acquire()
    try:
        check_run_folder(run.run_dir)
        if not run.config.resume and find_checkpoint(run.run_dir) is not None:
            raise DeqaError(f"{run.run_dir} already holds a run: pass --resume to continue it, or choose "
                            "another --out")
    except DeqaError:
        run.lock.release()
        raise


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _count_by_dataset(data: TrainData) -> dict:
    return {k: int(v) for k, v in pd.Series(data.datasets).value_counts().items()}


def _write_run_files(run: Run, resolved: dict) -> None:
    """``train_config.json`` (settings + what they resolved to) and the log cut back to the
    checkpoint's step (rows after it belong to work the resumed run repeats)."""
    if not run.dist.is_main:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    settings = {**asdict(run.config), "paths": resolved_paths(run.config), "resolved": resolved}
    (run.run_dir / RUN_CONFIG).write_text(json.dumps(settings, indent=1))
    log = run.run_dir / METRICS_LOG
    kept = [r for r in runlog.read_log(log, missing_ok=True, drop_partial_last=True) if r.get("step", 0) <= run.step]
    runlog.write_rows(log, kept)
    run.validated_steps = {r["step"] for r in kept if "val_srcc" in r or any(k.startswith("val_") for k in r)}
    run.validation = _validation_from_row(next((r for r in reversed(kept) if r["step"] in run.validated_steps), {}))


# ---------------------------------------------------------------------------------- the loop

def train(config: TrainConfig, loss_hook=None) -> TrainResult:
    """Run (or resume) DeQA fine-tuning as ``config`` says: prepare, loop, finish. See the module
    docstring for what is written. ``loss_hook(step, loss_dict) -> loss_dict`` may change the losses
    of a step before the backward pass (tests use it to inject a NaN). Explained in notebook 04."""
    run = prepare(config)
    try:
        with _stop_on_signals(run):
            stopped = training_loop(run, loss_hook)
            return finish(run, stopped)
    finally:
        if run.lock is not None:
            run.lock.release()


def training_loop(run: Run, loss_hook=None) -> bool:
    """Steps until ``run.total`` (True when it stopped early at ``stop_at`` with a checkpoint). A stop
    signal (Ctrl-C, SIGTERM, SIGHUP) ends the run after the current step with a checkpoint of that
    step; a second one stops at once, checkpointing the last completed step. A resumed run first
    repeats a validation the interruption cut short."""
    from .setup import progress

    config = run.config
    dataset = PairBatchDataset(run.train_data, run.stream, run.collator, config.batch_size, run.pairs_done,
                               (run.total - run.step) * config.grad_accum, questions=config.question)
    micro_batches = batches(dataset, config.num_workers)
    bar = progress(total=run.total, initial=run.step, desc="DeQA fine-tuning", unit="step",
                   disable=not (config.progress and run.dist.is_main))
    window: dict[str, float] = {}
    run.started = time.perf_counter()
    run.safe = (run.step, run.pairs_done, rng_state())
    run.model.train()
    try:
        if _validation_due(run) and run.step not in run.validated_steps:
            validate(run)
        while run.step < run.total:
            parts = train_step(run, micro_batches, loss_hook)
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
            _add_to_window(window, parts)
            after_step(run, window)
            if run.stop_signal is not None:
                raise Interrupted(run.stop_signal)
            if config.stop_at is not None and config.stop_at <= run.step < run.total:
                checkpoint_now(run)
                return True
    except KeyboardInterrupt:
        bar.close()
        checkpoint_now(run)
        print(f"interrupted at step {run.step}: checkpoint saved in {run.run_dir / CHECKPOINT}; "
              "run again with --resume to continue", flush=True)
        raise
    finally:
        bar.close()
    return False


@contextlib.contextmanager
def _stop_on_signals(run: Run):
    """While the run trains, a stop signal asks it to stop after the current step; a second one (or
    one outside a step's update) raises ``Interrupted`` at once. Only in the main thread, where
    Python delivers signals; elsewhere (a notebook's worker thread) Ctrl-C keeps its default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if run.stop_signal is None or run.in_update:
            run.stop_signal = signum
            print(f"\nstopping after this step ({signal.Signals(signum).name}; send it again to stop at once)",
                  flush=True)
            return
        raise Interrupted(signum)

    before = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def train_step(run: Run, micro_batches, loss_hook=None) -> dict:
    """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss parts."""
    config, parts = run.config, {}
    for _ in range(config.grad_accum):
        out = pair_loss(run.model, next(micro_batches), run.level_ids, run.loss, run.device, config.bf16)
        if loss_hook is not None:
            out = loss_hook(run.step + 1, out)
        seen = distributed.all_reduce_mean(out["loss"].detach(), run.dist)  # every rank stops together
        if not torch.isfinite(seen).item():
            _stop_on_nan(run.run_dir, run.step + 1, float(seen))
        (out["loss"] / config.grad_accum).backward()
        for k, v in out.items():
            parts[k] = parts.get(k, 0.0) + float(v.detach()) / config.grad_accum
    grad_norm = torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.requires_grad],
                                               config.max_grad_norm if config.max_grad_norm > 0 else float("inf"))
    if not torch.isfinite(grad_norm).item():
        _stop_on_nan(run.run_dir, run.step + 1, float(grad_norm), what="gradient norm")
    run.in_update = True  # weights, schedule and counters change together: a signal waits for the end
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    run.pairs_done += config.batch_size * config.grad_accum
    run.safe = (run.step, run.pairs_done, rng_state())
    run.in_update = False
    return parts


def after_step(run: Run, window: dict) -> None:
    """The step's bookkeeping, as the settings say: the training-loss row, a validation, a checkpoint."""
    config, step = run.config, run.step
    if step % max(config.log_every, 1) == 0 or step == run.total:
        n = window.pop("_n")
        mean = {k: v / n for k, v in window.items()}
        window.clear()
        log_row(run, {"step": step, "epoch": round(run.pairs_done / (run.stream.per_epoch or 1), 4),
                      "loss": mean["loss"], "fid": mean["fid"], "kl": (mean["kl_a"] + mean["kl_b"]) / 2,
                      "ce": (mean["ce_a"] + mean["ce_b"]) / 2, "lr": run.scheduler.get_last_lr()[0],
                      "seconds": run.seconds})
    if _validation_due(run):
        validate(run)
    if config.save_every and step % config.save_every == 0 and step < run.total:
        checkpoint_now(run)


def _validation_due(run: Run) -> bool:
    """A periodic validation at this step (``eval_every``; the final one is ``finish``'s)."""
    every = run.config.eval_every
    return every > 0 and 0 < run.step < run.total and run.step % every == 0


def _add_to_window(window: dict, parts: dict) -> None:
    for k, v in parts.items():
        window[k] = window.get(k, 0.0) + v
    window["_n"] = window.get("_n", 0) + 1


def log_row(run: Run, row: dict) -> None:
    """Append a row to the run's log (rank 0) and to ``run.history``."""
    row = runlog.clean_row(row)
    run.history.append(row)
    if any(k.startswith("val_") for k in row):
        run.validated_steps.add(row["step"])
    if run.dist.is_main:
        runlog.append_row(run.run_dir / METRICS_LOG, row)


def validate(run: Run) -> None:
    """Score the validation images (at most ``eval_limit`` per data set) and log SRCC and PLCC (after
    the logistic fit) per data set and their means (``deqa.evaluate.per_dataset_table``). A data set too small to
    correlate (fewer than 3 images, or a constant score) logs its ``n`` only."""
    from .evaluate import per_dataset_table
    from .infer import predict_data

    if run.val_data is None:
        return
    config = run.config
    preds = predict_data(run.model, run.processor, run.val_data, config.eval_batch_size,
                         limit=config.eval_limit, seed=config.seed)
    table = per_dataset_table(preds)
    table["plcc"] = table["plcc_logistic"]  # the headline PLCC: after the logistic fit, the published protocol
    table.loc[table["n"] < 3, ["srcc", "plcc"]] = np.nan
    row = {"step": run.step}
    if table["srcc"].notna().any():
        row.update(val_srcc=float(table["srcc"].mean()), val_plcc=float(table["plcc"].mean()))
    for name, r in table.iterrows():
        row.update({f"val_srcc/{name}": r["srcc"], f"val_plcc/{name}": r["plcc"], f"val_n/{name}": int(r["n"])})
    log_row(run, row)
    run.validation = _validation_from_row(row)


def _validation_from_row(row: dict) -> dict:
    """``{data set: {srcc, plcc, n}}`` of a validation row of the log (NaN where it was too small)."""
    names = [k.split("/", 1)[1] for k in row if k.startswith("val_n/")]
    return {name: {"srcc": row.get(f"val_srcc/{name}", float("nan")),
                   "plcc": row.get(f"val_plcc/{name}", float("nan")), "n": row[f"val_n/{name}"]}
            for name in names}


def finish(run: Run, stopped: bool) -> TrainResult:
    """After the last step: a final checkpoint and validation, and the model saved to ``RUN_DIR/model``
    (merged into its base with ``merge`` in LoRA mode)."""
    seconds = run.seconds
    model_dir = None
    if not stopped:
        checkpoint_now(run)
        if run.step not in run.validated_steps:  # a resumed run whose final save was cut short has it
            validate(run)
        if run.dist.is_main:
            model_dir = save_model(run.model, run.processor, run.run_dir / "model",
                                   merge=run.config.merge and run.mode == "lora")
    distributed.barrier(run.dist)
    return TrainResult(run_dir=run.run_dir, model_dir=model_dir, step=run.step, total_steps=run.total,
                       seconds=seconds, stopped=stopped, history=run.history, validation=run.validation,
                       model=unwrap(run.model), processor=run.processor)


def _stop_on_nan(run_dir: Path, step: int, value: float, what: str = "loss"):
    ckpt = find_checkpoint(run_dir)
    keep = (f"the last good checkpoint is in {ckpt}" if ckpt is not None
            else "no checkpoint was written yet")
    raise DeqaError(f"{what} is {value} at step {step}: training stopped ({keep}); "
                    "lower the learning rate or check the data")


# ------------------------------------------------------------------------------- checkpoints

def checkpoint_now(run: Run) -> None:
    """Checkpoint the last completed step (``run.safe``): weights, optimizer, schedule, RNG and the
    position in the pair stream. Rank 0 writes; every rank waits."""
    step, pairs_done, rng = run.safe
    if run.dist.is_main:
        save_checkpoint(run.run_dir, run.model, run.processor, run.optimizer, run.scheduler,
                        {"step": step, "pairs_done": pairs_done, "rng": rng, "seconds": run.seconds})
    distributed.barrier(run.dist)


def _restore(run: Run, state: dict) -> None:
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    run.step, run.pairs_done, run.elapsed_before = state["step"], state["pairs_done"], state.get("seconds", 0.0)


# ------------------------------------------------------------------------------ command line

def add_arguments(parser) -> None:
    """The ``train`` command's options: one per ``TrainConfig`` field (``deqa.runconfig``)."""
    add_config_arguments(parser)
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved settings as JSON and exit (nothing is loaded or written)")


def run(args) -> int:
    values = settings_from_args(args)
    if args.print_config:
        print(json.dumps(values, indent=1))
        return 0
    result = train(config_from_settings(values))
    if not distributed.from_env().is_main:  # under torchrun only rank 0 reports
        return 0
    if result.stopped:
        print(f"stopped at step {result.step}/{result.total_steps}; checkpoint in {result.run_dir / CHECKPOINT}")
        return 0
    val = ", ".join(f"{k} SRCC {v['srcc']:.3f}" if math.isfinite(v["srcc"]) else f"{k}: too few images to correlate "
                    f"({v['n']})" for k, v in result.validation.items())
    print(f"trained {result.step} steps in {result.seconds:.0f} s -> {result.model_dir}"
          + (f" (validation: {val})" if val else ""))
    return 0
