"""Real MLLM architectures (Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM) through tiny random builds:
build, load, level tokens, collate, two LoRA training steps, save, reload, score."""
import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from deqa import collate, infer, levels, lora, mllm, tiny_archs  # noqa: E402
from deqa.levels import PREDICTION_COLUMNS, PROB_COLUMNS  # noqa: E402

ARCHS = sorted(tiny_archs.BUILDERS)
LM_NAME = {"qwen2_vl": "language_model", "qwen2_5_vl": "language_model", "idefics3": "text_model"}
VISION_NAME = {"qwen2_vl": "visual", "qwen2_5_vl": "visual", "idefics3": "vision_model"}
IMAGE_TOKEN = {"qwen2_vl": "<|image_pad|>", "qwen2_5_vl": "<|image_pad|>", "idefics3": "<image>"}
IMAGE_TOKENS_PER_IMAGE = 16  # 64 px: Qwen 8 px patches merged 2 x 2; Idefics3 8 px patches shuffled by 2


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    sizes = [(80, 60), (64, 64), (50, 90), (70, 70)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)]


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mllm.load(path)


def _level_ids(processor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return collate.level_token_ids(processor)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """arch -> folder of its tiny model (built once per test module)."""
    out = {}
    for arch in ARCHS:
        out[arch] = tiny_archs.BUILDERS[arch](tmp_path_factory.mktemp(arch), seed=0)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_build_writes_native_folder(built, arch):
    folder = built[arch]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == arch
    assert "auto_map" not in config  # native classes, no remote code
    processor_class = json.loads((folder / "processor_config.json").read_text())["processor_class"]
    assert processor_class == {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor",
                               "idefics3": "Idefics3Processor"}[arch]
    placeholder = "<image>" if arch == "idefics3" else "<|vision_start|><|image_pad|><|vision_end|>"
    assert placeholder in (folder / "chat_template.jinja").read_text()


@pytest.mark.parametrize("arch", ARCHS)
def test_load_and_level_tokens(built, arch):
    model, processor = _load(built[arch])
    assert model.config.model_type == arch
    tok = processor.tokenizer
    assert type(tok).__name__ == ("GPT2Tokenizer" if arch == "idefics3" else "Qwen2Tokenizer")
    # level words are whole tokens only with their leading space
    assert len(tok.tokenize("good")) > 1 and tok.tokenize(" good") == ["Ġgood"]
    if arch.startswith("qwen"):
        assert tok.tokenize(" excellent") == ["Ġexcel", "lent"]
        with pytest.warns(UserWarning, match="excellent"):
            ids = collate.level_token_ids(processor)
        assert ids[4] == tok.convert_tokens_to_ids("Ġexcel")  # first sub-token stands for the word
    else:
        ids = collate.level_token_ids(processor)
        assert tok.convert_ids_to_tokens(ids) == [f"Ġ{w}" for w in levels.LEVELS]
    assert len(set(ids)) == 5 and all(0 <= i < model.config.get_text_config().vocab_size for i in ids)
    # the rendered prompt carries the family's image placeholder tokens
    prompt = collate.Collator(processor, ids).prompt_text
    if arch.startswith("qwen"):
        assert "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
    else:
        assert prompt.startswith("<|im_start|>User:<image>") and prompt.endswith("Assistant:")


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_targets_only_language_model(built, arch):
    from peft import LoraConfig, get_peft_model

    model, _ = _load(built[arch])
    settings = lora.lora_settings(model)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=settings["target_modules"],
                                                  modules_to_save=settings["modules_to_save"]))
    adapted = [n for n, m in peft_model.named_modules()
               if hasattr(m, "lora_A") and isinstance(m.lora_A, torch.nn.ModuleDict)]
    layers = model.config.get_text_config().num_hidden_layers
    assert len(adapted) == 7 * layers  # q k v o gate up down in every layer
    assert all(f".{LM_NAME[arch]}.layers." in n for n in adapted)
    assert not any(VISION_NAME[arch] in n for n in adapted)
    trainable = {n.split(".modules_to_save.")[0].split(".")[-1] for n, p in peft_model.named_parameters()
                 if p.requires_grad and ".modules_to_save." in n}
    assert trainable == set(settings["modules_to_save"])


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_targets_derived_from_the_module_tree_equal_the_table(built, arch):
    """The fallback for architectures missing from the table places LoRA exactly where the table does."""
    import re

    model, _ = _load(built[arch])
    table, derived = lora.lora_settings(model), lora.derive_targets(model)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    hit = lambda pattern: {n for n in names if re.fullmatch(pattern, n)}  # noqa: E731 (peft matches in full)
    assert hit(derived["target_modules"]) == hit(table["target_modules"]) and len(hit(table["target_modules"])) > 0
    assert derived["modules_to_save"] == table["modules_to_save"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.slow
def test_collate_train_save_reload_score(built, arch, tmp_path):
    from deqa import checkpoints, train
    from deqa.losses import LossSettings

    model, processor = _load(built[arch])
    ids = _level_ids(processor)
    images = _images(4)
    chosen = [0, 4, 2, 3]  # image A, A, B, B of two pairs

    batch = collate.Collator(processor, ids, train=True)(images, chosen)
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN[arch])
    assert ((batch["input_ids"] == image_id).sum(1) == IMAGE_TOKENS_PER_IMAGE).all()
    rows = torch.arange(4)
    lp = batch["level_pos"]
    assert (batch["input_ids"][rows, lp + 1] == torch.tensor(ids)[chosen]).all()
    assert (batch["labels"][rows, lp] == -100).all()
    assert (batch["labels"][rows, lp + 1] == batch["input_ids"][rows, lp + 2]).all()  # "." after the level

    mu = torch.tensor([1.2, 4.8, 3.0, 3.9])
    sigma = torch.full((4,), 0.5)
    from deqa.soft_label import soft_labels

    batch["target"] = torch.as_tensor(soft_labels(mu.numpy(), sigma.numpy()), dtype=torch.float32)
    batch["mu"], batch["sigma"] = mu, sigma
    torch.manual_seed(0)
    peft_model = lora.apply_lora(model, r=4, dropout=0.0)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses_seen = []
    for _ in range(2):
        optimizer.zero_grad()
        loss = train.pair_loss(peft_model, batch, ids, LossSettings(), "cpu")["loss"]
        loss.backward()
        optimizer.step()
        losses_seen.append(float(loss.detach()))
    assert all(np.isfinite(losses_seen))
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(float(p.abs().max()) > 0 for p in lora_b)  # the adapter moved off its zero start
    peft_model.eval()

    score_images = _images(3, seed=1)
    before = infer.score_images(peft_model, processor, score_images, batch_size=3, progress=False)
    one_by_one = infer.score_images(peft_model, processor, score_images, batch_size=1, progress=False)
    np.testing.assert_allclose(before[list(PREDICTION_COLUMNS)].to_numpy(), one_by_one[list(PREDICTION_COLUMNS)].to_numpy(), atol=1e-4)

    saved = checkpoints.save_model(peft_model, processor, tmp_path / "model")
    reloaded, processor2 = _load(saved)
    after = infer.score_images(reloaded, processor2, score_images, batch_size=3, progress=False)
    scores = after["score"].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 1) & (scores <= 5)).all()
    np.testing.assert_allclose(after[list(PREDICTION_COLUMNS)].to_numpy(), before[list(PREDICTION_COLUMNS)].to_numpy(), atol=1e-5)
    np.testing.assert_allclose(after[list(PROB_COLUMNS)].sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("arch", ARCHS)
def test_batches_from_files_equal_the_processors_own(built, arch, square, tmp_path, monkeypatch):
    """Collator.files (each image prepared once per process) gives the processor's own batch bit for
    bit, for images of mixed sizes and questions, cold and warm (deqa.process_cache)."""
    from deqa import process_cache
    from deqa.images import load_image

    monkeypatch.setattr(process_cache, "SETTLE_SECONDS", 0.0)
    process_cache.clear()
    _, processor = _load(built[arch])
    paths = []
    for i, img in enumerate(_images(6, seed=4)):
        paths.append(tmp_path / f"im{i}.png")
        img.save(paths[-1])
    col = collate.Collator(processor, _level_ids(processor), train=True, square=square)
    try:
        for idx in ([0, 1, 2, 3], [1, 4, 5], [5, 0, 3, 1], [2, 2]):
            questions = [collate.QUESTIONS[(i + len(idx)) % len(collate.QUESTIONS)] for i in idx]
            chosen = [i % 5 for i in idx]
            direct = col([load_image(paths[i]) for i in idx], chosen, questions)
            got = col.files([paths[i] for i in idx], chosen, questions)
            assert list(got) == list(direct)
            for k, v in direct.items():
                assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
        assert process_cache.IMAGES.hits > 0 and not process_cache.IMAGES.refused  # joined from the store
    finally:
        process_cache.clear()


def test_builders_reachable_through_build_tiny(tmp_path):
    from deqa import tiny

    folder = tiny.build_tiny(tmp_path / "q", arch="qwen2_5_vl", hidden_size=64, intermediate_size=128)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen2_5_vl"


def test_bad_settings_raise_deqa_error(tmp_path):
    from deqa.errors import DeqaError

    with pytest.raises(DeqaError, match="multiple of 16"):
        tiny_archs.build_qwen2_vl(tmp_path / "q", image_size=60)
    with pytest.raises(DeqaError, match="tower_state"):
        tiny_archs.build_idefics3(tmp_path / "i", tower_state={})
    with pytest.raises(DeqaError, match="no LoRA targets known for model type 'bert'"):
        lora.lora_settings("bert")


def test_split_level_word_keeps_its_other_sub_tokens_in_the_answer(tmp_path):
    """Qwen's tiny tokenizer splits " excellent" into " excel" + "lent": the level position predicts
    " excel" (KL), and "lent" is still in the answer, trained by the cross-entropy like "."."""
    from PIL import Image

    tiny_archs.BUILDERS["qwen2_vl"](tmp_path / "q")
    _, processor = mllm.load(tmp_path / "q")
    tok = processor.tokenizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids = collate.level_token_ids(tok)
        collator = collate.Collator(processor, ids, train=True)
    img = Image.new("RGB", (64, 64), (120, 80, 40))
    batch = collator([img, img], levels=[4, 2])
    for row, level in ((0, 4), (1, 2)):
        pos = int(batch["level_pos"][row])
        assert int(batch["input_ids"][row, pos + 1]) == ids[level]
        assert int(batch["labels"][row, pos]) == -100
        trained = [t for t in batch["labels"][row, pos + 1:].tolist() if t != -100]
        text = tok.decode(trained)
        assert text.startswith("lent." if level == 4 else "."), text
