"""Checkpoints and saved models of a training run, written so that a crash at any moment leaves a
loadable one: each is written to ``NAME.tmp`` and swapped in with renames. A checkpoint holds
``model/`` (loadable by ``deqa.mllm.load``) and ``trainer_state.pt`` (optimizer, schedule, RNG
state and position in the pair stream), from which ``--resume`` continues bit for bit.
Explained in notebook 04 (``04_finetune_mllm``).
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from .mllm import quiet_transformers

CHECKPOINT = "checkpoint"
STATE_FILE = "trainer_state.pt"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def unwrap(model):
    return getattr(model, "module", model)


def save_model(model, processor, out_dir: Path, merge: bool = False) -> Path:
    """``save_pretrained`` of the model (a LoRA adapter + modules_to_save, or merged with ``merge``)
    and of the processor, into ``out_dir`` (written to a temporary folder first, then swapped in)."""
    model = unwrap(model)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if merge and hasattr(model, "merge_and_unload"):
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    with quiet_transformers():
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    _swap_in(tmp, out_dir)
    return out_dir


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` with renames only: a crash leaves either the old or the new one."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(run_dir: Path, model, processor, optimizer, scheduler, state: dict) -> Path:
    """``run_dir/checkpoint``: ``model/`` (loadable) + ``trainer_state.pt``, swapped in atomically."""
    final = Path(run_dir) / CHECKPOINT
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with quiet_transformers():
        unwrap(model).save_pretrained(tmp / "model")
        processor.save_pretrained(tmp / "model")
    torch.save({**state, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
               tmp / STATE_FILE)
    _swap_in(tmp, final)
    return final


def find_checkpoint(run_dir) -> Path | None:
    """The run's checkpoint folder (or the previous one if a crash hit between two renames)."""
    for name in (CHECKPOINT, CHECKPOINT + ".old"):
        p = Path(run_dir) / name
        if (p / STATE_FILE).is_file():
            return p
    return None
