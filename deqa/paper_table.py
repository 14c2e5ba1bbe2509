"""The paper's cross-data-set table, for a model of yours: score the published test lists of the eight
data sets and print PLCC / SRCC per data set beside the published numbers. Explained in notebook 05
(``05_distribution_plots``), which introduces the metrics.

    python -m deqa paper-table --model RUN_OR_MODEL_DIR --data-root DIR [--list NAME=PATH ...]
        [--image-root DIR] [--batch-size B] [--limit N] [--json] [--predictions OUT_DIR]

The test lists are the DeQA-Score meta JSONs (``PUBLISHED_LISTS``: ``test_koniq_2k.json`` ... as the
published ``scripts/infer.sh`` names them), found anywhere under ``--data-root``; ``--list NAME=PATH``
adds or replaces one (any format ``deqa.data.read_metadata`` reads: a Q-Align JSON, a pyiqa CSV, a
LIQE txt, the KonIQ sets file, whose test rows are used). An image path is taken relative to
``--image-root`` when given, else to the list's folder or one of its two parents (the published JSONs
name ``KONIQ/images/x.jpg`` relative to the ``Data-DeQA-Score`` folder that holds ``KONIQ/metas/``),
else to ``--data-root``. Each image gets one forward pass (``deqa.infer.score_images``); the numbers
are those of ``deqa.evaluate.evaluate_table``: PLCC after the 4-parameter logistic fit (the published
protocol) and SRCC, against the list's own mu (``gt_score_norm`` in a DeQA-Score JSON, else the MOS
rescaled to [1, 5] on the whole list).
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DeqaError


@dataclass(frozen=True)
class Benchmark:
    """One data set of the paper's table: its key, the name shown, the published test list (file
    name and the folder of ``Data-DeQA-Score`` that holds it), and the names ``--list`` accepts."""

    key: str
    name: str
    file: str
    folder: str
    aliases: tuple[str, ...]
    dataset: str  # the name written to the table's ``dataset`` column (the package's data set name)


#: The eight test lists of the paper's table, in its column order. File names as in the published
#: scripts/infer.sh and scripts/eval_score.sh (``../Data-DeQA-Score/KONIQ/metas/test_koniq_2k.json`` ...).
PUBLISHED_LISTS = (
    Benchmark("koniq", "KonIQ-10k", "test_koniq_2k.json", "KONIQ", ("koniq10k",), "koniq10k"),
    Benchmark("spaq", "SPAQ", "test_spaq_2k.json", "SPAQ", (), "spaq"),
    Benchmark("kadid", "KADID-10k", "test_kadid_2k.json", "KADID10K", ("kadid10k",), "kadid10k"),
    Benchmark("pipal", "PIPAL", "test_pipal_5k.json", "PIPAL", (), "pipal"),
    Benchmark("livew", "LIVE-Wild", "test_livew_1k.json", "LIVE-WILD",
              ("livewild", "livec", "clive", "livechallenge"), "livec"),
    Benchmark("agiqa", "AGIQA-3K", "test_agiqa_3k.json", "AGIQA3K", ("agiqa3k", "agi"), "agiqa3k"),
    Benchmark("tid2013", "TID2013", "test_tid2013_3k.json", "TID2013", (), "tid2013"),
    Benchmark("csiq", "CSIQ", "test_csiq_866.json", "CSIQ", (), "csiq"),
)


@dataclass(frozen=True)
class PaperRow:
    """One published row: which model, how it was trained, where the numbers come from, and
    ``results`` {data set key: (PLCC, SRCC)}; a data set it has no number for is absent."""

    id: str
    model: str
    tuning: str
    backbone: str
    training: str
    source: str
    results: dict


_CARD = ("Hugging Face model card of zhiyuanyou/DeQA-Score-LoRA-Mix3, table 'Non-reference IQA Results "
         "(PLCC / SRCC)'")

#: The published numbers, one row per model, all from one table (see ``PaperRow.source``). Not checked
#: against the paper's own tables, which may hold the fully fine-tuned DeQA-Score-Mix3.
PAPER_TABLE = (
    PaperRow("deqa_lora", "DeQA-Score", "LoRA fine-tuning", "mPLUG-Owl2 (LLaMA-2-7B)",
             "KonIQ + SPAQ + KADID together (Mix3)", _CARD,
             {"koniq": (0.956, 0.944), "spaq": (0.939, 0.935), "kadid": (0.953, 0.951),
              "pipal": (0.481, 0.481), "livew": (0.903, 0.890), "agiqa": (0.806, 0.754),
              "tid2013": (0.851, 0.821), "csiq": (0.900, 0.860)}),
    PaperRow("qalign_full", "Q-Align", "full fine-tuning", "mPLUG-Owl2 (LLaMA-2-7B)",
             "KonIQ + SPAQ + KADID together (Mix3); the card's baseline", _CARD,
             {"koniq": (0.945, 0.938), "spaq": (0.933, 0.931), "kadid": (0.935, 0.934),
              "pipal": (0.409, 0.420), "livew": (0.887, 0.883), "agiqa": (0.788, 0.733),
              "tid2013": (0.829, 0.808), "csiq": (0.876, 0.845)}),
)

_BY_KEY = {b.key: b for b in PUBLISHED_LISTS}


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]", "", str(name).lower())


def benchmark_key(name: str) -> str:
    """The key of a data set of the paper's table named ``name`` (``KonIQ-10k``, ``koniq10k``,
    ``LIVE_Wild`` ...); a name outside the table comes back lower-cased (its own row, no paper numbers)."""
    key = _norm(name)
    for b in PUBLISHED_LISTS:
        if key in {b.key, _norm(b.name), *b.aliases}:
            return b.key
    return key


def paper_numbers(key: str) -> dict:
    """``{row id: (PLCC, SRCC) or None}`` for one data set key."""
    return {row.id: row.results.get(key) for row in PAPER_TABLE}


# ------------------------------------------------------------------------------- finding the lists
def find_lists(data_root=None, given=()) -> dict:
    """``{key: Path}``: the published test lists found under ``data_root`` (searched recursively for
    the file names of ``PUBLISHED_LISTS``; the first in sorted order when a name occurs twice), then
    the ``given`` (NAME, PATH) pairs, which add data sets or replace a found list."""
    found: dict = {}
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise DeqaError(f"data root {root} is not a folder")
        wanted = {b.file: b.key for b in PUBLISHED_LISTS}
        hits: dict = {}
        for folder, _, files in os.walk(root):
            for f in files:
                if f in wanted:
                    hits.setdefault(wanted[f], []).append(Path(folder) / f)
        found = {key: min(paths) for key, paths in hits.items()}
    for name, path in given:
        path = Path(path)
        if not path.is_file():
            raise DeqaError(f"--list {name}={path}: file not found")
        found[benchmark_key(name)] = path
    order = [b.key for b in PUBLISHED_LISTS]
    rank = {key: i for i, key in enumerate(order)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(order)), kv[0])))


def parse_list_option(text: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH)."""
    name, sep, path = str(text).partition("=")
    if not sep or not name.strip() or not path.strip():
        raise DeqaError(f"--list expects NAME=PATH (e.g. koniq=metas/test_koniq.json), got {text!r}")
    return name.strip(), path.strip()


def read_list(path, key: str) -> tuple[pd.DataFrame, str | None]:
    """A test list in the package's schema, and the split to evaluate (``"test"`` when the file has
    test rows among others, else None: every row). A DeQA-Score JSON is read higher-is-better for every
    data set: the published evaluation correlates predictions with its ``gt_score`` as they are and
    reports positive correlations on all eight lists."""
    from . import data
    from .formats import detect_format

    path = Path(path)
    bench = _BY_KEY.get(key)
    opts = {"lower_is_better": False} if detect_format(path) == "deqa_json" else {}
    table = data.read_metadata(path, dataset=bench.dataset if bench else key, **opts)
    splits = set(table["split"].astype(str))
    return table, ("test" if "test" in splits and len(splits) > 1 else None)


def resolve_images(images, list_path, image_root=None, data_root=None) -> list:
    """Each image's file (a Path) or None when it is not there: an absolute path as it is, else the
    first of ``image_root`` (when given, the only base), the list's folder and its two parents,
    ``data_root`` under which ``base / image`` exists."""
    folder = Path(list_path).parent
    if image_root is not None:
        bases = [Path(image_root)]
    else:
        bases = [folder, folder.parent, folder.parent.parent] + ([Path(data_root)] if data_root else [])
    bases = list(dict.fromkeys(bases))
    out = []
    for image in images:
        candidates = [Path(image)] if Path(image).is_absolute() else [b / image for b in bases]
        out.append(next((c for c in candidates if c.is_file()), None))
    return out


# ---------------------------------------------------------------------------------- scoring
@dataclass
class ListPlan:
    """What will be scored for one list: the whole list (``meta``, for the human side), the split
    evaluated, and the chosen images (their names in the list and their files)."""

    key: str
    path: Path
    meta: pd.DataFrame
    split: str | None
    images: list
    files: list
    n_listed: int
    n_found: int


def plan_list(key: str, path, image_root=None, data_root=None, limit: int | None = None,
              seed: int = 0) -> ListPlan:
    """Read one list and find its images; ``limit`` keeps a fixed random subset (``seed``) of at most
    that many of the images found."""
    meta, split = read_list(path, key)
    rows = meta if split is None else meta[meta["split"].astype(str) == split]
    names = rows["image"].astype(str).tolist()
    files = resolve_images(names, path, image_root, data_root)
    have = np.flatnonzero([f is not None for f in files])
    n_found = len(have)
    if limit is not None and len(have) > limit:
        have = np.sort(np.random.default_rng(seed).choice(have, limit, replace=False))
    return ListPlan(key, Path(path), meta, split, [names[i] for i in have], [files[i] for i in have],
                    len(rows), n_found)


def plan_lists(lists: dict, image_root=None, data_root=None, limit: int | None = None,
               seed: int = 0) -> dict:
    """``plan_list`` for every {key: path} of ``find_lists``."""
    if limit is not None and limit < 1:
        raise DeqaError(f"--limit must be at least 1, got {limit}")
    return {key: plan_list(key, path, image_root, data_root, limit, seed) for key, path in lists.items()}


def score_plan(model, processor, plan: ListPlan, batch_size: int = 16, progress: bool = False):
    """Score a plan's images and evaluate them against its list: ``(metrics, predictions, converged)``
    with ``metrics`` the list's row of ``deqa.evaluate.evaluate_table`` (n, plcc, plcc_logistic,
    srcc, krcc and the distribution gaps), ``predictions`` as ``python -m deqa score`` writes them
    (``image`` = the file scored) and ``converged`` False when the logistic fit fell back to the raw PLCC."""
    from .evaluate import evaluate_table
    from .infer import score_images

    preds = score_images(model, processor, [str(f) for f in plan.files], batch_size=batch_size,
                         progress=progress)
    listed = dict(zip(map(str, plan.files), plan.images))
    joinable = preds.assign(image=preds["image"].map(listed))  # the list's own names: an exact join
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fallback is returned, not warned
        table = evaluate_table(joinable, plan.meta, split=plan.split, source=str(plan.path))
    name = str(plan.meta["dataset"].iloc[0])
    metrics = {k: (None if pd.isna(v) else float(v)) for k, v in table.loc[name].items()}
    metrics["n"] = int(metrics["n"] or 0)
    return metrics, preds, name not in table.attrs["logistic_fallback"]


def _label(key: str) -> str:
    return _BY_KEY[key].name if key in _BY_KEY else key


def paper_table(model, processor, plans: dict, batch_size: int = 16, progress: bool = False,
                predictions_dir=None) -> pd.DataFrame:
    """The table: one row per data set of the paper (and per extra list), indexed by key, with
    ``name, list, n_listed, n_found, n, plcc, srcc`` (ours: PLCC after the logistic fit, SRCC; NaN
    where nothing was scored) and ``<row id>_plcc, <row id>_srcc`` for each ``PAPER_TABLE`` row (NaN
    where it has no number). ``.attrs``: ``metrics`` (every number of ``score_plan`` per key),
    ``skipped`` ({key: reason}), ``logistic_fallback`` (keys), ``unreadable`` ({key: files skipped})."""
    keys = [b.key for b in PUBLISHED_LISTS] + [k for k in plans if k not in _BY_KEY]
    rows, metrics, skipped, fallback, unreadable = {}, {}, {}, [], {}
    for key in keys:
        plan = plans.get(key)
        row = {"name": _label(key), "list": str(plan.path) if plan else None,
               "n_listed": plan.n_listed if plan else np.nan, "n_found": plan.n_found if plan else np.nan,
               "n": 0 if plan else np.nan, "plcc": np.nan, "srcc": np.nan}
        for paper in PAPER_TABLE:
            plcc_, srcc_ = paper.results.get(key, (np.nan, np.nan))
            row[f"{paper.id}_plcc"], row[f"{paper.id}_srcc"] = plcc_, srcc_
        if plan is None:
            skipped[key] = "no list found"
        elif not plan.files:
            skipped[key] = f"none of its {plan.n_listed} images found"
        else:
            found, preds, ok = score_plan(model, processor, plan, batch_size, progress)
            metrics[key] = found
            row.update(n=found["n"], plcc=found["plcc_logistic"], srcc=found["srcc"])
            if not ok:
                fallback.append(key)
            if preds.attrs.get("skipped"):
                unreadable[key] = list(preds.attrs["skipped"])
            if predictions_dir is not None:
                out = Path(predictions_dir)
                out.mkdir(parents=True, exist_ok=True)
                preds.to_csv(out / f"{key}.csv", index=False, float_format="%.6f")
        rows[key] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "key"
    table.attrs = {"metrics": metrics, "skipped": skipped, "logistic_fallback": fallback,
                   "unreadable": unreadable}
    return table


# ------------------------------------------------------------------------------- printing
def _fmt(value, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def format_table(table: pd.DataFrame) -> str:
    """The table as text: ours (4 decimals) beside the published rows (3 decimals, as published),
    '-' where there is no number, then what each column means and where the numbers come from."""
    columns = {("this model", "n"): ["-" if pd.isna(v) else str(int(v)) for v in table["n"]],
               ("this model", "PLCC"): [_fmt(v, 4) for v in table["plcc"]],
               ("this model", "SRCC"): [_fmt(v, 4) for v in table["srcc"]]}
    for paper in PAPER_TABLE:
        head = f"{paper.model} ({paper.tuning.split()[0]})"
        columns[(head, "PLCC")] = [_fmt(v, 3) for v in table[f"{paper.id}_plcc"]]
        columns[(head, "SRCC")] = [_fmt(v, 3) for v in table[f"{paper.id}_srcc"]]
    shown = pd.DataFrame(columns, index=pd.Index(table["name"].tolist(), name="data set"))
    lines = [shown.to_string(), "",
             "this model: PLCC after the 4-parameter logistic fit (the published protocol) and SRCC",
             "  (Spearman) against each list's own mu (gt_score_norm of a DeQA-Score JSON, else the MOS",
             "  rescaled to [1, 5] on the list); n = images scored."]
    for paper in PAPER_TABLE:
        lines.append(f"{paper.model}: {paper.tuning} of {paper.backbone}, trained on {paper.training}.")
    sources = sorted({paper.source for paper in PAPER_TABLE})
    lines.append(f"Published numbers: {'; '.join(sources)}. '-': no number.")
    return "\n".join(lines)


def format_notes(table: pd.DataFrame) -> list[str]:
    """One line per list found (its file, the images found and scored) and per data set skipped."""
    lines = []
    for key, row in table.iterrows():
        if isinstance(row["list"], str) and key not in table.attrs["skipped"]:
            lines.append(f"found: {row['name']}: {row['list']} ({int(row['n_found'])} of "
                         f"{int(row['n_listed'])} images found, {int(row['n'])} scored)")
    for key, reason in table.attrs["skipped"].items():
        where = f" ({table.loc[key, 'list']})" if isinstance(table.loc[key, "list"], str) else ""
        lines.append(f"skipped: {_label(key)}{where}: {reason}")
    for key in table.attrs["logistic_fallback"]:
        lines.append(f"note: {_label(key)}: the logistic fit did not converge; PLCC is the raw PLCC")
    for key, files in table.attrs["unreadable"].items():
        lines.append(f"note: {_label(key)}: {len(files)} unreadable image(s) skipped, e.g. {files[0]}")
    return lines


def to_json(table: pd.DataFrame, model: str) -> dict:
    """The table as a JSON-ready dict: ``datasets`` (ours, every metric, and the published numbers),
    ``paper_rows`` (which model each published row is and its source), ``skipped``."""
    def number(v):
        return None if v is None or pd.isna(v) else float(v)

    datasets = []
    for key, row in table.iterrows():
        scored = key in table.attrs["metrics"]
        datasets.append({
            "key": key, "name": row["name"], "list": row["list"] if isinstance(row["list"], str) else None,
            "n_listed": None if pd.isna(row["n_listed"]) else int(row["n_listed"]),
            "n_found": None if pd.isna(row["n_found"]) else int(row["n_found"]),
            "n": None if pd.isna(row["n"]) else int(row["n"]),
            "plcc": number(row["plcc"]), "srcc": number(row["srcc"]),
            "metrics": table.attrs["metrics"].get(key) if scored else None,
            "paper": {p.id: (None if pd.isna(row[f"{p.id}_plcc"]) else
                             {"plcc": number(row[f"{p.id}_plcc"]), "srcc": number(row[f"{p.id}_srcc"])})
                      for p in PAPER_TABLE},
        })
    return {"model": str(model),
            "protocol": "PLCC after the 4-parameter logistic fit, SRCC; human side: the list's own mu",
            "datasets": datasets,
            "paper_rows": [{"id": p.id, "model": p.model, "tuning": p.tuning, "backbone": p.backbone,
                            "training": p.training, "source": p.source} for p in PAPER_TABLE],
            "skipped": dict(table.attrs["skipped"]),
            "logistic_fallback": list(table.attrs["logistic_fallback"]),
            "unreadable": dict(table.attrs["unreadable"])}


# ------------------------------------------------------------------------------- command line
def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="trained run folder, model folder or hub id")
    parser.add_argument("--data-root", metavar="DIR", help="folder searched (recursively) for the published "
                        "test lists: " + ", ".join(b.file for b in PUBLISHED_LISTS))
    parser.add_argument("--list", action="append", default=[], metavar="NAME=PATH",
                        help="a test list of another name or layout (repeatable); NAME: one of "
                        + ", ".join(b.key for b in PUBLISHED_LISTS) + " (or their usual names), or any "
                        "other name for an extra row")
    parser.add_argument("--image-root", metavar="DIR", help="folder the lists' image paths are relative to "
                        "(default: the list's folder or its two parents, then --data-root)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="score at most N images per list (a fixed random subset), for a quick look")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("--predictions", metavar="OUT_DIR",
                        help="also write each list's predictions to OUT_DIR/<key>.csv (as `score` writes them)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:1 ... (default auto)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="weights' dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="Qwen2-VL / Qwen2.5-VL: at most N pixels per image (fewer visual tokens)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from .mllm import load, set_max_pixels
    from .setup import resolve_device

    if args.data_root is None and not args.list:
        raise DeqaError("give --data-root DIR (the folder holding the published test lists) or --list NAME=PATH")
    lists = find_lists(args.data_root, [parse_list_option(t) for t in args.list])
    if not lists:
        raise DeqaError(f"no test list found under {args.data_root} (looked for "
                        f"{', '.join(b.file for b in PUBLISHED_LISTS)}); name yours with --list NAME=PATH")
    plans = plan_lists(lists, args.image_root, args.data_root, args.limit)
    if not any(plan.files for plan in plans.values()):
        where = args.image_root or "each list's folder, its two parents or --data-root"
        raise DeqaError(f"found {len(plans)} list(s) but none of their images under {where}; "
                        "give --image-root DIR")
    device = resolve_device(args.device)
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else None)
    model, processor = load(args.model, dtype=dtype, device=device)
    if args.max_pixels is not None:
        set_max_pixels(processor, args.max_pixels)
    table = paper_table(model, processor, plans, batch_size=args.batch_size, progress=not args.no_progress,
                        predictions_dir=args.predictions)
    if args.json:
        print(json.dumps(to_json(table, args.model), indent=2))
        return 0
    print(f"model: {args.model}")
    print(format_table(table))
    print("\n".join(format_notes(table)))
    return 0
