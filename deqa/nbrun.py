"""Execute the chapter notebooks top to bottom (``make tutorial``, ``make test``, ``make notebooks``).

    python -m deqa.nbrun [--smoke] [--out build/notebooks] [--inplace] [NOTEBOOK ...]

By default executed copies go to ``--out`` and the tracked notebooks are left alone. ``--inplace``
(maintainers) writes the outputs back into ``notebooks/``, cleaned of execution counts and
metadata churn, so that readers on GitHub see them. Progress is printed per notebook and per cell.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from .paths import ROOT

NOTEBOOK_DIR = ROOT / "notebooks"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: On x86-64, torch's, MKL's and oneDNN's CPU code paths are pinned to AVX2, which every x86-64 CPU of the
#: last decade has: wider vector units (AVX-512) round sums differently, so without the pin the trained
#: models, the printed numbers and the figures differ in the last bits from one CPU to another.
REPRODUCIBLE_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_code_paths() -> None:
    """Set ``REPRODUCIBLE_CPU`` in the environment the notebook kernels inherit (x86-64 only; a value
    already set is kept)."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        for key, value in REPRODUCIBLE_CPU.items():
            os.environ.setdefault(key, value)


#: a chapter's file name: two digits, an optional appendix letter (``02b``), then ``_``
_CHAPTER = re.compile(r"^[0-9]{2}[a-z]?_")


def chapter_prefix(path: Path) -> str:
    """The chapter a notebook is (``"02"``, ``"02b"``; ``""`` for one that is not a chapter): its
    figures are named ``<prefix>_*.png``."""
    match = _CHAPTER.match(Path(path).name)
    return match.group(0)[:-1] if match else ""


def chapter_notebooks() -> list[Path]:
    """The numbered chapters in order, an appendix right after its chapter (``02``, ``02b``, ``03``);
    ``solutions.ipynb`` comes last."""
    numbered = sorted((p for p in NOTEBOOK_DIR.glob("[0-9][0-9]*_*.ipynb") if chapter_prefix(p)),
                      key=lambda p: (chapter_prefix(p), p.name))
    extra = [p for p in [NOTEBOOK_DIR / "solutions.ipynb"] if p.exists()]
    return numbered + extra


def clean(nb) -> None:
    """Drop execution counts and volatile metadata; keep outputs (the result stays valid nbformat 4.4)."""
    import nbformat

    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags",)}
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = _coalesce_streams(cell.get("outputs", []))
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = None
                if out.get("output_type") in ("display_data", "execute_result"):
                    out["metadata"] = {}  # required by the schema; its content (sizes, ids) is churn
                    # a widget's view names a random model id, and no widget state is saved to draw it
                    # with: keep only its text form (the explorers of notebooks 02-03 name themselves there)
                    out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    nbformat.validate(nb)


def _coalesce_streams(outputs: list) -> list:
    """Merge consecutive stdout/stderr outputs and keep what a terminal would show: the text after
    the last carriage return of each line (a progress bar's final state, not its every update)."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = "\n".join(line.rstrip("\r").split("\r")[-1] for line in out["text"].split("\n"))
    # a bar that cleared itself (leave=False) leaves only blanks behind
    return [o for o in merged if o.get("output_type") != "stream" or o["text"].strip()]


def execute(path: Path, out_path: Path | None, timeout: int = 3600, verbose: bool = True) -> float:
    """Run one notebook with the cwd set to its folder; returns the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    pin_cpu_code_paths()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])  # no start-up chatter
    n_code = sum(c.cell_type == "code" for c in nb.cells)
    tty = sys.stdout.isatty()
    start = time.perf_counter()
    done = 0
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            client.execute_cell(cell, index)
            done += 1
            if verbose:
                line = f"  {path.stem}: cell {done}/{n_code} ({time.perf_counter() - start:5.0f} s)"
                # a terminal gets one line rewritten in place, a log file one line per cell
                print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
    if verbose and tty:
        print()
    clean(nb)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_path)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deqa.nbrun", description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in order")
    ap.add_argument("--smoke", action="store_true", help="set DEQA_SMOKE=1 (seconds per notebook)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks",
                    help="folder for the executed copies (default build/notebooks)")
    ap.add_argument("--inplace", action="store_true",
                    help="write cleaned outputs back into the tracked notebooks")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args(argv)
    if args.smoke:
        os.environ["DEQA_SMOKE"] = "1"
    os.environ["DEQA_TEXT_PROGRESS"] = "1"  # text progress bars: their final state is kept in the outputs
    books = [p.resolve() for p in args.notebooks] or chapter_notebooks()
    missing = [str(p) for p in books if not p.is_file()]
    if missing:
        print(f"error: notebook not found: {missing[0]}", file=sys.stderr)
        return 2
    total = 0.0
    for i, book in enumerate(books, 1):
        print(f"[{i}/{len(books)}] {book.name}", flush=True)
        target = book if args.inplace else args.out / book.name
        try:
            took = execute(book, target, timeout=args.timeout)
        except Exception as exc:  # noqa: BLE001 - report which notebook failed, then stop
            lines = [ln for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
            print(f"\nerror: {book.name} failed: {type(exc).__name__}", file=sys.stderr)
            print("\n".join(lines[-12:]), file=sys.stderr)
            return 1
        total += took
        print(f"  done in {took:.1f} s", flush=True)
    print(f"all {len(books)} notebooks ran in {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
