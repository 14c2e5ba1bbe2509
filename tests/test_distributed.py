"""Multi-process training: two gloo processes under torchrun give the same weights as one process
with the same global batch; the FSDP wrapper constructs on CPU."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from deqa import synth
from deqa.tiny import build_tiny

#: largest |difference| accepted between DDP and single-process weights after the steps below. The
#: two runs sum the same gradients in a different order (a per-rank mean, then an all-reduce), so
#: they agree to float32 rounding, amplified a little by AdamW's normalisation.
WEIGHT_TOLERANCE = 5e-5
STEPS = 4
PAIRS_PER_RANK = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    build_tiny(base / "model", seed=0)
    synth.make_synthetic(base / "data", smoke=True, progress=False)
    metas = sorted((base / "data").glob("*/meta.csv"))
    return base, metas


def _train_cmd(model, metas, out, batch_size):
    cmd = ["-m", "deqa", "train", "--model", str(model), "--out", str(out), "--steps", str(STEPS),
           "--batch-size", str(batch_size), "--lr", "2e-3", "--warmup-ratio", "0", "--seed", "0", "--device", "cpu",
           "--eval-limit", "8", "--no-progress"]
    for m in metas:
        cmd += ["--data", str(m)]
    return cmd


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(setup_dirs):
    base, metas = setup_dirs
    single = subprocess.run([sys.executable] + _train_cmd(base / "model", metas, base / "single",
                                                          2 * PAIRS_PER_RANK),
                            capture_output=True, text=True, env=_env(), timeout=600)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
                         + _train_cmd(base / "model", metas, base / "ddp", PAIRS_PER_RANK),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-2000:]

    start = load_file(base / "model" / "model.safetensors")
    a = load_file(base / "single" / "model" / "model.safetensors")
    b = load_file(base / "ddp" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    moved = max(float((a[k].float() - start[k].float()).abs().max()) for k in a if k in start)
    print(f"max |single - ddp| = {worst:.3g}; largest change from the start = {moved:.3g}")
    assert moved > 50 * WEIGHT_TOLERANCE, "training did not change the weights: the test would be vacuous"
    assert worst <= WEIGHT_TOLERANCE
    # rank 0 alone wrote the run: one metrics log whose rows say two processes took part
    assert (base / "ddp" / "metrics.jsonl").is_file()
    assert '"world_size": 2' in (base / "ddp" / "train_config.json").read_text()


def test_fsdp_wrapper_constructs_on_cpu(setup_dirs, monkeypatch):
    import torch.distributed as dist

    from deqa import distributed
    from deqa.mllm import load

    base, _ = setup_dirs
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model, _ = load(base / "model")
        layer = type(model.model.language_model.layers[0])
        wrapped = distributed.wrap_fsdp(model, (layer,), device="cpu", mixed_bf16=False)
        sharded = [m for m in wrapped.modules() if type(m).__name__.startswith("FSDP")]
        assert len(sharded) == 1 + len(model.model.language_model.layers)
        assert all(type(p).__name__ == "DTensor" for p in wrapped.parameters())
        out = wrapped(input_ids=torch.tensor([[1, 2, 3]]))  # text only: the root unshards, runs, reshards
        assert out.logits.shape[:2] == (1, 3) and torch.isfinite(out.logits).all()
    finally:
        dist.destroy_process_group()
