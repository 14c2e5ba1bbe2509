"""deqa.trainset: every metadata file read once, labels per data set, the pair stream."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deqa import trainset
from deqa.errors import DeqaError


def test_pair_stream_crosses_epochs_like_concatenated_epochs():
    datasets = np.array(["a"] * 5 + ["b"] * 4)
    stream = trainset.PairStream(datasets, seed=3)
    e0, e1 = stream.sampler.epoch_pairs(0), stream.sampler.epoch_pairs(1)
    a, b = stream.take(6, 7)  # 3 pairs from the end of epoch 0, 4 from the start of epoch 1
    np.testing.assert_array_equal(a, np.concatenate([e0[0][6:], e1[0][:4]]))
    np.testing.assert_array_equal(b, np.concatenate([e0[1][6:], e1[1][:4]]))
    assert np.all(datasets[a] == datasets[b])


def test_an_image_in_two_splits_across_files_is_refused(tmp_path):
    """Train/test overlap: the same image of the same data set as training in one file, test in another."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    rows = {"image": ["a.png", "b.png"], "mos": [3.0, 4.0], "std": [0.5, 0.6], "dataset": ["d", "d"]}
    pd.DataFrame({**rows, "split": ["train", "train"]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({**rows, "split": ["test", "test"]}).iloc[:1].to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(DeqaError, match="more than one split.*a.png"):
        trainset.load_split([tmp_path / "train.csv", tmp_path / "test.csv"], "train")

def test_load_splits_reads_each_file_once_and_equals_load_split(smoke_data, monkeypatch):
    from deqa import data, process_cache

    process_cache.clear()
    calls = []
    read = data.read_metadata
    monkeypatch.setattr(data, "read_metadata", lambda path, *a, **k: calls.append(str(path)) or read(path, *a, **k))
    splits = trainset.load_splits(smoke_data, ("train", "val", "test"))
    assert sorted(calls) == sorted(smoke_data)  # once each
    again = trainset.load_splits(smoke_data, ("train",))
    assert sorted(calls) == sorted(smoke_data)  # and once per process for the same labels
    assert again["train"].paths == splits["train"].paths
    trainset.load_splits(smoke_data, ("train",), method="cdf")
    assert len(calls) == 2 * len(smoke_data)  # other label settings: read again
    monkeypatch.setattr(data, "read_metadata", read)
    for split, got in splits.items():
        alone = trainset.load_split(smoke_data, split)
        assert got.paths == alone.paths
        np.testing.assert_array_equal(got.target, alone.target)
        np.testing.assert_array_equal(got.mu, alone.mu)
    n = sum(len(pd.read_csv(m)) for m in smoke_data)
    assert sum(len(d) for d in splits.values()) == n


def test_questions_are_drawn_per_image_and_epoch_and_follow_the_pairs():
    from deqa.collate import QUESTIONS

    datasets = np.array(["a"] * 40 + ["b"] * 30)
    stream = trainset.PairStream(datasets, seed=5)
    n = stream.per_epoch
    a, b = stream.take(0, 2 * n)
    qa, qb = stream.questions(0, 2 * n)
    assert qa.shape == a.shape and set(qa) | set(qb) == set(range(len(QUESTIONS)))
    # one question per image and epoch: an image drawn twice in one epoch (as A, then as B) keeps it
    first = dict(zip(a[:n], qa[:n]))
    assert all(first[j] == q for j, q in zip(b[:n], qb[:n]) if j in first)
    # a pure function of the position (resume-safe), and a new draw in the next epoch
    again = stream.questions(n - 3, 6)
    np.testing.assert_array_equal(again[0], qa[n - 3:n + 3])
    second = dict(zip(a[n:], qa[n:]))
    assert np.mean([first[j] != second[j] for j in first if j in second]) > 0.5
    assert trainset.PairStream(datasets, seed=6).questions(0, n)[0].tolist() != qa[:n].tolist()


def test_the_answer_word_is_the_published_equal_width_bin(smoke_data):
    from deqa.levels import ONE_HOT_EDGES

    data = trainset.load_split(smoke_data, "train")
    expected = np.sum(data.mu[:, None] > ONE_HOT_EDGES, axis=1)  # bad <= 1.8 < poor <= 2.6 ...
    np.testing.assert_array_equal(data.answer_levels, expected)
    assert len(set(data.answer_levels)) == 5
