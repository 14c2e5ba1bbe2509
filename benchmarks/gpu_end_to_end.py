"""The whole loop on one GPU: ``python -m deqa train --recipe official`` on image files, then
``python -m deqa score``, against a bare transformers step and forward of the same model.

A Qwen2.5-VL-3B-sized ``Qwen2_5_VLForConditionalGeneration`` (3.75 B parameters; vocabulary padded
to the real 151,936, so the LM head and the full-vocabulary KL cost what they cost) is built with
random weights in bf16 directly on the GPU, with a locally built Qwen tokenizer and the image-only
Qwen processor at 448 x 448 px (256 visual tokens; ``deqa.tiny_archs.qwen_parts``), and saved to a
scratch folder. Synthetic images of that size with their metadata are written by
``python -m deqa synth`` at the same time. In the same process, on the same model, with the same
LoRA settings and trainable parameters as the recipe (``deqa.lora.apply_lora``: r 128 on the
language model, the vision tower trained in full, trainable weights in float32, bf16 autocast), the
same gradient checkpointing and the same batch (the recipe's 16 pairs = 32 images), it times

* a bare transformers training step: ``model(**inputs, labels=labels).loss``, backward, AdamW;
* a bare forward of a scoring batch (``logits_to_keep=1``) and ``generate()`` of 6 new tokens;

then frees the GPU and runs, as subprocesses from the saved folder,

* ``deqa train --recipe official --steps N --save-every S --log-every 1``: the whole-loop figure
  is images/s over the steady-state steps of the run's ``metrics.jsonl`` (cumulative seconds per
  step; the first ``--skip-steps`` left out), the checkpoint (the in-loop one, measured in the
  step after it) spread over ``--checkpoint-every`` steps, the interval a long run would use;
* ``deqa score`` on every image (a few hundred): images/s of its scoring loop, as it prints it.

Start-up (imports, data check, model load, LoRA) is reported apart from both. The JSON holds
images/s of each, ``ratio_vs_bare_step`` (whole loop / bare step, target >= 0.8),
``ratio_vs_bare_forward`` (deqa score / bare forward) and ``score_ratio_vs_generate`` (target > 1),
peak memory, start-up seconds, the card and the versions. It is rewritten after each stage with
``complete: false`` until the end, so a run cut short by a time limit keeps what it measured.

    python benchmarks/gpu_end_to_end.py             # on a GPU: benchmarks/results/gpu_end_to_end_<gpu>.json
    python benchmarks/gpu_end_to_end.py --dry-run   # same code path, tiny config of the same classes, CPU

Not a test: the numbers depend on the machine. Explained in notebook 04 (GPUs).
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from gpu_common import (adapter_targets, gpu_name, is_oom, out_path, peak_gib, reset_peak, sync, timed,
                        use_repository_checkout, versions, write_json)

PATCH, MERGE = 14, 2  # Qwen2.5-VL: 14 px patches, 2 x 2 merged into one visual token
#: Qwen2.5-VL-3B-Instruct's dimensions, at 448 px (16 x 16 = 256 visual tokens per image)
QWEN25_VL_3B = {
    "name": "Qwen2.5-VL-3B dims",
    "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                 num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31]),
    "vocab_size": 151936, "rope_theta": 1e6, "image_size": 448,
}
#: the same classes at toy sizes for --dry-run (16 visual tokens per 112 px image)
TINY = {
    "name": "tiny",
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-6),
    "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, window_size=56,
                   fullatt_block_indexes=[1]),
    "vocab_size": 1024, "rope_theta": 1e6, "image_size": 112,
}
GENERATE_TOKENS = 6
SCORED_LINE = re.compile(r"scored (\d+) images in ([0-9.]+) s")
TARGETS = {"ratio_vs_bare_step": 0.8, "score_ratio_vs_generate": 1.0}


# ---------------------------------------------------------------------------------------- model

def build_model(dims: dict, folder: Path, device: str, dtype):
    """Random weights created on ``device`` in ``dtype``, saved with the tokenizer and processor to
    ``folder`` (what ``deqa.mllm.load`` reads). Returns (model, processor)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from deqa.mllm import quiet_transformers
    from deqa.tiny_archs import qwen_parts

    tok, processor, ids, text = qwen_parts(dims["image_size"], "qwen2_5_vl", dims["text"], patch_size=PATCH,
                                           merge_size=MERGE)
    if dims["vocab_size"] < len(tok):
        raise SystemExit(f"vocabulary {dims['vocab_size']} is smaller than the tokenizer's {len(tok)}")
    text.update(vocab_size=dims["vocab_size"], tie_word_embeddings=True)
    text["rope_parameters"]["rope_theta"] = dims["rope_theta"]
    vision = dict(dims["vision"], out_hidden_size=text["hidden_size"], patch_size=PATCH, spatial_merge_size=MERGE,
                  temporal_patch_size=2, hidden_act="silu")
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.generation_config.do_sample = False
    with quiet_transformers():
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return model.eval(), processor


def recipe_settings() -> dict:
    """The official recipe as ``deqa train --recipe official`` resolves it (``deqa.runconfig``)."""
    from deqa.runconfig import resolve_settings

    return resolve_settings({}, "official")


# ---------------------------------------------------------------------------------------- bare

def image_batch(paths, n: int, seed: int = 0):
    """``n`` images (cycled over ``paths``) with a random level and one of the ten questions each."""
    import numpy as np

    from deqa.collate import QUESTIONS
    from deqa.images import load_image

    rng = np.random.default_rng(seed)
    images = [load_image(paths[i % len(paths)]) for i in range(n)]
    return images, rng.integers(0, 5, n).tolist(), [QUESTIONS[i] for i in rng.integers(0, len(QUESTIONS), n)]


def measure_forward(model, processor, paths, batch: int, device: str, warmup: int, reps: int) -> dict:
    """Bare forward of a scoring batch (``logits_to_keep=1``, as one-forward scoring needs) and
    ``generate()`` of ``GENERATE_TOKENS`` on the same batch, the model as ``deqa score`` loads it."""
    from deqa.collate import Collator, model_inputs

    images, _, _ = image_batch(paths, batch)
    inputs = model_inputs(Collator(processor, train=False)(images), device, dtype=model.dtype)
    pad = processor.tokenizer.pad_token_id
    model.eval()

    @torch.inference_mode()
    def forward():
        model(**inputs, logits_to_keep=1)

    @torch.inference_mode()
    def generate():
        model.generate(**inputs, max_new_tokens=GENERATE_TOKENS, min_new_tokens=GENERATE_TOKENS, do_sample=False,
                       pad_token_id=pad)

    out = {"batch": batch, "tokens_per_image": round(inputs["attention_mask"].sum().item() / batch, 1)}
    reset_peak(device)
    t = statistics.median(timed(forward, device, warmup, reps))
    out["forward"] = {"seconds_per_batch": t, "images_per_s": batch / t, "peak_gib": peak_gib(device)}
    t = statistics.median(timed(generate, device, max(1, warmup // 2), max(1, reps // 2)))
    out["generate"] = {"new_tokens": GENERATE_TOKENS, "seconds_per_batch": t, "images_per_s": batch / t}
    return out


def to_training(model, gradient_checkpointing: bool) -> None:
    """The trainable weights in float32 and gradient checkpointing, as ``deqa.train`` prepares a LoRA model."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model.train()


def measure_step(model, processor, paths, images_per_step: int, device: str, warmup: int, reps: int) -> dict:
    """A bare transformers step on the batch deqa's collator makes of ``images_per_step`` images:
    the model's own loss over the answer tokens (level word included), backward, AdamW."""
    from deqa.collate import Collator, model_inputs
    from deqa.losses import IGNORE_INDEX

    images, levels, questions = image_batch(paths, images_per_step, seed=1)
    batch = Collator(processor, train=True, level_in_ce=True)(images, levels, questions)
    inputs = model_inputs(batch, device)
    shifted = batch["labels"]  # logits[t] predicts labels[t]; transformers shifts by itself
    labels = torch.full_like(shifted, IGNORE_INDEX)
    labels[:, 1:] = shifted[:, :-1]
    labels = labels.to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=2e-5, weight_decay=0.0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()

    reset_peak(device)
    try:
        times = timed(step, device, warmup, reps)
    except RuntimeError as exc:  # without checkpointing the recipe's batch may not fit: say so, go on
        if not is_oom(exc):
            raise
        optimizer.zero_grad(set_to_none=True)
        return {"images_per_step": images_per_step, "error": "out of memory"}
    t = statistics.median(times)
    result = {"images_per_step": images_per_step, "seconds_per_step": t, "images_per_s": images_per_step / t,
              "peak_gib": peak_gib(device), "step_seconds_all": times,
              "tokens_per_image": round(inputs["attention_mask"].sum().item() / images_per_step, 1)}
    return result  # the optimizer's state goes with this frame


# ---------------------------------------------------------------------------------------- subprocesses

class DeviceMemory:
    """The most device memory in use (all processes: ``torch.cuda.mem_get_info``) while the block
    runs, above what was in use when it began; sampled every 0.2 s. None on the CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak_gib = None

    def _used(self) -> int:
        free, total = torch.cuda.mem_get_info()
        return total - free

    def __enter__(self):
        if self.cuda:
            self.base, self.top, self.stop = self._used(), 0, threading.Event()
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(0.2):
            self.top = max(self.top, self._used())

    def __exit__(self, *exc):
        if self.cuda:
            self.stop.set()
            self.thread.join()
            self.peak_gib = max(0, self.top - self.base) / 2**30
        return False


def run_command(cmd: list[str], device: str, work: Path) -> dict:
    """Run ``cmd`` (a ``python -m deqa`` command), echoing its output; wall seconds, start and end
    on the wall clock, its output, the peak device memory it added and the command as the JSON
    shows it (``python -m deqa ...``, the scratch folder as WORK)."""
    print("+ " + " ".join(cmd), flush=True)
    with DeviceMemory(device) as memory:
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - t0
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:4])} failed with exit code {proc.returncode}")
    shown = " ".join(["python"] + cmd[1:]).replace(str(work), "WORK")
    return {"seconds": seconds, "started": started, "ended": started + seconds, "stdout": proc.stdout,
            "peak_device_gib": memory.peak_gib, "command": shown}


def loop_rates(rows: list[dict], total: int, save_every: int, skip: int, images_per_step: int,
               checkpoint_every: int) -> dict:
    """Steady-state rates from a run's log (one row per step with the cumulative training ``seconds``).

    The interval of step k is seconds[k] - seconds[k - 1]; the steps after an in-loop checkpoint
    (k - 1 a multiple of ``save_every``, below ``total``) also hold that checkpoint. Steady steps:
    the others after the first ``skip``. The checkpoint's own time is its interval less the mean
    steady step, spread over ``checkpoint_every`` steps in the whole-loop figure."""
    seconds = {r["step"]: r["seconds"] for r in rows if "seconds" in r}
    missing = [k for k in range(1, total + 1) if k not in seconds]
    if missing:
        raise SystemExit(f"the training log has no row for step {missing[0]} (expected one per step)")
    interval = {k: seconds[k] - seconds.get(k - 1, 0.0) for k in range(1, total + 1)}
    after_checkpoint = [k for k in interval if k > 1 and save_every and (k - 1) % save_every == 0]
    steady = [k for k in interval if k > skip and k not in after_checkpoint]
    if not steady:
        raise SystemExit(f"no steady-state step: {total} steps, {skip} skipped")
    step = statistics.mean(interval[k] for k in steady)
    checkpoint = (statistics.mean(interval[k] for k in after_checkpoint) - step) if after_checkpoint else 0.0
    checkpoint = max(checkpoint, 0.0)
    return {"steady_steps": steady, "checkpoint_steps": after_checkpoint,
            "step_seconds": [interval[k] for k in range(1, total + 1)],
            "steady_step_seconds_mean": step,
            "steady_step_seconds_median": statistics.median(interval[k] for k in steady),
            "checkpoint_seconds": checkpoint, "checkpoint_every_assumed": checkpoint_every,
            "images_per_step": images_per_step,
            "images_per_s_between_checkpoints": images_per_step / step,
            "images_per_s": images_per_step / (step + checkpoint / checkpoint_every)}


def run_training(work: Path, model_dir: Path, meta: Path, run_dir: Path, args, device: str) -> dict:
    from deqa.runlog import read_log

    cmd = [sys.executable, "-m", "deqa", "train", "--recipe", "official", "--model", str(model_dir),
           "--data", str(meta), "--out", str(run_dir), "--steps", str(args.steps), "--save-every",
           str(args.save_every), "--log-every", "1", "--eval-every", "-1", "--device", device, "--no-progress",
           "--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing"]
    done = run_command(cmd, device, work)
    config = json.loads((run_dir / "train_config.json").read_text())
    images_per_step = 2 * config["batch_size"] * config["grad_accum"]
    rows = read_log(run_dir)
    rates = loop_rates(rows, args.steps, args.save_every, args.skip_steps, images_per_step,
                       args.checkpoint_every)
    # train_config.json is written when everything is ready, just before the first step; the log's
    # last row right after the last step (no validation in this run)
    ready = (run_dir / "train_config.json").stat().st_mtime
    last_row = (run_dir / "metrics.jsonl").stat().st_mtime
    loop = rows[-1]["seconds"]
    return {"command": done["command"], "steps": args.steps, "save_every": args.save_every,
            "skip_steps": args.skip_steps, **rates,
            "startup_seconds": ready - done["started"], "loop_seconds": loop,
            "finish_seconds": done["ended"] - last_row, "total_seconds": done["seconds"],
            "peak_device_gib": done["peak_device_gib"], "mode": config["resolved"]["mode"],
            "trainable": config["resolved"]["trainable"], "lr": config["resolved"]["lr"],
            "gradient_checkpointing": config["gradient_checkpointing"]}


def run_scoring(work: Path, run_dir: Path, images_dir: Path, out_csv: Path, batch: int, device: str) -> dict:
    import pandas as pd

    cmd = [sys.executable, "-m", "deqa", "score", "--model", str(run_dir), str(images_dir), "--out", str(out_csv),
           "--batch-size", str(batch), "--device", device, "--no-progress"]
    done = run_command(cmd, device, work)
    found = SCORED_LINE.search(done["stdout"])
    if found is None:
        raise SystemExit("deqa score did not print 'scored N images in S s'")
    n, seconds = int(found.group(1)), float(found.group(2))
    scores = pd.read_csv(out_csv)["score"]
    if len(scores) != n or not scores.between(1, 5).all():
        raise SystemExit(f"deqa score wrote {len(scores)} rows for {n} images, or a score outside [1, 5]")
    return {"command": done["command"], "images": n, "batch": batch, "seconds": seconds,
            "images_per_s": n / seconds, "startup_seconds": done["seconds"] - seconds,
            "total_seconds": done["seconds"], "peak_device_gib": done["peak_device_gib"]}


# ---------------------------------------------------------------------------------------- main

def finite_ratio(a, b):
    return a / b if a and b and math.isfinite(a / b) else None


def add_headline(result: dict) -> None:
    """The figures the issue's targets read, at the top level of the JSON."""
    bare, train, score = result.get("bare", {}), result.get("train", {}), result.get("score", {})
    step = bare.get("step", {}).get("images_per_s")
    forward = bare.get("forward", {}).get("images_per_s")
    generate = bare.get("generate", {}).get("images_per_s")
    result.update({
        "whole_loop_images_per_s": train.get("images_per_s"), "bare_step_images_per_s": step,
        "score_images_per_s": score.get("images_per_s"), "bare_forward_images_per_s": forward,
        "generate_images_per_s": generate,
        "ratio_vs_bare_step": finite_ratio(train.get("images_per_s"), step),
        "ratio_vs_bare_forward": finite_ratio(score.get("images_per_s"), forward),
        "score_ratio_vs_generate": finite_ratio(score.get("images_per_s"), generate),
        "startup_seconds": {"train": train.get("startup_seconds"), "score": score.get("startup_seconds")},
        "peak_memory_gib": {"bare_step": bare.get("step", {}).get("peak_gib"),
                            "bare_forward": bare.get("forward", {}).get("peak_gib"),
                            "train_device": train.get("peak_device_gib"),
                            "score_device": score.get("peak_device_gib")},
    })
    result["targets"] = {k: {"at_least": v, "met": None if result[k] is None else result[k] >= v}
                         for k, v in TARGETS.items()}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny config of the same classes on CPU: the code path in seconds")
    p.add_argument("--steps", type=int, default=None, help="training steps of the run (default 10; dry run 6)")
    p.add_argument("--save-every", type=int, default=None,
                   help="in-loop checkpoint interval of the run (default 5; dry run 3)")
    p.add_argument("--skip-steps", type=int, default=2, help="first steps left out of the steady state (default 2)")
    p.add_argument("--checkpoint-every", type=int, default=250,
                   help="steps a long run trains between checkpoints, over which the whole-loop figure spreads "
                        "one checkpoint (default 250, about 10 minutes)")
    p.add_argument("--n-scenes", type=int, default=None,
                   help="synthetic scenes, 21 images each: all are scored (default 16; dry run 8)")
    p.add_argument("--score-batch", type=int, default=16, help="images per scoring forward (deqa score's default 16)")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                   help="train without gradient checkpointing (the recipe's 32 images of a 3B model need it on 80 GB)")
    p.add_argument("--work-dir", default=None, help="scratch folder for the model, data and run (default: a "
                                                     "temporary folder, removed at the end)")
    p.add_argument("--out", default=None, help="JSON file (default OUT_DIR/gpu_end_to_end_<gpu>.json)")
    p.add_argument("--out-dir", default=None, help="folder of the JSON (default benchmarks/results/; a dry run "
                                                    "writes only when --out or --out-dir is given)")
    args = p.parse_args(argv)
    defaults = {"steps": (10, 6), "save_every": (5, 3), "n_scenes": (16, 8)}
    for key, (gpu, dry) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, dry if args.dry_run else gpu)
    if args.steps <= args.skip_steps + 1 or not 0 < args.save_every < args.steps:
        p.error("--steps must exceed --skip-steps + 1, and --save-every must lie between 1 and --steps - 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    use_repository_checkout()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never wait for a hub
    if args.dry_run:
        device, dtype, dims = "cpu", torch.float32, TINY
        torch.set_num_threads(1)
        warmup, reps = 1, 2
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry-run to check the code path on CPU")
        device, dtype, dims = "cuda", torch.bfloat16, QWEN25_VL_3B
        warmup, reps = 2, 5
    name = gpu_name(device)
    out = out_path("gpu_end_to_end", name, args.dry_run, args.out, args.out_dir)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # a time limit: clean up
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="deqa-gpu-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    settings = recipe_settings()
    images_per_step = 2 * settings["batch_size"] * settings["grad_accum"]
    result = {"benchmark": "gpu_end_to_end", "device": name, "dry_run": args.dry_run, "complete": False,
              **versions(), "dtype": str(dtype).replace("torch.", ""), "attn_implementation": "sdpa",
              "model": f"Qwen2_5_VLForConditionalGeneration, random weights, {dims['name']}",
              "vocab_size": dims["vocab_size"], "image_size": dims["image_size"],
              "recipe": {k: settings[k] for k in ("mode", "lora_r", "lora_alpha", "lora_dropout", "train_vision",
                                                  "batch_size", "grad_accum", "lr", "label", "method",
                                                  "reference_labels", "use_fidelity", "use_kl", "closed_set")},
              "images_per_step": images_per_step, "gradient_checkpointing": args.gradient_checkpointing}

    def save(stage: str) -> None:
        result["stage"] = stage
        result["elapsed_seconds"] = time.perf_counter() - t_start
        add_headline(result)
        if out is not None:
            write_json(out, result)

    try:
        data_dir = work / "data"
        synth = subprocess.Popen([sys.executable, "-m", "deqa", "synth", str(data_dir), "--n-scenes",
                                  str(args.n_scenes), "--size", str(dims["image_size"]), "--datasets", "synth-koniq",
                                  "--no-progress"], stdout=subprocess.DEVNULL)
        t0 = time.perf_counter()
        model_dir = work / "model"
        model, processor = build_model(dims, model_dir, device, dtype)
        result["build_and_save_seconds"] = time.perf_counter() - t0
        result["params_total"] = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        if synth.wait() != 0:
            raise SystemExit("deqa synth failed")
        result["data_wait_seconds"] = time.perf_counter() - t0
        meta = data_dir / "synth-koniq" / "meta.csv"
        images_dir = meta.parent / "images"
        paths = sorted(images_dir.glob("*.png"))
        save("built")

        from deqa.lora import apply_lora

        model = apply_lora(model, r=settings["lora_r"], alpha=settings["lora_alpha"],
                           dropout=settings["lora_dropout"], train_vision=settings["train_vision"])
        result["lora_targets"] = adapter_targets(model)
        bare = result["bare"] = measure_forward(model, processor, paths, args.score_batch, device, warmup, reps)
        to_training(model, args.gradient_checkpointing)
        result["params_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        bare["step"] = measure_step(model, processor, paths, images_per_step, device, max(1, warmup // 2),
                                    max(2, reps - 2))
        save("bare")
        del model
        gc.collect()
        if device.startswith("cuda"):
            sync(device)
            torch.cuda.empty_cache()

        run_dir = work / "run"
        result["parent_allocated_gib_while_subprocesses_run"] = (
            torch.cuda.memory_allocated() / 2**30 if device.startswith("cuda") else None)
        result["train"] = run_training(work, model_dir, meta, run_dir, args, device)
        result["same_trainable_as_bare"] = result["train"]["trainable"] == result["params_trainable"]
        save("train")
        result["score"] = run_scoring(work, run_dir, images_dir, work / "scores.csv", args.score_batch, device)
        result["complete"] = True
        save("done")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(summary(result))
    if out is not None:
        print(f"wrote {out}")
    return 0


def summary(result: dict) -> str:
    def f(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    lines = ["dry run: code path check only, CPU timings are not meaningful"] if result["dry_run"] else []
    train, score = result["train"], result["score"]
    lines += [
        f"{result['device']}  {result['model']}  {result['params_total'] / 1e6:,.1f} M params, "
        f"trainable {result['params_trainable'] / 1e6:,.1f} M, {result['images_per_step']} images/step, "
        f"checkpointing {result['gradient_checkpointing']}",
        f"train: whole loop {f(result['whole_loop_images_per_s'])} img/s "
        f"(steps {f(train['images_per_s_between_checkpoints'])} img/s, checkpoint {f(train['checkpoint_seconds'])} s per {train['checkpoint_every_assumed']} steps), "
        f"bare step {f(result['bare_step_images_per_s'])} img/s -> x{f(result['ratio_vs_bare_step'], '.2f')}; "
        f"start-up {f(train['startup_seconds'])} s",
        f"score: {f(score['images_per_s'])} img/s, bare forward {f(result['bare_forward_images_per_s'])} img/s "
        f"-> x{f(result['ratio_vs_bare_forward'], '.2f')}; generate {f(result['generate_images_per_s'])} img/s -> "
        f"x{f(result['score_ratio_vs_generate'], '.2f')}; start-up {f(score['startup_seconds'])} s",
        f"peak GiB: bare step {f(result['peak_memory_gib']['bare_step'])}, train {f(train['peak_device_gib'])} "
        f"(device, above idle), score {f(score['peak_device_gib'])}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
