"""A tiny CNN vision tower written as a Hugging Face model, and its stage-1 pre-training.

Random vision transformers do not learn image quality from a few thousand synthetic images on a
CPU; a small CNN does. Written as a ``PreTrainedModel`` and registered with the Auto classes, it
plugs into ``LlavaConfig.vision_config`` (``vision_feature_layer=-1``,
``vision_feature_select_strategy="full"``) so that the tiny MLLM saves and reloads with
``from_pretrained`` exactly as a hub model does. Explained in notebook 04 (``04_finetune_mllm``).

Stage 1 (:func:`pretrain_tower`) trains the tower alone, with a mean-pool + linear head and an MSE
loss on the quality of synthetic images, before the whole MLLM is fine-tuned (stage 2).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .metrics import srcc

#: Pixel normalisation shared by the tiny model's image processor and :func:`pretrain_tower`:
#: x -> (x / 255 - mean) / std per channel.
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
#: stage-1 pre-training: the held-out images are drawn with this offset on the seed (never a training
#: image), scored this many at a time; AdamW's weight decay; the bar shows the mean loss this often
EVAL_SEED_OFFSET = 10_000_019
EVAL_CHUNK = 64
PRETRAIN_WEIGHT_DECAY = 1e-4
POSTFIX_EVERY = 50


class QualityCNNConfig(PreTrainedConfig):
    """Configuration of :class:`QualityCNNModel` (a dataclass: fields only, no ``__init__``).

    ``hidden_size`` is the width of the output tokens; ``grid`` x ``grid`` tokens come out per image;
    ``stem_norm`` puts a GroupNorm after the stem conv (off by default, see :class:`QualityCNNModel`).
    """

    model_type = "deqa_cnn"

    num_channels: int = 3
    image_size: int = 64
    stem_channels: int = 16
    stage_channels: tuple[int, ...] | list[int] = (16, 32, 64, 96)
    num_groups: int = 8
    stem_norm: bool = False
    grid: int = 4
    hidden_size: int = 128

    @property
    def num_image_tokens(self) -> int:
        return self.grid * self.grid


def _conv_block(c_in: int, c_out: int, stride: int, groups: int, norm: bool = True) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=not norm)
    return nn.Sequential(conv, nn.GroupNorm(groups, c_out), nn.GELU()) if norm else nn.Sequential(conv, nn.GELU())


class QualityCNNPreTrainedModel(PreTrainedModel):
    config_class = QualityCNNConfig
    config: QualityCNNConfig
    base_model_prefix = "quality_cnn"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _no_split_modules = []
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        # He initialisation for the GELU conv stack (the library's N(0, 0.02) makes it vanish). The
        # ``init`` helpers leave tensors alone that were just loaded from a checkpoint.
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=module.in_features**-0.5)
            if module.bias is not None:
                init.zeros_(module.bias)


class QualityCNNModel(QualityCNNPreTrainedModel):
    """64 px image -> ``grid`` x ``grid`` tokens of width ``hidden_size``.

    3x3 stride-1 stem (conv + GELU), then one stride-2 3x3 conv per stage (GroupNorm + GELU after
    each), an adaptive average pool to the grid and a 1x1 conv to the token width. The stem has no
    normalisation on purpose (``stem_norm=False``): a GroupNorm there divides out each image's global
    contrast, and with it most of what tells a low-contrast image from a clean one (held-out SRCC
    of stage 1: 0.80 with it, 0.95 without).
    """

    def __init__(self, config: QualityCNNConfig):
        super().__init__(config)
        groups = config.num_groups
        layers = [_conv_block(config.num_channels, config.stem_channels, 1, groups, norm=config.stem_norm)]
        c_in = config.stem_channels
        for c_out in config.stage_channels:
            layers.append(_conv_block(c_in, c_out, 2, groups))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(config.grid)
        self.to_tokens = nn.Conv2d(c_in, config.hidden_size, kernel_size=1)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states=None, return_dict=None, **kwargs):
        x = pixel_values.to(self.to_tokens.weight.dtype)
        grid = self.to_tokens(self.pool(self.features(x)))  # (B, H, g, g)
        tokens = grid.flatten(2).transpose(1, 2)  # (B, g*g, H)
        return BaseModelOutputWithPooling(
            last_hidden_state=tokens, pooler_output=tokens.mean(dim=1), hidden_states=(tokens,)
        )


AutoConfig.register(QualityCNNConfig.model_type, QualityCNNConfig, exist_ok=True)
AutoModel.register(QualityCNNConfig, QualityCNNModel, exist_ok=True)


# ---------------------------------------------------------------------------------------------
# Stage 1: the tower alone learns image quality.


def normalize_pixels(images_uint8: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 normalised as the tiny model's processor does."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8)).float().div_(255.0).permute(0, 3, 1, 2)
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class _QualityHead(nn.Module):
    """Mean of the tower's tokens -> one number (used in stage 1 only, then thrown away)."""

    def __init__(self, tower: QualityCNNModel):
        super().__init__()
        self.tower = tower
        self.head = nn.Linear(tower.config.hidden_size, 1)

    def forward(self, pixel_values):
        tokens = self.tower(pixel_values).last_hidden_state
        return self.head(tokens.mean(dim=1)).squeeze(-1)


def pretrain_tower(
    tower: QualityCNNModel,
    steps: int = 1500,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    size: int = 64,
    progress: bool = True,
    eval_size: int = 256,
    pool_size: int = 4000,
) -> dict:
    """Stage 1: train ``tower`` in place to regress the quality of synthetic images.

    A pool of ``pool_size`` images (at most ``steps * batch_size``) from ``deqa.synth.quality_batch`` (scenes degraded by known
    distortions) is drawn once; each step takes a random batch from it (randomly mirrored), pools
    the tower's tokens, maps them to a score with a linear head and minimises the MSE to the
    quality. AdamW with a cosine decay. Returns ``history``: per-step ``loss``, the Spearman
    correlation on ``eval_size`` held-out images before (``srcc_before``) and after (``srcc``)
    training, and ``seconds``. Explained in notebook 04.
    """
    from .synth import quality_batch

    torch.manual_seed(seed)
    model = _QualityHead(tower)
    was_training = tower.training
    model.train()
    device = next(tower.parameters()).device
    model.to(device)

    eval_imgs, eval_q, *_ = quality_batch(eval_size, size=size, seed=seed + EVAL_SEED_OFFSET)
    eval_x = normalize_pixels(eval_imgs).to(device)

    def held_out_srcc() -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(eval_x[i : i + EVAL_CHUNK]) for i in range(0, len(eval_x), EVAL_CHUNK)])
        model.train()
        return srcc(pred.float().cpu().numpy(), np.asarray(eval_q))

    start = time.perf_counter()
    n_pool = max(min(pool_size, steps * batch_size), batch_size)  # never more than the steps can draw
    pool_imgs, pool_q, *_ = quality_batch(n_pool, size=size, seed=seed)
    pool_x = normalize_pixels(pool_imgs)
    pool_y = torch.as_tensor(np.asarray(pool_q), dtype=torch.float32)
    # start the head at the mean quality so the first steps do not only learn an offset
    with torch.no_grad():
        model.head.bias.fill_(float(pool_y.mean()))
    srcc_before = held_out_srcc()

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=PRETRAIN_WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1.0 + np.cos(np.pi * min(s, steps) / max(steps, 1)))
    )
    losses = []
    gen = torch.Generator().manual_seed(seed)
    from .setup import progress as progress_bar

    bar = progress_bar(range(steps), desc="pretrain tower", leave=False, disable=not progress)
    for step in bar:
        idx = torch.randint(len(pool_x), (batch_size,), generator=gen)
        x, y = pool_x[idx], pool_y[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x, y = x.to(device), y.to(device)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if step % POSTFIX_EVERY == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    seconds = time.perf_counter() - start
    srcc_after = held_out_srcc()
    tower.train(was_training)
    return {"loss": losses, "srcc_before": srcc_before, "srcc": srcc_after, "seconds": seconds}
