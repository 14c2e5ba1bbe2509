"""deqa.evaluate: predictions joined to metadata, the per-data-set table and the evaluate command."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from deqa import evaluate
from deqa.errors import DeqaError
from deqa.levels import LEVELS


def _toy_tables():
    """Two data sets: 'a' (MOS 0-100) and 'b' (a DMOS on 0-10); predictions equal the human label."""
    rng = np.random.default_rng(7)
    n = 10
    meta = pd.DataFrame({
        "image": [f"imgs/{i:02d}.png" for i in range(n)] + [f"b{i:02d}.png" for i in range(n)],
        "mos": np.r_[np.linspace(10, 90, n), rng.permutation(np.linspace(1, 9, n))],
        "std": np.r_[rng.uniform(8, 15, n), rng.uniform(0.5, 1.5, n)],
        "dataset": ["a"] * n + ["b"] * n, "split": "test"})
    meta.attrs = {"scales": {"a": {"lo": 0, "hi": 100, "lower_is_better": False},
                             "b": {"lo": 0, "hi": 10, "lower_is_better": True}}}
    human = evaluate.human_labels(meta)
    labels = human[[f"q_{level}" for level in LEVELS]].to_numpy()
    labels = labels / labels.sum(axis=1, keepdims=True)   # the published label may sum to 1.07: normalised
    keep = np.r_[np.arange(n - 1), n + np.arange(n)]  # a's last image is not scored
    preds = pd.DataFrame({"image": [f"/data/a/imgs/{i:02d}.png" for i in range(n - 1)]
                          + [f"/elsewhere/b{i:02d}.png" for i in range(n)]})
    preds["score"] = human["mu"].to_numpy()[keep]
    preds["std"] = human["sigma"].to_numpy()[keep]
    for k, level in enumerate(LEVELS):
        preds[f"p_{level}"] = labels[keep, k]
    preds.loc[len(preds)] = ["stray.png", 3.0, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2]
    return meta, preds


def test_evaluate_table_on_a_toy_example():
    meta, preds = _toy_tables()
    table = evaluate.evaluate_table(preds, meta)
    assert list(table.columns) == list(evaluate.TABLE_COLUMNS)
    assert table.loc["a", "n"] == 9 and table.loc["b", "n"] == 10
    assert table.attrs["missing_predictions"] == {"a": ["imgs/09.png"]}
    assert table.attrs["unmatched_predictions"] == ["stray.png"]
    # perfect predictions: correlations 1 (so the DMOS of b was flipped), gaps 0
    for col in ("plcc", "plcc_logistic", "srcc", "krcc"):
        assert np.allclose(table[col], 1.0, atol=1e-6), col
    for col in ("kl", "w2", "js_levels", "w1_levels"):
        assert np.allclose(table[col], 0.0, atol=1e-9), col
    assert np.allclose(table["js_gaussian"], 0.0, atol=1e-7)  # the published eps terms leave ~1e-8
    # the same predictions against metadata that forgets b is a DMOS: b anti-correlates
    meta_wrong = meta.copy()
    meta_wrong.attrs = {}
    wrong = evaluate.evaluate_table(preds, meta_wrong)
    assert wrong.loc["b", "srcc"] == pytest.approx(-1.0)
    assert wrong.loc["a", "srcc"] == pytest.approx(1.0)
    # a shifted prediction on data set a: W2 is the mean shift, KL the mean of shift^2 / (2 sigma^2)
    shifted = preds.copy()
    shifted.loc[:8, "score"] += 0.3
    t = evaluate.evaluate_table(shifted, meta)
    sigma_a = evaluate.human_labels(meta)["sigma"].to_numpy()[:9]
    assert t.loc["a", "w2"] == pytest.approx(0.3, abs=1e-9)
    assert t.loc["a", "kl"] == pytest.approx(np.mean(0.09 / (2 * sigma_a**2)), rel=1e-9)
    assert t.loc["a", "srcc"] == pytest.approx(1.0)


def test_join_refuses_duplicates_and_bad_rows():
    meta, preds = _toy_tables()
    twice = pd.concat([preds, preds.iloc[[0]]], ignore_index=True)
    with pytest.raises(DeqaError, match="several predictions"):
        evaluate.join_predictions(twice, meta)
    broken = preds.copy()
    broken.loc[3, "score"] = np.nan
    with pytest.raises(DeqaError, match="row 4"):
        evaluate.evaluate_table(broken, meta)
    with pytest.raises(DeqaError, match="score"):
        evaluate.evaluate_table(preds.drop(columns="score"), meta)


def test_match_images_by_path_suffix_and_name():
    meta_images = ["imgs/1.png", "imgs/1.png", "imgs/2.png", "other/3.png"]
    index = evaluate.match_images(
        ["/root/synA/imgs/1.png", "imgs/1.png", "x/2.png", "3.png", "nope.png"], meta_images,
        ["synA", "synB", "synA", "synB"])
    assert index.tolist() == [0, -1, 2, 3, -1]  # the bare 'imgs/1.png' is ambiguous: not guessed


def test_cli_prints_table_and_json(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    meta.to_csv(tmp_path / "meta.csv", index=False)
    preds.to_csv(tmp_path / "preds.csv", index=False)
    assert cli.main(["evaluate", str(tmp_path / "preds.csv"), str(tmp_path / "meta.csv")]) == 0
    out = capsys.readouterr().out
    assert "PLCC-logistic" in out and "1 image(s) of 'a' have no prediction" in out
    assert "1 prediction(s) match no metadata image" in out
    assert cli.main(["evaluate", "--json", str(tmp_path / "preds.csv"), str(tmp_path / "meta.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing_predictions"] == {"a": 1}
    assert {r["dataset"]: r["n"] for r in report["datasets"]} == {"a": 9, "b": 10}
    (tmp_path / "bad.csv").write_text("image,score\nx.png,abc\n")
    assert cli.main(["evaluate", str(tmp_path / "bad.csv"), str(tmp_path / "meta.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.csv" in err and len(err.strip().splitlines()) == 1


def test_cli_several_metadata_files_and_split(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    meta.loc[meta["image"] == "imgs/09.png", "split"] = "train"
    meta[meta["dataset"] == "a"].to_csv(tmp_path / "a.csv", index=False)
    meta[meta["dataset"] == "b"].to_csv(tmp_path / "b.csv", index=False)
    preds.to_csv(tmp_path / "preds.csv", index=False)
    args = ["evaluate", "--json", "--split", "test", str(tmp_path / "preds.csv"),
            str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["dataset"]: r["n"] for r in report["datasets"]} == {"a": 9, "b": 10}
    assert report["missing_predictions"] == {}  # the unscored image is in the train split
    assert report["datasets"][0]["srcc"] == pytest.approx(1.0)


def _write(tmp_path, meta, preds, name="preds.csv"):
    meta.to_csv(tmp_path / "meta.csv", index=False)
    preds.to_csv(tmp_path / name, index=False)
    return [str(tmp_path / name), str(tmp_path / "meta.csv")]


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_exits_non_zero_when_no_prediction_matches(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    elsewhere = preds.assign(image=[f"other/{i}.jpg" for i in range(len(preds))])
    assert cli.main(["evaluate", *_write(tmp_path, meta, elsewhere)]) == 2
    line = _error(capsys)
    assert "none of the 20 predictions" in line and "meta.csv" in line and "other/0.jpg" in line
    assert cli.main(["evaluate", "--json", *_write(tmp_path, meta, preds.iloc[:0], "empty.csv")]) == 2
    assert "empty.csv: no predictions" in _error(capsys)
    assert capsys.readouterr().out == ""


def test_too_few_images_or_constant_predictions_have_no_correlation(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    two = preds[preds["image"].str.startswith("/data/a/")].iloc[:2]
    constant = preds[preds["image"].str.startswith("/elsewhere/")].assign(score=3.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = evaluate.evaluate_table(pd.concat([two, constant]), meta)
    assert sorted(str(w.message).split(":")[1].strip()[:8] for w in caught) == ["every pr", "too few "]
    for col in ("plcc", "plcc_logistic", "srcc", "krcc"):
        assert table[col].isna().all(), col  # n = 2 would give exactly 1.0
    assert table.loc["a", "n"] == 2 and np.isfinite(table.loc["a", "w2"])
    assert "too few images" in table.attrs["undefined"]["a"]
    assert "every prediction is the same" in table.attrs["undefined"]["b"]
    assert table.attrs["logistic_fallback"] == []
    assert cli.main(["evaluate", *_write(tmp_path, meta, pd.concat([two, constant]))]) == 0
    out = capsys.readouterr().out
    assert "note: a: too few images to correlate (n = 2" in out and "did not converge" not in out


@pytest.mark.parametrize("case", ["negative", "sum", "negative std"])
def test_prediction_rows_that_are_not_distributions_are_refused(case, tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    bad = preds.copy()
    if case == "negative":
        bad.loc[4, ["p_bad", "p_poor"]] = [-0.1, bad.loc[4, "p_poor"] + 0.1]  # still sums to 1
    elif case == "sum":
        bad.loc[4, "p_bad"] = 5.0
    else:
        bad.loc[4, "std"] = -1.0
    assert cli.main(["evaluate", *_write(tmp_path, meta, bad)]) == 2
    line = _error(capsys)
    assert "preds.csv: row 5 (image '/data/a/imgs/04.png')" in line
    assert ("std is negative (-1)" if case == "negative std" else "are not probabilities") in line


@pytest.mark.slow
def test_pooled_row_and_bootstrap_intervals(tmp_path, capsys):
    from deqa import cli, metrics

    meta, preds = _toy_tables()
    rng = np.random.default_rng(2)
    noisy = preds.assign(score=preds["score"] + rng.normal(0, 0.4, len(preds)))
    table = evaluate.evaluate_table(noisy, meta, pooled=True, n_boot=50, seed=3)
    assert list(table.index) == ["a", "b", evaluate.POOLED]
    joined = evaluate.join_predictions(noisy, meta)
    assert table.loc["pooled", "n"] == 19
    assert table.loc["pooled", "srcc"] == pytest.approx(metrics.srcc(joined["score"], joined["mu"]))
    assert table.loc["pooled", "w2"] == pytest.approx(np.mean(np.sqrt(
        (joined["score"] - joined["mu"]) ** 2 + (joined["std"] - joined["sigma"]) ** 2)))
    expected = metrics.bootstrap("srcc", joined["score"], joined["mu"], n_boot=50, seed=3)
    assert (table.loc["pooled", "srcc_low"], table.loc["pooled", "srcc_high"]) == (expected.low, expected.high)
    assert (table["srcc_low"] <= table["srcc"]).all() and (table["srcc"] <= table["srcc_high"]).all()
    # the pool of workers gives the same numbers
    again = evaluate.evaluate_table(noisy, meta, pooled=True, n_boot=50, seed=3, workers=2)
    pd.testing.assert_frame_equal(table, again)
    args = _write(tmp_path, meta, noisy)
    assert cli.main(["evaluate", "--json", "--n-boot", "50", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    from_file = evaluate.evaluate_table(noisy, evaluate.read_all_metadata([args[1]]), pooled=True, n_boot=50)
    assert report["pooled"]["n"] == 19  # the CSV does not say that b is a DMOS: other numbers than above
    for col in ("srcc", "srcc_low", "srcc_high", "plcc_logistic_low", "krcc", "w2"):
        assert report["pooled"][col] == from_file.loc["pooled", col], col
    assert report["predictions"]["format"] == "deqa"
    assert cli.main(["evaluate", *args]) == 0
    out = capsys.readouterr().out
    assert "pooled" in out and "every data set together" in out
    assert cli.main(["evaluate", "--n-boot", "20", *args]) == 0
    assert "[" in capsys.readouterr().out.splitlines()[2]  # a correlation with its interval


def test_score_only_predictions_on_their_own_scale(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    joined = evaluate.join_predictions(preds, meta)
    dmos = pd.DataFrame({"file_name": preds["image"], "dmos": 100 - 20 * preds["score"]})  # lower is better
    dmos.to_csv(tmp_path / "dmos.csv", index=False)
    meta.to_csv(tmp_path / "meta.csv", index=False)
    assert cli.main(["evaluate", "--json", "--lower-better", "--score-col", "dmos", str(tmp_path / "dmos.csv"),
                     str(tmp_path / "meta.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["datasets"][0]["srcc"] == pytest.approx(1.0) and report["datasets"][0]["kl"] is None
    assert report["predictions"]["format"] == "scores" and "lower is better" in report["predictions"]["scale"]
    assert len(joined) == 19
    assert cli.main(["evaluate", str(tmp_path / "dmos.csv"), str(tmp_path / "meta.csv"), "--score-col", "dmos"]) == 0
    out = capsys.readouterr().out
    assert "score-only predictions on their own scale" in out
    srcc_b = float(out.splitlines()[2].split()[4])  # b's SRCC against the raw DMOS: -1 (not flipped)
    assert srcc_b == pytest.approx(-1.0)


def test_no_match_names_both_sides(tmp_path, capsys):
    from deqa import cli

    meta, preds = _toy_tables()
    elsewhere = preds.assign(image=[f"x{i}.jpg" for i in range(len(preds))])
    assert cli.main(["evaluate", *_write(tmp_path, meta, elsewhere)]) == 2
    line = _error(capsys)
    assert "0 of 20 matched" in line and "'x0.jpg', 'x1.jpg'" in line and "'imgs/00.png', 'imgs/01.png'" in line


def test_distortion_table_per_family_and_strength():
    rng = np.random.default_rng(0)
    rows = []
    for scene in range(12):
        rows.append({"image": f"s{scene}_pristine0.png", "distortion": "pristine", "level": 0, "scene": f"s{scene}"})
        for family in ("blur", "noise"):
            for level in (1, 2, 3):
                rows.append({"image": f"s{scene}_{family}{level}.png", "distortion": family, "level": level,
                             "scene": f"s{scene}"})
    joined = pd.DataFrame(rows).assign(dataset="synth")
    joined["mu"] = 5 - joined["level"] + rng.normal(0, 0.3, len(joined))
    joined["score"] = joined["mu"] + rng.normal(0, 0.3, len(joined))
    kadid = pd.DataFrame({"image": [f"I{r:02d}_01_0{k}.png" for r in (1, 2, 3) for k in (1, 2, 3, 4, 5)],
                          "dataset": "kadid10k"})
    kadid["mu"] = 6 - kadid["image"].str[-5].astype(int) + rng.normal(0, 0.2, len(kadid))
    kadid["score"] = kadid["mu"] + rng.normal(0, 0.2, len(kadid))
    table = evaluate.distortion_table(pd.concat([joined, kadid], ignore_index=True), n_boot=100)
    fam = table[(table["dataset"] == "synth") & (table["by"] == "family")].set_index("group")
    assert fam["n"].to_dict() == {"blur": 48, "noise": 48}  # 36 distorted + the 12 pristine images
    blur = (joined["distortion"] == "blur") | (joined["level"] == 0)
    from deqa import metrics

    assert fam.loc["blur", "srcc"] == pytest.approx(metrics.srcc(joined["score"][blur], joined["mu"][blur]))
    strength = table[(table["dataset"] == "synth") & (table["by"] == "strength")]
    assert strength["group"].tolist() == [0, 1, 2, 3] and strength["n"].tolist() == [12, 24, 24, 24]
    k = table[table["dataset"] == "kadid10k"]
    assert k[k["by"] == "family"]["group"].tolist() == ["gaussian blur"]  # parsed from the file names
    assert k[k["by"] == "strength"]["n"].tolist() == [3] * 5
    assert ((table["srcc_low"] <= table["srcc"]) & (table["srcc"] <= table["srcc_high"])).all()
    assert set(table.attrs["replicates"]) == {(d, b, g) for d, b, g in zip(table["dataset"], table["by"], table["group"])}
