"""deqa.report: the report folder of each prediction format, its numbers against `deqa evaluate
--json`, the figures each format allows, byte-identical reruns, the folder safety rules and hostile
input. The browser check is in test_report_browser.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deqa import cli, report
from deqa.errors import DeqaError

N_BOOT = "60"  # enough for an interval, few enough for a test


def _evaluate_json(capsys, preds, metas, *extra) -> dict:
    assert cli.main(["evaluate", "--json", "--n-boot", N_BOOT, str(preds), *map(str, metas), *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _report(tmp_path, name, preds, metas, *extra) -> Path:
    out = tmp_path / name
    assert cli.main(["report", str(preds), *map(str, metas), "--out", str(out), "--n-boot", N_BOOT,
                     "--no-progress", "--workers", "1", *extra]) == 0
    return out


def _table_values(html: str) -> dict:
    """{(data set, column): value} from the table of index.html (its exact data-value attributes)."""
    body = html.split('id="table"', 1)[1].split("</table>", 1)[0]
    values = {}
    for row in re.findall(r'<tr class="(?:set|pooled)" data-dataset="([^"]*)">(.*?)</tr>', body, re.S):
        for col, value in re.findall(r'data-col="([^"]+)" data-value="([^"]*)"', row[1]):
            values[(row[0], col)] = float(value) if value else None
    return values


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["deqa", "iqa_eval", "scores"])
def test_report_of_each_format_matches_evaluate(fmt, report_inputs, tmp_path, capsys):
    preds, metas = report_inputs[fmt], report_inputs["metas"]
    out = _report(tmp_path, "one", preds, metas)
    capsys.readouterr()
    html = (out / "index.html").read_text(encoding="utf-8")
    expected = _evaluate_json(capsys, preds, metas)
    values = _table_values(html)
    for record in [*expected["datasets"], expected["pooled"]]:
        for col in ("n", "plcc_logistic", "srcc", "krcc", "plcc"):
            assert values[(record["dataset"], col)] == record[col], (record["dataset"], col)
        if fmt != "scores":
            for col in ("kl", "w2", "js_gaussian", "js_levels", "w1_levels"):
                assert values[(record["dataset"], col)] == pytest.approx(record[col], rel=1e-15, abs=0)
    saved = json.loads((out / "report.json").read_text())
    assert saved["pooled"] == expected["pooled"] and saved["datasets"] == expected["datasets"]
    figures = sorted(p.name for p in (out / "figures").iterdir())
    for name in re.findall(r'<img src="figures/([^"]+)"', html):
        assert name in figures
    if fmt == "scores":
        # correlations on the model's own 0-100 scale; everything that needs levels left out, saying why
        assert "distributions_1.png" not in figures and "calibration.png" not in figures
        assert "score-only predictions have no level probabilities" in html
        assert "no predicted spread (score-only predictions)" in html
        assert "grid_best.png" in figures and "grid_uncertain.png" not in figures  # ranked after the fit
        assert '<th>KL</th>' not in html
    else:
        assert {"distributions_1.png", "distributions_2.png", "calibration.png", "calibration.svg", "density.png",
                "grid_best.png", "grid_worst.png", "grid_uncertain.png"} <= set(figures)
        assert "a perfect prediction" in html  # the rating histograms give the repeated-study line
    assert {"scatter.png", "scatter.svg", "distortions.png"} <= set(figures)
    assert "kadid10k: no image" not in html and "--out &lt;this folder&gt;" in html
    if fmt != "deqa":
        return
    # the same inputs give the same bytes, wherever the report is written
    again = _report(tmp_path, "two", preds, metas)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        assert (again / path.relative_to(out)).read_bytes() == path.read_bytes(), path.name


@pytest.mark.slow
def test_compare_two_models_on_common_images(report_inputs, tmp_path, capsys):
    from deqa import evaluate, metrics, predictions

    metas = report_inputs["metas"]
    half = pd.read_csv(report_inputs["other"]).iloc[::2]  # B scored every other image only
    half.to_csv(tmp_path / "half.csv", index=False)
    out = _report(tmp_path, "cmp", report_inputs["deqa"], metas, "--compare", str(tmp_path / "half.csv"),
                  "--names", "mine", "<b>theirs</b>")
    err = capsys.readouterr().err
    assert "the comparison uses the 55 images both models scored" in err
    saved = json.loads((out / "report.json").read_text())["compare"]
    meta = evaluate.read_all_metadata(metas)
    a = evaluate.join_predictions(predictions.read_predictions(report_inputs["deqa"]), meta)
    b = evaluate.join_predictions(predictions.read_predictions(tmp_path / "half.csv"), meta)
    a = a.set_index(["dataset", "image"]).loc[b.set_index(["dataset", "image"]).index]
    first = saved["rows"][0]
    assert first["name"] == "synth-a" and saved["names"] == ["mine", "<b>theirs</b>"]
    part_a, part_b = a.loc["synth-a"], b[b["dataset"] == "synth-a"]
    srcc = first["cells"][1]  # the order of report.CORRELATIONS
    assert float(srcc["a"]["value"]) == pytest.approx(metrics.srcc(part_a["score"], part_a["mu"]))
    assert float(srcc["b"]["value"]) == pytest.approx(metrics.srcc(part_b["score"], part_b["mu"]))
    paired = metrics.paired_bootstrap("srcc", part_a["score"].to_numpy(), part_b["score"].to_numpy(),
                                      part_a["mu"].to_numpy(), n_boot=int(N_BOOT))
    assert float(srcc["diff"]["value"]) == pytest.approx(paired.estimate)
    assert srcc["diff"]["interval"] == f"[{paired.low:.3f}, {paired.high:.3f}]"
    html = (out / "index.html").read_text()
    assert "&lt;b&gt;theirs&lt;/b&gt;" in html and "<b>theirs</b>" not in html
    assert saved["rows"][-1]["name"] == "pooled"


def test_out_folder_rules(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DeqaError, match="not written by deqa report"):
        report.check_out_dir(tmp_path / "mine")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeqaError, match="is a file"):
        report.check_out_dir(tmp_path / "file")
    assert report.check_out_dir(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert report.check_out_dir(tmp_path / "empty") == tmp_path / "empty"
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / report.MARKER).write_text(report.MARKER_TEXT)
    (ours / "preds.csv").write_text("image,score\n")
    with pytest.raises(DeqaError, match="holds one of the inputs"):
        report.check_out_dir(ours, [ours / "preds.csv"])
    # moving a finished folder into place replaces our old report and nothing else
    new = tmp_path / "tmpdir"
    new.mkdir()
    (new / report.MARKER).write_text(report.MARKER_TEXT)
    (new / "index.html").write_text("new")
    report._move_into_place(new, ours)
    assert (ours / "index.html").read_text() == "new" and not (ours / "preds.csv").exists() and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "mine", "ours"]  # nothing left over
    assert report.shown_command(["report", "p.csv", "m.csv", "--out", "/tmp/x y"]) == \
        "python -m deqa report p.csv m.csv --out <this folder>"
    assert report.shown_command(["report", "a b.csv", "--out=/x"]) == \
        "python -m deqa report 'a b.csv' --out=<this folder>"


def test_bad_input_writes_nothing(report_inputs, tmp_path, capsys):
    metas = [str(m) for m in report_inputs["metas"]]
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "thesis.tex").write_text("do not lose me")

    def fails(args, *expected):
        assert cli.main(["report", *args, "--no-progress", "--n-boot", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        for text in expected:
            assert text in err[0], err[0]
        left = [p.name for p in tmp_path.iterdir() if p.name == "r" or p.name.startswith(".")]
        assert left == [], left  # no report, no temporary folder

    nomatch = pd.DataFrame({"image": [f"x/{i}.jpg" for i in range(5)], "score": np.arange(5.0)})
    nomatch.to_csv(tmp_path / "nomatch.csv", index=False)
    fails([str(tmp_path / "nomatch.csv"), *metas, "--out", str(tmp_path / "r")], "0 of 5 matched",
          "'x/0.jpg', 'x/1.jpg'", "'images/s00_pristine0.png', 'images/s00_blur1.png'")
    frame = pd.read_csv(report_inputs["deqa"])
    frame.loc[3, "p_good"] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    fails([str(tmp_path / "nan.csv"), *metas, "--out", str(tmp_path / "r")], "nan.csv: row 4", "NaN")
    fails([str(report_inputs["deqa"]), *metas, "--out", str(keep)], "not written by deqa report")
    assert (keep / "thesis.tex").read_text() == "do not lose me"
    fails([str(report_inputs["deqa"]), *metas, "--out", str(tmp_path / "r"), "--names", "a", "b"], "--compare")


def test_hostile_names_are_text(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 30
    names = [f"<script>alert({i})</script>.png" if i % 2 else f"$x^{i}$ & co.png" for i in range(n)]
    meta = pd.DataFrame({"image": names, "mos": rng.uniform(1, 5, n), "std": rng.uniform(0.3, 1, n),
                         "dataset": "<img src=x onerror=alert(1)>$\\alpha$", "split": "test"})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    pd.DataFrame({"<b>name</b>": names[:-1] + ["<i>stray</i>.png"], "score": meta["mos"] + rng.normal(0, 0.3, n)}) \
        .to_csv(tmp_path / "p.csv", index=False)
    out = _report(tmp_path, "out", tmp_path / "p.csv", [tmp_path / "meta.csv"], "--image-col", "<b>name</b>")
    err = capsys.readouterr().err
    assert "1 prediction(s) match no metadata image (e.g. <i>stray</i>.png)" in err  # partial: said, not dropped
    html = (out / "index.html").read_text()
    assert "<script>" not in html and "<img src=x" not in html and "<i>stray" not in html and "<b>name" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;$\\alpha$" in html and "&lt;i&gt;stray&lt;/i&gt;.png" in html
    assert (out / "figures" / "scatter.png").stat().st_size > 10_000  # the $...$ name drawn as text, not maths


def test_a_data_set_too_small_for_a_panel_is_said_not_fatal(tmp_path, capsys):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"image": [f"a{i}.png" for i in range(30)] + ["b0.png", "b1.png", "b2.png"],
                         "mos": np.r_[rng.uniform(1, 5, 30), [2, 3, 4]], "std": 0.5,
                         "dataset": ["big"] * 30 + ["small"] * 3, "split": "test"})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    pd.DataFrame({"image": list(meta["image"][:31]), "score": np.r_[meta["mos"][:30] + rng.normal(0, 0.3, 30), 3.0]}) \
        .to_csv(tmp_path / "p.csv", index=False)
    out = _report(tmp_path, "out", tmp_path / "p.csv", [tmp_path / "meta.csv"])
    assert "small: too few images to correlate (n = 1" in capsys.readouterr().err
    saved = json.loads((out / "report.json").read_text())
    assert [r["n"] for r in saved["datasets"]] == [30, 1] and saved["datasets"][1]["srcc"] is None
    assert (out / "figures" / "scatter.png").is_file()  # 'big' and the pooled panel; 'small' left out
