"""The embedded synthetic IQA data sets: drawn scenes, known distortions, simulated raters.
Explained in notebook 04.

Every image is a procedurally drawn scene (gradients, textured shapes, hard edges, thin lines and
dots, so that blur and compression have something to destroy) degraded by one of four distortions
at one of five strengths, or left pristine. Its latent quality is known by construction: a curve per
distortion family plus a small effect of the scene's content. Simulated raters (``deqa.raters``) turn
it into a rating histogram, a MOS and a std, exactly the data a real subjective study produces.

Each data set's meta.csv has the common columns (image, mos, std, dataset, split, c1..c5, n_ratings)
plus ``distortion``, ``level``, ``scene`` (for per-family analysis) and ``quality``, the latent
1-5 quality the raters saw through their bias and noise (the ceiling any model can reach).

Several data sets with different scales and rater pools are written (``make_synthetic``), so that
co-training across scales (the fidelity loss of notebook 03) has something to do:

| name          | scale               | raters per image | rater pool                          |
|---------------|---------------------|------------------|-------------------------------------|
| synth-koniq   | MOS on 1-5          | 25               | 120 raters, small bias, modest noise |
| synth-spaq    | MOS on 0-100        | 12               | 40 raters, larger bias and noise     |
| synth-dmos    | DMOS on 0-100 (lower is better, optional) | 15 | 60 raters                  |
| synth-high    | MOS on 0-100, only latent quality >= 3.4 (optional) | 20 | 80 raters         |
| synth-low     | DMOS on 0-100, only latent quality <= 2.4 (optional) | 20 | 80 raters        |

The last two cover only part of the quality range (``DatasetSpec.quality_band``): rescaled on their
own min and max, the same quality gets another label there than in a full-range set, the case the
fidelity loss exists for (notebook 06).

Command line: ``python -m deqa synth OUT_DIR [--n-scenes N] [--size S] [--seed K] [--smoke]``.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from . import raters
from .errors import DeqaError

DISTORTIONS: tuple[str, ...] = ("blur", "noise", "jpeg", "contrast")
N_LEVELS = 5  # distortion strengths 1..5; level 0 is the pristine image
REFERENCE_SIZE = 96  # the strengths below are in pixels of a 96-px image

# Strength of each family at levels 1..5 (index level - 1).
BLUR_RADIUS = (0.6, 1.1, 1.7, 2.3, 3.0)  # Gaussian sigma, pixels at 96 px
NOISE_SD = (0.03, 0.06, 0.10, 0.16, 0.25)  # white noise sd, fraction of the 0-255 range
JPEG_QUALITY = (60, 35, 20, 10, 5)  # PIL quality, 4:4:4
CONTRAST_FACTOR = (0.8, 0.62, 0.46, 0.32, 0.2)  # remaining fraction of the deviation from the mean

# Latent quality q = Q_PRISTINE - Q_DROP * (level / 5) ** shape[family]  (+ content effect).
Q_PRISTINE = 4.7
Q_DROP = 3.6
FAMILY_SHAPE = {"blur": 0.8, "noise": 1.0, "jpeg": 1.3, "contrast": 1.1}
CONTENT_EFFECT = 0.25  # at most +-0.25 on the 1-5 scale, from the scene's detail and colour

SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test, by scene
SPLITS = ("train", "val", "test")
_SCALES = ("1-5", "0-100", "dmos-0-100")
_SEED_TAGS = {"synth": 1, "pretrain": 2, "noise": 3, "ratings": 4, "split": 5}
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """One synthetic data set: its name, score scale and rater pool, and optionally the band of latent
    quality (1-5, both ends included) its images are kept from (None: the whole range)."""

    name: str
    n_raters: int
    n_pool: int
    bias_sd: float
    noise_sd: float
    scale: str  # "1-5", "0-100" or "dmos-0-100"
    quality_band: tuple[float, float] | None = None

    def __post_init__(self):
        if self.scale not in _SCALES:
            raise DeqaError(f"unknown scale {self.scale!r}; expected one of {', '.join(_SCALES)}")
        band = self.quality_band
        if band is not None and not (len(band) == 2 and 1.0 <= band[0] < band[1] <= 5.0):
            raise DeqaError(f"quality_band must be (lo, hi) with 1 <= lo < hi <= 5, got {band}")


DATASETS: dict[str, DatasetSpec] = {
    "synth-koniq": DatasetSpec("synth-koniq", n_raters=25, n_pool=120, bias_sd=0.2, noise_sd=0.5, scale="1-5"),
    "synth-spaq": DatasetSpec("synth-spaq", n_raters=12, n_pool=40, bias_sd=0.45, noise_sd=0.65, scale="0-100"),
    "synth-dmos": DatasetSpec("synth-dmos", n_raters=15, n_pool=60, bias_sd=0.3, noise_sd=0.55, scale="dmos-0-100"),
    "synth-high": DatasetSpec("synth-high", n_raters=20, n_pool=80, bias_sd=0.3, noise_sd=0.55, scale="0-100",
                              quality_band=(3.4, 5.0)),
    "synth-low": DatasetSpec("synth-low", n_raters=20, n_pool=80, bias_sd=0.3, noise_sd=0.55, scale="dmos-0-100",
                             quality_band=(1.0, 2.4)),
}
DEFAULT_DATASETS: tuple[str, ...] = ("synth-koniq", "synth-spaq")
DEFAULT_N_SCENES = 150
SMOKE_N_SCENES = 8


def _rng(tag: str, *keys: int) -> np.random.Generator:
    """An independent generator per (purpose, seed, index...): scenes for the data sets and scenes
    for pre-training never share a stream."""
    seed, *rest = keys
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SEED_TAGS[tag], *map(int, rest))))


# --------------------------------------------------------------------------------------------
# Scenes


def _smooth_mask(signed_distance: np.ndarray, px: float) -> np.ndarray:
    """Coverage of a shape from its signed distance (negative inside), anti-aliased over one pixel."""
    return np.clip(0.5 - signed_distance / px, 0.0, 1.0)


def _fill(rng, x, y, size) -> np.ndarray:
    """The paint of one shape: flat colour, a colour ramp, stripes, a checkerboard or fine grating."""
    c0 = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    kind = rng.choice(["flat", "ramp", "stripes", "checker", "grating"], p=[0.2, 0.2, 0.25, 0.15, 0.2])
    if kind == "flat":
        return c0
    c1 = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    a = rng.uniform(0, np.pi)
    u = x * np.float32(np.cos(a)) + y * np.float32(np.sin(a))
    if kind == "ramp":
        t = (u - u.min()) / max(np.ptp(u), 1e-6)
    elif kind == "stripes":
        period = rng.uniform(4, 12) / size
        t = (np.mod(u / period, 1.0) < 0.5).astype(np.float32)
    elif kind == "checker":
        cell = rng.uniform(3, 9) / size
        v = -x * np.float32(np.sin(a)) + y * np.float32(np.cos(a))
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    else:  # a fine sinusoidal grating: 2.5 to 4 pixels per cycle, the first thing blur removes
        period = rng.uniform(2.5, 4.0) / size
        t = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi / period) * u)
    return c0 + (c1 - c0) * t[..., None]


def _box(cx: float, cy: float, radius: float, size: int) -> tuple[slice, slice]:
    """Rows and columns of the pixels within ``radius`` (plus 2 px) of (cx, cy), in [0, 1] units."""
    lo_x, hi_x = int(max((cx - radius) * size - 2, 0)), int(min((cx + radius) * size + 3, size))
    lo_y, hi_y = int(max((cy - radius) * size - 2, 0)), int(min((cy + radius) * size + 3, size))
    return slice(lo_y, max(hi_y, lo_y)), slice(lo_x, max(hi_x, lo_x))


def render_scene(rng: np.random.Generator, size: int = REFERENCE_SIZE) -> Image.Image:
    """Draw one random scene (RGB, ``size`` x ``size``): a gradient background with soft texture,
    4-8 shapes (discs, rotated rectangles, triangles, rings) painted flat, ramped, striped,
    checkered or finely grated, then thin lines and small dots. Pure numpy, a few ms at 96 px."""
    px = 1.0 / size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * np.float32(px)
    c0, c1 = rng.uniform(0.05, 0.95, (2, 3)).astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    t = x * np.float32(np.cos(a)) + y * np.float32(np.sin(a))
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    # soft low-frequency texture (clouds)
    for _ in range(2):
        fx, fy = rng.uniform(1, 5, 2)
        amp, phase = rng.uniform(0.03, 0.08), rng.uniform(0, 6.3)
        img += (np.float32(amp) * np.sin(np.float32(2 * np.pi * fx) * x + np.float32(2 * np.pi * fy) * y
                                         + np.float32(phase)))[..., None]

    for _ in range(int(rng.integers(4, 9))):
        kind = rng.choice(["disc", "rect", "triangle", "ring"])
        cx, cy = rng.uniform(0.05, 0.95, 2)
        r = rng.uniform(0.08, 0.3)
        rows, cols = _box(cx, cy, 1.42 * r, size)  # every shape lies within 1.42 r of its centre
        xs, ys = x[rows, cols], y[rows, cols]
        if kind in ("disc", "ring"):
            d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) - r
            if kind == "ring":
                d = np.abs(d + r * 0.3) - r * rng.uniform(0.1, 0.3)
        elif kind == "rect":
            ang = rng.uniform(0, np.pi)
            u = (xs - cx) * np.cos(ang) + (ys - cy) * np.sin(ang)
            v = -(xs - cx) * np.sin(ang) + (ys - cy) * np.cos(ang)
            hw, hh = r * rng.uniform(0.4, 1.0, 2)
            d = np.maximum(np.abs(u) - hw, np.abs(v) - hh)
        else:
            angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
            vx, vy = cx + r * np.cos(angles), cy + r * np.sin(angles)
            d = np.full_like(xs, -np.inf)
            for i in range(3):  # signed distance to each edge's line (counter-clockwise vertices)
                ex, ey = vx[(i + 1) % 3] - vx[i], vy[(i + 1) % 3] - vy[i]
                n = np.hypot(ex, ey)
                d = np.maximum(d, ((xs - vx[i]) * ey - (ys - vy[i]) * ex) / n)
        alpha = _smooth_mask(d.astype(np.float32), px)[..., None]
        patch = img[rows, cols]
        img[rows, cols] = patch + (_fill(rng, xs, ys, size) - patch) * alpha

    # fine detail: thin lines (about 1 px wide) and small dots
    for _ in range(int(rng.integers(2, 6))):
        x0, y0, x1, y1 = rng.uniform(0, 1, 4)
        rows, cols = _box((x0 + x1) / 2, (y0 + y1) / 2, max(abs(x1 - x0), abs(y1 - y0)) / 2 + px, size)
        xs, ys = x[rows, cols], y[rows, cols]
        ex, ey = x1 - x0, y1 - y0
        length2 = ex * ex + ey * ey + 1e-9
        s = np.clip(((xs - x0) * ex + (ys - y0) * ey) / length2, 0, 1)
        d = np.hypot(xs - x0 - s * ex, ys - y0 - s * ey) - rng.uniform(0.4, 0.9) * px
        alpha = _smooth_mask(d.astype(np.float32), px)[..., None]
        patch = img[rows, cols]
        img[rows, cols] = patch + (rng.uniform(0, 1, 3).astype(np.float32) - patch) * alpha
    n_dots = int(rng.integers(10, 40))
    dots = rng.uniform(0, 1, (n_dots, 2))
    colours = rng.uniform(0, 1, (n_dots, 3))
    ix = np.clip((dots * size).astype(int), 0, size - 2)
    for (i, j), c in zip(ix, colours):
        img[j : j + 2, i : i + 2] = c
    return Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# Distortions


def _check_kind_level(kind: str, level: int) -> int:
    if kind not in DISTORTIONS and not (kind == "pristine" and int(level) == 0):
        raise DeqaError(f"unknown distortion {kind!r}; expected one of {', '.join(DISTORTIONS)}")
    level = int(level)
    if not 0 <= level <= N_LEVELS:
        raise DeqaError(f"distortion level must be in 0..{N_LEVELS} (0 = pristine), got {level}")
    return level


def distort(img: Image.Image, kind: str, level: int, rng: np.random.Generator | None = None,
            scale: float = 1.0) -> Image.Image:
    """Apply distortion ``kind`` at ``level`` (0 = pristine copy, 1..5 = mild..severe) to an RGB image.

    Strengths are those of a 96-px image; ``scale`` multiplies the spatial ones (blur radius, noise
    grain, JPEG block size) for larger images (see ``degrade_photo``). ``rng`` drives the noise.
    """
    level = _check_kind_level(kind, level)
    img = img.convert("RGB")
    if level == 0:
        return img.copy()
    i = level - 1
    scale = float(scale)
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(BLUR_RADIUS[i] * scale))
    if kind == "contrast":
        a = np.asarray(img, dtype=np.float32)
        mean = a.mean()
        out = mean + CONTRAST_FACTOR[i] * (a - mean)
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
    if kind == "noise":
        rng = rng if rng is not None else np.random.default_rng(0)
        w, h = img.size
        grain = max(int(round(scale)), 1)  # noise cells of `grain` pixels, so it survives downscaling
        gh, gw = -(-h // grain), -(-w // grain)
        noise = rng.standard_normal((gh, gw, 3)).astype(np.float32) * (NOISE_SD[i] * 255)
        noise = np.repeat(np.repeat(noise, grain, axis=0), grain, axis=1)[:h, :w]
        out = np.asarray(img, dtype=np.float32) + noise
        return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")
    # jpeg: for large images compress a copy downscaled by `scale`, so blocks are relative to the size
    w, h = img.size
    small = img if scale < 1.5 else img.resize((max(8, round(w / scale)), max(8, round(h / scale))), Image.BICUBIC)
    buffer = io.BytesIO()
    # 4:4:4 (no chroma subsampling): the loss then grows with the level, not with colour detail alone
    small.save(buffer, format="JPEG", quality=JPEG_QUALITY[i], subsampling=0)
    out = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return out if out.size == (w, h) else out.resize((w, h), Image.BICUBIC)


def degrade_photo(img: Image.Image, kind: str, level: int, rng: np.random.Generator | int | None = 0,
                  reference_size: int = REFERENCE_SIZE) -> Image.Image:
    """The same distortions applied to a real photograph, with spatial strengths relative to its
    size (a photo whose shorter side is 4 x ``reference_size`` gets 4 x the blur radius, noise grain
    and JPEG block size), so that it looks degraded alike once resized for the model."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return distort(img, kind, level, rng, scale=min(img.size) / reference_size)


# --------------------------------------------------------------------------------------------
# Latent quality


def family_quality(kind, level) -> np.ndarray:
    """Latent quality of distortion ``kind`` at ``level`` on 1-5, before the content effect:
    q = 4.7 - 3.6 (level / 5) ** shape, with shape 0.8 (blur), 1.0 (noise), 1.3 (JPEG), 1.1 (contrast)."""
    kind = np.atleast_1d(np.asarray(kind))
    level = np.atleast_1d(np.asarray(level, dtype=float))
    shape = np.array([FAMILY_SHAPE.get(str(k), 1.0) for k in kind])
    return Q_PRISTINE - Q_DROP * (level / N_LEVELS) ** shape


def content_effect(img: Image.Image) -> float:
    """A small per-scene effect (at most +-0.25 on 1-5): raters like detailed, colourful scenes a
    little more. From the pristine image's mean gradient magnitude and colourfulness."""
    a = np.asarray(img, dtype=np.float32) / 255.0
    grey = a.mean(axis=2)
    detail = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    colour = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    z = (detail - 0.09) / 0.03 + (colour - 0.3) / 0.1  # roughly centred on the scenes drawn here
    return float(CONTENT_EFFECT * np.tanh(z / 2.0))


# --------------------------------------------------------------------------------------------
# In-memory batches for pre-training a vision tower


def quality_batch(n: int, size: int = 64, seed: int = 0, kinds=DISTORTIONS, render_size: int = REFERENCE_SIZE):
    """``n`` freshly drawn, distorted scenes for pre-training a vision tower on its own data.

    Scene i comes from the ("pretrain", seed, i) stream, disjoint from the scenes of
    ``make_synthetic``. Each gets a random family from ``kinds`` and a level 0..5 (uniform), is drawn
    at ``render_size``, distorted, and resized to ``size`` (bicubic). Returns
    ``(images uint8 (n, size, size, 3), quality float (n,), kind (n,) str, level (n,) int)``; the
    quality is the latent one (family curve + content effect), not a rated MOS.
    """
    if n < 1:
        raise DeqaError(f"quality_batch: n must be at least 1, got {n}")
    kinds = tuple(kinds)
    for k in kinds:
        _check_kind_level(k, 1)
    images = np.empty((n, size, size, 3), np.uint8)
    quality = np.empty(n)
    kind_out = np.empty(n, dtype=object)
    level_out = np.empty(n, dtype=int)
    for i in range(n):
        rng = _rng("pretrain", seed, i)
        scene = render_scene(rng, render_size)
        kind = kinds[int(rng.integers(len(kinds)))]
        level = int(rng.integers(0, N_LEVELS + 1))
        out = distort(scene, kind, level, rng)
        if out.size != (size, size):
            out = out.resize((size, size), Image.BICUBIC)
        images[i] = np.asarray(out)
        quality[i] = np.clip(family_quality(kind, level)[0] + content_effect(scene), 1.0, 5.0)
        kind_out[i] = kind if level else "pristine"
        level_out[i] = level
    return images, quality, kind_out.astype(str), level_out


# --------------------------------------------------------------------------------------------
# Writing the data sets


def split_scenes(n_scenes: int, rng: np.random.Generator, fractions=SPLIT_FRACTIONS) -> np.ndarray:
    """A split name per scene (train/val/test, about 70/10/20), each split holding at least one scene."""
    if n_scenes < 3:
        raise DeqaError(f"need at least 3 scenes to split into train/val/test, got {n_scenes}")
    n_test = max(1, int(round(fractions[2] * n_scenes)))
    n_val = max(1, int(round(fractions[1] * n_scenes)))
    n_train = n_scenes - n_test - n_val
    labels = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    return labels[rng.permutation(n_scenes)]


def _to_scale(mos15: np.ndarray, std15: np.ndarray, scale: str):
    """From MOS/std on 1-5 to a data set's native scale."""
    if scale == "1-5":
        return mos15, std15
    if scale == "0-100":
        return 25.0 * (mos15 - 1.0), 25.0 * std15
    if scale == "dmos-0-100":  # lower is better
        return 25.0 * (5.0 - mos15), 25.0 * std15
    raise DeqaError(f"unknown scale {scale!r}")


def _params(spec: DatasetSpec, index: int, n_scenes: int, size: int, seed: int) -> dict:
    spec_dict = asdict(spec)
    if spec.quality_band is None:  # a full-range set's params.json is what it was before bands existed
        del spec_dict["quality_band"]
    else:
        spec_dict["quality_band"] = list(spec.quality_band)
    return {"format": _FORMAT_VERSION, "spec": spec_dict, "dataset_index": index, "n_scenes": n_scenes,
            "size": size, "seed": seed, "distortions": list(DISTORTIONS), "levels": N_LEVELS}


def in_band(quality, band) -> np.ndarray:
    """Whether each latent quality lies in ``band`` = (lo, hi), ends included (None: always)."""
    quality = np.asarray(quality, dtype=float)
    if band is None:
        return np.ones(quality.shape, bool)
    return (quality >= band[0] - 1e-9) & (quality <= band[1] + 1e-9)


def _write_dataset(root: Path, spec: DatasetSpec, index: int, n_scenes: int, size: int, seed: int,
                   bar) -> pd.DataFrame:
    """Draw, distort, save and rate one data set under ``root``; meta.csv is written last."""
    params = _params(spec, index, n_scenes, size, seed)
    meta_path, params_path = root / "meta.csv", root / "params.json"
    if meta_path.is_file() and params_path.is_file():
        try:
            same = json.loads(params_path.read_text()) == params
        except (OSError, ValueError):
            same = False
        if same:
            bar.update(n_scenes)
            return pd.read_csv(meta_path)
    (root / "images").mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)
    prefix = spec.name.replace("synth-", "")
    for stale in (root / "images").glob(f"{prefix}-*.png"):  # left by a run with other parameters
        stale.unlink()
    splits = split_scenes(n_scenes, _rng("split", seed, index))
    rows = []
    for s in range(n_scenes):
        rng = _rng("synth", seed, index, s)
        scene_name = f"{prefix}-{s:04d}"
        scene = render_scene(rng, size)
        effect = content_effect(scene)
        noise_rng = _rng("noise", seed, index, s)
        variants = [("pristine", 0)] + [(k, lv) for k in DISTORTIONS for lv in range(1, N_LEVELS + 1)]
        for kind, level in variants:
            q = float(np.clip(family_quality(kind, level)[0] + effect, 1.0, 5.0))
            if not in_band(q, spec.quality_band):
                continue
            out = scene if level == 0 else distort(scene, kind, level, noise_rng, scale=size / REFERENCE_SIZE)
            rel = f"images/{scene_name}_{kind}{level}.png"
            out.save(root / rel, format="PNG", compress_level=1)
            rows.append({"image": rel, "scene": scene_name, "distortion": kind, "level": level,
                         "split": splits[s], "quality": q})
        bar.update(1)
    meta = pd.DataFrame(rows)
    empty = sorted(set(SPLITS) - set(meta["split"])) if len(meta) else list(SPLITS)
    if empty:
        raise DeqaError(f"{spec.name}: no image of quality band {spec.quality_band} in split {empty[0]}; "
                        "use more scenes or a wider band")
    rating_rng = _rng("ratings", seed, index)
    pool = raters.rater_pool(spec.n_pool, spec.bias_sd, spec.noise_sd, rating_rng)
    counts = raters.simulate_ratings(meta["quality"].to_numpy(), n_raters=spec.n_raters, seed_or_rng=rating_rng,
                                     pool=pool)
    summary = raters.summarise(counts)
    mos, std = _to_scale(summary["mos"].to_numpy(), summary["std"].to_numpy(), spec.scale)
    meta.insert(1, "mos", np.round(mos, 6))
    meta.insert(2, "std", np.round(std, 6))
    meta.insert(3, "dataset", spec.name)
    for k in range(1, 6):
        meta[f"c{k}"] = np.round(summary[f"c{k}"].to_numpy(), 6)
    meta["n_ratings"] = summary["n_ratings"].to_numpy()
    meta["quality"] = np.round(meta["quality"], 6)
    columns = ["image", "mos", "std", "dataset", "split", "c1", "c2", "c3", "c4", "c5", "n_ratings",
               "distortion", "level", "scene", "quality"]
    meta = meta[columns]
    tmp = root / "meta.csv.tmp"
    meta.to_csv(tmp, index=False)
    params_path.write_text(json.dumps(params, indent=1))
    os.replace(tmp, meta_path)
    return pd.read_csv(meta_path)


def make_synthetic(out_dir, n_scenes: int | None = None, size: int = REFERENCE_SIZE, seed: int = 0,
                   smoke: bool = False, progress: bool = True, datasets=DEFAULT_DATASETS) -> pd.DataFrame:
    """Write the synthetic data sets to ``out_dir/<name>/`` (``images/*.png`` and ``meta.csv``).

    Each scene yields 21 images (pristine + 4 families x 5 levels; only those whose latent quality
    lies in the spec's ``quality_band`` for ``synth-high`` and ``synth-low``); splits are by scene
    (about 70/10/20) and the data sets use disjoint scenes. ``n_scenes`` per data set defaults to
    150 (8 with ``smoke``). Deterministic under ``seed`` (same bytes); a data set already written
    with the same parameters is read back instead of regenerated. Returns all rows, one table, with
    ``image`` relative to its data set's folder; ``.attrs["meta"]`` maps each name to its meta.csv.
    """
    n_scenes = int(n_scenes if n_scenes is not None else (SMOKE_N_SCENES if smoke else DEFAULT_N_SCENES))
    if n_scenes < 3:
        raise DeqaError(f"n_scenes must be at least 3 (one scene per split), got {n_scenes}")
    if not 16 <= int(size) <= 1024:
        raise DeqaError(f"size must be between 16 and 1024 pixels, got {size}")
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    unknown = [d for d in names if d not in DATASETS]
    if unknown or not names:
        raise DeqaError(f"unknown synthetic data set {unknown[0] if unknown else '(none)'}; "
                        f"expected some of {', '.join(DATASETS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DeqaError(f"{out_dir} exists and is not a folder")
    from .setup import progress as progress_bar

    bar = progress_bar(total=n_scenes * len(names), desc="synthetic scenes", unit="scene", disable=not progress)
    tables, meta_paths = [], {}
    try:
        for name in names:
            index = list(DATASETS).index(name)  # a fixed index per name: scenes never shared between sets
            tables.append(_write_dataset(out_dir / name, DATASETS[name], index, n_scenes, int(size), int(seed), bar))
            meta_paths[name] = out_dir / name / "meta.csv"
    finally:
        bar.close()
    table = pd.concat(tables, ignore_index=True)
    table.attrs["meta"] = meta_paths
    return table


# --------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the data sets into (one subfolder each)")
    parser.add_argument("--n-scenes", type=int, default=None,
                        help=f"scenes per data set, 21 images each (default {DEFAULT_N_SCENES}; {SMOKE_N_SCENES} with --smoke)")
    parser.add_argument("--size", type=int, default=REFERENCE_SIZE, help="image side in pixels (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), metavar="NAME",
                        help=f"which data sets (default {' '.join(DEFAULT_DATASETS)}; choices {', '.join(DATASETS)})")
    parser.add_argument("--smoke", action="store_true", help="a tiny version for quick checks")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    table = make_synthetic(args.out_dir, n_scenes=args.n_scenes, size=args.size, seed=args.seed,
                           smoke=args.smoke, progress=not args.no_progress, datasets=args.datasets)
    for name, part in table.groupby("dataset", sort=False):
        splits = part["split"].value_counts()
        print(f"{name}: {len(part)} images, {part['scene'].nunique()} scenes, "
              f"MOS {part['mos'].min():.2f}..{part['mos'].max():.2f}, "
              f"train/val/test {splits.get('train', 0)}/{splits.get('val', 0)}/{splits.get('test', 0)} "
              f"-> {Path(args.out_dir) / name / 'meta.csv'}")
    return 0
