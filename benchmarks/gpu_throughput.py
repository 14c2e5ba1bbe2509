"""Throughput of deqa's training step and scoring against bare transformers, on one GPU.

A LLaVA-1.5-7B-sized ``LlavaForConditionalGeneration`` (CLIP ViT-L/14-336 + Llama-7B dimensions,
7.06 B parameters) is built with random weights in bf16 directly on the GPU (no download, no CPU
copy). Inputs are synthetic: random pixels (B, 3, 336, 336) and input ids laid out as a LLaVA chat
prompt (text, 576 image tokens at ``config.image_token_id``, text, the answer prefix), about 48
text tokens per image. In one run it measures

* training, at each batch size (images per step): deqa's step (LoRA r=16 on every language-model
  linear through ``deqa.lora.apply_lora``, vision frozen, the DeQA loss of ``deqa.train.pair_loss``
  on image pairs, AdamW) against a bare transformers step on the same model and batch
  (``model(**inputs, labels=labels).loss``, backward, the same AdamW): images/s, the ratio
  deqa / bare, peak memory (``torch.cuda.max_memory_allocated``) and model-FLOPs utilisation;
* scoring: deqa's one forward (``deqa.mllm.level_logits``, ``logits_to_keep=1``, five-way
  softmax) against ``generate()`` of a 6-token answer, and against batch size 1.

Model-FLOPs utilisation (MFU) = achieved model FLOP/s / peak, with the usual convention
FLOPs per image = 2 N T (forward) + 4 N T (backward) = 6 N T for training, 2 N T for scoring,
N = all parameters, T = tokens per image (image + text). This counts the backward of frozen
weights as if their gradients were computed, as MFU conventionally does; with LoRA the work
actually done is about 2 N_lm T + 2 N_lm T (activation gradients only, no vision backward), which
``hardware_flops_per_image`` reports too. Peak: 989 TFLOP/s dense bf16 for H100 SXM and H200
(``--peak-tflops`` for another card).

    python benchmarks/gpu_throughput.py                 # on a GPU: writes benchmarks/results/gpu_throughput_<gpu>.json
    python benchmarks/gpu_throughput.py --dry-run       # same code path, tiny config, CPU, seconds
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from gpu_common import (adapter_targets, gpu_name, is_oom, out_path, peak_gib, reset_peak, timed,
                        use_repository_checkout, versions, write_json)

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16, SXM
IMAGE_TOKENS_7B = 576
TEXT_TOKENS = 48
GENERATE_TOKENS = 6


# ---------------------------------------------------------------------------------------- model

def llava_config(dry_run: bool):
    """LLaVA-1.5-7B dimensions, or a tiny configuration of the same classes for ``--dry-run``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    if dry_run:
        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=56, patch_size=14, projection_dim=32)
        text = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2)
        image_token = 500
    else:
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                                  hidden_act="quick_gelu")
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                           num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                           rms_norm_eps=1e-5, pad_token_id=32001, bos_token_id=1, eos_token_id=2)
        image_token = 32000
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_token,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    return config


def image_tokens(config) -> int:
    v = config.vision_config
    return (v.image_size // v.patch_size) ** 2  # the "default" strategy drops CLS


def build_model(config, device: str, dtype):
    """Random weights created on ``device`` in ``dtype`` (no CPU copy of a 7 B model)."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


# ---------------------------------------------------------------------------------------- inputs

def synthetic_batch(config, batch: int, train: bool, level_ids, device: str, dtype, seed: int = 0) -> dict:
    """A batch laid out like a LLaVA chat prompt: system/user text, the image tokens, the question,
    the answer prefix; with ``train`` the level token and 2 more answer tokens follow. Returns the
    model inputs plus deqa's ``level_pos``, shifted ``labels`` (-100 at the level position) and the
    unshifted ``bare_labels`` that transformers' own loss takes (it shifts itself)."""
    g = torch.Generator().manual_seed(seed)
    vocab = config.text_config.vocab_size
    img_tok = config.image_token_id
    n_img = image_tokens(config)
    n_before, n_prefix = 8, 7
    n_question = TEXT_TOKENS - n_before - n_prefix - (3 if train else 0)

    def text(n):
        t = torch.randint(3, min(vocab, img_tok), (batch, n), generator=g)
        return t

    levels = torch.randint(0, 5, (batch,), generator=g)
    parts = [text(n_before), torch.full((batch, n_img), img_tok), text(n_question), text(n_prefix)]
    if train:
        answer = torch.stack([torch.tensor(level_ids)[levels], torch.full((batch,), 13),
                              torch.full((batch,), config.text_config.eos_token_id)], dim=1)
        parts.append(answer)
    ids = torch.cat(parts, dim=1)
    T = ids.shape[1]
    prompt_len = n_before + n_img + n_question + n_prefix
    level_pos = torch.full((batch,), prompt_len - 1)
    size = config.vision_config.image_size
    out = {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": torch.randn(batch, 3, size, size, generator=g).to(device, dtype),
        "level_pos": level_pos.to(device),
    }
    if train:
        answer_start = prompt_len - n_prefix
        labels = torch.full((batch, T), -100)
        labels[:, answer_start - 1:T - 1] = ids[:, answer_start:]  # logits[t] predicts token t + 1
        labels[:, prompt_len - 1] = -100  # the level token: trained by the KL term
        bare = torch.full((batch, T), -100)
        bare[:, answer_start:] = ids[:, answer_start:]
        mu = torch.rand(batch, generator=g) * 4 + 1
        from deqa.soft_label import soft_labels

        target = torch.as_tensor(soft_labels(mu.numpy(), torch.full((batch,), 0.6).numpy()), dtype=torch.float32)
        out.update(labels=labels.to(device), bare_labels=bare.to(device), mu=mu.to(device),
                   sigma=torch.full((batch,), 0.6).to(device), target=target.to(device))
    return out


# ---------------------------------------------------------------------------------------- runs

def measure_scoring(model, config, level_ids, batch: int, device: str, dtype, warmup: int, reps: int) -> dict:
    from deqa import levels
    from deqa.losses import level_probs
    from deqa.mllm import level_logits

    data = synthetic_batch(config, batch, train=False, level_ids=level_ids, device=device, dtype=dtype)
    inputs = {k: v for k, v in data.items() if k != "level_pos"}
    singles = [{k: v[i:i + 1] for k, v in data.items()} for i in range(batch)]
    results = {}

    @torch.inference_mode()
    def project():
        probs = level_probs(level_logits(model, data)[:, level_ids].float())
        return levels.score(probs.cpu().numpy())

    @torch.inference_mode()
    def project_b1():
        for one in singles:
            level_probs(level_logits(model, one)[:, level_ids].float())

    @torch.inference_mode()
    def generate():
        model.generate(**inputs, max_new_tokens=GENERATE_TOKENS, min_new_tokens=GENERATE_TOKENS,
                       do_sample=False, pad_token_id=config.text_config.pad_token_id)

    scores = project()
    assert scores.shape == (batch,) and ((scores >= 1) & (scores <= 5)).all(), scores
    for name, fn in (("deqa_one_forward", project), ("generate_6_tokens", generate),
                     ("deqa_one_forward_batch1", project_b1)):
        t = statistics.median(timed(fn, device, warmup, reps))
        results[name] = {"seconds_per_batch": t, "images_per_s": batch / t}
    results["batch"] = batch
    f = results["deqa_one_forward"]["images_per_s"]
    results["ratio_vs_generate"] = f / results["generate_6_tokens"]["images_per_s"]
    results["ratio_vs_batch1"] = f / results["deqa_one_forward_batch1"]["images_per_s"]
    return results


def measure_training(model, optimizer, config, bf16: bool, level_ids, batch: int, device: str, dtype,
                     warmup: int, reps: int) -> dict:
    from deqa.losses import LossSettings
    from deqa.train import pair_loss

    if batch % 2:
        raise SystemExit(f"training batch {batch} must be even (pairs of images)")
    data = synthetic_batch(config, batch, train=True, level_ids=level_ids, device=device, dtype=dtype, seed=1)
    bare_inputs = {k: data[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    project_batch = {k: v for k, v in data.items() if k != "bare_labels"}

    def project_step():
        optimizer.zero_grad(set_to_none=True)
        loss = pair_loss(model, project_batch, level_ids, LossSettings(), device, bf16)["loss"]
        loss.backward()
        optimizer.step()

    def bare_step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**bare_inputs, labels=data["bare_labels"]).loss
        loss.backward()
        optimizer.step()

    out = {"batch": batch}
    for name, fn in (("deqa_step", project_step), ("bare_transformers_step", bare_step)):
        reset_peak(device)
        try:
            model.train()
            times = timed(fn, device, warmup, reps)
        except RuntimeError as exc:
            if not is_oom(exc):
                raise
            optimizer.zero_grad(set_to_none=True)
            out[name] = {"error": "out of memory"}
            reset_peak(device)
            continue
        finally:
            model.eval()
        t = statistics.median(times)
        out[name] = {"seconds_per_step": t, "images_per_s": batch / t, "peak_gib": peak_gib(device),
                     "step_seconds_all": times}
    if "images_per_s" in out["deqa_step"] and "images_per_s" in out["bare_transformers_step"]:
        out["ratio_deqa_vs_bare"] = out["deqa_step"]["images_per_s"] / out["bare_transformers_step"]["images_per_s"]
    return out


def add_mfu(result: dict, flops_train: float, flops_score: float, peak_tflops) -> None:
    if peak_tflops is None:
        return
    peak = peak_tflops * 1e12
    for row in result["training"]:
        for name in ("deqa_step", "bare_transformers_step"):
            if "images_per_s" in row[name]:
                row[name]["mfu"] = row[name]["images_per_s"] * flops_train / peak
    for row in result["scoring"]:
        for name in ("deqa_one_forward", "deqa_one_forward_batch1"):
            row[name]["mfu"] = row[name]["images_per_s"] * flops_score / peak


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny config on CPU in fp32: checks the code path in seconds")
    p.add_argument("--train-batches", type=int, nargs="+", default=[8, 16], help="images per training step")
    p.add_argument("--score-batch", type=int, default=16, help="images per scoring forward")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the card (H100/H200: 989)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="on for both training paths")
    p.add_argument("--out", default=None, help="JSON file (default OUT_DIR/gpu_throughput_<gpu>.json)")
    p.add_argument("--out-dir", default=None, help="folder of the JSON (default benchmarks/results/; a dry run "
                                                    "writes only when --out or --out-dir is given, as "
                                                    "gpu_throughput_dry-run.json)")
    args = p.parse_args(argv)

    use_repository_checkout()
    from deqa.lora import apply_lora

    if args.dry_run:
        device, dtype = "cpu", torch.float32
        torch.set_num_threads(1)  # tiny matrices: more threads only add contention
        args.train_batches = [2, 4] if args.train_batches == [8, 16] else args.train_batches
        args.score_batch = min(args.score_batch, 4)
        args.warmup, args.reps = 2, 3
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry-run to check the code path on CPU")
        device, dtype = "cuda", torch.bfloat16
    name = gpu_name(device)
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)

    config = llava_config(args.dry_run)
    t0 = time.perf_counter()
    model = build_model(config, device, dtype)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_lm = sum(p.numel() for p in model.model.language_model.parameters()) + model.lm_head.weight.numel()
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    vocab = config.text_config.vocab_size
    level_ids = [vocab // 2 + i for i in range(5)]
    tokens = image_tokens(config) + TEXT_TOKENS
    flops_train = 6 * n_params * tokens
    flops_score = 2 * n_params * tokens
    # work actually done with LoRA: forward of everything, activation gradients of the language model only
    hardware_train = 2 * n_params * tokens + 2 * n_lm * tokens

    result = {
        "device": name, "dry_run": args.dry_run, "dtype": str(dtype).replace("torch.", ""),
        **versions(), "attn_implementation": "sdpa",
        "model": "LlavaForConditionalGeneration, random weights, " + ("tiny" if args.dry_run else "LLaVA-1.5-7B dims"),
        "params_total": n_params, "params_language_model": n_lm, "params_vision": n_vision,
        "image_tokens": image_tokens(config), "text_tokens": TEXT_TOKENS, "tokens_per_image": tokens,
        "build_seconds": build_s, "peak_tflops_assumed": peak,
        "flops_formula": "train 6*N*T per image (2NT forward + 4NT backward), score 2*N*T; N = all parameters, "
                         "T = image + text tokens per image",
        "model_flops_per_image_train": flops_train, "model_flops_per_image_score": flops_score,
        "hardware_flops_per_image_train_lora": hardware_train,
        "warmup": args.warmup, "reps": args.reps, "gradient_checkpointing": args.gradient_checkpointing,
        "scoring": [], "training": [],
    }

    result["scoring"].append(measure_scoring(model, config, level_ids, args.score_batch, device, dtype,
                                             args.warmup, args.reps))

    model = apply_lora(model, r=16, alpha=32, dropout=0.05)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    result["params_trainable"] = sum(p.numel() for p in trainable)
    result["lora"] = {"r": 16, "alpha": 32, "dropout": 0.05,
                      "target_modules": adapter_targets(model)}
    optimizer = torch.optim.AdamW(trainable, lr=2e-4, weight_decay=0.0)
    for batch in args.train_batches:
        result["training"].append(measure_training(model, optimizer, config, not args.dry_run, level_ids, batch,
                                                   device, dtype, args.warmup, args.reps))
    add_mfu(result, flops_train, flops_score, peak)

    out = out_path("gpu_throughput", name, args.dry_run, args.out, args.out_dir)
    if out is not None:
        write_json(out, result)
    print(summary(result))
    if out is not None:
        print(f"wrote {out}")
    return 0


def summary(result: dict) -> str:
    lines = ["dry run: code path check only, CPU timings are not meaningful"] if result["dry_run"] else []
    lines += [f"{result['device']}  {result['model']}  {result['params_total'] / 1e6:,.1f} M params  "
             f"{result['tokens_per_image']} tokens/image  trainable {result['params_trainable'] / 1e6:.2f} M"]
    for row in result["scoring"]:
        lines.append(f"score b{row['batch']}: deqa {row['deqa_one_forward']['images_per_s']:.1f} img/s, "
                     f"generate {row['generate_6_tokens']['images_per_s']:.1f} img/s "
                     f"(x{row['ratio_vs_generate']:.2f}), b1 {row['deqa_one_forward_batch1']['images_per_s']:.1f} "
                     f"img/s (x{row['ratio_vs_batch1']:.2f})")
    for row in result["training"]:
        parts = []
        for name in ("deqa_step", "bare_transformers_step"):
            r = row[name]
            if "error" in r:
                parts.append(f"{name} {r['error']}")
            else:
                peak = f", peak {r['peak_gib']:.1f} GiB" if r["peak_gib"] is not None else ""
                mfu = f", MFU {100 * r['mfu']:.0f}%" if "mfu" in r else ""
                parts.append(f"{name} {r['images_per_s']:.1f} img/s{peak}{mfu}")
        ratio = f"  ratio {row['ratio_deqa_vs_bare']:.2f}" if "ratio_deqa_vs_bare" in row else ""
        lines.append(f"train b{row['batch']}: " + "; ".join(parts) + ratio)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
