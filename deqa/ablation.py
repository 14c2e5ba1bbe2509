"""The ablation of chapter 06: which part of DeQA-Score buys what. Explained in notebook 06.

Three training objectives, each trained on one data set and co-trained on several, from the same
starting model (the stage-1 checkpoint of chapter 04), with the same seeds and the same steps:

* ``onehot_ce`` - Q-Align: a one-hot level and cross-entropy (no fidelity);
* ``soft_kl`` - the soft label and the KL loss (no fidelity);
* ``soft_kl_fid`` - DeQA-Score: soft label + KL + the Thurstone fidelity loss on same-data-set pairs.

Every run is scored on the test split of every data set; the results are one table with PLCC and
SRCC per test set and the distribution gaps (Gaussian KL, Jensen-Shannon, Wasserstein-1/2) to the
human score distribution. Results are cached in ``OUT_DIR/results.csv`` with the settings that made
them, so the chapter re-renders in seconds; a change of settings (or ``recompute=True``) runs again.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from .errors import DeqaError

VARIANTS = {
    "onehot_ce": {"label": "onehot", "use_fidelity": False},
    "soft_kl": {"label": "soft", "use_fidelity": False},
    "soft_kl_fid": {"label": "soft", "use_fidelity": True},
}
VARIANT_NAMES = {
    "onehot_ce": "one-hot + CE (Q-Align)",
    "soft_kl": "soft label + KL",
    "soft_kl_fid": "soft + KL + fidelity (DeQA)",
}
METRICS = ("plcc", "plcc_logistic", "srcc", "kl", "w2", "js_gaussian", "js_levels", "w1_levels")


def training_sets(names: list[str]) -> dict[str, tuple[str, ...]]:
    """``single``: the first data set alone; ``co-train``: all of them together."""
    if len(names) < 2:
        raise DeqaError(f"the ablation needs at least two data sets to co-train, found {names}")
    return {"single": (names[0],), "co-train": tuple(names)}


def evaluate_predictions(preds: pd.DataFrame) -> pd.DataFrame:
    """PLCC/SRCC and distribution gaps per test data set of ``deqa.infer.predict_data`` output, one row
    per test set (``deqa.evaluate.per_dataset_table``)."""
    from .evaluate import per_dataset_table

    table = per_dataset_table(preds.sort_values("dataset", kind="stable"))
    table = table.rename_axis("test_set").reset_index()
    return table[["test_set", "n", *METRICS]]


def run_one(stage1_dir, metas: dict[str, Path], variant: str, training: tuple[str, ...], seed: int,
            steps: int, work_dir: Path, batch_size: int = 8, lr: float = 3e-4,
            progress: bool = False) -> pd.DataFrame:
    """Train one (variant, training set, seed) from ``stage1_dir`` and evaluate on every test set."""
    from .infer import predict_data
    from .train import TrainConfig, train
    from .trainset import load_split

    if variant not in VARIANTS:
        raise DeqaError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
    run_dir = Path(work_dir) / f"{variant}-{'+'.join(training)}-seed{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = TrainConfig(model=str(stage1_dir), data=[str(metas[n]) for n in training], out=str(run_dir),
                         steps=steps, batch_size=batch_size, lr=lr, mode="full", seed=seed,
                         progress=progress, eval_every=-1, device="cpu", **VARIANTS[variant])
    t0 = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - t0
    test = load_split([metas[n] for n in sorted(metas)], "test")
    preds = predict_data(result.model, result.processor, test)
    table = evaluate_predictions(preds)
    table.insert(0, "seed", seed)
    table.insert(0, "training", "+".join(training))
    table.insert(0, "variant", variant)
    table["train_seconds"] = seconds
    shutil.rmtree(run_dir, ignore_errors=True)  # keep the numbers, not 18 models
    return table


def run_ablation(stage1_dir, data_dir, out_dir, seeds=(0, 1, 2), steps: int = 400, batch_size: int = 8,
                 lr: float = 3e-4, variants=tuple(VARIANTS), recompute: bool = False,
                 progress: bool = True) -> pd.DataFrame:
    """Every variant x {single, co-train} x seed; returns (and caches) one row per run and test set."""
    from .recipe import find_metas
    from .setup import progress as progress_bar

    metas = {Path(m).parent.name: Path(m) for m in find_metas(data_dir)}
    sets = training_sets(sorted(metas, key=lambda n: (n != "synth-koniq", n)))
    settings = {"stage1": str(Path(stage1_dir).resolve()), "seeds": list(seeds), "steps": steps,
                "batch_size": batch_size, "lr": lr, "variants": list(variants),
                "training": {k: list(v) for k, v in sets.items()},
                "data": {n: str(p.resolve()) for n, p in sorted(metas.items())}}
    out_dir = Path(out_dir)
    cache, cache_settings = out_dir / "results.csv", out_dir / "settings.json"
    if not recompute and cache.is_file() and cache_settings.is_file() \
            and json.loads(cache_settings.read_text()) == settings:
        return pd.read_csv(cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(v, t, s) for t in sets for v in variants for s in seeds]
    parts = []
    bar = progress_bar(jobs, desc="ablation runs", disable=not progress)
    for variant, training, seed in bar:
        bar.set_postfix_str(f"{variant} / {training} / seed {seed}")
        parts.append(run_one(stage1_dir, metas, variant, sets[training], seed, steps, out_dir / "work",
                             batch_size=batch_size, lr=lr))
    results = pd.concat(parts, ignore_index=True)
    results.to_csv(cache.with_suffix(".tmp"), index=False)
    cache.with_suffix(".tmp").replace(cache)
    cache_settings.write_text(json.dumps(settings, indent=1))
    shutil.rmtree(out_dir / "work", ignore_errors=True)
    return results


def summary_table(results: pd.DataFrame, metrics=("plcc", "srcc")) -> pd.DataFrame:
    """Mean and std over seeds: rows (training, variant), columns (test set, metric) as "0.912 ± 0.004"."""
    grouped = results.groupby(["training", "variant", "test_set"], sort=False)[list(metrics)]
    mean, std = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    text = mean.map(lambda v: f"{v:.3f}") + " ± " + std.map(lambda v: f"{v:.3f}")
    table = text.unstack("test_set")
    table.columns = table.columns.swaplevel(0, 1)
    table = table.sort_index(axis=1, level=0, sort_remaining=False)
    order = [v for v in VARIANTS if v in table.index.get_level_values("variant")]
    table = table.reindex(order, level="variant")
    return table.rename(index=VARIANT_NAMES, level="variant")
