"""docs/ledger.md, the map from DeQA-Score's design choices to this repository: every ``deqa`` name it
gives exists, every ablation arm it names is in the committed results, and README and every chapter
link to it."""
from __future__ import annotations

import importlib
import re

import pandas as pd

from deqa import nbrun
from deqa.paths import ROOT

LEDGER = ROOT / "docs" / "ledger.md"


def _rows() -> list[dict]:
    lines = [ln for ln in LEDGER.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def _resolve(name: str):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_every_deqa_name_in_the_ledger_exists():
    names = set(re.findall(r"`(deqa(?:\.\w+)+)", LEDGER.read_text()))
    assert len(names) >= 15
    for name in sorted(names):
        assert _resolve(name) is not None, name


def test_every_arm_in_the_ledger_is_in_the_committed_results():
    arms = set(pd.read_csv(ROOT / "results" / "ablation" / "results.csv", dtype={"variant": str})["arm"])
    rows = _rows()
    assert len(rows) >= 12
    named = set()
    for row in rows:
        named |= set(re.findall(r"`(\w[\w-]*)`", row["ablation arm"]))
    assert {"label", "p_hat", "gamma", "kl_vocab", "questions"} <= named
    assert named <= arms, named - arms
    for row in rows:   # a measured effect, or why there is none
        assert row["measured effect"] and (row["ablation arm"] != "-" or "not measured" in row["measured effect"])


def test_readme_and_every_chapter_link_to_the_ledger():
    import nbformat

    assert "docs/ledger.md" in (ROOT / "README.md").read_text()
    for book in nbrun.chapter_notebooks():
        if book.stem[:2].isdigit():
            top = nbformat.read(book, as_version=4).cells[0].source
            assert "docs/ledger.md" in top, book.name
