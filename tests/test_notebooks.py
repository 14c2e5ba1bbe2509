"""Every chapter executes top to bottom in smoke mode (DEQA_SMOKE=1), in order, sharing one
temporary runs/data folder so that later chapters find what earlier ones produced."""
from __future__ import annotations

import os

import pytest

from deqa import nbrun

BOOKS = nbrun.chapter_notebooks()


@pytest.fixture(scope="module")
def smoke_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("smoke")
    env = {"DEQA_SMOKE": "1", "DEQA_FIGURES": str(base / "figures"),
           "DEQA_RUNS": str(base / "runs"), "DEQA_DATA": str(base / "data")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield base
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.notebook
@pytest.mark.parametrize("book", BOOKS, ids=[b.stem for b in BOOKS])
def test_notebook_runs_in_smoke_mode(book, smoke_env, tmp_path):
    prefix = nbrun.chapter_prefix(book)
    before = {p: p.stat().st_mtime_ns for p in (smoke_env / "figures").glob(f"{prefix}_*.png")} if prefix else {}
    took = nbrun.execute(book, tmp_path / book.name, timeout=900, verbose=False)
    if prefix:   # a chapter writes (or rewrites) at least one figure of its own, 02b_*.png for 02b
        written = [p for p in (smoke_env / "figures").glob(f"{prefix}_*.png") if before.get(p) != p.stat().st_mtime_ns]
        assert written, f"{book.name} wrote no figure named {prefix}_*.png"
    print(f"{book.name}: {took:.1f} s")


def test_chapters_run_in_order_with_each_appendix_after_its_chapter():
    names = [b.name for b in BOOKS]
    chapters = [n for n in names if n != "solutions.ipynb"]
    assert [nbrun.chapter_prefix(n) for n in chapters] == sorted(nbrun.chapter_prefix(n) for n in chapters)
    assert names[-1] == "solutions.ipynb" and "02b_label_modes.ipynb" in names
    assert names.index("02b_label_modes.ipynb") == names.index("02_soft_labels.ipynb") + 1
    assert (nbrun.chapter_prefix("02b_label_modes.ipynb"), nbrun.chapter_prefix("02_soft_labels.ipynb"),
            nbrun.chapter_prefix("solutions.ipynb")) == ("02b", "02", "")


@pytest.mark.notebook
def test_a_second_make_tutorial_finds_run_folders_it_may_replace(smoke_env):
    """After the chain above, every run folder a chapter trained still holds only what training wrote, so
    that running the chapters again (a second ``make tutorial``) may replace it: a chapter that scores or
    reports a model writes beside its run folder, not into it."""
    from deqa.checkpoints import RUN_CONFIG, STAGE1_LOG, check_run_folder

    runs = smoke_env / "runs"
    if not runs.is_dir():
        pytest.skip("the notebooks did not run in this session (run the whole module)")
    folders = [p for p in runs.iterdir() if (p / RUN_CONFIG).is_file() or (p / STAGE1_LOG).is_file()]
    assert "tiny-deqa" in {p.name for p in folders}
    for folder in folders:
        check_run_folder(folder)
