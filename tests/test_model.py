"""The tiny MLLM, its tower, loading, level tokens and the collator."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from deqa import collate as C
from deqa import mllm as M
from deqa.errors import DeqaError
from deqa.levels import LEVELS


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(folder, model as built, loaded model, loaded processor), built once per session."""
    from deqa.tiny import build_tiny

    out, built, _ = build_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0, return_model=True)
    model, processor = M.load(out)
    return out, built, model, processor


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 64, 3), dtype=np.uint8)) for i in range(n)]


def test_build_then_load_gives_bit_identical_logits(tiny):
    out, built, model, processor = tiny
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    batch = C.Collator(processor, train=True)(_images(3), [0, 2, 4])
    built.eval()
    with torch.no_grad():
        a = built(**C.model_inputs(batch)).logits
        b = model(**C.model_inputs(batch)).logits
    assert a.shape == (3, batch["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.equal(a, b)


def test_level_words_are_single_distinct_tokens(tiny):
    tok = tiny[3].tokenizer
    ids = C.level_token_ids(tok)
    assert len(set(ids)) == 5
    for word, i in zip(LEVELS, ids):
        assert tok.encode(" " + word, add_special_tokens=False) == [i]
        assert tok.decode([i]) == " " + word


def _wrap(tokenizer_object, **kw):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **kw)


def test_level_token_ids_names_a_missing_word():
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[UNK]", "The", "quality", "of", "the", "image", "is", "bad", "poor", "good", "excellent"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(DeqaError, match="'fair'"):
        C.level_token_ids(_wrap(tok, unk_token="[UNK]"))


def _byte_bpe(extra_merges):
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = []
    for a, b in extra_merges:
        vocab[a + b] = len(vocab)
        merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return _wrap(tok)


def test_level_token_ids_refuses_colliding_first_tokens():
    # no merges: every space-prefixed word starts with the same space token
    with pytest.raises(DeqaError, match="'poor' starts with the same token"):
        C.level_token_ids(_byte_bpe([]))


def test_level_token_ids_takes_distinct_first_subtokens_with_a_warning():
    tok = _byte_bpe([("Ġ", c) for c in "bpfge"])
    with pytest.warns(UserWarning, match="several tokens"):
        ids = C.level_token_ids(tok)
    assert tok.convert_ids_to_tokens(ids) == ["Ġb", "Ġp", "Ġf", "Ġg", "Ġe"]


def test_collator_train_labels_and_level_position(tiny):
    processor = tiny[3]
    tok = processor.tokenizer
    ids = C.level_token_ids(tok)
    collate = C.Collator(processor, ids, train=True)
    levels = [4, 0, 2, 3]
    batch = collate(_images(4), levels)
    B, T = batch["input_ids"].shape
    assert B == 4 and batch["labels"].shape == (B, T) and batch["pixel_values"].shape == (4, 3, 64, 64)
    inputs = C.model_inputs(batch)
    assert set(inputs) >= {"input_ids", "attention_mask", "pixel_values"}
    assert "labels" not in inputs and "level_pos" not in inputs
    image_id = processor.image_token_id
    n_prefix = len(tok.encode(C.ANSWER_PREFIX, add_special_tokens=False))
    for i in range(B):
        pos = int(batch["level_pos"][i])
        row, lab = batch["input_ids"][i], batch["labels"][i]
        assert int(row[pos + 1]) == ids[levels[i]]  # the next token is the level word
        assert lab[pos] == -100  # ... which the CE never trains
        assert tok.decode(row[: pos + 1]).endswith(C.ANSWER_PREFIX)
        assert int((row == image_id).sum()) == 16  # never truncated
        # labels are the inputs shifted by one on the answer, -100 elsewhere
        trained = (lab != -100).nonzero().flatten()
        assert torch.equal(lab[trained], row[trained + 1])
        first = int(trained[0])
        assert tok.decode(row[first + 1 : pos + 1]) == C.ANSWER_PREFIX
        assert len(trained) == n_prefix + (T - 1 - (pos + 1))  # prefix, then everything after the level
        assert bool((lab[: first] == -100).all())
    assert tok.decode(batch["input_ids"][0][int(batch["level_pos"][0]) + 1 :]).startswith(" excellent.")


def test_collator_asks_each_image_its_own_question_and_the_one_hot_label_trains_the_level_word(tiny):
    processor = tiny[3]
    tok = processor.tokenizer
    ids = C.level_token_ids(tok)
    questions = [C.QUESTIONS[0], C.QUESTIONS[7]]
    soft = C.Collator(processor, ids, train=True)(_images(2), [1, 3], questions=questions)
    for i, q in enumerate(questions):
        text = tok.decode(soft["input_ids"][i][soft["attention_mask"][i].bool()])
        assert q in text and all(other not in text for other in C.QUESTIONS if other != q)
    default = C.Collator(processor, ids, train=False)(_images(1))
    assert C.QUESTION in tok.decode(default["input_ids"][0]) and C.QUESTION == "How would you rate the quality of this image?"
    assert len(C.QUESTIONS) == 10 and C.QUESTION in C.QUESTIONS
    onehot = C.Collator(processor, ids, train=True, level_in_ce=True)(_images(2), [1, 3], questions=questions)
    rows = torch.arange(2)
    pos = onehot["level_pos"]
    assert onehot["labels"][rows, pos].tolist() == [ids[1], ids[3]]  # the level word is one more CE token
    assert torch.equal(onehot["input_ids"], soft["input_ids"])
    differs = (onehot["labels"] != soft["labels"]).nonzero()
    assert differs[:, 1].tolist() == pos.tolist()  # nothing else changes


def test_collator_eval_prompt_ends_at_the_level_position(tiny):
    processor = tiny[3]
    batch = C.Collator(processor, train=False)(_images(2))
    T = batch["input_ids"].shape[1]
    assert batch["level_pos"].tolist() == [T - 1, T - 1]
    assert "labels" not in batch
    assert processor.tokenizer.decode(batch["input_ids"][0]).endswith("<|assistant|>\n" + C.ANSWER_PREFIX)


def test_level_logits_match_the_full_forward_and_survive_padding(tiny):
    model, processor = tiny[2], tiny[3]
    batch = C.Collator(processor, train=True)(_images(2), [1, 3])
    with torch.no_grad():
        full = model(**C.model_inputs(batch)).logits
        got = M.level_logits(model, batch)
    assert torch.allclose(got, full[torch.arange(2), batch["level_pos"]], atol=1e-5)

    # one prompt, left-padded in row 0 and right-padded in row 1: the level positions differ, the
    # logits there must not
    one = C.Collator(processor, train=False)(_images(1))
    T, pad = one["input_ids"].shape[1], 3
    ids, mask = one["input_ids"][0], one["attention_mask"][0]
    pads, zeros = torch.full((pad,), processor.tokenizer.pad_token_id), torch.zeros(pad, dtype=mask.dtype)
    attention = torch.stack([torch.cat([zeros, mask]), torch.cat([mask, zeros])])
    mixed = {
        "pixel_values": one["pixel_values"].repeat(2, 1, 1, 1),
        "input_ids": torch.stack([torch.cat([pads, ids]), torch.cat([ids, pads])]),
        "attention_mask": attention,
        "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
        "level_pos": torch.tensor([T - 1 + pad, T - 1]),
    }
    with torch.no_grad():
        expected = M.level_logits(model, one)
        moved = M.level_logits(model, mixed)
    assert moved.shape == (2, expected.shape[1])
    assert torch.allclose(moved, expected.expand(2, -1), atol=1e-4)


def test_pad_to_square():
    img = Image.new("RGB", (30, 10), (200, 100, 0))
    sq = C.pad_to_square(img, fill=(1, 2, 3))
    assert sq.size == (30, 30)
    assert sq.getpixel((0, 0)) == (1, 2, 3) and sq.getpixel((15, 15)) == (200, 100, 0)
    assert C.pad_to_square(img).getpixel((0, 0)) == (200, 100, 0)  # default: the image's mean colour
    square = Image.new("RGB", (8, 8), (5, 6, 7))
    assert C.pad_to_square(square).size == (8, 8)


def test_load_errors_and_run_folders(tiny, tmp_path):
    with pytest.raises(DeqaError, match="does-not-exist"):
        M.load(tmp_path / "does-not-exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DeqaError, match="no config.json"):
        M.load(empty)
    # a run folder keeps its model in RUN_DIR/model
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"lr": 0.001}')  # the run's training configuration
    (run / "model").symlink_to(tiny[0], target_is_directory=True)
    model, _ = M.load(run)
    assert type(model).__name__ == "LlavaForConditionalGeneration"


def test_load_a_lora_adapter_folder(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    out, _, _, processor = tiny
    base, _ = M.load(out)
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = get_peft_model(base, cfg)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    loaded, _ = M.load(tmp_path / "adapter")
    batch = C.Collator(processor, train=False)(_images(2))
    with torch.no_grad():
        a = M.level_logits(peft_model.eval(), batch)
        b = M.level_logits(loaded, batch)
        plain = M.level_logits(M.load(out)[0], batch)
    assert torch.allclose(a, b, atol=1e-6)
    assert (a - plain).abs().max() > 1e-4  # the adapter changes the model


def test_tower_shapes_and_pretrain_reduces_the_loss():
    from deqa.tower import QualityCNNConfig, QualityCNNModel, pretrain_tower

    torch.manual_seed(0)
    tower = QualityCNNModel(QualityCNNConfig())
    out = tower(torch.zeros(2, 3, 64, 64), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 16, 128)
    assert out.hidden_states[-1] is out.last_hidden_state
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two shared ones
    try:
        hist = pretrain_tower(tower, steps=30, batch_size=16, pool_size=64, eval_size=32, progress=False)
    finally:
        torch.set_num_threads(threads)
    loss = np.asarray(hist["loss"])
    assert len(loss) == 30 and np.all(np.isfinite(loss))
    assert loss[-10:].mean() < 0.8 * loss[:10].mean()
    assert any(not torch.equal(before[k], v) for k, v in tower.state_dict().items())


def test_build_tiny_puts_a_pretrained_tower_in_the_model(tmp_path):
    from deqa.tiny import build_tiny
    from deqa.tower import QualityCNNConfig, QualityCNNModel

    torch.manual_seed(5)
    tower = QualityCNNModel(QualityCNNConfig())
    state = tower.state_dict()
    out = build_tiny(tmp_path / "m", seed=0, tower_state=state)
    model, _ = M.load(out)
    loaded = model.model.vision_tower.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(DeqaError, match="unknown tiny architecture 'nope'"):
        build_tiny(tmp_path / "x", arch="nope")


def test_tower_pixels_match_the_processor(tiny):
    """Stage 1 feeds the tower exactly what the processor gives the MLLM (96 px -> 64 px too)."""
    from deqa.synth import quality_batch
    from deqa.tower import normalize_pixels

    processor = tiny[3]
    big, *_ = quality_batch(3, size=96, seed=4)
    small, *_ = quality_batch(3, size=64, seed=4)
    pixels = processor.image_processor([Image.fromarray(a) for a in big], return_tensors="pt")["pixel_values"]
    assert pixels.shape == (3, 3, 64, 64)
    assert torch.allclose(pixels, normalize_pixels(small), atol=1e-6)


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_load_names_the_folder_for_a_config_without_model_type_or_damaged_weights(tiny, tmp_path):
    no_type = _copy_model(tiny[0], tmp_path / "no_type")
    config = json.loads((no_type / "config.json").read_text())
    config.pop("model_type")
    (no_type / "config.json").write_text(json.dumps(config))
    with pytest.raises(DeqaError, match=r"cannot load model .*no_type.*model_type"):
        M.load(no_type)
    cut = _copy_model(tiny[0], tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(DeqaError, match=r"cannot load model .*cut.*damaged or truncated"):
        M.load(cut)


def test_a_hub_id_fails_fast_offline_or_when_the_hub_cannot_be_reached(monkeypatch):
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(M, "hub_reachable", lambda endpoint, timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(DeqaError, match="deqa-test/no-such-model is not a local folder.*cannot be reached"):
        M.load("deqa-test/no-such-model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DeqaError, match="no-such-model.*HF_HUB_OFFLINE"):
        M.load("deqa-test/no-such-model")
    assert time.perf_counter() - start < 10  # not a minute of download retries


def test_hub_reachable_answers_quickly_for_a_closed_port():
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on: bound, never accepting
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        start = time.perf_counter()
        assert not M.hub_reachable(f"http://127.0.0.1:{port}", timeout=1.0)
    assert time.perf_counter() - start < 3
