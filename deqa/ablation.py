"""The ablation of chapter 06: which part of DeQA-Score buys what. Explained in notebook 06.

Three training objectives, each trained from the same starting model (the stage-1 checkpoint of
chapter 04), with the same seeds and the same steps:

* ``onehot_ce`` - Q-Align: a one-hot level and cross-entropy over the answer (no fidelity);
* ``soft_kl`` - the soft label and the KL loss (no fidelity);
* ``soft_kl_fid`` - DeQA-Score: soft label + KL + the Thurstone fidelity loss on same-data-set pairs.

A *plan* names the arms: for each, the data sets it trains on together (``data``), the variants
it trains (``variants``) and optionally its own ``seeds`` and ``steps``, the data sets it is tested on
besides its training sets (``test``; default: all) and whether its runs keep a score curve (``curves``). ``objective_plan`` gives ``single`` and ``co-train`` on
the full-range sets; ``RANGES_ARM`` co-trains a full-range set with sets that cover only part of the
quality range (``deqa.synth``'s ``synth-high`` and ``synth-low``). Every run is scored on the test
split of its test sets, and on all of them pooled against the latent quality the simulated raters
saw. The results are one table (one row per run and test set) and the mean predicted score per
latent-quality bin (``curves``), cached in ``out_dir`` with the settings that made them, so the
chapter re-renders in seconds; a change of settings (or ``recompute=True``) runs again.
``paired_differences`` gives the verdicts: 95% t-intervals of the differences between two
variants trained with the same seeds.

``design_plan`` adds one arm per design choice of DeQA-Score (``DESIGN_CHOICES``: the label builder,
P_hat, gamma, the KL's vocabulary, the questions). An arm's ``variants`` may be a dict of variant
names to ``TrainConfig`` settings laid over its ``base`` objective (default ``soft_kl_fid``). Runs
that two arms share (the same settings, data, seed, steps and test sets) are trained once.
Every result row has, besides the metrics against the human label, two yardsticks that no label
defines: ``js_ratings`` (the five-level JS between the predicted probabilities and the raters'
histogram c1..c5) and ``spread_error`` (mean |predicted std - human sigma|, both on [1, 5]); and
``score_range``, how far the predicted scores spread (95th minus 5th percentile).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError
from .metrics import t_interval
from .outfile import write_text_atomic

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
METRICS = ("plcc", "plcc_logistic", "srcc", "srcc_latent", "kl", "w2", "js_gaussian", "js_levels", "w1_levels",
           "js_ratings", "spread_error", "score_range")
#: the test-set name of the row that pools every test image and ranks it against the latent quality
POOLED = "pooled"
#: the arm that co-trains a full-range set with two restricted-range sets (notebook 06, section 5)
RANGES_ARM = {"ranges": {"data": ["synth-koniq", "synth-high", "synth-low"], "variants": ["soft_kl", "soft_kl_fid"],
                         "test": ["synth-spaq"], "curves": True}}
#: DeQA-Score's design choices, one arm each: variant name -> the ``TrainConfig`` settings that make it,
#: laid over the DeQA objective (``soft_kl_fid``). The variant the published code trains comes first,
#: except gamma's, which is the middle one (``PUBLISHED_VARIANTS``).
DESIGN_CHOICES = {
    "label": {"published": {"reference_labels": True}, "projection": {"reference_labels": False}},
    "p_hat": {"fixed_sigma": {"p_hat": "fixed"}, "predicted_sigma": {"p_hat": "predicted"}},
    "gamma": {"0.005": {"gamma": 0.005}, "0.05": {"gamma": 0.05}, "0.5": {"gamma": 0.5}},
    "kl_vocab": {"full": {"closed_set": False}, "levels": {"closed_set": True}},
    "questions": {"ten": {"question": "random"}, "one": {"question": "fixed"}},
}
#: the variant of each design arm that the published code trains
PUBLISHED_VARIANTS = {"label": "published", "p_hat": "fixed_sigma", "gamma": "0.05", "kl_vocab": "full",
                      "questions": "ten"}
#: edges of the latent-quality bins of ``score_curve``
CURVE_EDGES = tuple(np.round(np.linspace(1.0, 5.0, 17), 4))


def training_sets(names: list[str]) -> dict[str, tuple[str, ...]]:
    """``single``: the first data set alone; ``co-train``: all of them together."""
    if len(names) < 2:
        raise DeqaError(f"the ablation needs at least two data sets to co-train, found {names}")
    return {"single": (names[0],), "co-train": tuple(names)}


def objective_plan(names, variants=tuple(VARIANTS)) -> dict:
    """Every variant trained ``single`` (``synth-koniq``, or the first name) and ``co-train`` (all),
    each tested on all of ``names``."""
    names = sorted(names, key=lambda n: (n != "synth-koniq", n))
    sets = training_sets(names)
    return {arm: {"data": list(data), "variants": list(variants), "test": names} for arm, data in sets.items()}


def design_plan(data, test, seeds=None, choices=tuple(DESIGN_CHOICES)) -> dict:
    """One arm per design choice in ``choices``, each training its ``DESIGN_CHOICES`` variants over the
    DeQA objective on ``data``, tested on ``test`` (the held-out sets) besides ``data``."""
    arms = {}
    for name in choices:
        if name not in DESIGN_CHOICES:
            raise DeqaError(f"unknown design choice {name!r}; known: {sorted(DESIGN_CHOICES)}")
        arms[name] = {"data": list(data), "variants": dict(DESIGN_CHOICES[name]), "base": "soft_kl_fid",
                      "test": list(test), **({"seeds": [int(s) for s in seeds]} if seeds is not None else {})}
    return arms


def variant_settings(spec: dict, variant: str) -> dict:
    """The ``TrainConfig`` settings of ``variant`` in an arm ``spec``: its own settings over the arm's
    ``base`` objective when the arm names its variants in a dict, else the objective ``VARIANTS[variant]``."""
    variants = spec["variants"]
    if isinstance(variants, dict):
        base = spec.get("base", "soft_kl_fid")
        if base not in VARIANTS:
            raise DeqaError(f"unknown base objective {base!r}; known: {sorted(VARIANTS)}")
        return {**VARIANTS[base], **variants[variant]}
    if variant not in VARIANTS:
        raise DeqaError(f"unknown variant {variant!r}; known: {sorted(VARIANTS)}")
    return dict(VARIANTS[variant])


# ------------------------------------------------------------------------------ evaluating a run

def evaluate_predictions(preds: pd.DataFrame) -> pd.DataFrame:
    """PLCC/SRCC and distribution gaps per test data set of ``deqa.infer.predict_data`` output, one row
    per test set (``deqa.evaluate.per_dataset_table``), plus ``srcc_latent`` (SRCC against the latent
    quality, when the table has a ``quality`` column) and a ``pooled`` row: every test image together,
    ranked against the latent quality (its label-based columns are empty: each set has its own scale)."""
    from .evaluate import per_dataset_table
    from .metrics import srcc

    preds = preds.sort_values("dataset", kind="stable")
    table = per_dataset_table(preds).rename_axis("test_set").reset_index()
    table["srcc_latent"] = np.nan
    own = {str(name): label_free_gaps(p) for name, p in preds.groupby("dataset")}
    for col in ("js_ratings", "spread_error", "score_range"):
        table[col] = table["test_set"].map({name: gaps[col] for name, gaps in own.items()})
    if "quality" in preds.columns:
        latent = {str(name): srcc(p["score"], p["quality"]) for name, p in preds.groupby("dataset")}
        table["srcc_latent"] = table["test_set"].map(latent)
        pooled = {"test_set": POOLED, "n": len(preds), "srcc_latent": srcc(preds["score"], preds["quality"]),
                  **label_free_gaps(preds)}
        table = pd.concat([table, pd.DataFrame([pooled])], ignore_index=True)
    return table[["test_set", "n", *METRICS]]


def label_free_gaps(preds: pd.DataFrame) -> dict:
    """The two yardsticks of a prediction that no soft label defines, averaged over the rows:
    ``js_ratings``, the five-level JS (``metrics.js_levels``) between the predicted probabilities and
    the raters' histogram c1..c5 (NaN without one), and ``spread_error``, mean |predicted std - human
    sigma| on [1, 5]. Scale-free, so they pool across data sets. Also ``score_range``: the 95th minus
    the 5th percentile of the predicted scores, how much of [1, 5] the model uses."""
    from .formats import HISTOGRAM
    from .levels import PROB_COLUMNS
    from .metrics import js_levels

    out = {"js_ratings": np.nan, "spread_error": float(np.mean(np.abs(preds["std"] - preds["sigma"]))),
           "score_range": float(np.subtract(*np.percentile(preds["score"], [95, 5])))}
    if all(c in preds.columns for c in HISTOGRAM):
        out["js_ratings"] = float(np.mean(js_levels(preds[list(PROB_COLUMNS)].to_numpy(float),
                                                    preds[list(HISTOGRAM)].to_numpy(float))))
    return out


def score_curve(preds: pd.DataFrame, edges=CURVE_EDGES) -> pd.DataFrame:
    """Mean predicted score of the images whose latent quality falls in each bin of ``edges`` (all
    test sets pooled): what a model does with quality, whatever set an image came from."""
    edges = np.asarray(edges, dtype=float)
    bins = pd.cut(preds["quality"], edges, include_lowest=True, labels=False)
    grouped = preds.groupby(bins)["score"]
    out = pd.DataFrame({"n": grouped.size(), "score": grouped.mean()})
    mids = (edges[:-1] + edges[1:]) / 2
    out.insert(0, "quality", np.round(mids[out.index.to_numpy(dtype=int)], 4))
    return out.reset_index(drop=True)


def run_one(stage1_dir, metas: dict[str, Path], settings: dict, training: tuple[str, ...], seed: int,
            steps: int, work_dir: Path, batch_size: int = 8, lr: float = 3e-4, progress: bool = False,
            curves: bool = True, name: str = "run") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train one run from ``stage1_dir`` (``settings``: ``TrainConfig`` settings of its variant, e.g.
    ``VARIANTS["soft_kl"]``; on ``training``, with ``seed``) and evaluate it on the test split of every
    data set in ``metas``; returns its rows of the results table (``evaluate_predictions``, with
    ``training``, ``seed`` and ``steps``) and its ``score_curve`` (empty when ``curves`` is False or the
    test sets have no latent quality)."""
    from .infer import predict_data
    from .train import train
    from .trainset import load_split

    missing = [n for n in training if n not in metas]
    if missing:
        raise DeqaError(f"the ablation trains on {missing[0]!r}, which is not among the data sets {sorted(metas)}")
    run_dir = Path(work_dir) / f"{name}-{'+'.join(training)}-seed{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = _run_config(stage1_dir, metas, settings, training, seed, steps, batch_size, lr, run_dir, progress)
    t0 = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - t0
    test = load_split([metas[n] for n in sorted(metas)], "test")
    preds = predict_data(result.model, result.processor, test)
    table = evaluate_predictions(preds)
    has_quality = curves and "quality" in preds.columns
    curve = score_curve(preds) if has_quality else pd.DataFrame({"quality": [], "n": [], "score": []})
    for frame in (table, curve):
        frame.insert(0, "seed", seed)
        frame.insert(0, "training", "+".join(training))
    table["steps"] = steps
    table["train_seconds"] = seconds
    shutil.rmtree(run_dir, ignore_errors=True)  # keep the numbers, not the models
    return table, curve


def _run_config(stage1_dir, metas, settings, training, seed, steps, batch_size, lr, run_dir, progress=False):
    """The ``TrainConfig`` of one ablation run (full fine-tuning on the CPU, no validation)."""
    from .train import TrainConfig

    return TrainConfig(model=str(stage1_dir), data=[str(metas[n]) for n in training], out=str(run_dir),
                       steps=steps, batch_size=batch_size, lr=lr, mode="full", seed=seed, progress=progress,
                       eval_every=-1, device="cpu", **settings)


def run_key(job: dict) -> str:
    """What makes a run's numbers: every resolved training setting (defaults filled in, so that a
    setting given explicitly at its default is the same run), the data sets it is tested on and the
    start. Two jobs with one key are trained once."""
    from dataclasses import asdict

    config = asdict(_run_config(job["stage1_dir"], job["metas"], job["settings"], job["training"], job["seed"],
                                job["steps"], job["batch_size"], job["lr"], "-"))
    for volatile in ("out", "progress"):
        config.pop(volatile)
    return json.dumps({"config": config, "test": sorted(job["metas"])}, sort_keys=True)


# ------------------------------------------------------------------------------ the whole grid

def _data_fingerprint(meta: Path) -> dict:
    """What made a data set: the synthetic generator's params.json, else the metadata file's hash."""
    params = meta.parent / "params.json"
    if params.is_file():
        return json.loads(params.read_text())
    return {"sha256": hashlib.sha256(meta.read_bytes()).hexdigest()}


def start_fingerprint(stage1_dir) -> dict:
    """What made a start model: its stage-1 steps (chapter 04's log beside it) and image size."""
    from .checkpoints import STAGE1_LOG

    stage1_dir = Path(stage1_dir)
    if not (stage1_dir / "config.json").is_file():
        raise DeqaError(f"no start model in {stage1_dir}: run chapter 04's recipe first (deqa.recipe.pretrain_stage)")
    log = stage1_dir.parent / STAGE1_LOG
    steps = json.loads(log.read_text()).get("steps") if log.is_file() else None
    config = json.loads((stage1_dir / "config.json").read_text())
    return {"stage1_steps": steps, "image_size": config.get("vision_config", {}).get("image_size")}


def embedded_start(smoke: bool = False) -> dict:
    """``start_fingerprint`` of the stage-1 model chapter 04's recipe makes (``deqa.recipe.EMBEDDED``)."""
    from .recipe import EMBEDDED, EMBEDDED_SMOKE

    sizes = EMBEDDED_SMOKE if smoke else EMBEDDED
    return {"stage1_steps": sizes["stage1_steps"], "image_size": sizes["image_size"]}


def collect_metas(data_dirs) -> dict[str, Path]:
    """``{name: meta.csv}`` of every ``NAME/meta.csv`` in the folders ``data_dirs`` (a name twice is refused)."""
    from .recipe import find_metas

    dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    metas: dict[str, Path] = {}
    for folder in dirs:
        for meta in find_metas(folder):
            name = Path(meta).parent.name
            if name in metas:
                raise DeqaError(f"data set {name!r} found twice: {metas[name]} and {meta}")
            metas[name] = Path(meta)
    return metas


def ablation_settings(start: dict, metas: dict, plan: dict, seeds, steps: int, batch_size: int = 8,
                      lr: float = 3e-4) -> dict:
    """The settings a cached result must match (``start``: ``start_fingerprint``): no absolute path,
    so that a committed result is reused on another machine when it was made the same way."""
    return {"start": dict(start), "seeds": [int(s) for s in seeds], "steps": int(steps),
            "batch_size": int(batch_size), "lr": float(lr), "plan": plan,
            "data": {n: _data_fingerprint(p) for n, p in sorted(metas.items())}}


def read_cached(out_dir, settings: dict | None = None):
    """``(results, curves)`` cached in ``out_dir``, or None when absent or made with other settings
    (``settings=None``: whatever settings)."""
    out_dir = Path(out_dir)
    files = [out_dir / name for name in ("results.csv", "curves.csv", "settings.json")]
    if not all(f.is_file() for f in files):
        return None
    if settings is not None and json.loads(files[2].read_text()) != json.loads(json.dumps(settings)):
        return None
    names = {"arm": str, "variant": str}   # a variant may be named like a number ("0.05")
    return pd.read_csv(files[0], dtype=names), pd.read_csv(files[1], dtype=names)


def run_ablation(stage1_dir, data_dirs, out_dir, seeds=(0, 1, 2), steps: int = 300, batch_size: int = 8,
                 lr: float = 3e-4, plan: dict | None = None, recompute: bool = False, progress: bool = True,
                 work_dir=None, workers: int = 1, threads: int | None = 1,
                 start: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (arm, variant, seed) of ``plan`` (default: ``objective_plan`` of the data sets found;
    ``seeds`` and ``steps`` for the arms that do not name their own);
    returns and caches ``(results, curves)`` in ``out_dir`` (``results.csv``, ``curves.csv``,
    ``settings.json``). Models are trained in ``work_dir`` (default ``out_dir/work``) and deleted.
    ``workers`` runs train side by side in that many processes, each with ``threads`` torch CPU
    threads (one thread per run is faster for the tiny model than two shared ones; None keeps
    torch's setting). The numbers do not depend on ``workers``. ``start``: the ``start_fingerprint``
    the cache must match (default: that of ``stage1_dir``); with it, a matching cache is read even
    when ``stage1_dir`` does not exist, and a run checks that ``stage1_dir`` is such a model."""
    metas = collect_metas(data_dirs)
    plan = plan or objective_plan(list(metas))
    settings = ablation_settings(start or start_fingerprint(stage1_dir), metas, plan, seeds, steps, batch_size, lr)
    out_dir = Path(out_dir)
    cached = None if recompute else read_cached(out_dir, settings)
    if cached is not None:
        return cached
    if start is not None and start_fingerprint(stage1_dir) != start:
        raise DeqaError(f"the start model {stage1_dir} was made with {start_fingerprint(stage1_dir)}, not {start}")
    jobs = plan_jobs(stage1_dir, metas, plan, seeds, steps, batch_size, lr,
                     work_dir=Path(work_dir) if work_dir is not None else out_dir / "work")
    results, curves = _run_jobs(jobs, workers, threads, progress)
    # wall-clock seconds differ between runs: not in the committed files, which a rerun rewrites bit for bit
    results = results.drop(columns=["train_seconds"], errors="ignore")
    for frame, name in ((results, "results.csv"), (curves, "curves.csv")):
        write_text_atomic(out_dir / name, frame.to_csv(index=False, float_format="%.6g"))
    write_text_atomic(out_dir / "settings.json", json.dumps(settings, indent=1) + "\n")
    return read_cached(out_dir)  # what a reader of the cache gets, to the digit


def plan_jobs(stage1_dir, metas: dict, plan: dict, seeds=(0, 1, 2), steps: int = 300, batch_size: int = 8,
              lr: float = 3e-4, work_dir=Path("work")) -> list[dict]:
    """One job per (arm, variant, seed) of ``plan``: the arguments of ``run_one`` plus its ``arm`` and
    ``variant``. ``len({run_key(j) for j in jobs})`` runs are trained: the jobs of one key share a run."""
    return [dict(stage1_dir=str(stage1_dir), metas=_test_metas(metas, spec), settings=variant_settings(spec, variant),
                 training=tuple(spec["data"]), seed=int(seed), steps=int(spec.get("steps", steps)),
                 batch_size=batch_size, lr=lr, curves=bool(spec.get("curves", False)), work_dir=Path(work_dir),
                 arm=arm, variant=variant)
            for arm, spec in plan.items() for variant in spec["variants"] for seed in spec.get("seeds", seeds)]


def _test_metas(metas: dict, spec: dict) -> dict:
    """The data sets an arm is trained and tested on: all of them, or its ``test`` list plus its ``data``."""
    names = set(spec["data"]) | set(spec.get("test", metas))
    unknown = sorted(names - set(metas))
    if unknown:
        raise DeqaError(f"the ablation plan names {unknown[0]!r}, which is not among the data sets {sorted(metas)}")
    return {n: metas[n] for n in sorted(names)}


def _set_threads(n: int | None) -> None:
    import torch

    if n is not None:
        torch.set_num_threads(n)


def _one_job(job: dict):
    job = {k: v for k, v in job.items() if k not in ("arm", "variant")}
    return run_one(**job)


def _run_jobs(jobs: list[dict], workers: int, threads: int | None, progress: bool):
    """``run_one`` for every distinct run of ``jobs`` (``run_key``: a run two arms share is trained once,
    with its score curve when either keeps one), in ``workers`` processes (1: in this one); the rows
    of each job in job order, labelled with its arm and variant."""
    import torch
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from .setup import progress as progress_bar

    keys = [run_key(job) for job in jobs]
    unique: dict[str, dict] = {}
    for key, job in zip(keys, jobs):
        if key in unique:
            unique[key]["curves"] = unique[key]["curves"] or job["curves"]
        else:
            unique[key] = dict(job, name=f"run{len(unique)}")
    order = list(unique)
    bar = progress_bar(total=len(order), desc="ablation runs", unit="run", disable=not progress)
    done: dict[str, tuple] = {}
    before = torch.get_num_threads()
    try:
        if workers <= 1:
            _set_threads(threads)
            for key in order:
                done[key] = _one_job(unique[key])
                bar.update(1)
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_set_threads,
                                     initargs=(threads,)) as pool:
                futures = {pool.submit(_one_job, unique[key]): key for key in order}
                for future in as_completed(futures):
                    done[futures[future]] = future.result()
                    bar.update(1)
    finally:
        torch.set_num_threads(before)
        bar.close()
    for work_dir in {job["work_dir"] for job in jobs}:
        shutil.rmtree(work_dir, ignore_errors=True)
    tables, curves = [], []
    for key, job in zip(keys, jobs):
        table, curve = done[key]
        label = {"arm": job["arm"], "variant": job["variant"]}
        tables.append(_labelled(table, label))
        curves.append(_labelled(curve if job["curves"] else curve.iloc[:0], label))
    return pd.concat(tables, ignore_index=True), pd.concat(curves, ignore_index=True)


def _labelled(frame: pd.DataFrame, label: dict) -> pd.DataFrame:
    """``frame`` with ``arm`` and ``variant`` as its first columns."""
    return pd.concat([pd.DataFrame(label, index=frame.index), frame], axis=1)


# ------------------------------------------------------------------------------ reading the table

def paired_differences(results: pd.DataFrame, metric: str, a: str, b: str, higher_is_better: bool = True,
                       level: float = 0.95, by=("arm", "test_set")) -> pd.DataFrame:
    """Variant ``a`` minus variant ``b`` on ``metric``, paired by seed (the two runs of a seed share the
    start, the pairs and the order of the images), for every group of ``by``: the mean difference,
    the half-width of its ``level`` t-interval over the seeds, the interval, and the verdict: ``a`` or
    ``b`` when the interval excludes 0 (the better one, as ``higher_is_better`` says), else ``tie``."""
    key = [*by, "seed"]
    wide = results[results["variant"].isin([a, b])].pivot_table(index=key, columns="variant", values=metric,
                                                               sort=False)
    if a not in wide.columns or b not in wide.columns:
        raise DeqaError(f"paired_differences: need both variants {a!r} and {b!r} in the results")
    diff = (wide[a] - wide[b]).dropna().rename("diff").reset_index()
    rows = []
    for group, part in diff.groupby(list(by), sort=False):
        mean, half, n = t_interval(part["diff"], level)
        low, high = mean - half, mean + half
        if not np.isfinite(half):
            call = "n/a"
        elif low > 0 or high < 0:
            call = a if (low > 0) == higher_is_better else b
        else:
            call = "tie"
        rows.append({**dict(zip(by, group if isinstance(group, tuple) else (group,))), "metric": metric,
                     "n_seeds": n, "diff": mean, "half": half, "low": low, "high": high, "better": call})
    return pd.DataFrame(rows)


def mean_intervals(results: pd.DataFrame, metrics=("srcc",), level: float = 0.95,
                   by=("arm", "variant", "test_set")) -> pd.DataFrame:
    """Long table: the mean of each metric over seeds and the half-width of its ``level`` t-interval."""
    rows = []
    for group, part in results.groupby(list(by), sort=False):
        for metric in metrics:
            mean, half, n = t_interval(part[metric], level)
            if n:
                rows.append({**dict(zip(by, group)), "metric": metric, "mean": mean, "half": half, "n_seeds": n})
    return pd.DataFrame(rows)


def summary_table(results: pd.DataFrame, metrics=("plcc_logistic", "srcc"), level: float = 0.95) -> pd.DataFrame:
    """Mean over seeds and the half-width of its ``level`` t-interval, as "0.912 ± 0.004": rows (arm,
    variant), columns (test set, metric)."""
    long = mean_intervals(results, metrics, level)
    long["text"] = [f"{m:.3f} ± {h:.3f}" if np.isfinite(h) else f"{m:.3f}" for m, h in zip(long["mean"], long["half"])]
    table = long.pivot_table(index=["arm", "variant"], columns=["test_set", "metric"], values="text",
                             aggfunc="first", sort=False)
    table = table.reindex(columns=[(t, m) for t in dict.fromkeys(long["test_set"]) for m in metrics
                                   if (t, m) in table.columns])
    table = table.reindex(list(dict.fromkeys(results["variant"])), level="variant")  # the plan's order
    return table.rename(index=VARIANT_NAMES, level="variant")
