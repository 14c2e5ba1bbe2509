"""Writing a result file without losing anything: ``--out`` is checked before the work starts, never
names one of the inputs, and is replaced atomically (a failed write leaves the previous file whole).
Used by ``python -m deqa score`` (``deqa.infer``) and for the ablation's results (``deqa.ablation``)."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .errors import DeqaError


def check_out_file(out, inputs=(), refuse_suffixes=()) -> Path:
    """``out`` as a Path, after the checks that can be made before any work: not a folder, not under
    a file, in a folder that can be written (or created), not one of ``inputs`` (the same file by
    any path), and not ending in one of ``refuse_suffixes`` (``--out photo.jpg`` would turn a photo
    into CSV). Raises DeqaError with a one-line message."""
    out = Path(out).expanduser()
    if out.suffix.lower() in refuse_suffixes:
        raise DeqaError(f"--out {out}: an image file name; the scores are CSV text, give a name such as "
                        f"{out.with_suffix('.csv')}")
    if out.is_dir():
        raise DeqaError(f"--out {out} is a folder; give a file name such as {out / 'scores.csv'}")
    folder = out.absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DeqaError(f"--out {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeqaError(f"--out {out}: cannot write in {folder} (permission denied)")
    if out.exists():
        target = os.stat(out)
        for item in inputs:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(item), target):
                    raise DeqaError(f"--out {out} is one of the input images ({item}); choose another file")
    return out


def write_text_atomic(out, text: str) -> None:
    """Write ``text`` (UTF-8; file names that are not valid UTF-8 keep their original bytes) to a
    temporary file next to ``out``, flush it to disk and rename it over ``out``: readers see the old
    file or the new one, never a part. On failure the temporary file is removed and DeqaError says
    why; an existing ``out`` keeps its content (and its permissions when replaced)."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    created = False
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if out.is_file():
            shutil.copymode(out, tmp)
        os.replace(tmp, out)
        created = False
    except OSError as exc:
        raise DeqaError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
