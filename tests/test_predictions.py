"""deqa.predictions: each format told apart by its content, read to the same table, and every bad
row named by file and row (or line)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from deqa import predictions
from deqa.errors import DeqaError
from deqa.levels import CENTERS, LEVELS, PROB_COLUMNS


def _probs(n=6, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(5, 1.5), size=n)


def _deqa_csv(path, p, images=None):
    images = images or [f"img/{i:03d}.png" for i in range(len(p))]
    df = pd.DataFrame({"image": images, "score": p @ CENTERS,
                       "std": np.sqrt((p * (CENTERS - (p @ CENTERS)[:, None]) ** 2).sum(1))})
    for k, col in enumerate(PROB_COLUMNS):
        df[col] = p[:, k]
    df.to_csv(path, index=False, float_format="%.9f")
    return df


def _iqa_eval(path, logits, words=("excellent", "good", "fair", "poor", "bad"), images=None):
    """JSON lines as DeQA-Score's iqa_eval.py writes them: logits keyed by the words passed, in that order."""
    images = images or [f"img/{i:03d}.png" for i in range(len(logits))]
    with open(path, "w") as f:
        for i, (image, z) in enumerate(zip(images, logits)):
            by_word = dict(zip(words, z[::-1]))  # the words go excellent..bad, z is bad..excellent
            f.write(json.dumps({"id": f"{i}", "image": image, "gt_score": 3.0, "logits": by_word}) + "\n")


def test_formats_are_told_apart_by_content_not_extension(tmp_path):
    p = _probs()
    _deqa_csv(tmp_path / "scores.txt", p)
    _iqa_eval(tmp_path / "test_koniq.csv", np.log(p))
    (tmp_path / "pyiqa.json").write_text("a.png\t0.51\nb.png\t0.32\n")
    assert predictions.detect_format(tmp_path / "scores.txt") == "deqa"
    assert predictions.detect_format(tmp_path / "test_koniq.csv") == "iqa_eval"
    assert predictions.detect_format(tmp_path / "pyiqa.json") == "scores"
    table = predictions.read_predictions(tmp_path / "pyiqa.json")
    assert table["image"].tolist() == ["a.png", "b.png"] and table["score"].tolist() == [0.51, 0.32]
    assert table.attrs["format"] == "scores" and table.attrs["on_levels"] is False
    with pytest.raises(DeqaError, match="not found"):
        predictions.read_predictions(tmp_path / "missing.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DeqaError, match="empty"):
        predictions.read_predictions(tmp_path / "empty.csv")


def test_iqa_eval_logits_become_the_softmax_of_the_five(tmp_path):
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, size=(5, 5))  # bad..excellent
    words = ("Excellent", "GOOD", "fair", "Poor", "bad")  # as a user may have passed them
    _iqa_eval(tmp_path / "test_set.json", z, words)
    table = predictions.read_predictions(tmp_path / "test_set.json")
    expected = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(table[list(PROB_COLUMNS)].to_numpy(), expected, atol=1e-12)
    # the published score: the probabilities in the words' order (excellent..bad) against 5, 4, 3, 2, 1
    assert np.allclose(table["score"], expected[:, ::-1] @ np.array([5.0, 4, 3, 2, 1]), atol=1e-12)
    assert np.allclose(table["std"], np.sqrt((expected * (CENTERS - table["score"].to_numpy()[:, None]) ** 2).sum(1)))
    assert "Excellent, GOOD, fair, Poor, bad" in table.attrs["description"] and table.attrs["on_levels"]
    # a JSON list of the same records reads the same
    records = [json.loads(line) for line in (tmp_path / "test_set.json").read_text().splitlines()]
    (tmp_path / "list.json").write_text(json.dumps(records))
    assert np.allclose(predictions.read_predictions(tmp_path / "list.json")["score"], table["score"])


def test_the_same_predictions_in_deqa_and_published_format_read_alike(tmp_path):
    p = _probs(20, seed=5)
    _deqa_csv(tmp_path / "preds.csv", p)
    _iqa_eval(tmp_path / "test.json", np.log(p) + 7.0)  # a constant shift: the same softmax
    a = predictions.read_predictions(tmp_path / "preds.csv")
    b = predictions.read_predictions(tmp_path / "test.json")
    assert a["image"].tolist() == b["image"].tolist()
    for col in ("score", "std", *PROB_COLUMNS):
        assert np.allclose(a[col], b[col], atol=1e-8), col


@pytest.mark.parametrize("line, message", [
    ('{"id": "1", "image": "a.png", "logits": {"bad": 1, "poor": 2, "fair": 3, "good": 4}}', "keyed by"),
    ('{"id": "1", "image": "a.png", "logits": {"bad": 1, "poor": 2, "fair": NaN, "good": 4, "excellent": 5}}',
     "logit of 'fair'"),
    ('{"id": "1", "image": "a.png", "logits": {"bad": 1, "poor"', "line 2 is not a JSON object"),
    ('{"id": "1", "image": "a.png"}', "expected an object with 'image' and 'logits'"),
])
def test_bad_published_lines_name_the_line(tmp_path, line, message):
    good = '{"id": "0", "image": "b.png", "logits": {"bad": 1, "poor": 2, "fair": 3, "good": 4, "excellent": 5}}'
    (tmp_path / "test.json").write_text(good + "\n" + line + "\n")
    with pytest.raises(DeqaError, match=message) as err:
        predictions.read_predictions(tmp_path / "test.json")
    assert "test.json: line 2" in str(err.value)


def test_score_only_columns_by_name_by_option_or_the_only_number(tmp_path):
    (tmp_path / "a.csv").write_text("img_name,pred_mos,width\n00001.jpg,61.5,1024\n00002.jpg,40.25,1024\n")
    a = predictions.read_predictions(tmp_path / "a.csv")
    assert a["image"].tolist() == ["00001.jpg", "00002.jpg"]  # the leading zeros kept
    assert a["score"].tolist() == [61.5, 40.25] and "'pred_mos' (found by name)" in a.attrs["description"]
    # a spreadsheet's export: a byte-order mark, semicolons and decimal commas
    (tmp_path / "b.csv").write_bytes("\ufefffile;musiq\nx.png;55,5\ny.png;70\n".encode("utf-8"))
    b = predictions.read_predictions(tmp_path / "b.csv")
    assert b["image"].tolist() == ["x.png", "y.png"] and b["score"].tolist() == [55.5, 70.0]
    assert "the only numeric column" in b.attrs["description"]
    c = predictions.read_predictions(tmp_path / "a.csv", score_col="width", image_col="img_name")
    assert c["score"].tolist() == [1024.0, 1024.0]
    d = predictions.read_predictions(tmp_path / "a.csv", lower_better=True)
    assert d["score"].tolist() == [-61.5, -40.25] and "lower is better" in d.attrs["scale"]
    assert "40.25 to 61.5" in d.attrs["scale"]
    with pytest.raises(DeqaError, match="no column 'nope'"):
        predictions.read_predictions(tmp_path / "a.csv", score_col="nope")
    (tmp_path / "e.csv").write_text("name,a,b\nx.png,1,2\n")
    with pytest.raises(DeqaError, match="--score-col"):
        predictions.read_predictions(tmp_path / "e.csv")
    with pytest.raises(DeqaError, match="score-only"):
        predictions.read_predictions(tmp_path / "a.csv", format="deqa", lower_better=True)


def test_bad_rows_are_named_by_file_and_row_with_a_count(tmp_path):
    (tmp_path / "s.csv").write_text("image,score\na.png,1\nb.png,\nc.png,NaN\nd.png,2\n")
    with pytest.raises(DeqaError) as err:
        predictions.read_predictions(tmp_path / "s.csv")
    assert "s.csv: row 2 (image 'b.png')" in str(err.value) and "2 rows like this" in str(err.value)
    p = _probs(4)
    df = _deqa_csv(tmp_path / "p.csv", p)
    df.loc[2, "p_bad"] += 0.2  # no longer sums to 1
    df.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(DeqaError, match=r"p\.csv: row 3 \(image 'img/002.png'\).*not probabilities.*sum 1\.2"):
        predictions.read_predictions(tmp_path / "p.csv")
    (tmp_path / "header.csv").write_text("image,score,std," + ",".join(PROB_COLUMNS) + "\n")
    with pytest.raises(DeqaError, match="header only"):
        predictions.read_predictions(tmp_path / "header.csv")
    assert set(LEVELS) == {c[2:] for c in PROB_COLUMNS}
