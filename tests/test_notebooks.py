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
    took = nbrun.execute(book, tmp_path / book.name, timeout=900, verbose=False)
    figures = list((smoke_env / "figures").glob(f"{book.stem[:2]}_*.png"))
    if book.stem[:2].isdigit():
        assert figures, f"{book.name} wrote no figure named {book.stem[:2]}_*.png"
    print(f"{book.name}: {took:.1f} s")
