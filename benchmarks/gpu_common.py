"""What the two GPU benchmarks share (``gpu_throughput.py``, ``gpu_end_to_end.py``): timing with
device synchronisation, peak memory, the card's name, the versions, where the JSON goes and how it
is written. Not a test: the numbers depend on the machine. Explained in notebook 04 (GPUs).
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent


def use_repository_checkout() -> None:
    """Make ``import deqa`` find this checkout when the package is not installed (a GPU machine
    where nothing can be installed), for this process and the ``python -m deqa`` it starts."""
    root = str(REPO)
    if root not in sys.path:
        sys.path.insert(0, root)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + parts)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, warmup: int, reps: int) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed ones, the device synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str):
    """Peak memory allocated by tensors since ``reset_peak`` (None on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def gpu_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return platform.processor() or "cpu"


def versions() -> dict:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "python": sys.version.split()[0], "cuda": torch.version.cuda}


def adapter_targets(model) -> dict:
    """The LoRA placement of a peft-wrapped model, for the JSON."""
    cfg = model.peft_config["default"]
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else sorted(cfg.target_modules)
    return {"target_modules": targets, "modules_to_save": sorted(cfg.modules_to_save or [])}


def out_path(stem: str, device_name: str, dry_run: bool, out=None, out_dir=None):
    """Where a benchmark writes its JSON: ``out`` when given; else ``OUT_DIR/STEM_<card>.json``
    (``STEM_dry-run.json`` for a dry run), OUT_DIR defaulting to benchmarks/results/ for a real run;
    a dry run without ``out`` or ``out_dir`` writes nothing (None)."""
    if out is not None:
        return Path(out)
    if dry_run and out_dir is None:
        return None
    tag = "dry-run" if dry_run else re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-")
    return Path(out_dir if out_dir is not None else RESULTS) / f"{stem}_{tag}.json"


def write_json(path, result: dict) -> None:
    """``result`` as indented JSON, replacing ``path`` atomically (``deqa.outfile.write_text_atomic``)."""
    from deqa.outfile import write_text_atomic

    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
