"""Chapter 06's runs on the CPU against a bare loop: what the ``deqa`` data path costs.

The ablation of chapter 06 trains many short runs in a row in each worker process (one torch thread
each) and scores the test sets after each. This script times such runs, as ``deqa.ablation.run_one``
makes them, against the best case, in one process, A and B alternated (A B, then B A, ...):

* training: a fresh 150-step run from the stage-1 model (``deqa.train.train``: full fine-tuning,
  batch 8 pairs, lr 3e-4, DeQA's loss, every data set co-trained, no validation; its whole time,
  reading the data, loading the model and saving it included) against a bare loop: the same model
  class loaded from the same folder, the same AdamW groups, schedule, clipping and
  ``deqa.train.pair_loss``, on the same run's batches collated beforehand (untimed), so that both
  end with the same weights (checked, ``same weights``);
* scoring, with the model that run trained: the test split of every data set read and scored
  (``deqa.trainset.load_split`` + ``deqa.infer.predict_data``, as ``run_one`` does) against
  ``model(**batch, logits_to_keep=1)`` and a softmax on the same batches collated once beforehand.

Every repetition is a new run (seed = repetition) in the same process, which starts with nothing
kept, as a fresh worker of the ablation does; whatever ``deqa`` keeps between runs
(``deqa.process_cache``) is kept exactly as the ablation's workers keep it, so the first run also
prints on its own. Ratios are bare time / deqa time (1.0: the ``deqa`` path costs nothing): the median over the
repetitions (at least 5) of the ratio of each A/B pair, which a machine whose load drifts disturbs
least; the range of those ratios, the ratio of the two sides' medians and the ratio of the totals
of all repetitions (the first run included) are printed too. Wall
time and this process's CPU time are both reported (the CPU time is steadier on a shared machine).
Targets: training at least 0.95, scoring at least 0.9, on the wall time (``--clock cpu``: the CPU
time); at full size the exit status is non-zero, with a line naming each missed target.

    python benchmarks/cpu_loop.py [--model runs/tiny-deqa/stage1] [--data data/generated] [--reps 7]
    python benchmarks/cpu_loop.py --dry-run [--model DIR --data DIR]   # smoke sizes, seconds, no targets

Without ``--model``/``--data`` a dry run builds a tiny model and the smoke data sets in a temporary
folder. What it stands for is the grid of notebook 06 (``06_ablation``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"training": 0.95, "scoring": 0.9}
MIN_REPS = 5  # the targets are medians of at least this many repetitions
FULL = {"steps": 150, "batch_size": 8, "lr": 3e-4, "reps": 7, "score_batch": 32}
DRY = {"steps": 3, "batch_size": 2, "lr": 3e-4, "reps": 2, "score_batch": 8}


# ------------------------------------------------------------------------------------ the two sides

def deqa_train(model_dir, metas, work: Path, seed: int, sizes: dict):
    """One training run as ``deqa.ablation.run_one`` makes it: (its times, its ``TrainResult``)."""
    from deqa import ablation
    from deqa.train import TrainConfig, train

    config = TrainConfig(model=str(model_dir), data=[str(m) for m in metas], out=str(work / f"run-{seed}"),
                         steps=sizes["steps"], batch_size=sizes["batch_size"], lr=sizes["lr"], mode="full",
                         seed=seed, progress=False, eval_every=-1, device="cpu", **ablation.VARIANTS["soft_kl_fid"])
    t0 = _clocks()
    result = train(config)
    t1 = _clocks()
    return {"train": t1[0] - t0[0], "train_cpu": t1[1] - t0[1], "loop": result.seconds}, result


def deqa_score(result, metas, sizes: dict) -> dict:
    """The test sets read and scored as ``deqa.ablation.run_one`` does it."""
    from deqa.infer import predict_data
    from deqa.trainset import load_split

    t0 = _clocks()
    test = load_split(sorted(metas), "test")
    preds = predict_data(result.model, result.processor, test, batch_size=sizes["score_batch"])
    t1 = _clocks()
    return {"score": t1[0] - t0[0], "score_cpu": t1[1] - t0[1], "n_test": len(preds)}


def _clocks() -> tuple[float, float]:
    """(wall, CPU time of this process): with one torch thread the CPU time is the work done, which
    other processes sharing the cores disturb less than the wall time."""
    return time.perf_counter(), time.process_time()


class Bare:
    """The best case: batches collated beforehand (untimed, without ``deqa.process_cache``, so that
    the ``deqa`` side finds only what its own runs kept), a loop that does nothing but train or score
    them. It trains on exactly the batches of the ``deqa`` run of the same seed, so both make the
    same weights (``same_weights``)."""

    def __init__(self, model_dir, metas, sizes: dict):
        from deqa import mllm
        from deqa.collate import Collator, level_token_ids
        from deqa.images import load_image
        from deqa.train import TrainConfig
        from deqa.trainset import load_split

        self.model_dir, self.sizes = str(model_dir), sizes
        self.config = TrainConfig(model=self.model_dir, data=[str(m) for m in metas], out="-", steps=sizes["steps"],
                                  batch_size=sizes["batch_size"], lr=sizes["lr"], mode="full", use_fidelity=True)
        with mllm.quiet_transformers():
            _, self.processor = mllm.load(self.model_dir)
        self.level_ids = level_token_ids(self.processor.tokenizer)
        with _no_store():
            self.train_data = load_split(metas, "train")
            test = load_split(sorted(metas), "test")
            score = Collator(self.processor, self.level_ids, train=False)
            images = [load_image(p) for p in test.paths]
        step = sizes["score_batch"]
        self.test_batches = [score(images[i:i + step]) for i in range(0, len(images), step)]

    def batches(self, seed: int) -> list[dict]:
        """The batches of the ``deqa`` run with this seed, collated directly."""
        from deqa.collate import Collator
        from deqa.trainset import PairBatchDataset, PairStream

        stream = PairStream(self.train_data.datasets, seed=seed)
        collate = Collator(self.processor, self.level_ids, train=True)
        pairs = PairBatchDataset(self.train_data, stream, collate, self.sizes["batch_size"], 0, self.sizes["steps"])
        with _no_store():
            return [pairs[i] for i in range(len(pairs))]

    def train(self, seed: int, batches: list[dict]):
        """(wall, CPU time, the trained model) of a run: model loaded from the folder, the same AdamW
        groups, schedule, clipping and ``deqa.train.pair_loss``."""
        import math as _math

        import torch
        import transformers
        from transformers import AutoModelForImageTextToText

        from deqa import tower  # noqa: F401  (registers the tiny CNN tower)
        from deqa.mllm import quiet_transformers
        from deqa.train import _optimizer, pair_loss

        t0 = _clocks()
        transformers.set_seed(seed)
        with quiet_transformers():
            model = AutoModelForImageTextToText.from_pretrained(self.model_dir).float()
        model.train()
        cfg, steps = self.config, self.sizes["steps"]
        optimizer = _optimizer(model, cfg.lr, cfg.weight_decay)
        scheduler = transformers.get_cosine_schedule_with_warmup(optimizer, int(_math.ceil(cfg.warmup_ratio * steps)),
                                                                 steps)
        params = [p for p in model.parameters() if p.requires_grad]
        loss = cfg.loss_settings()
        for batch in batches:
            out = pair_loss(model, batch, self.level_ids, loss, "cpu")
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        t1 = _clocks()
        return t1[0] - t0[0], t1[1] - t0[1], model

    def score(self, model) -> tuple[float, float]:
        """(wall, CPU time) of ``model(**batch, logits_to_keep=1)`` and the softmax over the test batches."""
        import torch

        from deqa.collate import model_inputs

        t0 = _clocks()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch in self.test_batches:
                logits = model(**model_inputs(batch), logits_to_keep=1).logits[:, -1]
                torch.softmax(logits[:, self.level_ids].float(), dim=-1).numpy()
        model.train(was_training)
        t1 = _clocks()
        return t1[0] - t0[0], t1[1] - t0[1]


class _no_store:
    """Inside: ``deqa.process_cache`` keeps no image (the bare side's preparation leaves it as it was)."""

    def __enter__(self):
        self.before = os.environ.get("DEQA_IMAGE_CACHE_MB")
        os.environ["DEQA_IMAGE_CACHE_MB"] = "0"

    def __exit__(self, *exc):
        if self.before is None:
            os.environ.pop("DEQA_IMAGE_CACHE_MB", None)
        else:
            os.environ["DEQA_IMAGE_CACHE_MB"] = self.before


def _same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and sa[k].shape == sb[k].shape
                                          and torch.equal(sa[k], sb[k]) for k in sa)


def _start_cold() -> None:
    """Forget what this process kept (``deqa.process_cache``, where this version of deqa has it), so
    that the first ``deqa`` run starts as a fresh ablation worker does."""
    try:
        from deqa import process_cache
    except ImportError:
        return
    process_cache.clear()


# ------------------------------------------------------------------------------------ measuring

def measure(model_dir, metas, sizes: dict, reps: int, log=print) -> dict:
    """``reps`` repetitions, each a training pair then a scoring pair (the scoring with the model the
    ``deqa`` run trained), A B in even repetitions and B A in odd ones; medians and their ratios."""
    import torch

    bare = Bare(model_dir, metas, sizes)
    _start_cold()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cpu-loop-") as tmp:
        for rep in range(reps):
            row = {"rep": rep}
            first_deqa = rep % 2 == 0
            batches = bare.batches(rep)
            result = bare_model = None
            for side in ("deqa", "bare") if first_deqa else ("bare", "deqa"):
                if side == "deqa":
                    times, result = deqa_train(model_dir, metas, Path(tmp), rep, sizes)
                    row.update({f"deqa_{k}": v for k, v in times.items()})
                else:
                    row["bare_train"], row["bare_train_cpu"], bare_model = bare.train(rep, batches)
            row["same_weights"] = _same_weights(result.model, bare_model)
            del batches, bare_model
            for side in ("deqa", "bare") if first_deqa else ("bare", "deqa"):
                if side == "deqa":
                    row.update({f"deqa_{k}": v for k, v in deqa_score(result, metas, sizes).items()})
                else:
                    row["bare_score"], row["bare_score_cpu"] = bare.score(result.model)
            log(f"rep {rep} ({'A B' if first_deqa else 'B A'}): train deqa {row['deqa_train']:.2f} s "
                f"(loop {row['deqa_loop']:.2f}) bare {row['bare_train']:.2f} s, same weights {row['same_weights']}; "
                f"score deqa {row['deqa_score']:.3f} s bare {row['bare_score']:.3f} s; CPU s: train "
                f"{row['deqa_train_cpu']:.2f} / {row['bare_train_cpu']:.2f}, score {row['deqa_score_cpu']:.3f} / "
                f"{row['bare_score_cpu']:.3f}")
            rows.append(row)
    numbers = [k for k in rows[0] if k not in ("rep", "same_weights")]
    med = {k: statistics.median(r[k] for r in rows) for k in numbers}
    out = {"sizes": sizes, "reps": rows, "median": med, "threads": torch.get_num_threads(),
           "same_weights": all(r["same_weights"] for r in rows),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"}
    for name, kind in (("training", "train"), ("scoring", "score")):
        for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
            pair = [r[f"bare_{kind}{suffix}"] / r[f"deqa_{kind}{suffix}"] for r in rows]
            total = sum(r[f"bare_{kind}{suffix}"] for r in rows) / sum(r[f"deqa_{kind}{suffix}"] for r in rows)
            out[f"{name}_{clock}"] = {"ratio": statistics.median(pair), "low": min(pair), "high": max(pair),
                                      "of_medians": med[f"bare_{kind}{suffix}"] / med[f"deqa_{kind}{suffix}"],
                                      "all_reps": total, "target": TARGETS[name]}
    steps = sizes["steps"]
    out["per_run"] = {"train_wall": med["deqa_train"], "loop": med["deqa_loop"],
                      "fixed_train": statistics.median(r["deqa_train"] - r["deqa_loop"] for r in rows),
                      "score": med["deqa_score"], "step_ms": 1000 * med["deqa_loop"] / steps,
                      "bare_step_ms": 1000 * med["bare_train"] / steps}
    return out


def report(out: dict, clock: str = "wall", log=print) -> list[str]:
    """Print the ratios (wall and CPU time); return the targets ``clock``'s ratios miss (one line each)."""
    missed = []
    for name in ("training", "scoring"):
        for which in ("wall", "cpu"):
            r = out[f"{name}_{which}"]
            log(f"{name} ({which} time): bare / deqa = {r['ratio']:.3f} (median of the A/B pairs, {r['low']:.3f}-"
                f"{r['high']:.3f}; ratio of the medians {r['of_medians']:.3f}; of all repetitions' totals "
                f"{r['all_reps']:.3f}), target >= {r['target']}")
            if which == clock and r["ratio"] < r["target"]:
                missed.append(f"{name} ratio ({clock} time) {r['ratio']:.3f} is below the target {r['target']}")
    first = out["reps"][0]
    log(f"first run of the process (wall): train {first['deqa_train']:.2f} s = loop {first['deqa_loop']:.2f} s + fixed "
        f"{first['deqa_train'] - first['deqa_loop']:.2f} s; test scoring {first['deqa_score']:.2f} s")
    p = out["per_run"]
    log(f"the bare loop made the deqa runs' weights: {out['same_weights']}")
    log(f"per run (medians, wall): train {p['train_wall']:.2f} s = loop {p['loop']:.2f} s ({p['step_ms']:.1f} ms/step) "
        f"+ fixed {p['fixed_train']:.2f} s; bare {p['bare_step_ms']:.1f} ms/step with its model load; "
        f"test scoring {p['score']:.2f} s")
    return missed


# ------------------------------------------------------------------------------------ command line

def _smoke_inputs(tmp: Path):
    from deqa.synth import make_synthetic
    from deqa.tiny import build_tiny

    make_synthetic(tmp / "data", smoke=True, progress=False)
    return build_tiny(tmp / "model", seed=0), tmp / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="the stage-1 model folder (default runs/tiny-deqa/stage1)")
    parser.add_argument("--data", help="folder of NAME/meta.csv data sets (default data/generated)")
    parser.add_argument("--reps", type=int, help="A/B repetitions (default 7, at least 5 for the targets; dry run 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the ablation)")
    parser.add_argument("--dry-run", action="store_true", help="smoke sizes, seconds; the targets are not checked")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="the time the targets are checked on (default wall; cpu: this process's CPU time, "
                             "steadier on a shared machine)")
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from deqa.errors import DeqaError
    from deqa.recipe import find_metas

    sizes = dict(DRY if args.dry_run else FULL)
    reps = sizes.pop("reps")
    reps = args.reps if args.reps is not None else reps
    least = 1 if args.dry_run else MIN_REPS
    if reps < least:
        print(f"error: --reps must be at least {least}{'' if args.dry_run else ' at full size'}, got {reps}",
              file=sys.stderr)
        return 2
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="cpu-loop-inputs-") as tmp:
            model, data = args.model, args.data
            if args.dry_run and (model is None or data is None):
                made_model, made_data = _smoke_inputs(Path(tmp))
                model, data = model or made_model, data or made_data
            model = Path(model or ROOT / "runs" / "tiny-deqa" / "stage1")
            data = Path(data or ROOT / "data" / "generated")
            if not (model / "config.json").is_file():
                raise DeqaError(f"no model in {model}: run chapter 04's recipe (deqa.recipe.pretrain_stage) first")
            metas = find_metas(data)
            print(f"{'dry run' if args.dry_run else 'full size'}: {model}, data sets "
                  f"{', '.join(m.parent.name for m in metas)}, {reps} repetitions, {args.threads} thread(s)")
            out = measure(model, metas, sizes, reps)
    except DeqaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(before)
    out["dry_run"] = args.dry_run
    print(f"machine: {out['machine']}, torch {torch.__version__}, {out['threads']} thread(s)")
    missed = report(out, args.clock)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if missed and not args.dry_run:
        for line in missed:
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
