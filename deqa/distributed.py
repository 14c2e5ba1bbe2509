"""Multi-process training on PyTorch's own engines: DistributedDataParallel under ``torchrun``
(NCCL on GPU, gloo on CPU) and a Fully Sharded Data Parallel wrapper for models too large for one
GPU. Explained in notebook 04, section "More than one GPU".

    torchrun --nproc_per_node 4 -m deqa train --model ... --data ... --out RUN_DIR

Each rank draws its share of the same global pair permutation (``deqa.pairs.PairSampler`` with
``rank``/``world_size``), so a step of ``batch_size`` pairs per rank equals one step of
``world_size * batch_size`` pairs in a single process. Only rank 0 logs and writes checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """Read the ranks torchrun exports (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device: str) -> DistInfo:
    """Start the process group when launched by torchrun: NCCL for CUDA, gloo otherwise.

    Returns the rank information; with a single process this does nothing.
    """
    info = from_env()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def device_for(info: DistInfo, device: str) -> str:
    """Each rank takes its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if device.startswith("cuda") and info.enabled:
        return f"cuda:{info.local_rank}"
    return device


def wrap_ddp(model: torch.nn.Module, info: DistInfo, device: str) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (unchanged with one process).

    ``find_unused_parameters`` stays off: every trainable parameter takes part in the level loss.
    """
    if not info.enabled:
        return model
    if device.startswith("cuda"):
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[info.local_rank])
    return torch.nn.parallel.DistributedDataParallel(model)


def wrap_fsdp(model: torch.nn.Module, layer_classes: tuple[type, ...] = (), device: str = "cuda",
              mixed_bf16: bool = True):
    """Shard ``model`` with PyTorch FSDP (fully_shard, FSDP2) for models too large for one GPU.

    Each transformer block in ``layer_classes`` becomes its own shard unit, then the root. Needs an
    initialised process group (``init``). With ``mixed_bf16`` parameters compute in bf16 while the
    reductions stay in float32.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_bf16 \
        else MixedPrecisionPolicy()
    blocks = [m for m in model.modules() if layer_classes and isinstance(m, layer_classes)]
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a scalar over ranks (for logging the same loss on every rank)."""
    if not info.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
