"""What one process keeps between training runs and scorings of the same files: the processor's
tensors of each image (bounded in bytes), which image files were found readable, and the labelled
metadata tables. Chapter 06's ablation trains dozens of short runs in each worker process on the same
data sets; without this memory every run would open, decode and preprocess the same images and read
the same metadata again. Explained in notebook 06 (the time of its grid); the batches it helps build
are notebook 04's.

Nothing here changes a result: an entry is keyed by everything it was made from, and a file by its
path as given, device, inode, size and modification and change times (ns), so that a file written
again is read again; a file changed in the last ``SETTLE_SECONDS`` is not kept (a rewrite within one
tick of the file system's clock could keep its times); a metadata file is also keyed by a hash of
its bytes.

The image store holds at most ``DEQA_IMAGE_CACHE_MB`` MiB (read at each use; default
``DEFAULT_IMAGE_CACHE_MB`` = 1024 MiB per process: the largest arm of chapter 06, 6,080 training and
2,384 test images at 96 px, takes about 0.9 GiB; a 448-px model's images, about 2.4 MB each, would
fill it with some 400),
dropping the least recently used images beyond it; 0 turns it off. ``clear()`` empties everything
(tests use it to start cold).
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict

#: the image store's default budget per process, in MiB (``DEQA_IMAGE_CACHE_MB`` overrides it)
DEFAULT_IMAGE_CACHE_MB = 1024
_MIB = 1 << 20
#: a file modified or changed more recently than this is read again at every use, never kept
SETTLE_SECONDS = 2.0


def file_key(path) -> tuple:
    """What identifies the content of the file ``path`` without reading it: its path as given, device,
    inode, size, and modification and change times in ns (a rewrite changes the change time). Raises
    ``OSError`` when the file cannot be examined."""
    st = os.stat(path)
    return (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(key: tuple) -> bool:
    """Whether the file of ``file_key`` ``key`` last changed more than ``SETTLE_SECONDS`` ago, so that
    any later change shows in its times."""
    return time.time_ns() - max(key[4], key[5]) > SETTLE_SECONDS * 1e9


def content_key(path) -> tuple:
    """``file_key`` plus a hash of the file's bytes (for small files read whole anyway: metadata)."""
    key = file_key(path)
    with open(path, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()
    return key + (digest,)


class ImageStore:
    """Prepared images (``{name: tensor}`` each) by key, least recently used dropped beyond ``budget``
    bytes. Also remembers, per processor fingerprint, whether batches assembled from its single-image
    tensors were checked equal to the processor's own batch (``verified``) or found to differ
    (``refused``: that processor's batches are never assembled from the store again)."""

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.verified: set = set()
        self.refused: set = set()
        self.hits = self.misses = self.evictions = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key, value, nbytes: int, budget: int) -> None:
        """Keep ``value`` (``nbytes`` bytes) unless it alone exceeds ``budget``; drop the least recently
        used entries until the store fits ``budget``."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes <= budget:
                self._entries[key] = (value, nbytes)
                self._bytes += nbytes
            while self._bytes > budget and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.verified.clear()
            self.refused.clear()
            self.hits = self.misses = self.evictions = 0


IMAGES = ImageStore()
#: ``file_key`` of every image file found readable in this process (``deqa.trainset.check_readable``)
READABLE: set = set()
#: labelled metadata tables by their files' ``content_key`` and the labelling settings (``deqa.trainset``),
#: the ``MAX_TABLES`` most recently used
TABLES: OrderedDict = OrderedDict()
MAX_TABLES = 32


def image_budget() -> int:
    """The image store's budget in bytes: ``DEQA_IMAGE_CACHE_MB`` MiB, or ``DEFAULT_IMAGE_CACHE_MB``."""
    from .errors import DeqaError

    text = os.environ.get("DEQA_IMAGE_CACHE_MB", "").strip()
    if not text:
        return DEFAULT_IMAGE_CACHE_MB * _MIB
    try:
        mb = float(text)
    except ValueError:
        raise DeqaError(f"DEQA_IMAGE_CACHE_MB must be a number of MiB (0: off), got {text!r}") from None
    if not 0 <= mb < float("inf"):
        raise DeqaError(f"DEQA_IMAGE_CACHE_MB must be a number of MiB (0: off), got {text!r}")
    return int(mb * _MIB)


def remembered_tables(key):
    """The labelled tables kept under ``key`` (None when absent)."""
    found = TABLES.get(key)
    if found is not None:
        TABLES.move_to_end(key)
    return found


def remember_tables(key, tables) -> None:
    TABLES[key] = tables
    while len(TABLES) > MAX_TABLES:
        TABLES.popitem(last=False)


def clear() -> None:
    """Forget everything this process kept (images, readable files, labelled tables)."""
    IMAGES.clear()
    READABLE.clear()
    TABLES.clear()
