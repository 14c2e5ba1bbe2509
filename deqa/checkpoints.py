"""A training run's folder on disk: what it holds, the lock that keeps it to one run at a time, and
the checkpoints and models written so that a crash at any moment leaves a loadable one (each is
written to ``NAME.tmp``, flushed to the disk and swapped in with renames). A checkpoint holds
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

from .errors import DeqaError
from .mllm import quiet_transformers
from .runlog import METRICS_LOG

CHECKPOINT = "checkpoint"
STATE_FILE = "trainer_state.pt"
#: the run's settings; not ``config.json``, which would make the run folder look like a model folder
RUN_CONFIG = "train_config.json"
LOCK_FILE = "train.lock"
#: the embedded recipe's stage-1 log (``deqa.recipe``): a folder holding it is a run folder too
STAGE1_LOG = "stage1.json"
#: everything ``train`` and the embedded recipe write into a run folder
RUN_CONTENT = {"base", "stage1", STAGE1_LOG, "stages.json", "model", "model.tmp", "model.old", CHECKPOINT,
               CHECKPOINT + ".tmp", CHECKPOINT + ".old", RUN_CONFIG, METRICS_LOG, LOCK_FILE}


def check_run_folder(run_dir: Path) -> None:
    """Refuse an ``--out`` that is a file, lies under a file, or is a folder deqa did not write: one
    holding anything but a run's files, or a run's names without its settings or stage-1 log (a
    user's folder that happens to hold ``model/``). Nothing of a user's is ever replaced."""
    run_dir = Path(run_dir)
    for parent in [run_dir, *run_dir.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == run_dir else f"lies under the file {parent}"
            raise DeqaError(f"--out {run_dir} {where}: give a folder for the run")
    if not run_dir.is_dir():
        return
    entries = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE)
    stray = [name for name in entries if name not in RUN_CONTENT]
    ours = not entries or (run_dir / RUN_CONFIG).is_file() or (run_dir / STAGE1_LOG).is_file()
    if stray or not ours:
        shown = ", ".join((stray or entries)[:3])
        raise DeqaError(f"{run_dir} is not a deqa run folder (it holds {shown}): choose a new or empty folder "
                        "for --out; deqa never writes over files it did not write")


class RunLock:
    """An exclusive lock on a run folder (``train.lock``, ``flock``), held while a run writes into it:
    a second ``train`` into the same folder refuses. The kernel drops the lock when its process dies,
    so a killed run never blocks ``--resume``. (Without ``fcntl``, on Windows, nothing is locked.)"""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.file = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            self.file = None
            raise DeqaError(f"{self.path.parent} is in use by another training run ({holder}): wait for it to "
                            "end, or choose another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}")
        self.file.flush()
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing drops the flock
            self.file = None


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


def _fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` and the folders themselves to the disk (before a rename makes
    them the checkpoint, so that a power cut cannot leave empty files behind the new name)."""
    for path in sorted(folder.rglob("*")) + [folder]:
        _fsync_dir(path) if path.is_dir() else _fsync_file(path)


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` with renames only, so that a crash at any moment leaves a complete
    one: the new (``final``) or the previous (``final.old``, which ``find_checkpoint`` also accepts).
    When ``final`` is missing (a crash hit between the two renames of an earlier swap), ``final.old``
    is the only complete copy and stays until the new one is in place."""
    _fsync_tree(tmp)
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the names a rename changed); a file system that cannot is skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def load_checkpoint(run_dir) -> tuple[Path, dict]:
    """The newest checkpoint of the run that is intact (its trainer state and weight files read back)
    and that state; a damaged one is passed over for the previous one, and when none is usable the
    DeqaError says what is wrong with it."""
    from safetensors import safe_open

    problem = None
    for name in (CHECKPOINT, CHECKPOINT + ".old"):
        folder = Path(run_dir) / name
        if not (folder / STATE_FILE).is_file():
            continue
        try:
            state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
            for weights in (folder / "model").glob("*.safetensors"):
                with safe_open(str(weights), framework="pt"):
                    pass
        except Exception as exc:  # noqa: BLE001 - any damage: try the previous checkpoint
            problem = f"{folder}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            continue
        return folder, state
    if problem is None:
        raise DeqaError(f"resume: no checkpoint in {run_dir}")
    raise DeqaError(f"resume: the checkpoint is damaged ({problem}); start the run again without --resume "
                    "in a new folder")
