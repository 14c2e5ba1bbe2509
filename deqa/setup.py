"""The one setup cell every notebook runs: seed, device (cuda -> mps -> cpu), paths, versions."""
from __future__ import annotations

import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths


@dataclass
class Setup:
    seed: int
    device: str
    smoke: bool
    figures: Path
    data: Path
    runs: Path
    real_iqa: Path | None


def pick_device() -> str:
    """``cuda`` if available, else ``mps``, else ``cpu`` (torch is imported only if installed)."""
    try:
        import torch
    except ImportError:  # chapters 01-02 do not need torch
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: str = "auto") -> str:
    """``auto`` -> ``pick_device()``; any other name (``cpu``, ``cuda``, ``cuda:1``, ``mps`` ...) as
    given, once checked: a name torch does not know, or a device this machine does not have (CUDA
    without a GPU or a CUDA build of torch, ``cuda:7`` with two GPUs), raises DeqaError."""
    if name == "auto":
        return pick_device()
    import torch

    from .errors import DeqaError

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise DeqaError(f"--device {name}: not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise DeqaError(f"--device {name}: CUDA is not available ({why}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeqaError(f"--device {name}: there is no GPU {device.index} (this machine has {count}: "
                            f"cuda:0 .. cuda:{count - 1})")
        return name
    backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise DeqaError(f"--device {name}: {device.type} is not available here; use --device cpu or auto")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def setup(seed: int = 0, torch_needed: bool = True, quiet: bool = False) -> Setup:
    """Seed everything, pick the device, resolve the paths and print the versions in use."""
    seed_everything(seed)
    device = pick_device() if torch_needed else "cpu"
    real = paths.real_iqa_dir() if paths.real_iqa_available() else None
    s = Setup(seed=seed, device=device, smoke=paths.smoke(), figures=paths.figures_dir(),
              data=paths.data_dir(), runs=paths.runs_dir(), real_iqa=real)
    s.figures.mkdir(parents=True, exist_ok=True)
    if not quiet:
        import matplotlib
        import pandas
        import scipy
        versions = {"python": platform.python_version(), "numpy": np.__version__,
                    "scipy": scipy.__version__, "pandas": pandas.__version__,
                    "matplotlib": matplotlib.__version__}
        if torch_needed:
            import torch
            versions["torch"] = torch.__version__
            if "transformers" in sys.modules:  # report it only where the chapter uses it
                versions["transformers"] = sys.modules["transformers"].__version__
        print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"device: {device} | seed: {seed} | smoke mode: {s.smoke}")
        print(f"real annotations: {'found' if real else 'not found (synthetic raters are used)'}")
    return s


def progress(iterable=None, **kwargs):
    """A progress bar (tqdm, same arguments; ``disable=True`` gives a silent one): widgets in an
    interactive notebook, plain text when the notebook is executed by ``deqa.nbrun``
    (``DEQA_TEXT_PROGRESS=1``), so that the committed outputs show the bars' final state rather
    than an empty widget. Every long loop of the package draws its bar with this."""
    import os

    if os.environ.get("DEQA_TEXT_PROGRESS"):
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, **kwargs)
