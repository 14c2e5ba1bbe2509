"""deqa.process_cache: what a process keeps between runs (prepared images, readable files, labelled
tables) changes no number: weights, logs and scores are bit for bit those made without it, cold or warm."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from deqa import collate, infer, mllm, process_cache, train, trainset
from deqa.errors import DeqaError
from deqa.images import load_image
from deqa.levels import PREDICTION_COLUMNS


@pytest.fixture(autouse=True)
def _cold_and_settled(monkeypatch):
    """Every test starts with an empty cache; files count as settled at once (they were just written)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.delenv("DEQA_IMAGE_CACHE_MB", raising=False)
    monkeypatch.setattr(process_cache, "SETTLE_SECONDS", 0.0)
    process_cache.clear()
    yield
    process_cache.clear()
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, processor = mllm.load(tiny_model)
    return model, processor, collate.level_token_ids(processor.tokenizer)


def _images(folder: Path, sizes, seed=0) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"im{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _same_batch(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k])
                                      for k in a)


def _weights(model_dir) -> dict:
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        out.update(load_file(str(f)))
    assert out
    return out


def _log(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


# ------------------------------------------------------------------------- the same numbers

def test_training_and_validation_are_bit_identical_without_the_cache_cold_and_warm(tiny_model, smoke_data, tmp_path,
                                                                                monkeypatch):
    def run(name):
        return train.train(train.TrainConfig(model=tiny_model, data=smoke_data, out=str(tmp_path / name), steps=6,
                                             batch_size=4, lr=1e-3, progress=False, log_every=1, eval_every=3,
                                             eval_limit=16, device="cpu"))

    monkeypatch.setenv("DEQA_IMAGE_CACHE_MB", "0")
    off = run("off")
    assert len(process_cache.IMAGES) == 0
    monkeypatch.delenv("DEQA_IMAGE_CACHE_MB")
    cold = run("cold")
    store = process_cache.IMAGES
    assert len(store) > 0 and store.verified and not store.refused
    misses, hits = store.misses, store.hits
    warm = run("warm")
    assert store.misses == misses and store.hits > hits  # the second run prepared no image again
    reference = _weights(off.model_dir)
    for result in (cold, warm):
        got = _weights(result.model_dir)
        assert got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in got)
        assert _log(result.run_dir) == _log(off.run_dir)
    rows = _log(off.run_dir)
    assert sum("loss" in r for r in rows) == 6 and sum("val_srcc" in r for r in rows) == 2


def test_scores_are_bit_identical_without_the_cache_cold_and_warm(loaded, smoke_data, monkeypatch):
    model, processor, _ = loaded
    test = trainset.load_split(smoke_data, "test")
    monkeypatch.setenv("DEQA_IMAGE_CACHE_MB", "0")
    off = infer.predict_data(model, processor, test, batch_size=5)
    monkeypatch.delenv("DEQA_IMAGE_CACHE_MB")
    cold = infer.predict_data(model, processor, test, batch_size=5)
    misses = process_cache.IMAGES.misses
    warm = infer.predict_data(model, processor, test, batch_size=5)
    assert process_cache.IMAGES.misses == misses
    for got in (cold, warm):
        pd.testing.assert_frame_equal(got, off, check_exact=True)
    # and the images scored one by one from decoded pictures (score_images) give the same numbers
    alone = infer.score_images(model, processor, [load_image(p) for p in test.paths], batch_size=5, progress=False)
    np.testing.assert_array_equal(alone[list(PREDICTION_COLUMNS)].to_numpy(), off[list(PREDICTION_COLUMNS)].to_numpy())
    assert len(off) == len(test) and off["score"].std() > 0


@pytest.mark.parametrize("square", [True, False])
def test_files_gives_the_direct_batch_for_mixed_sizes_questions_and_repeats(loaded, tmp_path, square):
    _, processor, ids = loaded
    paths = _images(tmp_path, [(80, 60), (64, 64), (50, 90), (64, 64), (80, 60), (33, 47)])
    col = collate.Collator(processor, ids, train=True, square=square)
    for idx in ([0, 1, 2], [3, 4, 5], [5, 0, 3, 1, 1], [2]):
        questions = [collate.QUESTIONS[(3 * i + len(idx)) % len(collate.QUESTIONS)] for i in idx]
        levels = [i % 5 for i in idx]
        direct = col([load_image(paths[i]) for i in idx], levels=levels, questions=questions)
        assert _same_batch(col.files([paths[i] for i in idx], levels=levels, questions=questions), direct)
    assert process_cache.IMAGES.misses == 6 and not process_cache.IMAGES.refused  # each file prepared once


def test_a_processor_whose_batches_are_not_joins_is_refused_and_gets_the_direct_batch(loaded, tmp_path):
    """A processor that normalises by the batch's mean pixel: single images' tensors do not join into
    its batches; the first batch's check sees it and every batch is then made directly."""
    _, processor, ids = loaded

    class BatchNormalised:
        def __init__(self, inner):
            self.inner, self.image_processor, self.tokenizer = inner, inner.image_processor, inner.tokenizer

        def apply_chat_template(self, *a, **k):
            return self.inner.apply_chat_template(*a, **k)

        def __call__(self, **kw):
            enc = self.inner(**kw)
            enc["pixel_values"] = enc["pixel_values"] - enc["pixel_values"].mean()
            return enc

    paths = _images(tmp_path, [(40, 40)] * 4, seed=3)
    col = collate.Collator(BatchNormalised(processor), ids, train=False)
    with pytest.warns(UserWarning, match="not joins of single images"):
        first = col.files(paths[:3])
    assert _same_batch(first, col([load_image(p) for p in paths[:3]]))
    assert col.fingerprint() in process_cache.IMAGES.refused
    assert _same_batch(col.files(paths[1:]), col([load_image(p) for p in paths[1:]]))


def test_a_processor_without_written_settings_gets_the_direct_batch(loaded, tmp_path):
    """An image processor whose settings cannot be written out has no fingerprint: nothing is kept."""
    _, processor, ids = loaded

    class Opaque:
        def __init__(self, inner):
            self.inner, self.image_processor, self.tokenizer = inner, object(), inner.tokenizer

        def apply_chat_template(self, *a, **k):
            return self.inner.apply_chat_template(*a, **k)

        def __call__(self, **kw):
            return self.inner(**kw)

    paths = _images(tmp_path, [(40, 40)] * 2)
    col = collate.Collator(Opaque(processor), ids, train=False)
    assert col.fingerprint() is None
    assert _same_batch(col.files(paths), collate.Collator(processor, ids)([load_image(p) for p in paths]))
    assert len(process_cache.IMAGES) == 0 and not col.prepare_files(paths)


# ------------------------------------------------------------------------- what is kept, and when not

def test_a_rewritten_image_is_prepared_again(loaded, tmp_path):
    _, processor, ids = loaded
    col = collate.Collator(processor, ids, train=False)
    (path,) = _images(tmp_path, [(48, 48)], seed=1)
    before = col.files([path])
    _images(tmp_path, [(48, 48)], seed=2)  # the same file written again with other pixels
    after = col.files([path])
    assert _same_batch(after, col([load_image(path)]))
    assert not torch.equal(before["pixel_values"], after["pixel_values"])


def test_a_file_changed_just_now_is_not_kept(loaded, tmp_path, monkeypatch):
    """Within a tick of the file system's clock a rewrite can keep a file's times: a file that changed
    in the last SETTLE_SECONDS is prepared at every use and never stored."""
    _, processor, ids = loaded
    monkeypatch.setattr(process_cache, "SETTLE_SECONDS", 3600.0)
    col = collate.Collator(processor, ids, train=False)
    paths = _images(tmp_path, [(40, 40)] * 2)
    assert _same_batch(col.files(paths), col([load_image(p) for p in paths]))
    assert len(process_cache.IMAGES) == 0


def test_the_image_store_keeps_to_its_budget_and_the_batches_stay_the_same(loaded, tmp_path, monkeypatch):
    _, processor, ids = loaded
    col = collate.Collator(processor, ids, train=False)
    paths = _images(tmp_path, [(40, 40)] * 6)
    one = col([load_image(paths[0])])["pixel_values"]
    per_image = one.numel() * one.element_size()
    monkeypatch.setenv("DEQA_IMAGE_CACHE_MB", str(2.5 * per_image / 2**20))  # room for two images
    for idx in ([0, 1, 2], [3, 4], [5, 0, 1], [2, 3]):
        assert _same_batch(col.files([paths[i] for i in idx]), col([load_image(paths[i]) for i in idx]))
        assert len(process_cache.IMAGES) <= 2 and process_cache.IMAGES.nbytes <= 2.5 * per_image
    assert process_cache.IMAGES.evictions > 0


def test_a_run_prepares_its_training_images_once_when_they_all_fit(loaded, smoke_data, monkeypatch):
    _, processor, ids = loaded
    data = trainset.load_split(smoke_data, "train")
    col = collate.Collator(processor, ids, train=True)
    assert col.prepare_files(data.paths)
    store = process_cache.IMAGES
    assert len(store) == len(set(data.paths)) and store.verified
    misses = store.misses
    pairs = trainset.PairBatchDataset(data, trainset.PairStream(data.datasets, seed=0), col, 4, 0, 3)
    for i in range(3):
        pairs[i]
    assert store.misses == misses  # every image of the batches was ready
    per_image = store.nbytes / len(store)
    process_cache.clear()
    monkeypatch.setenv("DEQA_IMAGE_CACHE_MB", str(100 * per_image / 2**20))  # room for 100 images
    assert not col.prepare_files(data.paths, chunk=40)  # stops when the rest would not fit
    assert 0 < len(store) <= 100 and store.nbytes <= 100 * per_image


def test_image_store_drops_the_least_recently_used():
    store = process_cache.ImageStore()
    for key in "abc":
        store.put(key, key.upper(), 10, budget=25)
    assert store.get("a") is None and store.get("b") == "B" and len(store) == 2  # a left when c came
    store.put("d", "D", 10, budget=25)
    assert store.get("c") is None and store.get("b") == "B"  # b was used after c: c left
    store.put("big", "X", 30, budget=25)
    assert store.get("big") is None and store.nbytes <= 25


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_a_bad_budget_is_a_one_line_error(value, monkeypatch):
    monkeypatch.setenv("DEQA_IMAGE_CACHE_MB", value)
    with pytest.raises(DeqaError, match="DEQA_IMAGE_CACHE_MB must be a number of MiB"):
        process_cache.image_budget()


def test_check_readable_opens_a_file_once_per_process_until_it_changes(tmp_path, monkeypatch):
    from PIL import Image

    paths = _images(tmp_path, [(16, 16)] * 3)
    pd.DataFrame({"image": [p.name for p in paths], "mos": [2.0, 3.0, 4.0], "std": [0.5, 0.5, 0.5],
                  "dataset": "d", "split": "train"}).to_csv(tmp_path / "meta.csv", index=False)
    data = trainset.load_split([tmp_path / "meta.csv"], "train")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(Path(p).name) or real_open(p, *a, **k))
    trainset.check_readable(data, progress=False)
    trainset.check_readable(data, progress=False)
    assert opened == ["im0.png", "im1.png", "im2.png"]
    paths[1].write_bytes(b"not an image any more")
    with pytest.raises(DeqaError, match=r"row 2 \(image 'im1.png'\): cannot read the image"):
        trainset.check_readable(data, progress=False)


def test_labelled_tables_are_read_again_when_a_metadata_file_changes(tmp_path):
    paths = _images(tmp_path, [(16, 16)] * 2)
    meta = tmp_path / "meta.csv"
    rows = {"image": [p.name for p in paths], "std": [0.5, 0.5], "dataset": "d", "split": "train"}
    pd.DataFrame({**rows, "mos": [2.0, 4.0]}).to_csv(meta, index=False)
    first = trainset.load_split([meta], "train")
    pd.DataFrame({**rows, "mos": [4.0, 2.0]}).to_csv(meta, index=False)  # same size, other content
    second = trainset.load_split([meta], "train")
    np.testing.assert_array_equal(second.mu, first.mu[::-1])
    second.table.loc[0, "mos"] = -1.0  # a caller changing its copy changes nothing kept
    assert trainset.load_split([meta], "train").table.loc[0, "mos"] == 4.0
